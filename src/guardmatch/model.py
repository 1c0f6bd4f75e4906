"""``GuardClassifier``: a Hugging Face encoder, masked mean pooling and one or more MLP heads.

The artifact is separate from the training loop (as in SetFit): a directory holding
``guardmatch.json`` (task, labels, threshold, temperature, max length, encoder, provenance),
``model.safetensors`` (encoder and heads), ``encoder/config.json`` and the tokenizer files.
Never pickle.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from guardmatch.data.example import LABEL_NAMES, Task
from guardmatch.encoders import resolve_encoder
from guardmatch.errors import ConfigError, UnknownNameError
from guardmatch.scoring import ScoringMixin

CONFIG_NAME = "guardmatch.json"
WEIGHTS_NAME = "model.safetensors"
ENCODER_DIR = "encoder"


PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_PROFILE = "default"


class ThresholdProfile(BaseModel):
    """A named operating threshold (e.g. per product surface or region) and how it was obtained."""

    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(gt=0.0, lt=1.0, description="P(harmful) at or above which this profile flags")
    method: str = Field(description="how it was chosen, e.g. 'calibration:f1', 'label-shift:em', 'manual'")
    details: dict[str, Any] = Field(default_factory=dict, description="the method's inputs and estimates")
    created: str = Field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


class GuardClassifierConfig(BaseModel):
    """Everything needed to rebuild a classifier and use it the way it was trained."""

    model_config = ConfigDict(extra="forbid")

    encoder: str = Field(description="encoder alias, Hub id or path it was initialised from")
    task: Task = Task.PROMPT
    labels: list[str] = Field(default_factory=lambda: list(LABEL_NAMES))
    num_heads: int = Field(1, ge=1)
    num_outputs: int = Field(2, ge=2, description="head outputs (C, or C+1 with a virtual class)")
    max_length: int = Field(256, ge=8)
    head_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="P(harmful) at or above which we flag")
    temperature: float = Field(1.0, gt=0.0, description="logit temperature fitted by calibration")
    calibration: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    threshold_profiles: dict[str, ThresholdProfile] = Field(
        default_factory=dict, description="named thresholds chosen per deployment ('default' is `threshold`)")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def calibrated_prior(self) -> float | None:
        """The harmful rate the probabilities are calibrated for: the calibration data's, else the
        training labels' (``provenance.train_harmful_rate``); None if neither is recorded."""
        cal = self.calibration
        if cal.get("n") and cal.get("positives") is not None:
            return float(cal["positives"]) / float(cal["n"])
        rate = self.provenance.get("train_harmful_rate")
        return float(rate) if rate is not None else None

    def threshold_for(self, profile: str | None = None) -> float:
        """The threshold of ``profile`` (None or ``default``: :attr:`threshold`)."""
        if profile is None or profile == DEFAULT_PROFILE:
            return self.threshold
        if profile not in self.threshold_profiles:
            names = ", ".join([DEFAULT_PROFILE, *sorted(self.threshold_profiles)])
            raise UnknownNameError(f"unknown threshold profile {profile!r}; available: {names}")
        return self.threshold_profiles[profile].threshold

    def set_threshold_profile(self, name: str, profile: ThresholdProfile) -> None:
        """Add or replace the profile ``name`` (letters, digits, ``_.-``; not ``default``)."""
        if name == DEFAULT_PROFILE or not PROFILE_NAME.match(name):
            raise ConfigError(f"threshold profile name {name!r}: use 1-64 letters, digits, '_', '.', '-' "
                              f"(and not {DEFAULT_PROFILE!r}, which is the model's own threshold)")
        self.threshold_profiles[name] = profile


class ClassificationHead(nn.Sequential):
    """``Dropout → Linear(d, d) → GELU → Linear(d, C)`` as in USB's NLP heads."""

    def __init__(self, hidden: int, outputs: int, dropout: float):
        super().__init__(nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, outputs))


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of token states where ``attention_mask`` is 1: ``[N, T, d] -> [N, d]``."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6)


class GuardClassifier(ScoringMixin, nn.Module):
    """Binary harm classifier for prompts (``task=prompt``) or prompt+response pairs (``task=response``).

    ``forward`` returns logits shaped ``[H, N, C']`` (H heads); from the mean of the heads' logits
    :meth:`predict_proba` returns calibrated ``[N, 2]`` probabilities (``classes_`` order) and
    :meth:`score` the calibrated P(harmful).
    """

    def __init__(self, config: GuardClassifierConfig, encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase):
        super().__init__()
        self.config = config
        self.encoder = encoder
        self.tokenizer = tokenizer
        hidden = int(encoder.config.hidden_size)
        # The encoder's own pooler (BERT/MPNet) is unused: we pool by masked mean. Freezing it keeps
        # it out of the optimizer and keeps DDP from waiting for gradients that never come.
        for name, param in encoder.named_parameters():
            if name.startswith("pooler."):
                param.requires_grad_(False)
        self.heads = nn.ModuleList(
            ClassificationHead(hidden, config.num_outputs, config.head_dropout) for _ in range(config.num_heads)
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_encoder(
        cls,
        encoder: str = "minilm",
        *,
        task: Task | str = Task.PROMPT,
        num_heads: int = 1,
        num_outputs: int = 2,
        max_length: int = 256,
        head_dropout: float = 0.1,
        seed: int | None = None,
        tokenizer: str | Path | None = None,
        encoder_config: Any = None,
    ) -> "GuardClassifier":
        """A new classifier on a pretrained encoder (alias like ``minilm``, Hub id or path).

        ``encoder_config`` (a transformers config) builds a randomly initialised encoder instead,
        which is how tests exercise e.g. the DeBERTa-v3 path offline.
        """
        if seed is not None:
            torch.manual_seed(seed)
        source = resolve_encoder(encoder)
        tok = AutoTokenizer.from_pretrained(resolve_encoder(tokenizer) if tokenizer else source)
        if encoder_config is not None:
            enc = AutoModel.from_config(encoder_config)
        else:
            enc = AutoModel.from_pretrained(source)
        config = GuardClassifierConfig(
            encoder=str(encoder),
            task=Task(task),
            num_heads=num_heads,
            num_outputs=num_outputs,
            max_length=min(max_length, _model_max_length(tok, enc)),
            head_dropout=head_dropout,
        )
        return cls(config, enc, tok)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, revision: str | None = None, token: str | None = None) -> "GuardClassifier":
        """Load a classifier saved by :meth:`save_pretrained`: a local directory, or a Hub repo id
        (``org/name``, downloaded with ``huggingface_hub``; ``HF_HUB_OFFLINE=1`` reads the local cache)."""
        path = Path(path).expanduser()
        if not path.exists() and _looks_like_repo_id(str(path)):
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(str(path), revision=revision, token=token))
        config = load_config(path)
        enc_config = AutoConfig.from_pretrained(path / ENCODER_DIR)
        encoder = AutoModel.from_config(enc_config)
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = cls(config, encoder, tokenizer)
        state = load_file(path / WEIGHTS_NAME)
        missing, unexpected = model.load_state_dict(state, strict=False)
        # Some encoders register non-persistent buffers (e.g. position ids); anything else is an error.
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise ValueError(f"{path / WEIGHTS_NAME}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        model.eval()
        return model

    def save_pretrained(self, path: str | Path) -> Path:
        """Write config (JSON), weights (safetensors), encoder config and tokenizer to ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_NAME).write_text(self.config.model_dump_json(indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(_dedupe_shared(state), str(path / WEIGHTS_NAME), metadata={"format": "pt"})
        self.encoder.config.save_pretrained(path / ENCODER_DIR)
        self.tokenizer.save_pretrained(path)
        from guardmatch.hf import save_hf_files
        from guardmatch.model_card import write_model_card

        save_hf_files(self, path)  # config.json: AutoModelForSequenceClassification / pipeline load it
        write_model_card(self.config, path)
        return path

    def push_to_hub(self, repo_id: str, *, private: bool = True, token: str | None = None,
                    commit_message: str = "Upload guardmatch classifier") -> str:
        """Save to a temporary directory and upload it (model card included) to the Hub; returns the URL."""
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)
        return str(getattr(info, "commit_url", info))

    # ------------------------------------------------------------------ forward
    @property
    def task(self) -> Task:
        return self.config.task

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def pooled(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Masked mean of the encoder's last hidden states: ``[N, d]``."""
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if "token_type_ids" in kwargs and getattr(self.encoder.config, "type_vocab_size", 2) < 2:
            kwargs.pop("token_type_ids")
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return masked_mean(out.last_hidden_state, attention_mask)

    def head_logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """All heads on pooled features: ``[H, N, C']``."""
        return torch.stack([head(pooled) for head in self.heads])

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        lower_hidden: torch.Tensor | None = None,
        pooled: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Logits ``[H, N, C']`` from token ids, from cached states below the top layers
        (``lower_hidden``, see :mod:`guardmatch.features`), or from cached pooled vectors."""
        if pooled is not None:
            return self.head_logits(pooled)
        if attention_mask is None:
            raise ValueError("attention_mask is required unless pooled features are given")
        if lower_hidden is not None:
            split = getattr(self, "layer_split", None)
            if split is None:
                raise ValueError("lower_hidden given but no LayerSplit attached (FeatureStore attaches it)")
            return self.head_logits(masked_mean(split.upper(lower_hidden, attention_mask), attention_mask))
        return self.head_logits(self.pooled(input_ids, attention_mask, **kwargs))

    def class_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``[H, N, C']`` -> ``[N, C]``: mean over heads, any virtual class dropped."""
        return logits[..., : self.config.num_classes].mean(0)

    # ------------------------------------------------------------------ tokenization
    def tokenize(
        self, prompts: Sequence[str], responses: Sequence[str] | None = None, *, padding: bool | str = True
    ) -> dict[str, torch.Tensor]:
        """Tokenize prompts, or (prompt, response) pairs for the response task.

        Pairs are truncated prompt-first: the response keeps as many tokens as fit, then the prompt
        gets what is left (it is cut from its end), so a long prompt never hides the response.
        """
        return tokenize_inputs(self.tokenizer, prompts, responses, self.config.max_length, padding=padding)

    # ------------------------------------------------------------------ inference
    @contextlib.contextmanager
    def _inference(self) -> Iterator[None]:
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def _batch_logits(self, prompts: list[str], responses: list[str] | None) -> np.ndarray:
        enc = {k: v.to(self.device) for k, v in self.tokenize(prompts, responses).items()}
        return self.class_logits(self(**enc)).float().cpu().numpy()


def tokenize_inputs(
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    responses: Sequence[str] | None,
    max_length: int,
    *,
    padding: bool | str = True,
    return_tensors: str | None = "pt",
) -> dict[str, Any]:
    """Tokenize single texts, or pairs truncated prompt-first (see :meth:`GuardClassifier.tokenize`)."""
    prompts = list(prompts)
    if responses is None:
        return tokenizer(
            prompts, truncation=True, max_length=max_length, padding=padding, return_tensors=return_tensors
        )
    cut_prompts, cut_responses = cut_pairs(tokenizer, prompts, list(responses), max_length)
    # Re-tokenizing text cut at token boundaries gives the same tokens; "longest_first" is only a
    # safety net for tokenizers whose pieces change at a cut.
    return tokenizer(
        cut_prompts,
        cut_responses,
        truncation="longest_first",
        max_length=max_length,
        padding=padding,
        return_tensors=return_tensors,
    )


def cut_pairs(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], responses: Sequence[str],
              max_length: int) -> tuple[list[str], list[str]]:
    """(prompt, response) pairs cut at token boundaries to fit ``max_length``, prompt first: the
    response keeps as many tokens as fit (leaving the prompt at least one), the prompt the rest."""
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    p_enc = tokenizer(list(prompts), add_special_tokens=False, return_offsets_mapping=True)
    r_enc = tokenizer(list(responses), add_special_tokens=False, return_offsets_mapping=True)
    cut_prompts, cut_responses = [], []
    for i, (prompt, response) in enumerate(zip(prompts, responses)):
        p_off, r_off = p_enc["offset_mapping"][i], r_enc["offset_mapping"][i]
        r_keep = min(len(r_off), budget - 1)  # at least one prompt token stays
        p_keep = min(len(p_off), budget - r_keep)
        cut_prompts.append(prompt[: p_off[p_keep - 1][1]] if p_keep > 0 and p_off else prompt[:0])
        cut_responses.append(response[: r_off[r_keep - 1][1]] if r_keep > 0 and r_off else response[:0])
    return cut_prompts, cut_responses


def _looks_like_repo_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~"))


def _model_max_length(tokenizer: PreTrainedTokenizerBase, encoder: nn.Module) -> int:
    found = [getattr(encoder.config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    limits = [int(x) for x in found if isinstance(x, int) and 0 < x < 100_000]
    return min(limits) if limits else 512


def _dedupe_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing memory (tied weights): store a copy of each duplicate."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in state.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen and v.numel() > 0 else v
        seen.setdefault(ptr, k)
    return out


def load_config(path: str | Path) -> GuardClassifierConfig:
    """Read only the JSON config of a saved model (cheap; no weights)."""
    cfg_file = Path(path) / CONFIG_NAME
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path} is not a guardmatch model directory (no {CONFIG_NAME})")
    return GuardClassifierConfig.model_validate_json(cfg_file.read_text())


def save_threshold_profile(model_dir: str | Path, name: str, profile: ThresholdProfile) -> GuardClassifierConfig:
    """Store ``profile`` as ``name`` in a saved model directory (PyTorch or ONNX export), in place.

    Rewrites ``guardmatch.json`` atomically, and the copy inside the transformers ``config.json``
    where there is one, so every loader sees the profile. Returns the updated config.
    """
    model_dir = Path(model_dir)
    config = load_config(model_dir)
    config.set_threshold_profile(name, profile)
    _replace_text(model_dir / CONFIG_NAME, config.model_dump_json(indent=2))
    hf_config = model_dir / "config.json"
    if hf_config.is_file():
        data = json.loads(hf_config.read_text())
        if "guardmatch" in data:
            data["guardmatch"] = config.model_dump(mode="json")
            _replace_text(hf_config, json.dumps(data, indent=2))
    return config


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
