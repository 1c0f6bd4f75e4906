"""Hugging Face-native guardmatch models: ``AutoModelForSequenceClassification`` and ``pipeline``.

Every saved model directory also holds a transformers ``config.json`` (``model_type: guardmatch``)
next to the same ``model.safetensors``: after ``import guardmatch`` (which registers the classes)::

    from transformers import AutoModelForSequenceClassification, pipeline
    model = AutoModelForSequenceClassification.from_pretrained("runs/sup/model")
    clf = pipeline("text-classification", model="runs/sup/model", top_k=None)

The transformers model returns the *calibrated* class logits (mean of the heads, virtual class
dropped, divided by the fitted temperature), so ``softmax(logits)[:, 1]`` equals
:meth:`guardmatch.GuardClassifier.predict_proba`. Pairs (response task) are tokenized by the
caller; guardmatch cuts long pairs prompt-first, transformers' tokenizers cut ``longest_first``, so
scores agree where the pair fits ``max_length``. The threshold and calibration stay in
``guardmatch.json`` (also mirrored under ``config.guardmatch``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "guardmatch"


class GuardmatchConfig(PretrainedConfig):
    """transformers config of a guardmatch classifier: the encoder's config plus guardmatch's own."""

    model_type = MODEL_TYPE

    def __init__(self, encoder_config: dict[str, Any] | None = None, guardmatch: dict[str, Any] | None = None,
                 **kwargs: Any):
        self.encoder_config = encoder_config or {}
        self.guardmatch = guardmatch or {}
        labels = self.guardmatch.get("labels", ["unharmful", "harmful"])
        kwargs.setdefault("id2label", dict(enumerate(labels)))
        kwargs.setdefault("label2id", {name: i for i, name in enumerate(labels)})
        super().__init__(**kwargs)


class GuardmatchForSequenceClassification(PreTrainedModel):
    """The encoder, masked mean pooling and the heads of :class:`guardmatch.GuardClassifier`, with the
    same parameter names, so both read the same ``model.safetensors``."""

    config_class = GuardmatchConfig
    base_model_prefix = "guardmatch"
    main_input_name = "input_ids"

    def __init__(self, config: GuardmatchConfig):
        super().__init__(config)
        from guardmatch.model import ClassificationHead, GuardClassifierConfig

        enc = dict(config.encoder_config)
        self.encoder = AutoModel.from_config(AutoConfig.for_model(enc.pop("model_type"), **enc))
        self.gm = GuardClassifierConfig.model_validate(config.guardmatch)
        hidden = int(self.encoder.config.hidden_size)
        self.heads = nn.ModuleList(ClassificationHead(hidden, self.gm.num_outputs, self.gm.head_dropout)
                                   for _ in range(self.gm.num_heads))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:  # weights always come from the checkpoint
        pass

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                **kwargs: Any) -> SequenceClassifierOutput:
        from guardmatch.model import masked_mean

        if attention_mask is None:
            if input_ids is None:
                raise ValueError("input_ids or attention_mask is required")
            attention_mask = torch.ones_like(input_ids)
        extra = {}
        if token_type_ids is not None and getattr(self.encoder.config, "type_vocab_size", 2) >= 2:
            extra["token_type_ids"] = token_type_ids
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        pooled = masked_mean(hidden, attention_mask)
        logits = torch.stack([head(pooled) for head in self.heads])[..., : self.gm.num_classes].mean(0)
        logits = logits / self.gm.temperature
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


REMOTE_CODE = "guardmatch_hf.py"
_REMOTE_CODE_TEXT = '''"""Loads a guardmatch model with trust_remote_code=True (needs `pip install guardmatch`)."""
from guardmatch.hf import GuardmatchConfig, GuardmatchForSequenceClassification  # noqa: F401
'''


def save_hf_files(classifier: Any, path: Any) -> None:
    """Write the transformers ``config.json`` (with an ``auto_map`` for ``trust_remote_code=True``)
    and the two-line module it names, next to a saved :class:`guardmatch.GuardClassifier`."""
    from pathlib import Path

    config = GuardmatchConfig(
        encoder_config=classifier.encoder.config.to_dict(), guardmatch=classifier.config.model_dump(mode="json"),
        architectures=[GuardmatchForSequenceClassification.__name__],
        auto_map={"AutoConfig": "guardmatch_hf.GuardmatchConfig",
                  "AutoModelForSequenceClassification": "guardmatch_hf.GuardmatchForSequenceClassification"})
    config.save_pretrained(path)
    (Path(path) / REMOTE_CODE).write_text(_REMOTE_CODE_TEXT)


def register() -> None:
    """Make ``AutoConfig`` / ``AutoModelForSequenceClassification`` / ``pipeline`` know guardmatch."""
    try:
        AutoConfig.register(MODEL_TYPE, GuardmatchConfig)
        AutoModelForSequenceClassification.register(GuardmatchConfig, GuardmatchForSequenceClassification)
    except ValueError:  # already registered
        pass
