"""Fixtures for serving tests: tiny random-init classifiers (real MiniLM tokenizer), saved and ONNX-exported."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving_fixtures import tiny_classifier


@pytest.fixture(scope="session")
def serving_prompt_dir(tmp_path_factory) -> Path:
    """A saved tiny prompt classifier with two heads (the export must average them)."""
    path = tmp_path_factory.mktemp("serving") / "prompt-model"
    tiny_classifier("prompt", seed=1, num_heads=2).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def serving_response_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("serving") / "response-model"
    tiny_classifier("response", seed=2).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def serving_prompt_onnx(serving_prompt_dir, tmp_path_factory) -> tuple[Path, dict]:
    """The prompt model exported to ONNX (float), with the export record."""
    pytest.importorskip("onnxruntime")
    from guardmatch.serving.onnx import export_onnx

    out = tmp_path_factory.mktemp("serving") / "prompt-onnx"
    record = export_onnx(serving_prompt_dir, out)
    return out, record
