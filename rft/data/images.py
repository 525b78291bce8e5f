"""Images of the real datasets, decoded only when used (`LazyImage`), and the checks run before training.

A 3,333-image FGVC test split at full resolution would not fit in memory decoded, so a `Sample` holds a
`LazyImage` that opens, crops and converts on `.convert(mode)`. `check_images` reads every header when a task is
built (the file exists and decodes as an image); `verify_images` fully decodes the budgeted train subset and the
evaluated slice, so a truncated file fails before any compute.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from rft.data.base import DataError, Sample


class LazyImage:
    """An image decoded only when it is used, so a split can list thousands of images at no memory cost.

    It stands in for a PIL image in `Sample.images`: `convert(mode)` (all that `rft.prompts.encode_prompts`
    calls) opens the image, crops `crop_bottom` pixels off the bottom and converts it; `numpy()` lets
    `wandb.Image` accept it. Nothing is cached: each use decodes again.

    Args:
        source: A file path, the encoded bytes, or a zero-argument callable returning either (e.g. one cell of a
            memory-mapped Arrow table).
        name: Where the image comes from, for error messages (file path, or parquet file and row).
        crop_bottom: Pixels cut off the bottom (FGVC's copyright banner).
    """

    __slots__ = ("source", "name", "crop_bottom")

    def __init__(self, source: str | Path | bytes | Callable[[], object], name: str, crop_bottom: int = 0):
        self.source = source
        self.name = name
        self.crop_bottom = crop_bottom

    def __repr__(self) -> str:
        return f"LazyImage({self.name!r}, crop_bottom={self.crop_bottom})"

    def _open(self) -> Image.Image:
        src = self.source() if callable(self.source) else self.source
        if isinstance(src, dict):  # an HF Image struct {"bytes", "path"}
            src = src.get("bytes") or src.get("path")
        if src is None:
            raise DataError(
                f"image {self.name}: the cell is empty (no bytes and no path); fix or drop the row"
            )
        try:
            return Image.open(io.BytesIO(src) if isinstance(src, bytes | bytearray) else src)
        except FileNotFoundError:
            raise DataError(
                f"image {self.name} does not exist; restore the file or re-download the data"
            ) from None
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(
                f"image {self.name} is not a readable image ({err}); re-download or replace it"
            ) from None

    def check(self) -> None:
        """Cheap check: the image exists, its header decodes and it is taller than the crop."""
        with self._open() as img:
            if img.height <= self.crop_bottom:
                raise DataError(
                    f"image {self.name} is {img.height} px tall, not taller than task.crop_bottom={self.crop_bottom}"
                )

    def load(self) -> Image.Image:
        """The decoded, cropped image (in its own mode)."""
        img = self._open()
        try:
            img.load()
        except (OSError, ValueError) as err:
            raise DataError(f"image {self.name} is corrupt ({err}); re-download or replace it") from None
        if self.crop_bottom:
            img = img.crop((0, 0, img.width, img.height - self.crop_bottom))
        return img

    def convert(self, mode: str = "RGB") -> Image.Image:
        return self.load().convert(mode)

    def numpy(self) -> np.ndarray:
        """[H, W, 3] uint8 RGB (wandb.Image calls this on objects that are not PIL images)."""
        return np.asarray(self.convert("RGB"))


def check_images(samples: list[Sample]) -> None:
    """Header-check every image of `samples` (existence, format, size); raises DataError on the first bad one."""
    for s in samples:
        for img in s.images:
            if isinstance(img, LazyImage):
                img.check()


def verify_images(samples: list[Sample]) -> None:
    """Fully decode every image of `samples` (catches truncated files); run it on the budgeted train subset and
    the evaluated slice before training. Raises DataError naming the first bad image."""
    for s in samples:
        for img in s.images:
            if isinstance(img, LazyImage):
                img.load()
