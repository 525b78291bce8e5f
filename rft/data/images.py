"""Images of the real datasets, decoded only when used (`LazyImage`), and the checks run before training.

A 3,333-image FGVC test split at full resolution would not fit in memory decoded, so a `Sample` holds a
`LazyImage` that opens, crops and converts on `.convert(mode)`. Images inside a parquet file too large to hold
(SAT's 172K-row train file) are `ParquetImages` cells, read by streaming the file and kept only once fetched.
`check_images` reads every header when a task is built (the file exists and decodes as an image);
`verify_images` fetches and fully decodes the budgeted train subset and the evaluated slice, so a truncated file
fails before any compute.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rft.data.base import DataError, Sample

ORIENTATION = 0x0112  # the EXIF tag `ImageOps.exif_transpose` applies


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
        except Image.DecompressionBombError as err:
            raise DataError(
                f"image {self.name} is too large to decode safely ({err}); a decompression bomb or a huge scan: "
                "replace it with a downscaled copy"
            ) from None
        except (UnidentifiedImageError, OSError) as err:
            raise DataError(
                f"image {self.name} is not a readable image ({err}); re-download or replace it"
            ) from None

    def check(self) -> None:
        """Cheap check: the image exists, its header decodes and it is taller than the crop."""
        height = self.size()[1] + self.crop_bottom
        if height <= self.crop_bottom:
            raise DataError(
                f"image {self.name} is {height} px tall, not taller than task.crop_bottom={self.crop_bottom}"
            )

    def size(self) -> tuple[int, int]:
        """(width, height) of `load()`'s image, from the header alone: EXIF orientation and crop applied."""
        with self._open() as img:
            w, h = img.size
            try:
                turned = img.getexif().get(ORIENTATION, 1) in (5, 6, 7, 8)
            except (OSError, ValueError, SyntaxError):
                turned = False  # an unreadable EXIF block: load() reports the image if it cannot decode
        if turned:
            w, h = h, w
        return w, h - self.crop_bottom

    def load(self) -> Image.Image:
        """The decoded image as a person sees it (EXIF orientation applied), cropped, in its own mode."""
        img = self._open()
        try:
            img.load()
            img = ImageOps.exif_transpose(img)
        except (OSError, ValueError, SyntaxError) as err:
            raise DataError(f"image {self.name} is corrupt ({err}); re-download or replace it") from None
        if self.crop_bottom:
            img = img.crop((0, 0, img.width, img.height - self.crop_bottom))
        return img

    def convert(self, mode: str = "RGB") -> Image.Image:
        """The loaded image in `mode`; "RGB" goes through `to_rgb` (alpha on white, 16-bit scaled, CMYK)."""
        img = self.load()
        return to_rgb(img) if mode == "RGB" else img.convert(mode)

    def numpy(self) -> np.ndarray:
        """[H, W, 3] uint8 RGB (wandb.Image calls this on objects that are not PIL images)."""
        return np.asarray(self.convert("RGB"))


def to_rgb(img: Image.Image) -> Image.Image:
    """`img` as 8-bit RGB the way a viewer shows it: transparency composited on white, 16-bit and 32-bit
    greyscale scaled to 0-255 (PIL's own `convert` clips them to white), palette and CMYK converted."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        peak = float(a.max()) if a.size else 0.0
        top = next(
            t for t in (1.0, 255.0, 65535.0, peak) if peak <= t
        )  # the range the values were written in
        top = 65535.0 if img.mode.startswith("I;16") else top
        return Image.fromarray(np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


class ParquetImages:
    """The image cells of one list column of a parquet file, read on demand in bounded memory.

    A cell is fetched by streaming the file in batches of `batch_size` rows (never one whole row group, which
    can be gigabytes) and kept once fetched: `fetch(rows)` reads many in one pass, which is what `verify_images`
    does for the budgeted subset and the evaluated slice. A miss reads on from where the last pass stopped, so
    rows asked for in order cost one pass in all.

    Args:
        path: The parquet file.
        column: A list column whose items are image bytes or `{"bytes": ...}` structs (SAT's `image_bytes`).
        batch_size: Rows per streamed batch.
    """

    def __init__(self, path: str | Path, column: str, batch_size: int = 64):
        self.path, self.column, self.batch_size = Path(path), column, batch_size
        self._cells: dict[int, list] = {}
        self._batches = None  # the open stream of (first row, cells) batches...
        self._last = None  # ...and the batch it yielded last

    def __repr__(self) -> str:
        return f"ParquetImages({str(self.path)!r}, {self.column!r}, {self.rows_held} rows held)"

    @property
    def rows_held(self) -> int:
        """How many rows' cells are in memory."""
        return len(self._cells)

    def stream(self):
        """(first row, pyarrow list array of `column`) per batch, from the file's start."""
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=1 << 20)  # stream pages, no whole chunk
        start = 0
        for batch in pf.iter_batches(batch_size=self.batch_size, columns=[self.column]):
            yield start, batch.column(0)
            start += batch.num_rows

    def fetch(self, rows: Iterable[int]) -> None:
        """Read the cells of `rows` (file row indices) into memory in one pass."""
        wanted = sorted(set(rows) - self._cells.keys())
        if not wanted:
            return
        if self._batches is None or self._last is None or wanted[0] < self._last[0]:
            self._batches, self._last = self.stream(), None  # behind the stream: start again
        batches = itertools.chain([self._last] if self._last else [], self._batches)
        i, end = 0, 0
        for start, cells in batches:
            self._last, end = (start, cells), start + len(cells)
            while i < len(wanted) and wanted[i] < end:
                self._cells[wanted[i]] = cells[wanted[i] - start].as_py()
                i += 1
            if i == len(wanted):
                return
        self._batches = self._last = None
        raise DataError(f"{self.path} has no row {wanted[i]} (it has {end}); re-download it")

    def cell(self, row: int, index: int) -> object:
        """Image `index` of row `row`: raw bytes or an HF Image struct."""
        if row not in self._cells:
            self.fetch([row])
        return self._cells[row][index]


@dataclass(frozen=True)
class ParquetCell:
    """A zero-argument source for `LazyImage`: image `index` of row `row` of a `ParquetImages`."""

    store: ParquetImages
    row: int
    index: int

    def __call__(self) -> object:
        return self.store.cell(self.row, self.index)


def prefetch(samples: list[Sample]) -> None:
    """Fetch every `ParquetCell` image of `samples`, one streaming pass per file."""
    by_store: dict[int, tuple[ParquetImages, set[int]]] = {}
    for s in samples:
        for img in s.images:
            if isinstance(img, LazyImage) and isinstance(img.source, ParquetCell):
                by_store.setdefault(id(img.source.store), (img.source.store, set()))[1].add(img.source.row)
    for store, rows in by_store.values():
        store.fetch(rows)


def check_images(samples: list[Sample]) -> None:
    """Header-check every image of `samples` (existence, format, size); raises DataError on the first bad one."""
    for s in samples:
        for img in s.images:
            if isinstance(img, LazyImage):
                img.check()


def verify_images(samples: list[Sample]) -> None:
    """Fully decode every image of `samples` (catches truncated files); run it on the budgeted train subset and
    the evaluated slice before training. Raises DataError naming the first bad image."""
    prefetch(samples)
    for s in samples:
        for img in s.images:
            if isinstance(img, LazyImage):
                img.load()
