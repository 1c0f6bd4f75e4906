"""The model card (``README.md``) written with every saved classifier, from its config and provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

INTENDED_USE = (
    "Flags harmful {what} for LLM-safety moderation. One category, `harmful`; a score is a calibrated "
    "P(harmful) only where `calibrated` below says so. Check it on your own traffic before relying on it: "
    "classifiers trained on one source can miss much of another (see the guardmatch README)."
)


def model_card(config: Any) -> str:
    """Markdown with Hub metadata: task, encoder, labels, pool, views, metrics, threshold, calibration."""
    prov: dict[str, Any] = dict(config.provenance or {})
    task = config.task.value if hasattr(config.task, "value") else str(config.task)
    what = "user prompts" if task == "prompt" else "assistant responses (given the prompt)"
    lines = ["---", "library_name: guardmatch", "pipeline_tag: text-classification",
             "tags: [guardmatch, content-moderation, safety, semi-supervised]", "---", "",
             f"# guardmatch {task} classifier", "", INTENDED_USE.format(what=what), "",
             "## Model", "",
             "| | |", "|---|---|",
             f"| task | {task} ({'text' if task == 'prompt' else 'prompt + response pair'}) |",
             f"| encoder | `{config.encoder}`, masked mean pooling, {config.num_heads} head(s) |",
             f"| max length | {config.max_length} tokens{' (pairs cut prompt first)' if task == 'response' else ''} |",
             f"| labels | {', '.join(config.labels)} |",
             f"| threshold | {config.threshold:.4g} (flag when P(harmful) >= threshold) |",
             f"| calibrated | {'yes' if config.calibration else 'no'}"
             + (f": temperature {config.temperature:.4g}, {_calibration(config.calibration)}" if config.calibration
                else " (raw softmax)") + " |"]
    if prov:
        lines += ["", "## Training", "", "| | |", "|---|---|"]
        for key, label in (("algorithm", "algorithm"), ("train_source", "labeled source"),
                           ("labeled_examples", "labels used"), ("unlabeled_examples", "unlabeled pool"),
                           ("views", "strong views"), ("mode", "mode"), ("max_steps", "steps"), ("seed", "seed")):
            if prov.get(key) not in (None, "", 0) or key == "unlabeled_examples" and key in prov:
                lines.append(f"| {label} | {prov[key]} |")
    metrics = prov.get("metrics") or {}
    if metrics:
        lines += ["", "## Evaluation (harmful-class, at the threshold)", "",
                  "| test set | F1 | precision | recall |", "|---|---:|---:|---:|"]
        for name, m in metrics.items():
            lines.append(f"| {name} | {m.get('f1', float('nan')):.3f} | {m.get('precision', float('nan')):.3f} | "
                         f"{m.get('recall', float('nan')):.3f} |")
    lines += ["", "## Use", "", "```python", "from guardmatch import GuardClassifier",
              'clf = GuardClassifier.from_pretrained("<this directory or repo id>")',
              'clf.predict_proba(["How do I pick a lock?"]' + (', ["<response>"]' if task == "response" else "") + ")",
              "# or, after `import guardmatch`: transformers.pipeline('text-classification', model=...)", "```", ""]
    return "\n".join(lines)


def _calibration(cal: dict[str, Any]) -> str:
    parts = [f"{k} {v}" for k, v in cal.items() if isinstance(v, (str, int, float)) and k != "temperature"]
    return ", ".join(parts[:4]) or "see guardmatch.json"


def write_model_card(config: Any, path: str | Path) -> Path:
    out = Path(path) / "README.md"
    out.write_text(model_card(config), encoding="utf-8")
    return out
