"""The DataStore contract: the in-memory fake and Blob Storage (on Azurite) behave the same."""

import pytest

from aztrain.domain.errors import DataChanged, NotFound
from aztrain.service.ports import DataStore


def test_write_read_and_limits(data_store: DataStore):
    data_store.write("jobs", "manifests/a.yaml", b"0123456789")
    assert data_store.read("jobs", "manifests/a.yaml") == b"0123456789"
    assert data_store.read("jobs", "manifests/a.yaml", max_bytes=4) == b"01234"  # one past the limit
    with pytest.raises(NotFound):
        data_store.read("jobs", "manifests/missing.yaml")


def test_append_builds_a_log(data_store: DataStore):
    data_store.append("runs", "j/r/logs/driver.log", b"line 1\n")
    data_store.append("runs", "j/r/logs/driver.log", b"line 2\n")
    assert data_store.read("runs", "j/r/logs/driver.log") == b"line 1\nline 2\n"


def test_list_download_and_upload_folders(data_store: DataStore, tmp_path):
    for name in ("digits/a.npz", "digits/sub/b.npz", "other/c.npz"):
        data_store.write("datasets", name, name.encode())
    listed = data_store.list("datasets", "digits/")
    assert [(b.name, b.size) for b in listed] == [("digits/a.npz", 12), ("digits/sub/b.npz", 16)]
    assert all(b.etag for b in listed)
    data_store.download("datasets", listed, tmp_path / "in")
    assert (tmp_path / "in" / "digits" / "sub" / "b.npz").read_bytes() == b"digits/sub/b.npz"
    assert data_store.upload_folder(tmp_path / "in" / "digits", "runs", "j/r/outputs/") == 2
    assert data_store.read("runs", "j/r/outputs/sub/b.npz") == b"digits/sub/b.npz"
    assert data_store.list("no-such-container") == []


def test_download_refuses_blobs_changed_since_listing(data_store: DataStore, tmp_path):
    data_store.write("datasets", "snap/a.npz", b"v1")
    listed = data_store.list("datasets", "snap/")
    data_store.write("datasets", "snap/a.npz", b"v2")
    with pytest.raises(DataChanged, match=r"datasets/snap/a\.npz changed after the run's data snapshot"):
        data_store.download("datasets", listed, tmp_path)


def test_ranged_reads_follow_a_growing_log(data_store: DataStore):
    log = "j/r/logs/driver.log"
    data_store.append("runs", log, b"line 1\n")
    assert data_store.read_range("runs", log, 0, 4) == (b"line", 7)
    assert data_store.read_range("runs", log, 5, 100) == (b"1\n", 7)  # never past the end
    assert data_store.read_range("runs", log, 7, 100) == (b"", 7)  # caught up: nothing new yet
    data_store.append("runs", log, b"line 2\n")
    assert data_store.read_range("runs", log, 7, 100) == (b"line 2\n", 14)
    data_store.write("runs", "j/r/empty.log", b"")
    assert data_store.read_range("runs", "j/r/empty.log", 0, 100) == (b"", 0)
    with pytest.raises(NotFound):
        data_store.read_range("runs", "j/r/logs/missing.log", 0, 100)
