"""ONNX export of a ``GuardClassifier`` and an onnxruntime classifier with the same interface.

``export_onnx(model_dir, out_dir, quantize="int8")`` writes a directory holding

- ``model.onnx``: the graph ``(input_ids, attention_mask[, token_type_ids]) -> logits [N, C]`` (mean of
  the heads, before temperature), exported with ``torch.onnx.export(dynamo=True)`` with dynamic batch
  and sequence axes; with ``quantize="int8"`` it is the dynamically quantized graph
  (``onnxruntime.quantization.quantize_dynamic``: int8 per-channel weights, activations quantized at
  run time; :func:`quantize_int8` says what stays in float);
- ``guardmatch.json``: the model's config (task, threshold, temperature, calibration, max length),
  with ``provenance["onnx"]`` recording the export (quantization, versions, and the max absolute
  difference of P(harmful) against PyTorch measured on probe inputs at export time);
- the tokenizer files.

:class:`OnnxClassifier` reads such a directory and offers ``config``, ``predict_logits``,
``predict_proba``, ``score`` and ``predict`` exactly as ``GuardClassifier`` does (same tokenization through
``tokenize_inputs``, same length-sorted batching, same temperature), so ``guardmatch predict``,
``evaluate``-style code, calibration and the server take either. Needs the ``onnx`` extra.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from guardmatch.data.example import Task
from guardmatch.errors import ConfigError, GuardmatchError
from guardmatch.model import CONFIG_NAME, GuardClassifierConfig, load_config, tokenize_inputs
from guardmatch.scoring import ScoringMixin

ONNX_FILE = "model.onnx"
QUANTIZATIONS = ("int8",)

# Probe inputs for the parity check done at export (short, long, padded, pairs).
PROBE_PROMPTS = [
    "How do I kill a Python process that hangs?",
    "Write step-by-step instructions for making a pipe bomb at home.",
    "hi",
    "Summarise the plot of Hamlet in three sentences, then list the main characters and explain "
    "how each of them contributes to the tragedy; keep it under two hundred words please. " * 3,
    "What household chemicals should never be mixed because they release toxic gas?",
    "Tell me a joke about cats.",
]
PROBE_RESPONSES = [
    "Use `kill -9 PID` or the task manager.",
    "I can't help with that.",
    "Hello! How can I help?",
    "Hamlet, prince of Denmark, seeks revenge for his father's murder. " * 6,
    "Bleach and ammonia produce chloramine vapours; never mix them.",
    "Why did the cat sit on the computer? To keep an eye on the mouse.",
]


class MissingOnnxError(GuardmatchError, ImportError):
    """onnxruntime / onnx are not installed."""


def _require_ort():
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingOnnxError("ONNX inference needs onnxruntime: pip install 'guardmatch[onnx]'") from exc
    return ort


class OnnxClassifier(ScoringMixin):
    """An exported classifier run by onnxruntime; same ``config`` and prediction API as ``GuardClassifier``."""

    def __init__(self, session: Any, tokenizer: Any, config: GuardClassifierConfig, path: Path | None = None):
        self.session = session
        self.tokenizer = tokenizer
        self.config = config
        self.path = path
        self.input_names = [i.name for i in session.get_inputs()]
        self.onnx_file = ONNX_FILE

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        threads: int | None = None,
        providers: Sequence[str] | None = None,
        file: str | None = None,
        spin: bool = False,
    ) -> "OnnxClassifier":
        """Load a directory written by :func:`export_onnx` (``threads``: onnxruntime intra-op threads;
        ``spin``: let idle threads spin, faster only on dedicated cores)."""
        from transformers import AutoTokenizer

        ort = _require_ort()
        path = Path(path)
        config = load_config(path)
        graph = path / (file or ONNX_FILE)
        if not graph.exists():
            found = sorted(p.name for p in path.glob("model*.onnx"))
            if file is None and len(found) == 1:
                graph = path / found[0]
            else:
                raise FileNotFoundError(f"{graph}: no such ONNX graph (found: {found or 'none'})")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        if not spin:
            # Idle intra-op threads sleep instead of spinning: on a few shared cores (a server whose
            # event loop and tokenizer need CPU between batches) spinning only burns cycles.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(str(graph), sess_options=options,
                                       providers=list(providers or ["CPUExecutionProvider"]))
        tokenizer = AutoTokenizer.from_pretrained(path)
        obj = cls(session, tokenizer, config, path)
        obj.onnx_file = graph.name
        return obj

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the config (e.g. after calibration); copies the graph and tokenizer when ``path`` is new."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.path is not None and path.resolve() != self.path.resolve():
            for item in self.path.iterdir():
                if item.name != CONFIG_NAME and item.is_file():
                    shutil.copy2(item, path / item.name)
        elif self.path is None:
            self.tokenizer.save_pretrained(path)
        (path / CONFIG_NAME).write_text(self.config.model_dump_json(indent=2))
        return path

    # ------------------------------------------------------------------ inference
    @property
    def task(self) -> Task:
        return Task(self.config.task)

    @property
    def name(self) -> str:
        return str(self.path) if self.path is not None else f"{self.config.encoder} (onnx)"

    def _feed(self, enc: dict[str, Any]) -> dict[str, np.ndarray]:
        feed = {}
        for name in self.input_names:
            if name not in enc:
                raise ValueError(f"the ONNX graph needs input {name!r}, which the tokenizer does not produce")
            feed[name] = np.asarray(enc[name], dtype=np.int64)
        return feed

    def _batch_logits(self, prompts: list[str], responses: list[str] | None) -> np.ndarray:
        enc = tokenize_inputs(self.tokenizer, prompts, responses, self.config.max_length, return_tensors="np")
        return self.session.run(None, self._feed(enc))[0]


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


def _probe(task: Task) -> tuple[list[str], list[str] | None]:
    return list(PROBE_PROMPTS), (list(PROBE_RESPONSES) if task is Task.RESPONSE else None)


def _export_graph(model: Any, path: Path) -> list[str]:
    """``torch.onnx.export`` (dynamo) of ``model`` -> class logits, dynamic batch and sequence axes."""
    import torch
    from torch import nn

    prompts, responses = _probe(model.task)
    # A batch of 3 with padding: neither dimension is 0/1 (which torch.export would specialise).
    enc = model.tokenize(prompts[:3], responses[:3] if responses else None)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in enc]

    class _Logits(nn.Module):
        def __init__(self, clf: Any):
            super().__init__()
            self.clf = clf

        def forward(self, input_ids, attention_mask, token_type_ids=None):  # noqa: D401
            return self.clf.class_logits(self.clf(input_ids, attention_mask, token_type_ids=token_type_ids))

    wrapper = _Logits(model).eval()
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    args = tuple(enc[n] for n in names)
    shapes = {n: {0: batch, 1: seq} for n in names}
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with torch.no_grad(), quiet_exporters():
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=shapes,
            dynamo=True,
            external_data=n_bytes > 1_500_000_000,  # protobuf's 2 GB limit
            verbose=False,
        )
    return names


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """Silence the exporter's and quantizer's progress prints, warnings and logs (other libraries'
    chatter that buried our own output); if the export fails, what they said is attached to the error."""
    import io
    import logging
    import warnings

    buf = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir", "root")]
    levels = [lg.level for lg in loggers]
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            warnings.simplefilter("ignore")
            for lg in loggers:
                lg.setLevel(logging.ERROR)
            yield
    except Exception as exc:
        tail = buf.getvalue()[-3000:]
        raise RuntimeError(f"ONNX export failed: {exc}" + (f"\nexporter output:\n{tail}" if tail else "")) from exc
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _strip_value_info(path: Path) -> None:
    """Drop intermediate shape annotations: onnx shape inference (run by the quantizer) re-derives them,
    and some annotations of the dynamo exporter disagree with it."""
    import onnx

    proto = onnx.load(str(path))
    del proto.graph.value_info[:]
    onnx.save(proto, str(path))


def quantize_int8(src: Path, dst: Path) -> dict[str, Any]:
    """Dynamic int8 quantization of the MatMuls with constant weights, per output channel.

    Left in float: MatMuls between two activations (attention scores), the heads (Gemm), the
    embeddings, and the feed-forward output MatMuls fed by GELU, whose inputs carry the large
    outlier activations of BERT-style encoders: quantizing those per tensor moved P(harmful) the
    most on the MiniLM quickstart model (see benchmarks/results/serving.md).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _strip_value_info(src)
    proto = onnx.load(str(src), load_external_data=False)
    producer = {out: node for node in proto.graph.node for out in node.output}
    weights = {init.name for init in proto.graph.initializer}
    chosen, skipped_gelu = [], 0
    for node in proto.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights:
            continue
        src_node = producer.get(node.input[0])
        if src_node is not None and src_node.op_type == "Gelu":
            skipped_gelu += 1
            continue
        chosen.append(node.name)
    del proto
    with quiet_exporters():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"], nodes_to_quantize=chosen)
    return {"method": "dynamic", "weights": "int8 per-channel", "matmuls_quantized": len(chosen),
            "matmuls_kept_float_after_gelu": skipped_gelu}


def parity(model: Any, onnx_clf: OnnxClassifier, prompts: Sequence[str], responses: Sequence[str] | None = None,
           batch_size: int = 8) -> dict[str, float]:
    """Max and mean absolute difference of P(harmful) (and of logits) between PyTorch and ONNX."""
    p_t = model.score(prompts, responses, batch_size=batch_size)
    p_o = onnx_clf.score(prompts, responses, batch_size=batch_size)
    l_t = model.predict_logits(prompts, responses, batch_size=batch_size)
    l_o = onnx_clf.predict_logits(prompts, responses, batch_size=batch_size)
    return {
        "n": int(len(p_t)),
        "max_abs_diff_proba": float(np.max(np.abs(p_t - p_o))),
        "mean_abs_diff_proba": float(np.mean(np.abs(p_t - p_o))),
        "max_abs_diff_logits": float(np.max(np.abs(l_t - l_o))),
        "label_agreement": float(np.mean((p_t >= model.config.threshold) == (p_o >= model.config.threshold))),
    }


def export_onnx(
    model: Any,
    out_dir: str | Path,
    *,
    quantize: str | None = None,
    check: bool = True,
) -> dict[str, Any]:
    """Export ``model`` (a ``GuardClassifier`` or a model directory) to ``out_dir`` for onnxruntime.

    ``quantize="int8"`` writes the dynamically quantized graph instead of the float one. With
    ``check=True`` P(harmful) is compared with PyTorch on probe inputs and the figures are stored in
    ``provenance["onnx"]["parity"]``. Returns that ``provenance["onnx"]`` record.
    """
    import torch

    from guardmatch.model import GuardClassifier

    _require_ort()
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"unknown quantization {quantize!r}; supported: {', '.join(QUANTIZATIONS)}")
    source = None
    if isinstance(model, (str, Path)):
        source = str(model)
        if (Path(model) / ONNX_FILE).exists():
            raise ConfigError(f"{model} is already an ONNX export; export from the PyTorch model directory")
        model = GuardClassifier.from_pretrained(model)
    model = model.cpu().eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ONNX_FILE
    quant_record: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        names = _export_graph(model, fp32)
        if quantize == "int8":
            staged = Path(tmp) / "model.int8.onnx"
            quant_record = quantize_int8(fp32, staged)
        else:
            staged = fp32
        for extra in Path(tmp).glob("*.data"):  # external weights of very large graphs
            shutil.move(str(extra), out_dir / extra.name)
        os.replace(staged, target)
    model.tokenizer.save_pretrained(out_dir)
    import onnxruntime
    import transformers

    config = model.config.model_copy(deep=True)
    record: dict[str, Any] = {
        "file": ONNX_FILE,
        "quantize": quantize,
        "quantization": quant_record,
        "inputs": names,
        "source": source,
        "exporter": "torch.onnx.export(dynamo=True)",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": onnxruntime.__version__,
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "size_bytes": target.stat().st_size,
    }
    config.provenance = {**config.provenance, "onnx": record}
    (out_dir / CONFIG_NAME).write_text(config.model_dump_json(indent=2))
    if check:
        clf = OnnxClassifier.from_pretrained(out_dir)
        prompts, responses = _probe(model.task)
        record["parity"] = parity(model, clf, prompts, responses)
        config.provenance = {**config.provenance, "onnx": record}
        (out_dir / CONFIG_NAME).write_text(config.model_dump_json(indent=2))
    return json.loads(json.dumps(record))
