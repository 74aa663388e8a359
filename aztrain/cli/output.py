"""How the CLI answers: exit codes, JSON, rich tables, and the lines a run's progress is told in."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import IntEnum
from typing import Any, TypeVar

from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from aztrain.api import models as api

M = TypeVar("M")


class ExitCode(IntEnum):
    """What `aztrain` exits with; `EXIT_MEANINGS` says when. Never renumber: scripts depend on them."""

    OK = 0
    FAILED = 1
    USAGE = 2
    CANCELED = 3
    REJECTED = 4
    TIMED_OUT = 5
    API_ERROR = 6
    UNREACHABLE = 7
    INTERRUPTED = 130


#: Shown by `aztrain --help` (and in docs/cli.md).
EXIT_MEANINGS = {
    ExitCode.OK: "done; a followed run COMPLETED",
    ExitCode.FAILED: "the run FAILED; an invalid manifest (validate, plan); a failed upload",
    ExitCode.USAGE: "usage: unknown option, bad value, bad config file, ambiguous run id prefix",
    ExitCode.CANCELED: "the run was CANCELED",
    ExitCode.REJECTED: "the manifest was REJECTED by the API",
    ExitCode.TIMED_OUT: "--timeout passed before the run ended (it goes on)",
    ExitCode.API_ERROR: "the API answered with an error (no such run, conflict, server error)",
    ExitCode.UNREACHABLE: "the API could not be reached",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C); a followed run goes on",
}

#: Exit code of each terminal run state, for commands that follow a run to its end.
STATE_EXIT = {
    "COMPLETED": ExitCode.OK,
    "FAILED": ExitCode.FAILED,
    "CANCELED": ExitCode.CANCELED,
    "REJECTED": ExitCode.REJECTED,
}

STATE_STYLE = {
    "COMPLETED": "green",
    "FAILED": "red",
    "REJECTED": "red",
    "CANCELED": "yellow",
    "CANCEL_REQUESTED": "yellow",
    "RUNNING": "cyan",
}

#: Output piped into files or other programs is not cut to a width (whatever COLUMNS says): cells clip themselves.
_PIPE_WIDTH = 1000


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else _PIPE_WIDTH, highlight=False)


class Out:
    """Where answers go. Built per command, so a test's captured stdout is the one written to."""

    def __init__(self, *, as_json: bool = False) -> None:
        self.as_json = as_json
        self.console = _console(stderr=False)
        self.errors = _console(stderr=True)

    def json(self, value: Any) -> None:
        """One JSON document; models in it are written as the API writes them (wire names, ISO 8601 times)."""
        print(json.dumps(plain(value), indent=2), flush=True)

    def line(self, text: str | Text = "", *, style: str | None = None) -> None:
        """A line of human output; nothing in JSON mode, whose stdout is one document."""
        if not self.as_json:
            self.console.print(text, style=style, soft_wrap=True)

    def error(self, message: str, *, problems: list[str] | None = None, code: ExitCode, **extra: Any) -> None:
        """An error: JSON on stdout (`{"error": {...}}`) in JSON mode, otherwise `error: ...` on stderr."""
        if self.as_json:
            self.json({"error": {"code": int(code), "message": message, "problems": problems or [], **extra}})
            return
        self.errors.print(Text(f"error: {message}", style="red"), soft_wrap=True)
        for problem in [p for p in problems or [] if p != message]:
            self.errors.print(f"  - {problem}", soft_wrap=True, markup=False)

    def note(self, text: str) -> None:
        """A hint for people (stderr), never part of the answer."""
        if not self.as_json:
            self.errors.print(text, style="dim", soft_wrap=True, markup=False)

    def listing(
        self,
        key: str,
        items: Sequence[M],
        columns: tuple[str, ...],
        row: Callable[[M], list[str | Text]],
        **extra: Any,
    ) -> None:
        """`{key: items, **extra}` in JSON mode; otherwise a table of one `row(item)` per item, or `no <key>`."""
        if self.as_json:
            self.json({key: items, **extra})
            return
        if not items:
            self.line(f"no {key}")
            return
        table = self.table(*columns)
        for item in items:
            table.add_row(*row(item))
        self.console.print(table)

    def table(self, *columns: str) -> Table:
        table = Table(box=None, pad_edge=False, header_style="bold")
        for name in columns:
            table.add_column(name, overflow="ellipsis", no_wrap=True)
        return table


def state_text(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


def clip(text: str, width: int) -> str:
    """`text` on one line, cut to `width` with an ellipsis when it is longer."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


#: The figures a reader looks for first; the rest follow in name order.
_FIRST_FIGURES = ("accuracy", "loss", "epochs", "samples_per_second", "world_size")


def summarise_metrics(metrics: dict[str, Any], width: int | None = 60) -> str:
    """`accuracy=0.9611 loss=0.1234 epochs=5 …`: the main figures first, cut to `width` (None: whole)."""
    first = [k for k in _FIRST_FIGURES if k in metrics]
    keys = first + sorted(k for k in metrics if k not in first)
    text = " ".join(f"{k}={_figure(metrics[k])}" for k in keys)
    return text if width is None else clip(text, width)


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def plain(value: Any) -> Any:
    """`value` with every model in it as the JSON the API sends (aliases such as `from`, ISO 8601 times)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def clock(at: datetime) -> str:
    """`09:12:31.042`: the time of day, to the millisecond (runs move in seconds)."""
    return at.strftime("%H:%M:%S.%f")[:12]


def moment(at: datetime | None) -> str:
    """`2026-11-28 09:12:31`: a date and time, to the second."""
    return at.strftime("%Y-%m-%d %H:%M:%S") if at else "—"


def transition_line(row: api.TransitionView) -> str:
    """One history row: time, from → to, cause (and why, for a refused or detailed one)."""
    mark = "" if row.applied else "  (ignored)"
    before = row.from_state or "·"
    detail = f"  {row.detail}" if row.detail and row.applied else ""
    return f"  {clock(row.at)}  {before:>16} → {row.to:<16} {row.cause}{mark}{detail}"


def print_transition(row: api.TransitionView) -> None:
    """One history row, as the CLI and the demo show it."""
    print(transition_line(row), flush=True)


def epoch_line(row: api.EpochMetrics, total: int | None) -> str:
    """`epoch 3/5  loss 0.1265  accuracy 0.8944  10,057 samples/s` from one per-epoch metrics row."""
    parts = [f"epoch {row.epoch if row.epoch is not None else '?'}" + (f"/{total}" if total else "")]
    for name, value in (("loss", row.loss), ("accuracy", row.accuracy)):
        if value is not None:
            parts.append(f"{name} {value:.4f}")
    if row.samples_per_second is not None:
        parts.append(f"{row.samples_per_second:,.0f} samples/s")
    return "  " + "  ".join(parts)


def origin(run: api.RunView) -> str:
    """What started a run and from where: `http`, `manifest from jobs/manifests/x.yaml`."""
    return run.trigger if run.source in ("", run.trigger) else f"{run.trigger} from {run.source}"


def outcome_line(run: api.RunDetail) -> str:
    """How a run ended, never an empty reason: `COMPLETED after 26 s: accuracy=…`, `FAILED: …`, `CANCELED: …`."""
    took = (run.updated_at - run.created_at).total_seconds()
    head = f"{run.state} after {took:.0f} s" if run.state != "REJECTED" else str(run.state)
    if run.state == "COMPLETED":
        # The figures a reader looks for, whole; `aztrain show` lists the rest.
        return f"{head}: {headline_metrics(run.metrics)}" if run.metrics else head
    if run.state == "CANCELED":
        requested = [r for r in run.history if r.to == "CANCEL_REQUESTED" and r.applied]
        return f"{head}: cancel requested by {requested[-1].cause}" if requested else f"{head}: canceled"
    first = run.error.strip().splitlines()
    return f"{head}: {first[0]}" if first else head


def headline_metrics(metrics: dict[str, Any]) -> str:
    """`accuracy=0.9611 loss=0.1234 epochs=5 …`: only the main figures, never cut."""
    return " ".join(f"{k}={_figure(metrics[k])}" for k in _FIRST_FIGURES if k in metrics)


def outputs_lines(run: api.RunDetail) -> list[str]:
    """Where the run's model, metrics and log are (the run view's `outputs`), as far as it wrote them."""
    if run.outputs is None:
        return []
    where = {"model": run.outputs.model, "metrics": run.outputs.metrics, "epochs": run.outputs.epochs}
    if run.state != "COMPLETED":
        # No model or metrics; a log only if the job was started.
        where = {}
    if run.state == "COMPLETED" or any(r.to in ("SUBMITTED", "RUNNING") for r in run.history):
        where["log"] = run.outputs.logs
    return [f"  {label:<8} {path}" for label, path in where.items()]


class UploadBar:
    """One progress bar (on stderr) for the bytes and the files of an upload: an `UploadProgress`."""

    def __init__(self, console: Console, *, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("uploading"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[files]}"),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self._task: TaskID | None = None
        self._files = self._files_done = 0

    def __enter__(self) -> UploadBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, *, files: int, total_bytes: int) -> None:
        self._files = files
        self._task = self.progress.add_task("upload", total=total_bytes, files=f"0/{files} files")

    def advance(self, *, nbytes: int, files: int) -> None:
        assert self._task is not None, "start() comes first"
        self._files_done += files
        self.progress.update(self._task, advance=nbytes, files=f"{self._files_done}/{self._files} files")
