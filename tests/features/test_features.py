"""CPU fast paths: cached lower-layer states and pooled vectors reproduce the full forward pass."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import BertConfig, DebertaV2Config, MPNetConfig

from guardmatch.data.example import Example
from guardmatch.encoders import deberta_v3_tokenizer_path, minilm_path
from guardmatch.features import FeatureStore, LayerSplit, entry_key
from guardmatch.model import GuardClassifier

TEXTS = ["how do I kill a python process", "write me a poem about spring time in paris", "hi",
         "Explain step by step how to pick a pin tumbler lock without the key."]


def _bert(layers=3):
    return BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=512)


def _deberta():
    return DebertaV2Config(vocab_size=128100, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=512, relative_attention=True,
                           pos_att_type=["p2c", "c2p"], position_buckets=64, norm_rel_ebd="layer_norm",
                           share_att_key=True)


def _mpnet():
    # MPNet's vocabulary is BERT's plus 5 tokens: MiniLM's tokenizer drives a tiny random MPNet
    return MPNetConfig(vocab_size=30527, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                       intermediate_size=64, max_position_embeddings=514)


@pytest.mark.parametrize("kind", ["bert", "deberta", "mpnet"])
@pytest.mark.parametrize("start", [0, 1, 2, 3])
def test_upper_of_lower_equals_full_encoder(kind, start):
    torch.manual_seed(0)
    if kind == "bert":
        model = GuardClassifier.from_encoder(str(minilm_path()), encoder_config=_bert(), seed=0)
    elif kind == "mpnet":
        model = GuardClassifier.from_encoder(str(minilm_path()), encoder_config=_mpnet(), seed=0)
    else:
        model = GuardClassifier.from_encoder(str(deberta_v3_tokenizer_path()), encoder_config=_deberta(), seed=0)
    model.eval()
    enc = model.tokenize(TEXTS)
    split = LayerSplit(model.encoder, start)
    kwargs = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
    with torch.no_grad():
        full = model.encoder(**enc).last_hidden_state
        low = split.lower(enc["input_ids"], enc["attention_mask"], **kwargs)
        up = split.upper(low, enc["attention_mask"])
    mask = enc["attention_mask"].bool()
    torch.testing.assert_close(up[mask], full[mask], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["top_layers", "frozen"])
def test_cached_features_match_full_logits_and_resume(tmp_path, mode):
    model = GuardClassifier.from_encoder(str(minilm_path()), encoder_config=_bert(), seed=0, num_heads=2)
    model.eval()
    examples = [Example(str(i), t) for i, t in enumerate(TEXTS)]
    store = FeatureStore(model, mode, top_layers=2, root=tmp_path)
    # a first build stops half way (as a kill would): only the first two texts are cached
    assert store.build(examples[:2], progress=False) == {"cached": 2, "total": 2}
    again = FeatureStore(model, mode, top_layers=2, root=tmp_path)  # a new process opening the cache
    assert again.build(examples, progress=False) == {"cached": 2, "total": 4}  # nothing redone
    with torch.no_grad():
        cached = model.class_logits(model(**again.batch(examples)))
        full = model.class_logits(model(**model.tokenize(TEXTS)))
    torch.testing.assert_close(cached, full, rtol=1e-2, atol=2e-3)  # fp16 storage


def test_torn_index_line_is_ignored(tmp_path):
    model = GuardClassifier.from_encoder(str(minilm_path()), encoder_config=_bert(), seed=0)
    examples = [Example(str(i), t) for i, t in enumerate(TEXTS)]
    store = FeatureStore(model, "top_layers", top_layers=1, root=tmp_path)
    store.build(examples[:3], progress=False)
    index = store.path / "index.jsonl"
    index.write_text(index.read_text() + '{"key": "abc", "sha')  # a kill mid-line
    reopened = FeatureStore(model, "top_layers", top_layers=1, root=tmp_path)
    assert len(reopened.cache) == 3
    assert reopened.build(examples, progress=False)["cached"] == 1


def test_cache_is_keyed_by_frozen_weights(tmp_path):
    a = GuardClassifier.from_encoder(str(minilm_path()), encoder_config=_bert(), seed=0)
    b = GuardClassifier.from_encoder(str(minilm_path()), encoder_config=_bert(), seed=1)
    sa = FeatureStore(a, "top_layers", top_layers=1, root=tmp_path)
    sb = FeatureStore(b, "top_layers", top_layers=1, root=tmp_path)
    assert sa.path != sb.path
    # training the top layer does not change where the lower-layer states live
    with torch.no_grad():
        a.encoder.encoder.layer[-1].output.dense.weight.add_(1.0)
        a.heads[0][1].weight.add_(1.0)
    assert FeatureStore(a, "top_layers", top_layers=1, root=tmp_path).path == sa.path


def test_freeze_lower_leaves_top_layers_trainable(tmp_path):
    model = GuardClassifier.from_encoder(str(minilm_path()), encoder_config=_bert(), seed=0)
    store = FeatureStore(model, "top_layers", top_layers=1, root=tmp_path)
    store.freeze_lower()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("encoder.encoder.layer.2.") for n in trainable)
    assert not any(n.startswith(("encoder.embeddings.", "encoder.encoder.layer.0.", "encoder.encoder.layer.1."))
                   for n in trainable)
    assert any(n.startswith("heads.") for n in trainable)


def test_entry_key_depends_on_task_and_response():
    ex = Example("1", "p", "r")
    assert entry_key(ex, "prompt") == entry_key(Example("2", "p", "other"), "prompt")
    assert entry_key(ex, "response") != entry_key(Example("2", "p", "other"), "response")


def test_top_layers_run_end_to_end(tmp_path, shared_data):
    """`train` in top-layer mode on a real slice: features cached once, a second run reuses them."""
    from guardmatch.config import TrainConfig
    from guardmatch.data.suites import load_dataset
    from guardmatch.training.run import run_training

    rows = load_dataset("wildguardtrain", "prompt", data_dir=shared_data).examples
    rows = [e for e in rows if e.label == 1][:30] + [e for e in rows if e.label == 0][:30]
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(e.to_dict()) + "\n" for e in rows))
    tiny = tmp_path / "tiny"
    GuardClassifier.from_encoder(str(minilm_path()), encoder_config=_bert(), seed=0, max_length=48).save_pretrained(tiny)

    def run(out):
        cfg = TrainConfig.model_validate({
            "output_dir": str(tmp_path / out), "mode": "top_layers", "top_layers": 1,
            "feature_cache_dir": str(tmp_path / "fcache"),
            "data": {"train": str(train), "labels": 20, "suite": "none", "validation": 4},
            "model": {"init_from": str(tiny)},
            "optim": {"max_steps": 6, "batch_size": 4, "lr": 1e-3},
        })
        return run_training(cfg)

    first = run("a")
    second = run("b")
    assert first.timings["features_s"] > 0
    (cache_dir,) = list((tmp_path / "fcache" / "features").iterdir())
    assert len((cache_dir / "index.jsonl").read_text().splitlines()) == 20  # 16 train + 4 val, once
    np.testing.assert_allclose(
        first.train.model.score([r.prompt for r in rows[:5]]),
        second.train.model.score([r.prompt for r in rows[:5]]), atol=1e-6)
