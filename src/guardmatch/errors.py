"""The one base of guardmatch's user-facing errors, and the errors shared across modules.

Raise a :class:`GuardmatchError` subclass for a mistake the user can fix (bad config, bad data, an
unknown name, a missing file); the CLI prints its message and exits 2. Anything else is a bug and
shows its traceback. Subclasses keep a builtin base (``ValueError``, ``KeyError``, ...) where
callers catch them by it.
"""

from __future__ import annotations


class GuardmatchError(Exception):
    """A user-facing error: the CLI prints it in one line and exits 2; any other exception shows its traceback."""


class ConfigError(GuardmatchError, ValueError):
    """A setting (config file, override or command-line option) that is invalid or does not fit the
    others; the message names the key and, where there is one, the file."""


class UnknownNameError(GuardmatchError, KeyError, ValueError):
    """A name that no registry entry has (algorithm, augmenter, strategy, ...); the message lists the
    available names. A ``KeyError`` (a failed lookup) and a ``ValueError`` (a bad setting value)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
