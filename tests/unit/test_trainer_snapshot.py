"""Pinning a mounted data prefix to the run's snapshot: exactly the listed files, unchanged, nothing else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.dataset import DataError
from trainer.snapshot import pin


def mount(root: Path, files: dict[str, bytes]) -> Path:
    """A data prefix as Azure ML mounts it: blob names below the prefix become paths."""
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def snapshot_file(folder: Path, blobs: dict[str, int], *, prefix: str = "shapes/") -> Path:
    """The control plane's snapshot JSON (`aztrain.domain.retrain.Snapshot.to_json`)."""
    listed = [{"name": prefix + name, "size": size, "etag": '"0x1"', "version_id": ""} for name, size in blobs.items()]
    path = folder / "snapshot.json"
    path.write_text(json.dumps({"id": "snap-abc", "container": "datasets", "prefix": prefix, "blobs": listed}))
    return path


def test_only_the_listed_files_are_seen_and_files_uploaded_later_are_counted_as_ignored(tmp_path: Path):
    data = mount(tmp_path / "mount", {"red/a.png": b"aa", "blue/b.png": b"bbb", "blue/late.png": b"new"})
    view = tmp_path / "view"
    view.mkdir()
    pinned = pin(data, snapshot_file(tmp_path, {"red/a.png": 2, "blue/b.png": 3}), view)
    assert (pinned.snapshot_id, pinned.files, pinned.ignored) == ("snap-abc", 2, 1)
    seen = sorted(str(path.relative_to(view)) for path in view.rglob("*") if path.is_file())
    assert seen == ["blue/b.png", "red/a.png"]
    assert (view / "blue" / "b.png").read_bytes() == b"bbb"


@pytest.mark.parametrize(
    "blobs, problem",
    [
        (
            {"red/a.png": 2, "red/gone.png": 5},
            "red/gone.png: listed in data snapshot snap-abc but not in the data folder",
        ),
        ({"red/a.png": 9}, "red/a.png: 2 bytes, but data snapshot snap-abc lists 9: the blob changed"),
    ],
)
def test_a_missing_or_rewritten_file_is_named(tmp_path: Path, blobs: dict[str, int], problem: str):
    data = mount(tmp_path / "mount", {"red/a.png": b"aa"})
    with pytest.raises(DataError, match=problem):
        pin(data, snapshot_file(tmp_path, blobs), tmp_path)


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"id": "snap-abc", "prefix": "p/"}),
        json.dumps({"id": "snap-abc", "prefix": "p/", "blobs": [{"name": "p/../../etc/passwd", "size": 1}]}),
        json.dumps({"id": "snap-abc", "prefix": "p/", "blobs": [{"name": "p/a.png", "size": "1"}]}),
    ],
    ids=["not-json", "no-blobs", "escapes-the-mount", "size-not-int"],
)
def test_a_bad_snapshot_file_is_named(tmp_path: Path, content: str):
    bad = tmp_path / "snapshot.json"
    bad.write_text(content)
    with pytest.raises(DataError, match=f"{bad}: not a (readable|valid) data snapshot"):
        pin(tmp_path, bad, tmp_path / "view")
