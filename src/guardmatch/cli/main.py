"""The ``guardmatch`` command: a thin typer layer over the Python API.

Each command group lives in its own module under ``guardmatch.cli`` and exposes
``register(app)``; this module discovers them, so adding a command never edits this file.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer

import guardmatch.cli as _cli_pkg

app = typer.Typer(
    name="guardmatch",
    help="Train, evaluate and serve small LLM-safety classifiers with semi-supervised learning.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(_cli_pkg.__path__), key=lambda m: m.name):
        if info.name in {"main", "common"}:
            continue
        module = importlib.import_module(f"guardmatch.cli.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context, version: bool = typer.Option(False, "--version", help="print the guardmatch version and exit",
                                       is_eager=True)) -> None:
    """Train, evaluate and serve small LLM-safety classifiers with semi-supervised learning."""
    if version:
        from guardmatch import __version__

        typer.echo(f"guardmatch {__version__}")
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


_register_all()

if __name__ == "__main__":  # pragma: no cover
    app()
