"""The node-local data cache: decode once, reuse on later runs, never serve data that has changed."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from trainer.cache import DataCache, cache_key
from trainer.data import export_digits, load


@pytest.fixture
def digits_dir(tmp_path: Path) -> Path:
    export_digits(tmp_path / "data" / "digits")
    return tmp_path / "data"


def test_the_first_load_decodes_and_caches_and_the_second_reads_the_cache(digits_dir: Path, tmp_path: Path):
    cache = DataCache(tmp_path / "cache")
    first = load(digits_dir, cache=cache, snapshot_id="snap-1", image_size=32)
    second = load(digits_dir, cache=cache, snapshot_id="snap-1", image_size=32)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert first.note.startswith(f"decoded from {digits_dir}") and "cached at" in first.note
    assert second.note.startswith("read from cache")
    assert len(list((tmp_path / "cache").iterdir())) == 1
    np.testing.assert_array_equal(first.dataset.images, second.dataset.images)
    np.testing.assert_array_equal(first.dataset.labels, second.dataset.labels)
    assert (second.dataset.classes, second.dataset.source) == (first.dataset.classes, "digits")


def test_a_new_snapshot_is_decoded_again(digits_dir: Path, tmp_path: Path):
    cache = DataCache(tmp_path / "cache")
    load(digits_dir, cache=cache, snapshot_id="snap-1", image_size=32)
    assert not load(digits_dir, cache=cache, snapshot_id="snap-2", image_size=32).from_cache


def test_without_a_snapshot_id_a_changed_file_is_decoded_again(digits_dir: Path, tmp_path: Path):
    cache = DataCache(tmp_path / "cache")
    assert not load(digits_dir, cache=cache, snapshot_id=None, image_size=32).from_cache
    assert load(digits_dir, cache=cache, snapshot_id=None, image_size=32).from_cache
    path = digits_dir / "digits" / "digits.npz"
    with np.load(path) as npz:
        images, labels = npz["images"][:100], npz["labels"][:100]
    np.savez_compressed(path, images=images, labels=labels)
    reloaded = load(digits_dir, cache=cache, snapshot_id=None, image_size=32)
    assert not reloaded.from_cache and len(reloaded.dataset.labels) == 100


def test_the_key_covers_the_image_size_and_the_files(digits_dir: Path):
    key = cache_key(data_dir=digits_dir, snapshot_id=None, image_size=32)
    assert key == cache_key(data_dir=digits_dir, snapshot_id=None, image_size=32)
    assert key != cache_key(data_dir=digits_dir, snapshot_id=None, image_size=64)
    (digits_dir / "digits" / "more.png").write_bytes(b"new blob")
    assert key != cache_key(data_dir=digits_dir, snapshot_id=None, image_size=32)


def test_an_unreadable_cache_entry_is_rebuilt(digits_dir: Path, tmp_path: Path):
    cache = DataCache(tmp_path / "cache")
    load(digits_dir, cache=cache, snapshot_id="snap-1", image_size=32)
    entry = next((tmp_path / "cache").iterdir())
    entry.write_bytes(entry.read_bytes()[:1000])  # torn, e.g. by a full disk
    again = load(digits_dir, cache=cache, snapshot_id="snap-1", image_size=32)
    assert not again.from_cache and len(again.dataset.labels) == 1797
    assert load(digits_dir, cache=cache, snapshot_id="snap-1", image_size=32).from_cache


def test_only_the_most_recently_used_entries_are_kept(digits_dir: Path, tmp_path: Path):
    cache = DataCache(tmp_path / "cache", keep=2)
    for snapshot in ("a", "b"):
        load(digits_dir, cache=cache, snapshot_id=snapshot, image_size=32)
    os.utime(cache.path(cache_key(data_dir=digits_dir, snapshot_id="b", image_size=32)), (1, 1))  # b: long unused
    load(digits_dir, cache=cache, snapshot_id="a", image_size=32)  # a: used just now
    load(digits_dir, cache=cache, snapshot_id="c", image_size=32)
    kept = {cache_key(data_dir=digits_dir, snapshot_id=s, image_size=32) for s in ("a", "c")}
    assert {p.stem for p in (tmp_path / "cache").iterdir()} == kept


def test_a_cache_that_cannot_be_written_costs_speed_not_the_run(digits_dir: Path, tmp_path: Path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    loaded = load(digits_dir, cache=DataCache(blocked), snapshot_id="snap-1", image_size=32)
    assert not loaded.from_cache and len(loaded.dataset.labels) == 1797 and "not cached:" in loaded.note
