"""Helpers shared by the CLI modules: consoles, error reporting, key=value parsing."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterator

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console

from guardmatch.errors import GuardmatchError

console = Console(stderr=True)
stdout = Console()


def parse_assignments(items: list[str] | None, what: str = "--set") -> dict[str, Any]:
    """``["optim.lr=1e-4", "data.labels=all"]`` -> ``{"optim.lr": 1e-4, "data.labels": "all"}`` (YAML values)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise typer.BadParameter(f"{what} expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else None
    return out


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn the user's mistakes into one clear message and exit 2: a
    :class:`~guardmatch.errors.GuardmatchError`, a config that does not validate, a file that is
    missing or not readable. Any other exception is a bug and propagates with its traceback."""
    try:
        yield
    except (GuardmatchError, ValidationError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except (FileNotFoundError, PermissionError) as exc:
        where = f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc)
        console.print(f"[bold red]error:[/] {where}")
        raise typer.Exit(2) from None


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------------------------
# choices: enums, so typer rejects a bad value at once (before any data is loaded or file
# written) and lists the choices in --help. Each mirrors a registry; tests keep them in step.
# --------------------------------------------------------------------------------------------

from enum import Enum  # noqa: E402


class RoutingStrategy(str, Enum):
    """``guardmatch.review.routing.STRATEGIES``."""

    least_confidence = "least_confidence"
    margin = "margin"
    entropy = "entropy"
    head_disagreement = "head_disagreement"
    apm_instability = "apm_instability"
    random = "random"


class ExchangeFormat(str, Enum):
    """``guardmatch.review.exchange.FORMATS``."""

    jsonl = "jsonl"
    csv = "csv"
    argilla = "argilla"
    labelstudio = "labelstudio"


class AugmenterName(str, Enum):
    """``guardmatch.augment.registry.AUGMENTERS``."""

    eda = "eda"
    backtranslation = "backtranslation"
    llm_backtranslation = "llm-backtranslation"
    llm_rewrite = "llm-rewrite"


class LLMBackendName(str, Enum):
    """``guardmatch.augment.backends.BACKENDS``."""

    llama_cpp = "llama-cpp"
    transformers = "transformers"
    openai = "openai"


def choice_value(value: Any) -> Any:
    """The plain string of an enum choice (None stays None)."""
    return value.value if isinstance(value, Enum) else value


# the same choices as plain-string Literals, for commands whose bodies take the value as a str
from typing import Literal  # noqa: E402

AugmenterChoice = Literal["eda", "backtranslation", "llm-backtranslation", "llm-rewrite"]
LLMBackendChoice = Literal["llama-cpp", "transformers", "openai"]
