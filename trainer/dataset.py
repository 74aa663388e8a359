"""What every data format decodes to: images as uint8 arrays with their labels and class names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DataError(ValueError):
    """The data folder holds no usable data set; the message names the folder or file."""


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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image: what the model takes."""
        channels, height, width = self.images.shape[1:]
        return channels, height, width
