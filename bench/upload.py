"""`aztrain upload` against a one-at-a-time loop, on a private Azurite, in the same run. Prints JSON.

The same folder (many small files and a few large ones) is uploaded to fresh containers by
`aztrain.cli.upload` (a thread pool, staged blocks) and by a plain loop of `upload_blob` calls,
in alternating order each round; then `aztrain.cli.upload` runs once more over the uploaded
folder, which skips everything. Figures: files/s and MB/s of each, and the speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

from aztrain.cli.upload import DEFAULT_WORKERS, connect, upload_folder
from aztrain.service.settings import AZURITE_CONNECTION_STRING, PROJECT_ROOT
from devhost import Azurite, azurite_connection_string


def make_folder(root: Path, *, small: int, small_bytes: int, large: int, large_mb: int) -> tuple[int, int]:
    """`small` files of up to `small_bytes` in nested folders and `large` files of `large_mb` MB; (files, bytes)."""
    rng = random.Random(0)
    total = 0
    for i in range(small):
        path = root / f"class-{i % 10}" / f"image-{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randint(small_bytes // 2, small_bytes))
        path.write_bytes(data)
        total += len(data)
    for i in range(large):
        (root / f"large-{i}.bin").write_bytes(os.urandom(large_mb * 1024 * 1024))
        total += large_mb * 1024 * 1024
    return small + large, total


def one_at_a_time(service: BlobServiceClient, folder: Path, container: str) -> None:
    """What the seed systems' users wrote by hand: one upload_blob after another."""
    client = service.get_container_client(container)
    client.create_container()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with path.open("rb") as data:
            client.upload_blob(f"data/{path.relative_to(folder).as_posix()}", data, overwrite=True)


def timed(work: Callable[[], Any], files: int, nbytes: int) -> dict[str, float]:
    started = time.perf_counter()
    work()
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 2),
        "files_per_s": round(files / seconds, 1),
        "mb_per_s": round(nbytes / 1e6 / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small-files", type=int, default=1000)
    parser.add_argument("--small-bytes", type=int, default=8192, help="largest small file")
    parser.add_argument("--large-files", type=int, default=3)
    parser.add_argument("--large-mb", type=int, default=20)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--rounds", type=int, default=3, help="each round runs both, in alternating order")
    parser.add_argument("--azurite-port", type=int, default=10030)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="aztrain-bench-upload-"))
    port = args.azurite_port
    connection_string = azurite_connection_string(
        AZURITE_CONNECTION_STRING, blob_port=port, queue_port=port + 1, table_port=port + 2
    )
    try:
        folder = work / "data"
        files, nbytes = make_folder(
            folder, small=args.small_files, small_bytes=args.small_bytes, large=args.large_files, large_mb=args.large_mb
        )
        with Azurite(connection_string=connection_string, location=work / "azurite", project_root=PROJECT_ROOT):
            service = connect(connection_string=connection_string, workers=args.workers)

            def parallel() -> None:
                upload_folder(service, folder, "b" + uuid.uuid4().hex[:12], "data/", workers=args.workers)

            def loop() -> None:
                one_at_a_time(service, folder, "b" + uuid.uuid4().hex[:12])

            rounds = []
            for number in range(args.rounds):
                order = [("upload", parallel), ("one_at_a_time", loop)]
                rounds.append({name: timed(run, files, nbytes) for name, run in order[:: 1 if number % 2 == 0 else -1]})
            container = "b" + uuid.uuid4().hex[:12]
            upload_folder(service, folder, container, "data/", workers=args.workers)
            rerun = timed(lambda: upload_folder(service, folder, container, "data/", workers=args.workers), files, 0)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    best = {name: min((r[name] for r in rounds), key=lambda m: m["seconds"]) for name in ("upload", "one_at_a_time")}
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "storage": "Azurite (local)"},
        "files": files,
        "mb": round(nbytes / 1e6, 1),
        "workers": args.workers,
        "rounds": rounds,
        "best": best,
        "speedup_files_per_s": round(best["upload"]["files_per_s"] / best["one_at_a_time"]["files_per_s"], 2),
        "rerun_skipping_everything_seconds": rerun["seconds"],
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
