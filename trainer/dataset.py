"""What every data format decodes to: images as uint8 arrays with their labels and class names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """The data folder holds no usable data set; the message names the folder or file."""


@dataclass(frozen=True)
class Part:
    """One file or image folder the data set was read from (path relative to the data folder) and its samples."""

    path: str
    samples: int


@dataclass(frozen=True)
class Dataset:
    """A decoded data set: `images` uint8 (N, C, H, W), `labels` int64 (N,) indexing `classes`.

    Pixels stay uint8 (a quarter of float32's bytes, on disk, in memory and over PCIe);
    the loader scales them to [0, 1] on the device.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str  # the format it was decoded from: "digits" or "image_folder"
    parts: tuple[Part, ...] = ()  # where the samples came from, in order
    files: tuple[str, ...] = ()  # every file read, relative to the data folder: what the run reports it consumed

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image: what the model takes."""
        channels, height, width = self.images.shape[1:]
        return channels, height, width


def concatenate(datasets: Sequence[Dataset]) -> Dataset:
    """One data set of several that agree on format, classes and image shape; `DataError` names one that does not."""
    first = datasets[0]
    for other in datasets[1:]:
        if (other.source, other.classes, other.input_shape) != (first.source, first.classes, first.input_shape):
            raise DataError(
                f"{other.parts[0].path} ({other.source}, classes {', '.join(other.classes)}, "
                f"{'x'.join(map(str, other.input_shape))}) does not agree with {first.parts[0].path} "
                f"({first.source}, classes {', '.join(first.classes)}, {'x'.join(map(str, first.input_shape))}): "
                "every file of a data set must hold the same classes and image shape"
            )
    if len(datasets) == 1:
        return first
    return Dataset(
        images=np.concatenate([d.images for d in datasets]),
        labels=np.concatenate([d.labels for d in datasets]),
        classes=first.classes,
        source=first.source,
        parts=tuple(part for d in datasets for part in d.parts),
        files=tuple(name for d in datasets for name in d.files),
    )
