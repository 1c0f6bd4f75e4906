"""Chat-log records -> unlabeled prompt/response drafts.

Two layouts:

* **messages** (OpenAI-style ``{"messages": [{"role", "content"}, ...], ...metadata}``; ShareGPT's
  ``{"conversations": [{"from", "value"}]}`` too): each user turn becomes a *prompt* example, each
  assistant turn a *response* example whose prompt is the user turn before it. Up to
  ``context_turns`` earlier messages are rendered in front (``User: ...`` / ``Assistant: ...``)
  so the classifier sees the turn in its context.
* **flat** (any jsonl/csv/parquet): ``prompt`` and optional ``response`` columns, via the mapping.

Every other scalar field (and the scalars of a nested ``metadata`` object) is kept as metadata
for slicing (``segments`` restricts it to named fields). Problems name the file, line and field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from guardmatch.data.validation import Problem
from guardmatch.ingest.config import ColumnMapping

_ROLE_ALIASES = {
    "user": "user", "human": "user", "prompter": "user",
    "assistant": "assistant", "gpt": "assistant", "bot": "assistant", "model": "assistant", "chatbot": "assistant",
    "system": "system", "developer": "system",
    "tool": "tool", "function": "tool", "ipython": "tool",
}
_ROLE_LABEL = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}


@dataclass
class Draft:
    """One example before redaction, filtering and de-duplication."""

    kind: str  # "prompt" or "response"
    id: str
    prompt: str
    response: str | None
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)
    context: list[tuple[str, str]] = field(default_factory=list)  # earlier (role, text) messages

    def rendered_prompt(self, prompt: str | None = None, context: list[tuple[str, str]] | None = None) -> str:
        """The prompt with its context in front (optionally with redacted replacements)."""
        return render(self.context if context is None else context, "user", self.prompt if prompt is None else prompt)


def _content_text(content: Any) -> str | None:
    """``content`` as text: a string, or the text parts of a multimodal list; None if neither."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return None


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def extract_metadata(record: dict[str, Any], exclude: set[str], segments: list[str] | None) -> dict[str, Any]:
    """Scalar fields kept for slicing (nested ``metadata`` flattened one level)."""
    flat: dict[str, Any] = {}
    nested = record.get("metadata")
    if isinstance(nested, dict):
        flat.update({k: v for k, v in nested.items() if _scalar(v)})
    flat.update({k: v for k, v in record.items() if k not in exclude and k != "metadata" and _scalar(v)})
    if segments is None:
        return {k: v for k, v in flat.items() if not (isinstance(v, float) and v != v)}
    return {k: flat.get(k) for k in segments}


def render(context: list[tuple[str, str]], role: str, text: str) -> str:
    """``text`` alone, or ``Role: text`` lines of the context followed by this turn's."""
    if not context:
        return text
    lines = [f"{_ROLE_LABEL[r]}: {t}" for r, t in context]
    lines.append(f"{_ROLE_LABEL[role]}: {text}")
    return "\n\n".join(lines)


def _messages_field(record: dict[str, Any], mapping: ColumnMapping) -> str | None:
    for name in (mapping.messages, "conversations"):
        if name in record:
            return name
    return None


def record_to_drafts(record: dict[str, Any], mapping: ColumnMapping, file: str, line: int,
                     default_source: str) -> tuple[list[Draft], list[Problem]]:
    """The drafts of one record and the problems found in it (a bad record yields none)."""
    msg_field = _messages_field(record, mapping) if mapping.layout != "flat" else None
    if mapping.layout == "messages" and msg_field is None:
        return [], [Problem(file, line, mapping.messages, "no messages field; skipped")]
    source = str(record.get(mapping.source) or default_source) if mapping.source else default_source
    rec_id = record.get(mapping.id) if mapping.id else None
    conv_id = record.get(mapping.conversation_id) if mapping.conversation_id else rec_id
    base_id = str(conv_id) if conv_id not in (None, "") else f"{default_source}:{line}"
    if msg_field is not None:
        exclude = {msg_field, mapping.id or "", mapping.conversation_id or "", mapping.source or ""}
        meta = extract_metadata(record, exclude, mapping.segments)
        return _chat_drafts(record[msg_field], msg_field, mapping, file, line, base_id, source, meta)

    prompt = record.get(mapping.prompt)
    if not isinstance(prompt, str) or not prompt.strip():
        what = "missing" if prompt is None else ("empty" if isinstance(prompt, str) else f"not text ({type(prompt).__name__})")
        return [], [Problem(file, line, mapping.prompt, f"prompt {what}; skipped")]
    response = record.get(mapping.response) if mapping.response else None
    if response is not None and not isinstance(response, str):
        return [], [Problem(file, line, mapping.response, f"response is not text ({type(response).__name__}); skipped")]
    if isinstance(response, str) and not response.strip():
        response = None
    exclude = {mapping.prompt, mapping.response or "", mapping.id or "", mapping.source or ""}
    meta = extract_metadata(record, exclude, mapping.segments)
    kind = "response" if response is not None else "prompt"
    return [Draft(kind, base_id, prompt, response, source, meta)], []


def _chat_drafts(messages: Any, field_name: str, mapping: ColumnMapping, file: str, line: int, base_id: str,
                 source: str, meta: dict[str, Any]) -> tuple[list[Draft], list[Problem]]:
    if not isinstance(messages, list) or not messages:
        return [], [Problem(file, line, field_name, "expected a non-empty list of messages; skipped")]
    turns: list[tuple[str, str]] = []
    for i, msg in enumerate(messages):
        where = f"{field_name}[{i}]"
        if not isinstance(msg, dict):
            return [], [Problem(file, line, where, f"message is not an object ({type(msg).__name__}); conversation skipped")]
        raw_role = msg.get("role", msg.get("from"))
        if raw_role is None:
            return [], [Problem(file, line, f"{where}.role", "message without a role; conversation skipped")]
        role = _ROLE_ALIASES.get(str(raw_role).strip().lower())
        if role is None:
            return [], [Problem(file, line, f"{where}.role", f"unknown role {raw_role!r}; conversation skipped")]
        text = _content_text(msg.get("content", msg.get("value")))
        if text is None:
            if role == "assistant" and msg.get("tool_calls"):
                continue  # a tool call carries no text to classify
            return [], [Problem(file, line, f"{where}.content", "message without text content; conversation skipped")]
        turns.append((role, text))

    drafts: list[Draft] = []
    n_user = n_asst = 0
    last_user: tuple[str, list[tuple[str, str]]] | None = None  # (text, its context)
    for idx, (role, text) in enumerate(turns):
        context = [(r, t) for r, t in turns[:idx] if r != "tool" and (r != "system" or mapping.include_system)]
        context = context[-mapping.context_turns:] if mapping.context_turns else []
        if role == "user":
            n_user += 1
            last_user = (text, context)
            if mapping.prompt_examples and text.strip():
                drafts.append(Draft("prompt", f"{base_id}#u{n_user}", text, None, source,
                                    {**meta, "turn": idx, "context_turns": len(context)}, context))
        elif role == "assistant":
            n_asst += 1
            if mapping.response_examples and last_user is not None and text.strip() and last_user[0].strip():
                u_text, u_ctx = last_user
                drafts.append(Draft("response", f"{base_id}#a{n_asst}", u_text, text, source,
                                    {**meta, "turn": idx, "context_turns": len(u_ctx)}, u_ctx))
    return drafts, []
