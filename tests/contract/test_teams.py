"""Whose runs: a dropped manifest belongs to its folder's team, a retraining run to its job's, and an
HTTP submit to its signed-in submitter's team (on the fakes and on Azurite)."""

from __future__ import annotations

import pytest

from aztrain.domain.errors import Forbidden
from aztrain.domain.identity import Principal
from aztrain.domain.runs import RunState
from aztrain.service.facade import BlobEvent, ControlPlane
from tests.contract.conftest import MANIFEST, deliver

ALICE = Principal("alice", frozenset({"Runs.Submit", "Team.vision"}))
BOB = Principal("bob", frozenset({"Runs.Submit", "Team.nlp"}))


def dropped(plane: ControlPlane, name: str, text: bytes = MANIFEST) -> str:
    plane.data.write("jobs", name, text)
    (run,) = deliver(plane, BlobEvent(id=f"ev-{name}", container="jobs", name=name))
    return run.team if run.state is not RunState.REJECTED else run.error


def test_a_dropped_manifest_belongs_to_the_team_of_its_folder(plane: ControlPlane) -> None:
    assert dropped(plane, "manifests/vision/digits.yaml") == "vision"
    (run,) = plane.store.find_runs(job="digits")
    assert (run.submitted_by, run.manifest.team) == ("", "vision")


def test_a_manifest_dropped_straight_into_manifests_is_the_default_teams(plane: ControlPlane) -> None:
    assert dropped(plane, "manifests/digits.yaml") == "default"


def test_a_manifest_naming_another_team_than_its_folder_is_rejected(plane: ControlPlane) -> None:
    error = dropped(plane, "manifests/vision/digits.yaml", MANIFEST + b"team: nlp\n")
    assert "dropped into team vision's folder; drop it under jobs/manifests/nlp/" in str(error)


def test_an_http_submit_records_its_submitter_and_their_team(plane: ControlPlane) -> None:
    run = plane.submit(MANIFEST, trigger="http", cause="r1", source="http", by=ALICE).run
    assert run is not None and (run.submitted_by, run.team) == ("alice", "vision")


def test_a_job_name_belongs_to_one_team(plane: ControlPlane) -> None:
    plane.submit(MANIFEST, trigger="http", cause="r1", source="http", by=ALICE)
    taken = plane.submit(MANIFEST, trigger="http", cause="r2", source="http", by=BOB, force=True).run
    assert taken is not None and taken.state is RunState.REJECTED
    assert "job digits belongs to team vision" in taken.error


def test_only_the_runs_team_may_cancel_it(plane: ControlPlane) -> None:
    run = plane.submit(MANIFEST, trigger="http", cause="r1", source="http", by=ALICE).run
    assert run is not None
    with pytest.raises(Forbidden) as refused:
        plane.cancel(run.id, cause="test", by=BOB)
    assert refused.value.missing == "app role Team.vision"
    assert plane.cancel(run.id, cause="test", by=ALICE).state in (RunState.CANCEL_REQUESTED, RunState.CANCELED)
