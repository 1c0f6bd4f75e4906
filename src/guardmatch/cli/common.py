"""Helpers shared by the CLI modules: consoles, error reporting, key=value parsing."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any, Iterator

import typer
import yaml
from rich.console import Console

from guardmatch.config import ConfigError
from guardmatch.data.validation import DataError

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
    """Turn expected failures (bad config, bad data, missing files) into one clear message, exit 2."""
    try:
        yield
    except (ConfigError, DataError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except (FileNotFoundError, KeyError, ValueError) as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
