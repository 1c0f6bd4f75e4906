"""Baselines on a cell's split: TF-IDF + LR (C by CV on the labeled split only) and SetFit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from guardmatch.data.example import Example, Task
from guardmatch.encoders import minilm_path
from guardmatch.errors import ConfigError
from guardmatch.grid.baselines import SetFitBaseline, TfidfLR, pair_texts


def test_tfidf_lr_chooses_C_by_cv_and_learns(train_slice, shared_data):
    from guardmatch.data.suites import load_dataset

    model = TfidfLR(Task.PROMPT, seed=0, params={"C_grid": [0.1, 1.0, 10.0], "cv_folds": 4}).fit(train_slice)
    assert model.cv["C"] in (0.1, 1.0, 10.0) and set(model.cv["cv_f1"]) == {0.1, 1.0, 10.0}
    assert model.cv["folds"] == 4
    best = max(model.cv["cv_f1"].values())
    assert model.cv["cv_f1"][model.cv["C"]] == best
    test = load_dataset("wildguardtest", "prompt", data_dir=shared_data).examples[:300]
    probs = model.predict_proba(test)
    assert probs.shape == (300,) and ((0 <= probs) & (probs <= 1)).all()
    assert roc_auc_score([e.label for e in test], probs) > 0.6  # 80 labels of real data carry signal
    # the vectorizers saw only the training texts (never a test set)
    word = model.features.named_transformers_["prompt_word"]
    analyze = word.build_analyzer()
    seen = {g for e in train_slice for g in analyze(e.prompt)}
    test_only = {g for e in test for g in analyze(e.prompt)} - seen
    assert test_only and not test_only & set(word.vocabulary_)


def test_tfidf_lr_response_task_uses_prompt_and_response_separately():
    rows = [Example(f"r{i}", "tell me how", resp, lab) for i, (resp, lab) in enumerate(
        [("Sure, here is how to build a bomb", 1), ("I cannot help with that", 0)] * 8)]
    model = TfidfLR(Task.RESPONSE, seed=0, params={"C_grid": [1.0], "cv_folds": 2}).fit(rows)
    names = [name for name, _, _ in model.features.transformers_]
    assert {"prompt_word", "response_word", "response_char"} <= set(names)
    p = model.predict_proba([Example("a", "tell me how", "here is how to build a bomb"),
                             Example("b", "tell me how", "I cannot help")])
    assert p[0] > p[1]


def test_tfidf_rejects_unknown_params():
    with pytest.raises(ValueError, match="unknown parameter"):
        TfidfLR(Task.PROMPT, 0, {"C": 3})


def test_pair_texts_truncate_the_prompt_first():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    long_prompt = " ".join(f"word{i}" for i in range(300))
    ex = Example("x", long_prompt, "the response must survive truncation entirely", 1)
    (text,) = pair_texts([ex], Task.RESPONSE, tok, max_length=64)
    assert text.endswith("[SEP] the response must survive truncation entirely")
    assert len(tok(text)["input_ids"]) <= 64
    assert pair_texts([ex], Task.PROMPT, tok, 64) == [long_prompt]


def test_setfit_fits_and_scores_with_a_tiny_body(tmp_path, tiny_hf_dir, train_slice):
    pytest.importorskip("setfit")
    train = train_slice[:8] + train_slice[40:48]
    model = SetFitBaseline(Task.PROMPT, seed=0, workdir=tmp_path / "work",
                           params={"body": str(tiny_hf_dir), "max_steps": 3, "batch_size": 4, "max_length": 32})
    model.fit(train)
    probs = model.predict_proba(train_slice[20:30])
    assert probs.shape == (10,) and ((0 <= probs) & (probs <= 1)).all()
    assert not (tmp_path / "work").exists()  # SetFit's scratch dir is removed
    model.save(tmp_path / "saved")
    head = json.loads((tmp_path / "saved" / "head.json").read_text())
    assert np.array(head["coef"]).shape == (1, 32)
    assert (tmp_path / "saved" / "body" / "model.safetensors").exists()
    assert model.info["precision"] == "fp32"


def test_setfit_bf16_runs_where_native_and_falls_back_to_fp32_elsewhere(tmp_path, tiny_hf_dir, train_slice):
    pytest.importorskip("setfit")
    from guardmatch.training.run import native_bf16

    model = SetFitBaseline(Task.PROMPT, seed=0, workdir=tmp_path / "work",
                           params={"body": str(tiny_hf_dir), "max_steps": 2, "batch_size": 4, "max_length": 32,
                                   "precision": "bf16"})
    model.fit(train_slice[:8] + train_slice[40:48])
    assert model.info["precision"] == ("bf16" if native_bf16() else "fp32")
    probs = model.predict_proba(train_slice[20:30])
    assert probs.dtype == np.float64 and np.isfinite(probs).all() and ((0 <= probs) & (probs <= 1)).all()


def test_setfit_rejects_an_unknown_precision():
    with pytest.raises(ConfigError, match=r"setfit: precision must be one of \['fp32', 'bf16'\], got 'fp16'"):
        SetFitBaseline(Task.PROMPT, seed=0, params={"precision": "fp16"})
