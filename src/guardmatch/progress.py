"""Progress for long jobs: a live rich bar on a terminal, plain periodic lines everywhere else.

A rich ``Progress`` on a console that is not a terminal (output sent to a log file, a pipe, CI)
draws nothing until the very end, so a long run looks dead. :func:`make_progress` returns the rich
bar when the console is interactive (or Jupyter), and otherwise a :class:`PlainProgress` with the
same ``add_task`` / ``update`` / ``advance`` / ``tasks`` / context-manager interface that prints one
plain line per task (description, done/total, rate, elapsed, remaining, string fields) at most
every ``every`` seconds, and a last one when it stops::

    fixmatch: 120/300 (40%) | 2.10 steps/s | elapsed 0:00:57 | left 0:01:25 | sup_loss=0.512

``every`` defaults to ``$GUARDMATCH_PROGRESS_EVERY`` or 30 seconds.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from rich.console import Console
from rich.progress import Progress, ProgressColumn, TaskID

ENV_EVERY = "GUARDMATCH_PROGRESS_EVERY"
DEFAULT_EVERY_S = 30.0


def is_live_console(console: Console) -> bool:
    """Whether a live (redrawn) bar is visible on ``console``: an interactive terminal or Jupyter."""
    if console.is_jupyter:
        return True
    interactive = getattr(console, "is_interactive", None)  # rich >= 13.8 (honours TTY_INTERACTIVE)
    if interactive is None:
        interactive = console.is_terminal and not console.is_dumb_terminal
    return bool(interactive)


def progress_every(default: float = DEFAULT_EVERY_S, console: Console | None = None) -> float:
    """Seconds between plain progress lines: ``$GUARDMATCH_PROGRESS_EVERY`` or ``default``.

    A value that is not a number >= 0 is reported on ``console`` and the default is used: a typo in
    an environment variable must not stop a long run.
    """
    raw = os.environ.get(ENV_EVERY)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        (console or Console(stderr=True)).print(
            f"{ENV_EVERY}={raw!r} is not a number of seconds >= 0; using {default:g}",
            markup=False, highlight=False,
        )
        return default
    return value


def make_progress(
    *columns: str | ProgressColumn,
    console: Console | None = None,
    disable: bool = False,
    transient: bool = False,
    every: float | None = None,
    unit: str = "it",
    live: bool | None = None,
) -> Progress | PlainProgress:
    """A rich ``Progress`` (with ``columns``) on a live console, else a :class:`PlainProgress`.

    ``every``: seconds between plain lines (default :func:`progress_every`); ``unit``: what the
    rate counts (``"steps"`` gives ``2.10 steps/s``); ``live``: force one or the other.
    """
    console = console or Console(stderr=True)
    if live is None:
        live = is_live_console(console)
    if live:
        return Progress(*columns, console=console, disable=disable, transient=transient)
    return PlainProgress(console=console, disable=disable,
                         every=progress_every(console=console) if every is None else every, unit=unit)


@dataclass
class PlainTask:
    """What :class:`PlainProgress` knows of one task (the attributes callers read off rich tasks)."""

    id: TaskID
    description: str
    total: float | None
    completed: float
    fields: dict[str, Any] = field(default_factory=dict)
    visible: bool = True
    start_time: float = 0.0
    start_completed: float = 0.0  # the rate counts work done in this run, not what a resume skipped
    last_line: float = 0.0
    printed_state: tuple | None = None

    @property
    def finished(self) -> bool:
        return self.total is not None and self.completed >= self.total

    @property
    def remaining(self) -> float | None:
        return None if self.total is None else max(0.0, self.total - self.completed)


class PlainProgress:
    """Periodic plain-text progress lines, with the part of rich ``Progress``'s interface we use."""

    def __init__(self, console: Console | None = None, *, every: float = DEFAULT_EVERY_S, unit: str = "it",
                 disable: bool = False, clock: Callable[[], float] = time.monotonic):
        if every < 0:
            raise ValueError(f"every must be >= 0 seconds, got {every}")
        self.console = console or Console(stderr=True)
        self.every = every
        self.unit = unit
        self.disable = disable
        self._clock = clock
        self._tasks: dict[TaskID, PlainTask] = {}
        self._next_id = 0
        self._started = False

    # ------------------------------------------------------------ rich-compatible interface
    def __enter__(self) -> PlainProgress:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        self._started = True

    def stop(self) -> None:
        """The last line of every task (whatever has not been printed yet), once."""
        if not self._started:
            return
        self._started = False
        for task in self._tasks.values():
            self._emit(task, final=True)

    @property
    def tasks(self) -> list[PlainTask]:
        return list(self._tasks.values())

    @property
    def task_ids(self) -> list[TaskID]:
        return list(self._tasks)

    def add_task(self, description: str, start: bool = True, total: float | None = 100.0,
                 completed: float = 0, visible: bool = True, **fields: Any) -> TaskID:
        now = self._clock()
        task_id = TaskID(self._next_id)
        self._next_id += 1
        self._tasks[task_id] = PlainTask(task_id, description, total, completed, dict(fields), visible,
                                         start_time=now, start_completed=completed, last_line=now)
        return task_id

    def update(self, task_id: TaskID, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, visible: bool | None = None,
               refresh: bool = False, **fields: Any) -> None:
        task = self._tasks[task_id]
        if total is not None:
            task.total = total
        if advance is not None:
            task.completed += advance
        if completed is not None:
            task.completed = completed
        if description is not None:
            task.description = description
        if visible is not None:
            task.visible = visible
        task.fields.update(fields)
        if refresh or self._clock() - task.last_line >= self.every:
            self._emit(task)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def refresh(self) -> None:
        for task in self._tasks.values():
            self._emit(task)

    def remove_task(self, task_id: TaskID) -> None:
        self._tasks.pop(task_id, None)

    # ------------------------------------------------------------ lines
    def line(self, task: PlainTask) -> str:
        """``description: done/total (pct%) | rate | elapsed | left | fields``."""
        now = self._clock()
        elapsed = max(0.0, now - task.start_time)
        done = _num(task.completed)
        parts = [f"{task.description}: {done}"]
        if task.total is not None:
            parts[0] += f"/{_num(task.total)}"
            if task.total > 0:
                parts[0] += f" ({100.0 * min(task.completed, task.total) / task.total:.0f}%)"
        rate = (task.completed - task.start_completed) / elapsed if elapsed > 0 else 0.0
        parts.append(f"{rate:.2f} {self.unit}/s")
        parts.append(f"elapsed {_clock_time(elapsed)}")
        if task.remaining and rate > 0:
            parts.append(f"left {_clock_time(task.remaining / rate)}")
        extra = " ".join(str(v) for v in task.fields.values() if isinstance(v, str) and v.strip())
        if extra:
            parts.append(extra)
        return " | ".join(parts)

    def _emit(self, task: PlainTask, final: bool = False) -> None:
        task.last_line = self._clock()
        if self.disable or not task.visible:
            return
        state = (task.completed, task.total, task.description, tuple(sorted(task.fields.items(), key=str)))
        if final and state == task.printed_state:
            return  # the last periodic line already says it
        task.printed_state = state
        # soft_wrap: one line per report in a log, whatever the console's width
        self.console.print(self.line(task), markup=False, highlight=False, soft_wrap=True)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _clock_time(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
