"""A user's own code: snapshots checked at submit, and what the backend is asked to run (fakes and Azurite)."""

from __future__ import annotations

import pytest

from aztrain.domain.runs import RunState
from aztrain.service.code_snapshots import materialise
from tests.contract.conftest import MANIFEST, drive, push_code

TRAIN_PY = b"print('training')\n"


def with_trainer(trainer: str) -> bytes:
    return MANIFEST + f"trainer: {trainer}\n".encode()


def test_a_run_of_user_code_is_submitted_with_its_snapshot_entrypoint_args_and_environment(plane, tmp_path):
    code = push_code(plane, {"src/train.py": TRAIN_PY, "requirements.txt": b"numpy\n"})
    environment = "{requirements: requirements.txt}"
    trainer = f"{{code: {code}, entrypoint: src/train.py, args: {{epochs: 2, lr: 0.1}}, environment: {environment}}}"
    run = plane.submit(with_trainer(trainer), trigger="http", cause="c", source="http").run
    assert run.state is RunState.ACCEPTED and run.manifest.trainer.code == code
    drive(plane, 3)
    (job,) = plane.backend.jobs.values()
    sub = job.submission
    assert (sub.code_snapshot, sub.entrypoint, sub.args) == (code, "src/train.py", {"epochs": 2, "lr": 0.1})
    assert sub.environment == {"requirements": "requirements.txt"} and sub.tags["aztrain.code"] == code
    folder = materialise(plane.data, "runs", code, tmp_path)
    assert (folder / "src" / "train.py").read_bytes() == TRAIN_PY
    assert materialise(plane.data, "runs", code, tmp_path) == folder  # laid out once


def test_lineage_walks_from_the_model_to_the_code_snapshot_and_the_data(plane):
    from aztrain.domain.records import JobPhase

    code = push_code(plane, {"train.py": TRAIN_PY})
    run = plane.submit(
        with_trainer(f"{{code: {code}, entrypoint: train.py}}"), trigger="http", cause="c", source="http"
    )
    drive(plane, 3)
    plane.data.write("runs", f"digits/{run.run.id}/outputs/metrics.json", b'{"accuracy": 0.9}')
    plane.backend.jobs[plane.get_run(run.run.id).backend_job_id].phases = [JobPhase.COMPLETED]
    drive(plane, 2)
    (version,) = plane.store.model_versions("digits")
    found = plane.lineage("digits", version.version)
    assert found.run.id == run.run.id and found.code is not None and found.code.id == code
    assert [f.path for f in found.code.files] == ["train.py"] and found.snapshot.id == found.run.snapshot_id


@pytest.mark.parametrize(
    "trainer, problem",
    [
        ("{code: CODE, entrypoint: missing.py}", "trainer.entrypoint: 'missing.py' is not in code snapshot"),
        ("{code: CODE, entrypoint: src.nothing}", "expected src/nothing.py or src/nothing/__main__.py"),
        ("{code: CODE, entrypoint: src/train.py, environment: {requirements: req.txt}}", "'req.txt' is not in code"),
        (
            "{code: code-ffffffffffffffffffffffff, entrypoint: train.py}",
            "code snapshot code-ffffffffffffffffffffffff does not exist",
        ),
    ],
)
def test_code_that_cannot_run_is_rejected_at_submit_naming_the_problem(plane, trainer, problem):
    code = push_code(plane, {"src/train.py": TRAIN_PY})
    submitted = plane.submit(with_trainer(trainer.replace("CODE", code)), trigger="http", cause="c", source="http")
    assert submitted.run.state is RunState.REJECTED and problem in submitted.run.error
    assert plane.backend.jobs == {}  # nothing ran


def test_a_tampered_code_file_stops_the_lay_out(plane, tmp_path):
    from aztrain.domain.code import code_file_blob
    from aztrain.domain.errors import DataChanged

    code = push_code(plane, {"train.py": TRAIN_PY})
    plane.data.write("runs", code_file_blob(code, "train.py"), b"import os; os.system('evil')\n")
    with pytest.raises(DataChanged):
        materialise(plane.data, "runs", code, tmp_path)
    assert not (tmp_path / code).exists()
