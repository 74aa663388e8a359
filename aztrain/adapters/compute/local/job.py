"""Supervisor of one local job: `python -m aztrain.adapters.compute.local.job <job folder>`.

Plays the part of Azure ML's job runtime on this machine: mounts the data (downloads
exactly the blobs of the run's snapshot into the prefix's folder), runs the trainer under its
distribution's launcher (`horovodrun --gloo` or `torchrun`: `launchers`),
streams the log to blob storage, enforces `max_runtime`, uploads outputs, and reports the statuses
Azure ML would (Preparing → Running → Finalizing → Completed | Failed | Canceled).
On SIGTERM (cancel) it stops the whole process tree, launcher and ranks, leaving nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import psutil

from aztrain.adapters.compute.local.backend import job_processes, write_json_atomic
from aztrain.adapters.compute.local.environments import EnvironmentFailed, python_for
from aztrain.adapters.compute.local.launchers import LAUNCHERS, Launcher
from aztrain.domain.errors import DataChanged
from aztrain.domain.program import Places, program_argv, program_env
from aztrain.domain.records import JobSubmission
from aztrain.domain.retrain import Snapshot
from aztrain.service.bootstrap import build_data_store
from aztrain.service.code_snapshots import materialise
from aztrain.service.ports import DataStore
from aztrain.service.run_outputs import LiveMetrics, RunFiles
from aztrain.service.settings import Settings
from trainer.exit_codes import EXIT_PREEMPTED

log = logging.getLogger("aztrain.local_job")

_LOG_FLUSH_SECONDS = 2.0
_LOG_FLUSH_BYTES = 64 * 1024
_STOP_GRACE_SECONDS = 10.0
#: After SIGTERM the supervisor winds down (status, log, outputs) for at most this long, then exits
#: regardless: storage may be gone (a stopped Azurite is retried for minutes by the SDK).
_SHUTDOWN_SECONDS = 5.0
_ERROR_TAIL_LINES = 20


class LogStreamer:
    """Tee a launcher's output to a local file and, in batches, to an append blob, reading it as it goes.

    The trainer reports bad input as one "error: ..." line; the launcher exits 1 whenever a
    process fails and names each one's own code, 75 being the trainer's "preempted, checkpoint
    written" (`trainer.exit_codes`), which a next attempt resumes from.
    """

    def __init__(self, data: DataStore, container: str, blob: str, local: Path, launcher: Launcher) -> None:
        self._data, self._container, self._blob = data, container, blob
        self._error_line, self._preempted_line = launcher.error_line(), launcher.preempted_line()
        self._local = local.open("ab")
        self._pending = bytearray()
        self._last_flush = time.monotonic()
        self.tail: list[str] = []
        self.first_error = ""  # the trainer's own "error: ..." line, which names the problem
        self.preempted = False  # a process exited with the trainer's preemption code

    def write(self, line: bytes) -> None:
        self._local.write(line)
        self._local.flush()
        self._pending += line
        text = line.decode(errors="replace").rstrip()
        self.tail = [*self.tail[-(_ERROR_TAIL_LINES - 1) :], text]
        self.preempted = self.preempted or bool(self._preempted_line.search(text))
        if not self.first_error and self._error_line.search(text):
            self.first_error = self._error_line.split(text, maxsplit=1)[-1]
        if len(self._pending) >= _LOG_FLUSH_BYTES or time.monotonic() - self._last_flush >= _LOG_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            try:
                self._data.append(self._container, self._blob, bytes(self._pending))
                self._pending.clear()
            except Exception:  # storage hiccup: keep the bytes and try again at the next flush
                log.warning("could not stream log to %s/%s; will retry", self._container, self._blob, exc_info=True)
        self._last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()
        self._local.close()


class Supervisor:
    """Runs one submission to the end and records its status."""

    def __init__(self, folder: Path, data: DataStore) -> None:
        self.folder = folder
        self.data = data
        self.submission = JobSubmission.from_json(json.loads((folder / "submission.json").read_text()))
        self.name = self.submission.name
        self.launcher = LAUNCHERS[self.submission.distribution]
        self.canceled = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None

    def set_status(self, status: str, error: str = "", *, preempted: bool = False) -> None:
        write_json_atomic(
            self.folder / "status.json", {"status": status, "error": error, "preempted": preempted, "at": time.time()}
        )
        log.info("%s: %s %s", self.name, status, error)

    def on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.canceled.set()
        if self.child is not None:
            stop_tree(self.child.pid)

    def run(self) -> int:
        sub = self.submission
        prefix = sub.output_prefix
        streamer = LogStreamer(
            self.data, sub.output_container, prefix + "logs/driver.log", self.folder / "driver.log", self.launcher
        )
        # The log's header: what links these lines to the run, its events and its request or upload.
        streamer.write(f"aztrain: run {sub.run_id} job {sub.name} correlation id {sub.correlation}\n".encode())
        try:
            if (self.folder / "cancel").exists():
                self.set_status("Canceled")
                return 0
            self.set_status("Preparing")
            downloads, out_dir = self.folder / "data", self.folder / "outputs"
            shutil.rmtree(downloads, ignore_errors=True)
            out_dir.mkdir(exist_ok=True)
            document = self.data.read(sub.output_container, sub.snapshot)
            snapshot = Snapshot.from_json(json.loads(document))
            snapshot_file = self.folder / "snapshot.json"  # what the trainer reads exactly
            snapshot_file.write_bytes(document)
            self.data.download(snapshot.container, snapshot.blobs, downloads)
            # What Azure ML mounts: the prefix's folder, present even when it holds nothing.
            data_dir = downloads / snapshot.prefix
            data_dir.mkdir(parents=True, exist_ok=True)
            streamer.write(
                f"aztrain: mounted snapshot {snapshot.id}: {len(snapshot.blobs)} blob(s) "
                f"from {snapshot.container}/{snapshot.prefix}\n".encode()
            )
            if self.canceled.is_set():
                self.set_status("Canceled")
                return 0
            self.set_status("Running")
            # Per-epoch metrics are uploaded as they change, so users see progress while it trains.
            with LiveMetrics(self.data, RunFiles(sub.output_container, prefix), out_dir):
                rc, timed_out = self._train(data_dir, snapshot_file, out_dir, streamer)
            self.set_status("Finalizing")
            streamer.flush()
            self.data.upload_folder(out_dir, sub.output_container, prefix + "outputs/")
            if self.canceled.is_set():
                self.set_status("Canceled")
            elif timed_out:
                self.set_status("Failed", f"exceeded max_runtime of {sub.max_runtime_seconds} s")
            elif rc == 0:
                self.set_status("Completed")
            elif rc == EXIT_PREEMPTED or streamer.preempted:
                self.set_status("Failed", f"PreemptionError: trainer exited with code {EXIT_PREEMPTED}", preempted=True)
            else:
                reason = streamer.first_error or " | ".join(streamer.tail[-5:])
                self.set_status("Failed", f"trainer exited with code {rc}: {reason}")
            return 0
        except (DataChanged, EnvironmentFailed) as exc:
            self.set_status("Failed", str(exc))
            return 0
        except Exception as exc:
            log.exception("%s: supervisor failed", self.name)
            self.set_status("Failed", f"local job supervisor error: {exc}")
            return 1
        finally:
            streamer.close()

    def _train(self, data_dir: Path, snapshot_file: Path, out_dir: Path, streamer: LogStreamer) -> tuple[int, bool]:
        sub = self.submission
        slots = max(1, int(os.environ.get("AZTRAIN_LOCAL_MAX_SLOTS", "2")))
        requested = sub.cluster.nodes * sub.cluster.processes_per_node
        processes = min(requested, slots)
        if processes < requested:
            streamer.write(
                f"aztrain: local backend runs {processes} of {requested} requested processes "
                f"(AZTRAIN_LOCAL_MAX_SLOTS={slots})\n".encode()
            )
        python = os.environ.get("AZTRAIN_LOCAL_PYTHON") or sys.executable
        launcher = self.launcher.argv(Path(python), processes)  # the project's launcher, whatever the program's Python
        places = Places(str(data_dir), str(snapshot_file), str(out_dir), str(out_dir / "checkpoints"))
        shared = self.folder.parent.parent  # what the jobs of this machine share: code, environments, data cache
        code = None
        if sub.code_snapshot:  # the user's code, run from its own folder as Azure ML runs it from the job's code
            code = materialise(self.data, sub.output_container, sub.code_snapshot, shared / "code")
            streamer.write(f"aztrain: code snapshot {sub.code_snapshot} in {code}\n".encode())

        def log(text: str) -> None:
            streamer.write(text.encode())

        python = python_for(sub.environment, python=python, code=code, cache=shared / "environments", log=log)
        program = program_argv(sub, places, python=python)
        if code is None:
            # The simulated nodes share this machine's disk, so they share one node-local cache too.
            program += ["--cache-dir", str(shared / "node-cache")]
        cwd = code or Path.cwd()
        streamer.write(f"aztrain: {' '.join(launcher)} ... {' '.join(program[1:3])}\n".encode())
        self.child = subprocess.Popen(
            [*launcher, *program],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            # The launcher passes the contract's variables on to every process.
            env={**os.environ, **self.launcher.env, **program_env(sub, places)},
        )
        if self.canceled.is_set():  # SIGTERM arrived while we were starting it
            stop_tree(self.child.pid)
        timed_out = threading.Event()

        def on_timeout(child: subprocess.Popen[bytes]) -> None:
            timed_out.set()
            stop_tree(child.pid)

        watchdog = threading.Timer(sub.max_runtime_seconds, on_timeout, args=(self.child,))
        watchdog.daemon = True
        watchdog.start()
        try:
            assert self.child.stdout is not None  # we asked for a pipe
            for line in iter(self.child.stdout.readline, b""):
                streamer.write(line)
            rc = self.child.wait()
        finally:
            watchdog.cancel()
        return rc, timed_out.is_set()


def stop_tree(pid: int) -> None:
    """SIGTERM a process and all its descendants, then SIGKILL what is left after a grace period."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    _, alive = psutil.wait_procs(tree, timeout=_STOP_GRACE_SECONDS)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDKs log every HTTP request at INFO
    folder = Path(argv[1])
    supervisor = Supervisor(folder, build_data_store(Settings.from_env()))
    deadline = threading.Timer(_SHUTDOWN_SECONDS, _give_up, args=(supervisor,))
    deadline.daemon = True

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if not supervisor.canceled.is_set():
            deadline.start()  # the first SIGTERM starts the clock; later ones change nothing
        supervisor.on_sigterm(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return supervisor.run()
    finally:
        deadline.cancel()
        _end_job(supervisor.name)


def _give_up(supervisor: Supervisor) -> None:
    """The stop took too long (storage retries, a trainer that ignores SIGTERM): end the job and exit now."""
    supervisor.set_status(
        "Canceled", f"stopped by SIGTERM; the log and outputs not uploaded within {_SHUTDOWN_SECONDS:.0f} s are lost"
    )
    _end_job(supervisor.name)
    os._exit(1)


def _end_job(name: str) -> None:
    # Backstop: nothing of this job may outlive its supervisor (a worker that escaped the tree).
    for proc in job_processes(name):
        if proc.pid != os.getpid():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
