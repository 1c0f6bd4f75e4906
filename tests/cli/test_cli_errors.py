"""``friendly_errors``: the user's mistakes are one line and exit 2; anything else is a bug with its traceback."""

from __future__ import annotations

import pytest
import typer

from guardmatch.cli.common import friendly_errors
from guardmatch.errors import ConfigError, UnknownNameError


@pytest.mark.parametrize("exc, shown", [
    (ConfigError("optim.lr: must be > 0"), "optim.lr: must be > 0"),
    (UnknownNameError("unknown augmenter 'x'; available: eda"), "unknown augmenter 'x'; available: eda"),
    (FileNotFoundError(2, "No such file or directory", "pool.jsonl"), "pool.jsonl: No such file or directory"),
    (PermissionError(13, "Permission denied", "/root/x"), "/root/x: Permission denied"),
])
def test_user_errors_are_one_line_and_exit_2(exc, shown, capsys):
    with pytest.raises(typer.Exit) as done:
        with friendly_errors():
            raise exc
    assert done.value.exit_code == 2
    assert capsys.readouterr().err.strip() == f"error: {shown}"


@pytest.mark.parametrize("bug", [KeyError("k"), ValueError("v"), RuntimeError("r")])
def test_other_exceptions_keep_their_traceback(bug):
    with pytest.raises(type(bug)):
        with friendly_errors():
            raise bug
