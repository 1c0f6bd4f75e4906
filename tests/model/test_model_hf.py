"""Saved guardmatch models load in transformers: AutoModelForSequenceClassification, pipeline,
trust_remote_code, with the same calibrated scores as GuardClassifier (max |dP| < 1e-5)."""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, pipeline

import guardmatch  # noqa: F401 - registers the guardmatch model type with transformers
from guardmatch.encoders import minilm_path
from guardmatch.model import GuardClassifier

TEXTS = ["how do I kill a python process", "write a poem about spring", "how to make a pipe bomb at home"]


def _tiny(task="prompt", heads=1, outputs=2):
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    model = GuardClassifier.from_encoder(str(minilm_path()), encoder_config=cfg, seed=0, max_length=64, task=task,
                                         num_heads=heads, num_outputs=outputs)
    model.config.temperature = 1.7  # calibrated models divide logits by T: transformers must too
    return model


def test_auto_model_and_pipeline_give_guardmatch_scores(tmp_path):
    gm = _tiny(heads=3, outputs=3)  # MultiMatch-style: 3 heads and a virtual class
    expected = gm.score(TEXTS)
    gm.save_pretrained(tmp_path / "m")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    with torch.no_grad():
        logits = hf(**tok(TEXTS, padding=True, truncation=True, max_length=64, return_tensors="pt")).logits
    assert logits.shape == (3, 2) and hf.config.id2label == {0: "unharmful", 1: "harmful"}
    assert np.abs(torch.softmax(logits, -1)[:, 1].numpy() - expected).max() < 1e-5
    clf = pipeline("text-classification", model=str(tmp_path / "m"), top_k=None, device=-1)
    got = [next(s["score"] for s in scores if s["label"] == "harmful") for scores in clf(TEXTS)]
    assert np.abs(np.array(got) - expected).max() < 1e-5


def test_pairs_and_trust_remote_code(tmp_path):
    gm = _tiny(task="response")
    prompts, responses = ["How do I pick a lock?", "hi"], ["Use a tension wrench and a pick.", "Hello!"]
    expected = gm.score(prompts, responses)
    gm.save_pretrained(tmp_path / "r")
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path / "r", trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "r")
    with torch.no_grad():
        logits = hf(**tok(prompts, responses, padding=True, return_tensors="pt")).logits
    assert np.abs(torch.softmax(logits, -1)[:, 1].numpy() - expected).max() < 1e-5
    assert hf.config.guardmatch["task"] == "response"


def test_model_card_states_task_encoder_labels_threshold_and_metrics(tmp_path):
    gm = _tiny()
    gm.config.threshold = 0.42
    gm.config.provenance = {"algorithm": "fixmatch", "train_source": "wildguardtrain", "labeled_examples": 200,
                            "unlabeled_examples": 3193, "views": "llm-rewrite",
                            "metrics": {"wildguardtest": {"f1": 0.7123, "precision": 0.8, "recall": 0.64}}}
    gm.save_pretrained(tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: guardmatch\npipeline_tag: text-classification")
    for needle in ("| task | prompt", "| threshold | 0.42", "| calibrated | no", "| algorithm | fixmatch |",
                   "| labels used | 200 |", "| unlabeled pool | 3193 |", "| strong views | llm-rewrite |",
                   "| wildguardtest | 0.712 | 0.800 | 0.640 |"):
        assert needle in card, needle


def test_hub_ids_are_tried_only_for_org_name(tmp_path, monkeypatch):
    import pytest

    from guardmatch.model import _looks_like_repo_id

    assert _looks_like_repo_id("org/name") and not _looks_like_repo_id("runs/a/model")
    assert not _looks_like_repo_id("./model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception, match="(?i)offline|cannot find|not found|connection"):
        GuardClassifier.from_pretrained("nobody-here/no-such-guardmatch-model")
