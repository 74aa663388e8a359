"""The digits format, the train/test split, each rank's shard, and the batches that reach the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainer.data import decode, export_digits, split
from trainer.dataset import DataError, Dataset, Part, concatenate
from trainer.loader import batch_count, batches, shard_order


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits as a job sees them: downloaded with their blob prefix, so one folder down."""
    root = tmp_path_factory.mktemp("data")
    export_digits(root / "digits")
    return root


def test_export_digits_writes_one_npz_in_the_documented_format(tmp_path: Path):
    path = export_digits(tmp_path)
    assert path == tmp_path / "digits.npz" and list(tmp_path.iterdir()) == [path]
    with np.load(path) as npz:
        images, labels = npz["images"], npz["labels"]
    assert images.dtype == np.float32 and images.shape[1:] == (8, 8) and 0 <= images.min() < images.max() <= 1
    assert labels.dtype == np.int64 and labels.shape == (len(images),) and set(labels) == set(range(10))


def test_digits_are_found_at_any_depth_and_decoded_to_one_channel_of_bytes(digits_dir: Path):
    dataset = decode(digits_dir, image_size=32)  # the image size applies to image folders only
    with np.load(digits_dir / "digits" / "digits.npz") as npz:
        floats, labels = npz["images"], npz["labels"]
    assert dataset.source == "digits" and dataset.classes == tuple("0123456789")
    assert dataset.images.dtype == np.uint8 and dataset.input_shape == (1, 8, 8)
    np.testing.assert_array_equal(dataset.images[:, 0], np.rint(floats * 255))
    np.testing.assert_array_equal(dataset.labels, labels)


def test_every_npz_under_the_folder_is_read_and_each_files_samples_are_reported(digits_dir: Path, tmp_path: Path):
    """A retraining run after an upload trains on the new batch beside the old one, not on the shallowest file."""
    data = tmp_path / "data"
    export_digits(data / "digits")
    export_digits(data / "digits" / "batch-2")
    one = decode(digits_dir, image_size=32)
    both = decode(data, image_size=32)
    assert len(both.labels) == 2 * len(one.labels)
    assert [(p.path, p.samples) for p in both.parts] == [
        ("digits/digits.npz", len(one.labels)),
        ("digits/batch-2/digits.npz", len(one.labels)),
    ]
    assert both.files == ("digits/digits.npz", "digits/batch-2/digits.npz")
    np.testing.assert_array_equal(both.images[: len(one.labels)], one.images)


def test_data_sets_that_disagree_are_refused_naming_both(tmp_path: Path):
    digits = Dataset(np.zeros((2, 1, 8, 8), np.uint8), np.array([0, 1]), ("0", "1"), "digits", (Part("a.npz", 2),))
    other = Dataset(np.zeros((2, 3, 8, 8), np.uint8), np.array([0, 1]), ("0", "1"), "digits", (Part("b.npz", 2),))
    with pytest.raises(DataError, match=r"b\.npz .* does not agree with a\.npz"):
        concatenate([digits, other])


def test_the_split_is_80_20_stratified_and_the_same_every_time(digits_dir: Path):
    dataset = decode(digits_dir, image_size=32)
    first, second = split(dataset), split(dataset)
    assert len(first.test) == pytest.approx(0.2 * len(dataset.labels), abs=1)
    assert len(first.train) + len(first.test) == len(dataset.labels)
    assert torch.equal(first.test.images, second.test.images) and torch.equal(first.test.labels, second.test.labels)
    assert torch.bincount(first.test.labels).min() >= 30  # every class is in the test set in proportion


def test_a_class_with_a_single_image_cannot_be_split_and_is_named():
    dataset = Dataset(
        images=np.zeros((5, 1, 8, 8), np.uint8),
        labels=np.array([0, 0, 0, 0, 1]),
        classes=("cats", "dogs"),
        source="image_folder",
    )
    with pytest.raises(DataError, match="class 'dogs' has fewer than 2 images"):
        split(dataset)


def test_the_shards_of_two_ranks_are_disjoint_cover_the_data_and_take_the_same_steps():
    size = 1001
    shards = [shard_order(size, epoch=3, seed=7, rank=rank, world_size=2) for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1])  # or one rank would wait in an allreduce forever
    seen = [set(shard.tolist()) for shard in shards]
    assert seen[0] | seen[1] == set(range(size))
    assert len(seen[0] & seen[1]) <= size % 2  # only the padding repeats a sample
    assert torch.equal(shards[0], shard_order(size, epoch=3, seed=7, rank=0, world_size=2))  # same on every rank
    assert not torch.equal(shards[0], shard_order(size, epoch=4, seed=7, rank=0, world_size=2))  # new each epoch


def test_batches_are_floats_in_0_1_on_the_device_and_can_start_part_way(digits_dir: Path):
    train = split(decode(digits_dir, image_size=32)).train
    order = torch.arange(150)
    every = list(batches(train, order, batch_size=64, device=torch.device("cpu")))
    assert [len(labels) for _, labels in every] == [64, 64, 22] and batch_count(150, 64) == 3
    images, labels = every[0]
    assert images.dtype == torch.float32 and images.shape == (64, 1, 8, 8) and 0 <= images.min() < images.max() <= 1
    assert torch.equal(images, train.images[:64].float() / 255) and torch.equal(labels, train.labels[:64])
    resumed = list(batches(train, order, batch_size=64, device=torch.device("cpu"), skip=2))
    assert len(resumed) == 1 and torch.equal(resumed[0][1], every[2][1])


@pytest.mark.parametrize(
    "arrays, problem",
    [
        ({"images": np.zeros((4, 8, 8), np.float32)}, "missing array(s) labels"),
        ({"images": np.zeros((4, 8, 8), np.float32), "labels": np.zeros(3, np.int64)}, "expected images (N, 8, 8)"),
        ({"images": np.full((4, 8, 8), 16.0), "labels": np.zeros(4, np.int64)}, "image values must be in [0, 1]"),
        ({"images": np.zeros((4, 8, 8), np.float32), "labels": np.full(4, 10)}, "labels must be integers in 0..9"),
    ],
)
def test_a_malformed_digits_file_is_refused_by_name(tmp_path: Path, arrays, problem):
    np.savez(tmp_path / "digits.npz", **arrays)
    with pytest.raises(DataError) as err:
        decode(tmp_path, image_size=32)
    assert str(tmp_path / "digits.npz") in str(err.value) and problem in str(err.value)


def test_a_digits_file_that_is_not_an_npz_archive_is_refused(tmp_path: Path):
    (tmp_path / "digits.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"not an \.npz archive"):
        decode(tmp_path, image_size=32)


def test_a_folder_without_data_says_which_formats_it_expected(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(DataError) as err:
        decode(tmp_path, image_size=32)
    assert str(tmp_path) in str(err.value)
    assert "digits.npz" in str(err.value) and "one folder per class of .jpeg/.jpg/.png images" in str(err.value)
