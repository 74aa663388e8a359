"""What a run leaves in the runs container, and how it is read back: its log, per-epoch and final metrics.

A run's files live under `<runs container>/<job>/<run id>/`: `logs/driver.log` (an append blob, written
while it runs), `outputs/metrics.jsonl` (one JSON object per completed epoch; the trainer rewrites it
whole after each epoch), `outputs/metrics.json` (the final figures) and `outputs/model.pt`.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aztrain.api.models import MAX_LOG_CHUNK, RunOutputs
from aztrain.domain.errors import NotFound
from aztrain.domain.layout import run_output_prefix
from aztrain.domain.records import BlobInfo
from aztrain.domain.runs import Run
from aztrain.service.ports import DataStore

log = logging.getLogger(__name__)

LOG_FILE = "logs/driver.log"
OUTPUTS_FOLDER = "outputs/"
#: The trainer's per-epoch history (`trainer.outputs.HISTORY_FILE`), and its final metrics and model.
EPOCHS_FILE = "metrics.jsonl"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.pt"
#: The files the trainer says it read, relative to its data folder (`trainer.outputs.DATA_FILES_FILE`).
DATA_FILES_FILE = "data_files.json"
#: A listing of every image of a large image folder stays well below this.
_MAX_DATA_FILES_BYTES = 16 * 1024 * 1024
#: The largest output file one API answer carries (the digits model is 100 KB; a big one is read from the blob).
MAX_OUTPUT_BYTES = 256 * 1024 * 1024
#: Per-epoch rows are small; this bounds what one request reads however long a run trained.
_MAX_EPOCHS_BYTES = 4 * 1024 * 1024
#: How far back a `tail` reads per step while looking for enough line breaks.
_TAIL_STEP = 64 * 1024


@dataclass(frozen=True)
class RunFiles:
    """Where one run's blobs are, in the runs container."""

    container: str
    prefix: str

    @classmethod
    def of(cls, run: Run, runs_container: str) -> RunFiles:
        return cls(runs_container, run_output_prefix(run.job, run.id))

    @property
    def log(self) -> str:
        return self.prefix + LOG_FILE

    def output(self, name: str) -> str:
        return self.prefix + OUTPUTS_FOLDER + name

    def outputs(self) -> RunOutputs:
        """The same places as `container/blob` paths, for users."""
        where = f"{self.container}/"
        return RunOutputs(
            container=self.container,
            prefix=self.prefix,
            logs=where + self.log,
            model=where + self.output(MODEL_FILE),
            metrics=where + self.output(METRICS_FILE),
            epochs=where + self.output(EPOCHS_FILE),
        )


@dataclass(frozen=True)
class LogChunk:
    """Bytes of a run's log from `offset`; `next_offset` is where to continue (the log's size when read)."""

    data: bytes
    offset: int
    next_offset: int
    size: int


def read_log(data: DataStore, files: RunFiles, *, offset: int = 0, tail: int | None = None) -> LogChunk:
    """The log from `offset` (at most `MAX_LOG_CHUNK` bytes), or its last `tail` lines; empty before it exists."""
    try:
        if tail is not None:
            return _tail(data, files, tail)
        chunk, size = data.read_range(files.container, files.log, offset, MAX_LOG_CHUNK)
    except NotFound:  # not started yet, or a backend that writes no log here
        return LogChunk(b"", offset, offset, 0)
    return LogChunk(chunk, offset, offset + len(chunk), size)


def _tail(data: DataStore, files: RunFiles, lines: int) -> LogChunk:
    _, size = data.read_range(files.container, files.log, 0, 1)
    start, text = size, b""
    # Read backwards until the text holds `lines` line breaks before its last byte (the last line may lack one yet).
    while start > 0 and text.count(b"\n", 0, len(text) - 1) < lines and size - start < MAX_LOG_CHUNK:
        step = min(_TAIL_STEP, start)
        chunk, _ = data.read_range(files.container, files.log, start - step, step)
        start, text = start - step, chunk + text
    cut = len(text) - 1
    for _ in range(lines):
        cut = text.rfind(b"\n", 0, cut)
        if cut < 0:
            break
    kept = text[cut + 1 :]
    return LogChunk(kept, size - len(kept), size, size)


def output_files(data: DataStore, files: RunFiles) -> list[BlobInfo]:
    """The files at the top of the run's outputs folder (model, metrics); `checkpoints/` below it are not outputs."""
    folder = files.output("")
    return [b for b in data.list(files.container, folder) if "/" not in b.name.removeprefix(folder)]


def read_output(data: DataStore, files: RunFiles, name: str) -> bytes:
    """One output file's bytes, at most `MAX_OUTPUT_BYTES` + 1 (so a caller sees one too large); `NotFound`."""
    return data.read(files.container, files.output(name), max_bytes=MAX_OUTPUT_BYTES)


def read_metrics(data: DataStore, files: RunFiles) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Per-epoch rows so far (live while training) and the final metrics, if the run wrote them."""
    try:
        raw = data.read(files.container, files.output(EPOCHS_FILE), max_bytes=_MAX_EPOCHS_BYTES)
    except NotFound:
        raw = b""
    epochs = [row for line in raw[:_MAX_EPOCHS_BYTES].splitlines() if (row := _json_object(line)) is not None]
    try:
        final = _json_object(data.read(files.container, files.output(METRICS_FILE), max_bytes=_MAX_EPOCHS_BYTES))
    except NotFound:
        final = None
    return epochs, final


def read_data_files(data: DataStore, files: RunFiles) -> list[str] | None:
    """The files the run's trainer reported reading (relative to its data folder), or None if it reported none."""
    try:
        raw = data.read(files.container, files.output(DATA_FILES_FILE), max_bytes=_MAX_DATA_FILES_BYTES)
    except NotFound:
        return None
    document = _json_object(raw[:_MAX_DATA_FILES_BYTES])
    listed = document.get("files") if document else None
    if not isinstance(listed, list):
        return None
    return [name for name in listed if isinstance(name, str)]


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:  # a line cut by the size bound, or a file from something other than the trainer
        return None
    return value if isinstance(value, dict) else None


class LiveMetrics:
    """Keeps a run's per-epoch metrics blob current while its trainer runs (the local job supervisor uses it).

    The trainer rewrites `metrics.jsonl` whole after each epoch; this uploads it whenever it changed, so
    `GET /api/runs/{id}/metrics` shows epochs as they complete, not only once the outputs are uploaded.
    """

    def __init__(self, data: DataStore, files: RunFiles, outputs: Path, *, interval: float = 1.0) -> None:
        self._data, self._files, self._path, self._interval = data, files, outputs / EPOCHS_FILE, interval
        self._uploaded: tuple[int, int] | None = None  # (mtime, size) of the version last uploaded
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="live-metrics", daemon=True)

    def __enter__(self) -> LiveMetrics:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _follow(self) -> None:
        while not self._stop.wait(self._interval):
            self.sync()

    def sync(self) -> None:
        """Upload the file if it changed since the last upload."""
        try:
            stat = self._path.stat()
            version = (stat.st_mtime_ns, stat.st_size)
            if version != self._uploaded:
                self._data.write(self._files.container, self._files.output(EPOCHS_FILE), self._path.read_bytes())
                self._uploaded = version
        except FileNotFoundError:  # no epoch completed yet
            return
        except Exception:  # storage hiccup: retried at the next tick, and the outputs are uploaded at the end anyway
            log.warning("could not upload %s; will retry", self._path, exc_info=True)
