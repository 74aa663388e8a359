"""What a job runs: the program part of its command, built from validated parts, never from a command string.

The launcher part (horovodrun, torchrun, mpirun) is each backend's, per distribution; the
program part is the same everywhere: the built-in trainer with its flags, or the user's
entrypoint (a module or a `.py` file of the code snapshot) with `trainer.args` as
`--name value`. Where the data, outputs and checkpoints are reaches every program as
environment variables (docs/trainer.md); the built-in trainer also takes them as flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from aztrain.domain.records import JobSubmission


@dataclass(frozen=True)
class Places:
    """Where the backend put the run's files, as the program sees them (paths, or a backend's placeholders)."""

    data_dir: str  # the data prefix's folder (a mount may hold more than the snapshot)
    snapshot_file: str  # the data snapshot: exactly the blobs this run reads
    output_dir: str  # read-write: model.pt, metrics.jsonl, metrics.json (uploaded when the run ends)
    checkpoint_dir: str  # read-write, kept across attempts: what a resumed attempt starts from


def program_argv(job: JobSubmission, places: Places, *, python: str = "python") -> list[str]:
    """`python -m <module> ...` or `python <file.py> ...`: the built-in trainer's flags, or `--name value` per arg."""
    target = [job.entrypoint] if job.entrypoint.endswith(".py") else ["-m", job.entrypoint]
    if not job.code_snapshot:
        return [
            python, *target,
            # Its --checkpoint-dir defaults to the contract's OUTPUT_DIR/checkpoints.
            "--data-dir", places.data_dir, "--output-dir", places.output_dir, "--snapshot-file", places.snapshot_file,
            *job.trainer_flags(),
        ]  # fmt: skip
    return [python, *target, *(part for name, value in job.args.items() for part in (f"--{name}", _text(value)))]


def program_env(job: JobSubmission, places: Places) -> dict[str, str]:
    """The contract's environment variables (docs/trainer.md), the same on every backend."""
    return {
        "AZTRAIN_DATA_DIR": places.data_dir,
        "AZTRAIN_SNAPSHOT_FILE": places.snapshot_file,
        "AZTRAIN_SNAPSHOT_ID": job.snapshot_id,
        "AZTRAIN_OUTPUT_DIR": places.output_dir,
        "AZTRAIN_CHECKPOINT_DIR": places.checkpoint_dir,
        "AZTRAIN_RUN_ID": job.run_id,
        "AZTRAIN_CODE_SNAPSHOT": job.code_snapshot,
    }


def _text(value: str | int | float | bool) -> str:
    """An argument as the program reads it: booleans as `true`/`false`, numbers as JSON writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, str) else repr(value)
