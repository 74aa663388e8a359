"""`aztrain upload` against Azurite: byte-exact, idempotent, resumable, and never outside its prefix."""

from __future__ import annotations

import hashlib
import json
import os
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from aztrain.cli.main import main
from aztrain.cli.output import ExitCode
from aztrain.cli.upload import Uploader, UploadError, blob_name, connect, normalise_prefix, upload_folder

pytestmark = pytest.mark.azurite

SMALL_FILES = 1000
LARGE_FILES = 3
LARGE_SIZE = 20 * 1024 * 1024


class Interrupted(Exception):
    """Stands in for Ctrl-C or a dropped connection part-way through an upload."""


class StopAfter:
    """An `UploadProgress` that interrupts the upload once `files` files (or `blocks` block writes) are done."""

    def __init__(self, *, files: int = 0, blocks: int = 0) -> None:
        self.files, self.blocks = files, blocks
        self.files_done = self.blocks_done = 0

    def start(self, *, files: int, total_bytes: int) -> None:
        pass

    def advance(self, *, nbytes: int, files: int) -> None:
        self.files_done += files
        self.blocks_done += nbytes > 0 and files == 0
        if (self.files and self.files_done >= self.files) or (self.blocks and self.blocks_done >= self.blocks):
            raise Interrupted


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 small files in nested folders (some empty) and three 20 MB ones."""
    root = tmp_path_factory.mktemp("tree")
    rng = random.Random(14)
    for i in range(SMALL_FILES):
        path = root / f"class-{i % 10}" / f"part-{i % 7}" / f"image-{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randint(0, 4096)))
    for i in range(LARGE_FILES):
        (root / f"large-{i}.bin").write_bytes(os.urandom(LARGE_SIZE))
    return root


@pytest.fixture
def service(azurite: str) -> BlobServiceClient:
    return connect(connection_string=azurite)


@pytest.fixture
def container(service: BlobServiceClient) -> ContainerClient:
    """A container of its own (not created: the upload creates it)."""
    return service.get_container_client("up" + uuid.uuid4().hex[:12])


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def assert_byte_exact(container: ContainerClient, folder: Path, prefix: str) -> None:
    local = {prefix + p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    blobs = {b.name: b for b in container.list_blobs(name_starts_with=prefix)}
    assert sorted(blobs) == sorted(local)

    def check(name: str) -> None:
        data = container.download_blob(name).readall()
        assert md5(data) == md5(local[name].read_bytes()), name
        assert bytes(blobs[name].content_settings.content_md5).hex() == md5(data), f"{name}: Content-MD5"

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(check, blobs))


def test_upload_is_byte_exact_and_a_second_run_uploads_nothing(service, container, tree):
    first = upload_folder(service, tree, container.container_name, "data/set")
    assert (first.files, first.uploaded, first.skipped) == (SMALL_FILES + LARGE_FILES, SMALL_FILES + LARGE_FILES, 0)
    assert first.prefix == "data/set/" and first.uploaded_bytes == first.bytes
    assert_byte_exact(container, tree, "data/set/")
    second = upload_folder(service, tree, container.container_name, "data/set/")
    assert (second.uploaded, second.skipped, second.uploaded_bytes) == (0, SMALL_FILES + LARGE_FILES, 0)


def test_an_interrupted_upload_resumes_where_it_stopped(service, container, tree):
    with pytest.raises(Interrupted):
        upload_folder(service, tree, container.container_name, "p/", progress=StopAfter(files=300))
    sent_before = len(list(container.list_blobs()))
    assert 300 <= sent_before < SMALL_FILES + LARGE_FILES
    resumed = upload_folder(service, tree, container.container_name, "p/")
    assert resumed.skipped == sent_before and resumed.uploaded == SMALL_FILES + LARGE_FILES - sent_before
    assert_byte_exact(container, tree, "p/")


def test_a_large_files_staged_blocks_are_reused_after_an_interruption(service, container, tmp_path):
    (tmp_path / "big.bin").write_bytes(os.urandom(LARGE_SIZE))
    block = 1024 * 1024
    with pytest.raises(Interrupted):
        Uploader(container, workers=2, block_size=block, progress=StopAfter(blocks=6)).upload(tmp_path, "big/")
    resumed = Uploader(container, workers=2, block_size=block).upload(tmp_path, "big/")
    assert resumed.uploaded == 1
    assert resumed.uploaded_bytes <= LARGE_SIZE - 6 * block  # the blocks staged before are not sent again
    assert_byte_exact(container, tmp_path, "big/")


def test_a_changed_file_of_the_same_size_is_sent_again(service, container, tmp_path):
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("one")
    upload_folder(service, tmp_path, container.container_name, "")
    (tmp_path / "b.txt").write_text("two")
    again = upload_folder(service, tmp_path, container.container_name, "")
    assert (again.uploaded, again.skipped) == (1, 1)
    assert container.download_blob("b.txt").readall() == b"two"


@pytest.mark.parametrize("prefix", ["../up", "/abs", "a\\b", "a/../../b"])
def test_a_prefix_that_climbs_out_is_refused(prefix):
    with pytest.raises(UploadError):
        normalise_prefix(prefix)


@pytest.mark.parametrize("relative", ["../x", "/etc/passwd", "a\\..\\b", "a/./b", ""])
def test_a_file_name_that_is_no_safe_blob_name_is_refused(relative):
    with pytest.raises(UploadError):
        blob_name("data/", relative)


def test_a_folder_with_an_unsafe_name_sends_nothing(service, container, tmp_path):
    (tmp_path / "fine.txt").write_text("x")
    (tmp_path / "..\\escape.txt").write_text("x")  # a legal file name on Linux, a path on Windows
    with pytest.raises(UploadError):
        upload_folder(service, tmp_path, container.container_name, "data/")
    assert not container.exists()


def test_cli_upload_and_seed_digits_answer_in_both_forms(azurite, container, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AZTRAIN_CONFIG", str(tmp_path / "absent.toml"))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text("hello")
    base = ["upload", str(tmp_path / "data"), "--container", container.container_name, "--prefix", "in"]
    assert main([*base, "--connection-string", azurite]) == ExitCode.OK
    assert "1 uploaded, 0 already there" in capsys.readouterr().out
    monkeypatch.setenv("AZTRAIN_STORAGE_CONNECTION_STRING", azurite)  # the environment serves as well as the flag
    assert main([*base, "--json"]) == ExitCode.OK
    summary = json.loads(capsys.readouterr().out)
    assert summary | {"seconds": 0} == {
        "container": container.container_name,
        "prefix": "in/",
        "files": 1,
        "uploaded": 0,
        "skipped": 1,
        "bytes": 5,
        "uploaded_bytes": 0,
        "seconds": 0,
    }
    assert main(["seed-digits", "--container", container.container_name, "--json"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out)["uploaded"] == 1
    assert [b.name for b in container.list_blobs(name_starts_with="digits/")] == ["digits/digits.npz"]
    assert main(["upload", str(tmp_path / "data"), "--container", container.container_name, "--prefix", "../x"]) == 1
    assert "prefix '../x'" in capsys.readouterr().err
