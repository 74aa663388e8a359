"""The image-folder format: one sub-folder per class of PNG/JPEG images, trained end to end; bad files named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.integration.test_trainer import INVALID_TIMEOUT, TRAIN_TIMEOUT, run, trainer
from trainer.data import decode
from trainer.dataset import DataError
from trainer.images import find_image_folders

COLOURS = {"blue": (40, 40, 220), "green": (40, 200, 40), "red": (220, 40, 40)}


def write_image_folder(root: Path, *, per_class: int = 40, size: int = 20) -> Path:
    """Noisy images of one colour per class, half PNG and half JPEG, under a blob prefix; returns `root`."""
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        folder = root / "shapes" / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}{'.png' if i % 2 else '.jpg'}")
    return root


def test_classes_are_the_sorted_folder_names_and_images_decode_to_rgb_bytes(tmp_path: Path):
    data = write_image_folder(tmp_path, per_class=4)
    Image.new("L", (30, 10), color=128).save(data / "shapes" / "red" / "grey.PNG")  # greyscale, not square
    (folder,) = find_image_folders(data)
    assert folder.root == data / "shapes" and folder.classes == ("blue", "green", "red")
    dataset = decode(data, image_size=16)
    assert dataset.source == "image_folder" and dataset.classes == ("blue", "green", "red")
    assert dataset.images.dtype == np.uint8 and dataset.images.shape == (13, 3, 16, 16)
    assert np.bincount(dataset.labels).tolist() == [4, 4, 5]
    red = dataset.images[dataset.labels == 2][:4]
    assert red[:, 0].mean() > 150 > red[:, 2].mean()  # channel 0 is red: RGB order, channels first
    assert np.all(dataset.images[-1] == 128)  # the grey image, resized, in all three channels


def test_every_image_folder_is_read_and_they_must_hold_the_same_classes(tmp_path: Path):
    """One folder of class folders per upload: all of them are the data set."""
    data = write_image_folder(tmp_path / "batch-1", per_class=2).parent
    write_image_folder(tmp_path / "batch-2", per_class=3)
    dataset = decode(data, image_size=8)
    assert [(p.path, p.samples) for p in dataset.parts] == [("batch-1/shapes/", 6), ("batch-2/shapes/", 9)]
    assert len(dataset.files) == 15 and dataset.files[0] == "batch-1/shapes/blue/000.jpg"
    assert np.bincount(dataset.labels).tolist() == [5, 5, 5]
    (data / "batch-2" / "shapes" / "red").rename(data / "batch-2" / "shapes" / "yellow")
    with pytest.raises(DataError, match=r"batch-2/shapes/ .* does not agree with batch-1/shapes/"):
        decode(data, image_size=8)


def test_a_corrupt_image_is_named(tmp_path: Path):
    data = write_image_folder(tmp_path, per_class=3)
    broken = data / "shapes" / "green" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=f"{broken}: not a readable image"):
        decode(data, image_size=16)


def test_a_truncated_image_is_named(tmp_path: Path):
    data = write_image_folder(tmp_path, per_class=3)
    truncated = data / "shapes" / "blue" / "000.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DataError, match=f"{truncated}: not a readable image"):
        decode(data, image_size=16)


def test_an_empty_class_is_named(tmp_path: Path):
    data = write_image_folder(tmp_path, per_class=3)
    (data / "shapes" / "yellow").mkdir()
    (data / "shapes" / "yellow" / "README.txt").write_text("images to come")
    with pytest.raises(DataError, match=f"class folder {data / 'shapes' / 'yellow'} has no images"):
        decode(data, image_size=16)


@pytest.mark.parametrize(
    "stray, problem",
    [
        ("loose.png", "image outside any class folder"),
        ("shapes/red/deeper/one.png", "images at different depths"),
    ],
)
def test_an_ambiguous_layout_is_refused_naming_the_file(tmp_path: Path, stray: str, problem: str):
    data = write_image_folder(tmp_path, per_class=3)
    (data / stray).parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8)).save(data / stray)
    with pytest.raises(DataError) as err:
        decode(data, image_size=16)
    assert problem in str(err.value) and str(data / stray) in str(err.value)


def test_a_single_class_is_not_a_classification_problem(tmp_path: Path):
    folder = tmp_path / "only" / "cats"
    folder.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    with pytest.raises(DataError, match="found one class folder, cats; a classifier needs two or more"):
        decode(tmp_path, image_size=16)


def test_an_image_folder_trains_end_to_end(tmp_path: Path, project_root: Path):
    data, out = write_image_folder(tmp_path / "data"), tmp_path / "outputs"
    args = json.dumps({"epochs": 4, "batch_size": 16, "image_size": 16})
    result = run(trainer(data, out, args, "--cache-dir", str(tmp_path / "cache")), project_root, TRAIN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "data: 120 images, 3 classes, image_folder 3x16x16; decoded from" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.9
    model_file = torch.load(out / "model.pt")
    assert model_file["classes"] == ["blue", "green", "red"] and model_file["input_shape"] == [3, 16, 16]
    assert model_file["data_format"] == "image_folder"


def test_a_corrupt_image_stops_the_trainer_with_exit_2_naming_it(tmp_path: Path, project_root: Path):
    data = write_image_folder(tmp_path / "data", per_class=3)
    broken = data / "shapes" / "red" / "001.png"
    broken.write_bytes(b"garbage")
    result = run(
        trainer(data, tmp_path / "out", "{}", "--cache-dir", str(tmp_path / "cache")), project_root, INVALID_TIMEOUT
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"error: {broken}: not a readable image")
    assert "epoch" not in result.stdout


def test_a_snapshot_file_pins_the_trainer_to_the_listed_images(tmp_path: Path, project_root: Path):
    """As on Azure ML: the whole prefix is mounted, a class uploaded after launch is not trained on."""
    mounted, out = write_image_folder(tmp_path / "mount") / "shapes", tmp_path / "outputs"
    listed = [
        {"name": f"shapes/{path.relative_to(mounted)}", "size": path.stat().st_size, "etag": "", "version_id": ""}
        for path in sorted(mounted.rglob("*.*"))
        if path.parent.name != "red"
    ]
    (mounted / "red" / "extra.png").write_bytes(b"written after the snapshot was taken")
    snapshot = tmp_path / "snapshot.json"
    snapshot.write_text(json.dumps({"id": "snap-1", "container": "datasets", "prefix": "shapes/", "blobs": listed}))
    args = json.dumps({"epochs": 1, "batch_size": 16, "image_size": 8})
    flags = ["--snapshot-file", str(snapshot), "--snapshot-id", "snap-1", "--cache-dir", str(tmp_path / "cache")]
    result = run(trainer(mounted, out, args, *flags), project_root, TRAIN_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "80 file(s) of snapshot snap-1, 41 other(s) on the mount ignored" in result.stdout
    model_file = torch.load(out / "model.pt")
    assert model_file["classes"] == ["blue", "green"] and model_file["data_snapshot"] == "snap-1"
