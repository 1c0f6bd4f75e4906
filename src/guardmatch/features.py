"""CPU fast paths: cache what the frozen part of the encoder computes, once, on disk.

Two modes share one cache format (``FeatureCache``):

* ``top_layers``: the hidden states *below* the top N encoder layers, per token, in fp16. Training
  then runs only the top N layers, pooling and heads (``LayerSplit.upper``).
* ``frozen``: the pooled (masked-mean) output of the whole encoder, one vector per text; only the
  heads train.

A cache directory is keyed by the encoder's frozen weights (a hash of their values, so a retrained
or different encoder never reads stale states), the cut layer and the max length; entries are keyed
by the hash of the exact text pair. Shards are append-only binary files plus an append-only JSONL
index written *after* the data is flushed, so a killed build loses at most the batch in flight and
resumes where it stopped. Reading is memory-mapped.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence, cast

import numpy as np
import torch
from torch import nn

from guardmatch.data.example import Example, Task, text_hash
from guardmatch.progress import make_progress
from guardmatch.storage.files import cache_root, secure_mkdir, secure_open, write_secure_text

if TYPE_CHECKING:
    from transformers.models.deberta_v2.modeling_deberta_v2 import DebertaV2Encoder
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

# ---------------------------------------------------------------------------------------------
# Splitting an encoder at a layer
# ---------------------------------------------------------------------------------------------


class _Stop(Exception):
    def __init__(self, value: torch.Tensor):
        self.value = value


class LayerSplit:
    """An HF encoder cut before layer ``start``: ``lower`` = embeddings + layers [0, start),
    ``upper`` = layers [start, L). ``upper(lower(x)) == encoder(x).last_hidden_state``.

    Supported: BERT-family encoders that build their mask with ``create_bidirectional_mask``
    (BERT, MiniLM, RoBERTa, ...), MPNet (its relative position bias stays frozen: the cached lower
    states were made with it) and DeBERTa-v2/v3. Others raise a clear error (use full mode); any
    encoder works uncut (``start == L``, the frozen mode).
    """

    def __init__(self, encoder: nn.Module, start: int):
        self.encoder = encoder
        self.layers = self._layers(encoder)
        if not 0 <= start <= len(self.layers):
            raise ValueError(f"cut layer {start} outside 0..{len(self.layers)}")
        self.start = start
        inner = type(encoder.encoder).__name__
        self.kind = "deberta" if inner.startswith("DebertaV2") else "mpnet" if inner == "MPNetEncoder" else "bert"
        # BERT-family encoders on transformers' masking utilities (they have _create_attention_masks);
        # decoders (causal masks) are not cut
        if self.kind == "bert" and start < len(self.layers) and (
                not hasattr(encoder, "_create_attention_masks") or getattr(encoder.config, "is_decoder", False)):
            raise NotImplementedError(
                f"top-layer fine-tuning does not support {type(encoder).__name__} yet; use mode=full"
            )

    @staticmethod
    def _layers(encoder: nn.Module) -> nn.ModuleList:
        inner = getattr(encoder, "encoder", None)
        layers = getattr(inner, "layer", None)
        if not isinstance(layers, nn.ModuleList):
            raise NotImplementedError(f"{type(encoder).__name__}: no encoder.layer list to cut")
        return layers

    @torch.no_grad()
    def lower(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs) -> torch.Tensor:
        """Hidden states entering layer ``start`` (computation stops there)."""
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if self.start == len(self.layers):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        captured: dict[str, torch.Tensor] = {}

        def grab(module, args, kw):
            captured["h"] = args[0] if args else kw["hidden_states"]
            raise _Stop(captured["h"])

        handle = self.layers[self.start].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        except _Stop as stop:
            return stop.value
        finally:
            handle.remove()
        raise RuntimeError("the encoder never reached the cut layer")

    def upper(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run layers [start, L) on ``hidden``: the encoder's last hidden state."""
        layers = self.layers[self.start :]
        if self.kind == "deberta":
            enc = cast("DebertaV2Encoder", self.encoder.encoder)  # kind "deberta": a DebertaV2Encoder
            mask = enc.get_attention_mask(attention_mask)
            rel_pos = enc.get_rel_pos(hidden)
            rel_emb = enc.get_rel_embedding()
            if enc.conv is not None and self.start == 0:
                raise NotImplementedError("DeBERTa with a conv layer cannot be cut at layer 0")
            for layer in layers:
                hidden, _ = layer(hidden, mask, relative_pos=rel_pos, rel_embeddings=rel_emb)
            return hidden
        from transformers.masking_utils import create_bidirectional_mask

        # the public helper both families build their (encoder-only) mask with; the private
        # BertModel._create_attention_masks changed its signature in transformers 5.25
        mask = create_bidirectional_mask(config=self.encoder.config, inputs_embeds=hidden, attention_mask=attention_mask)
        if self.kind == "mpnet":
            mpnet = cast("MPNetEncoder", self.encoder.encoder)  # kind "mpnet": an MPNetEncoder
            position_bias = mpnet.compute_position_bias(hidden)
            for layer in layers:
                hidden = layer(hidden, mask, position_bias)[0]
            return hidden
        for layer in layers:
            out = layer(hidden, mask)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def frozen_parameters(self) -> Iterable[tuple[str, nn.Parameter]]:
        """Embeddings and layers below the cut (what the cache replaces)."""
        upper_ids = {id(p) for layer in self.layers[self.start :] for p in layer.parameters()}
        for name, param in self.encoder.named_parameters():
            if id(param) in upper_ids or name.startswith("pooler."):
                continue
            if self.kind == "deberta" and name.startswith("encoder.") and not name.startswith("encoder.layer."):
                continue  # relative embeddings / norms feed the upper layers: they stay trainable
            yield name, param

    def fingerprint(self, max_length: int, what: str) -> str:
        """Hash of the frozen weights' values + cut + max length + cache kind."""
        h = hashlib.sha256(f"{what}|{self.start}|{max_length}|{type(self.encoder).__name__}".encode())
        params = self.encoder.named_parameters() if what == "pooled" else self.frozen_parameters()
        for name, param in params:
            h.update(name.encode())
            h.update(param.detach().cpu().float().numpy().tobytes())
        return h.hexdigest()[:20]


def entry_key(example: Example, task: Task | str) -> str:
    """Cache key of what the classifier sees: the prompt, or the (prompt, response) pair."""
    task = Task(task)
    payload = [task.value, example.prompt, example.response if task is Task.RESPONSE else None]
    return text_hash(json.dumps(payload, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------
# The on-disk cache
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loc:
    shard: str
    offset: int  # in elements
    rows: int


class FeatureCache:
    """Append-only fp16 arrays on disk, keyed by text; memory-mapped for reading."""

    INDEX = "index.jsonl"

    def __init__(self, path: Path, dim: int, meta: dict):
        self.path = path
        self.dim = dim
        self.meta = meta
        self.index: dict[str, _Loc] = {}
        self._maps: dict[str, np.memmap] = {}
        self._load_index()

    @classmethod
    def open(cls, root: str | Path, fingerprint: str, dim: int, meta: dict) -> "FeatureCache":
        path = secure_mkdir(Path(root).expanduser() / "features" / fingerprint)
        meta_file = path / "meta.json"
        if not meta_file.exists():
            write_secure_text(meta_file, json.dumps({**meta, "dim": dim, "fingerprint": fingerprint}, indent=2))
        return cls(path, dim, meta)

    def _load_index(self) -> None:
        index = self.path / self.INDEX
        if not index.exists():
            return
        for line in index.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # torn last line from a kill
            self.index[rec["key"]] = _Loc(rec["shard"], rec["offset"], rec["rows"])

    def __contains__(self, key: str) -> bool:
        return key in self.index

    def __len__(self) -> int:
        return len(self.index)

    def missing(self, keys: Iterable[str]) -> list[str]:
        return [k for k in dict.fromkeys(keys) if k not in self.index]

    def get(self, key: str) -> np.ndarray:
        """``[rows, dim]`` fp16 view (rows = tokens, or 1 for pooled vectors)."""
        loc = self.index[key]
        mm = self._maps.get(loc.shard)
        if mm is None or mm.shape[0] < loc.offset + loc.rows * self.dim:
            mm = np.memmap(self.path / loc.shard, dtype=np.float16, mode="r")
            self._maps[loc.shard] = mm
        return mm[loc.offset : loc.offset + loc.rows * self.dim].reshape(loc.rows, self.dim)

    def writer(self) -> "_Writer":
        return _Writer(self)


class _Writer:
    def __init__(self, cache: FeatureCache):
        self.cache = cache
        self.shard = f"shard-{uuid.uuid4().hex[:12]}.f16"
        self.data = secure_open(cache.path / self.shard, "ab", encoding=None)
        self.index = secure_open(cache.path / FeatureCache.INDEX, "a")
        self.offset = 0

    def add(self, items: Sequence[tuple[str, np.ndarray]]) -> None:
        records = []
        for key, arr in items:
            arr = np.ascontiguousarray(arr, dtype=np.float16)
            self.data.write(arr.tobytes())
            records.append({"key": key, "shard": self.shard, "offset": self.offset, "rows": int(arr.shape[0])})
            self.cache.index[key] = _Loc(self.shard, self.offset, int(arr.shape[0]))
            self.offset += arr.size
        self.data.flush()
        os.fsync(self.data.fileno())
        self.index.write("".join(json.dumps(r) + "\n" for r in records))
        self.index.flush()

    def close(self) -> None:
        self.data.close()
        self.index.close()

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Building and reading features
# ---------------------------------------------------------------------------------------------


def default_feature_root() -> Path:
    return cache_root()


class FeatureStore:
    """Lower-layer states (``top_layers``) or pooled vectors (``frozen``) for one model and cut."""

    def __init__(self, model, mode: str, top_layers: int = 2, root: str | Path | None = None):
        from guardmatch.model import masked_mean

        if mode not in ("top_layers", "frozen"):
            raise ValueError(f"unknown feature mode {mode!r}")
        self.model = model
        self.mode = mode
        self.task = Task(model.config.task)
        num_layers = len(LayerSplit._layers(model.encoder))
        if mode == "top_layers" and not 1 <= top_layers <= num_layers:
            raise ValueError(f"top_layers must be in 1..{num_layers}")
        start = num_layers - top_layers if mode == "top_layers" else num_layers
        self.split = LayerSplit(model.encoder, start)
        what = "hidden" if mode == "top_layers" else "pooled"
        fp = self.split.fingerprint(model.config.max_length, what)
        dim = int(model.encoder.config.hidden_size)
        self.cache = FeatureCache.open(root or default_feature_root(), f"{what}-{fp}", dim, {
            "mode": mode, "cut_layer": start, "encoder": model.config.encoder,
            "max_length": model.config.max_length, "task": self.task.value,
        })
        self._masked_mean = masked_mean
        model.layer_split = self.split  # lets model(lower_hidden=...) run the top layers

    @property
    def path(self) -> Path:
        return self.cache.path

    def freeze_lower(self) -> int:
        """Turn off gradients for what the cache replaces; returns how many parameters were frozen."""
        frozen = 0
        params = self.model.encoder.parameters() if self.mode == "frozen" else (p for _, p in self.split.frozen_parameters())
        for p in params:
            if p.requires_grad:
                p.requires_grad_(False)
                frozen += p.numel()
        return frozen

    @torch.no_grad()
    def build(self, examples: Sequence[Example], batch_size: int = 64, progress: bool = True,
              description: str = "caching features") -> dict[str, int]:
        """Compute and store features of every example not cached yet (length-sorted batches)."""
        keyed = {entry_key(ex, self.task): ex for ex in examples}
        todo = self.cache.missing(keyed)
        if not todo:
            return {"cached": 0, "total": len(keyed)}
        todo_ex = [keyed[k] for k in todo]
        order = np.argsort([len(ex.prompt) + len(ex.response or "") for ex in todo_ex], kind="stable")
        was_training = self.model.training
        self.model.eval()
        try:
            with self.cache.writer() as writer, make_progress(disable=not progress, transient=True, unit="texts") as bar:
                task_id = bar.add_task(description, total=len(todo))
                for start in range(0, len(order), batch_size):
                    idx = order[start : start + batch_size]
                    batch = [todo_ex[i] for i in idx]
                    enc = self.model.tokenize(
                        [ex.prompt for ex in batch],
                        [ex.response or "" for ex in batch] if self.task is Task.RESPONSE else None,
                    )
                    mask = enc["attention_mask"]
                    kwargs = {k: v for k, v in enc.items() if k not in ("input_ids", "attention_mask")}
                    if "token_type_ids" in kwargs and getattr(self.model.encoder.config, "type_vocab_size", 2) < 2:
                        kwargs.pop("token_type_ids")
                    hidden = self.split.lower(enc["input_ids"], mask, **kwargs)
                    if self.mode == "frozen":
                        pooled = self._masked_mean(hidden, mask).numpy()
                        items = [(todo[i], pooled[j : j + 1]) for j, i in enumerate(idx)]
                    else:
                        lengths = mask.sum(1).tolist()
                        arr = hidden.numpy()
                        items = [(todo[i], arr[j, : lengths[j]]) for j, i in enumerate(idx)]
                    writer.add(items)
                    bar.update(task_id, advance=len(idx))
        finally:
            self.model.train(was_training)
        return {"cached": len(todo), "total": len(keyed)}

    def batch(self, examples: Sequence[Example], device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """Model inputs for ``examples`` from the cache (dynamic padding to the batch's longest)."""
        keys = [entry_key(ex, self.task) for ex in examples]
        missing = self.cache.missing(keys)
        if missing:
            raise KeyError(f"{len(missing)} example(s) have no cached features in {self.path}; build them first")
        arrays = [self.cache.get(k) for k in keys]
        if self.mode == "frozen":
            pooled = torch.from_numpy(np.concatenate(arrays).astype(np.float32))
            return {"pooled": pooled.to(device) if device else pooled}
        longest = max(a.shape[0] for a in arrays)
        hidden = np.zeros((len(arrays), longest, self.cache.dim), dtype=np.float32)
        mask = np.zeros((len(arrays), longest), dtype=np.int64)
        for i, a in enumerate(arrays):
            hidden[i, : a.shape[0]] = a
            mask[i, : a.shape[0]] = 1
        out = {"lower_hidden": torch.from_numpy(hidden), "attention_mask": torch.from_numpy(mask)}
        return {k: v.to(device) for k, v in out.items()} if device else out
