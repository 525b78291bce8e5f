"""The study's real datasets as Tasks: FGVC-Aircraft 2013b, SAT, and the two Banner Analysis stand-ins.

- `fgvc`: FGVC-Aircraft 2013b (Maji et al., arXiv 1306.5151) from the official archive layout, or from a Hugging
  Face copy (hub id, `save_to_disk` folder, or parquet/arrow files) with a configurable column mapping. The bottom
  `crop_bottom` (20) pixels, the photographer's copyright banner, are cropped off as the official protocol
  requires. The prompt is Visual-RFT's, verbatim (rft.tasks.THINK_INSTRUCTION).
- `sat`: SAT (Ray et al., arXiv 2412.07755) from the `array/SAT` parquet files. Single-image questions only by
  default (VisualThinker-R1-Zero's choice); options shuffled per question, seeded by the run seed and the uid, as
  upstream advises.
- `banner`: a generic local multiple-choice VQA format (docs/data.md), so anyone's own banner data plugs in.
- `banner_synth`: synthetic advertising banners rendered offline with PIL, with questions that relate several
  elements (a price and its discount, a button and its product); deterministic from the data seed.

Images are loaded lazily (`LazyImage`): a 3,333-image test split at full resolution would not fit in memory
decoded. Every listed image is checked when the task is built (the file exists and its header decodes), so a
missing or non-image file fails before any compute; `verify_images` fully decodes a subset.

Every bad input raises one `DataError` that names the file or field and the fix. This module never imports Hydra.
"""

from __future__ import annotations

import functools
import glob
import io
import json
import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from rft.config import TaskConfig
from rft.tasks import COLOURS, OBJECT_SHAPES, Sample, Task, _draw_shape

FGVC_DIR = "fgvc-aircraft-2013b"
FGVC_SPLITS = ("train", "val", "trainval", "test")
FGVC_CLASS_FILES = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}
FGVC_FIX = (
    "run `make data-fgvc` (or `python experiments/data.py fgvc --dest data/`) or pass task.root=<folder>"
)

SAT_DIR = "SAT"
SAT_FILES = {"train": "SAT_train.parquet", "val": "SAT_val.parquet", "test": "SAT_test.parquet",
             "static": "SAT_static.parquet"}  # fmt: skip
SAT_COLUMNS = ("image_bytes", "question", "answers", "correct_answer", "question_type")
SAT_FIX = "run `make data-sat` (or `python experiments/data.py sat --dest data/`) or pass task.root=<folder>"

# HF split names that mean one of ours.
_SPLIT_ALIASES = {"validation": "val", "valid": "val"}
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


class DataError(ValueError):
    """Bad or missing data; the message names the file or field and how to fix it."""


# ---------------------------------------------------------------------------------------------------------------
# Lazy images
# ---------------------------------------------------------------------------------------------------------------


class LazyImage:
    """An image decoded only when it is used, so a split can list thousands of images at no memory cost.

    It stands in for a PIL image in `Sample.images`: `convert(mode)` (all that rft.rollout.encode_prompts
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


# ---------------------------------------------------------------------------------------------------------------
# FGVC-Aircraft
# ---------------------------------------------------------------------------------------------------------------


def fgvc_data_dir(root: str | Path | None) -> Path:
    """The official `data/` folder, given `fgvc-aircraft-2013b/`, its `data/`, or the folder that holds it."""
    if not root:
        raise DataError(f"task.root is not set for fgvc; {FGVC_FIX}")
    root = Path(root).expanduser()
    for cand in (root / "data", root, root / FGVC_DIR / "data"):
        if (cand / "images").is_dir() or (cand / "variants.txt").is_file():
            return cand
    raise DataError(f"FGVC-Aircraft not found at {root} (no data/images/ or data/variants.txt); {FGVC_FIX}")


def _read_lines(path: Path, fix: str) -> list[str]:
    if not path.is_file():
        raise DataError(f"missing file {path}; {fix}")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_fgvc_official(
    root: str | Path | None, *, level: str, splits: dict[str, str], crop_bottom: int
) -> tuple[dict[str, list[Sample]], tuple[str, ...]]:
    """Read FGVC-Aircraft 2013b from the official archive layout.

    Args:
        root: `fgvc-aircraft-2013b/`, its `data/` folder, or the folder holding `fgvc-aircraft-2013b/`.
        level: variant, family or manufacturer.
        splits: Task split name -> official split (train, val, trainval, test).
        crop_bottom: Pixels cropped off the bottom of each image when it is loaded.

    Returns:
        (task split -> samples in file order, the class list in its file's order).
    """
    data = fgvc_data_dir(root)
    classes = tuple(_read_lines(data / FGVC_CLASS_FILES[level], FGVC_FIX))
    known = set(classes)
    out: dict[str, list[Sample]] = {}
    for task_split, split in splits.items():
        if split not in FGVC_SPLITS:
            raise DataError(
                f"FGVC-Aircraft has no split {split!r}; use one of {FGVC_SPLITS} (task.train_split)"
            )
        path = data / f"images_{level}_{split}.txt"
        rows = []
        for lineno, line in enumerate(_read_lines(path, FGVC_FIX), 1):
            image_id, _, label = line.partition(" ")  # labels may contain spaces ("Cessna 172")
            label = label.strip()
            if label not in known:
                raise DataError(
                    f"{path}:{lineno}: label {label!r} is not in {data / FGVC_CLASS_FILES[level]}; "
                    "the annotation files do not match: re-download the archive"
                )
            image = data / "images" / f"{image_id}.jpg"
            if not image.is_file():
                raise DataError(f"{path}:{lineno}: image {image} does not exist; {FGVC_FIX}")
            rows.append(
                Sample(
                    uid=image_id,
                    images=(LazyImage(image, str(image), crop_bottom),),
                    question="",
                    answer=label,
                    label=label,
                )
            )
        out[task_split] = rows
    return out, classes


def _arrow_cell(column, row: int) -> object:
    return column[row].as_py()


def _hf_tables(cfg: TaskConfig) -> dict[str, tuple[object, object]]:
    """Split name -> (pyarrow Table, datasets Features) of a Hugging Face copy (see TaskConfig.hf_path)."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    def read(files: list[str]):
        tables = []
        for f in files:
            if f.endswith(".parquet"):
                tables.append(pq.read_table(f, memory_map=True))
            else:  # datasets' .arrow files are Arrow IPC streams
                with pa.memory_map(f) as src:
                    tables.append(pa.ipc.open_stream(src).read_all())
        table = pa.concat_tables(tables)
        return table, datasets.Features.from_arrow_schema(table.schema)

    if cfg.hf_files:
        out = {}
        for split, pattern in cfg.hf_files.items():
            files = sorted(glob.glob(str(Path(pattern).expanduser())))
            if not files:
                raise DataError(f"task.hf_files.{split}={pattern!r} matches no file; fix the path or glob")
            out[_SPLIT_ALIASES.get(split, split)] = read(files)
        return out
    path = Path(str(cfg.hf_path)).expanduser()
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        loaded = datasets.load_from_disk(str(path))  # Visual-RFT's DatasetDict.save_to_disk copies
    elif path.is_dir():
        files = sorted(str(p) for p in path.rglob("*") if p.suffix in (".parquet", ".arrow"))
        by_split: dict[str, list[str]] = {}
        for f in files:
            stem = Path(f).name.split(".")[0]
            split = re.split(r"[-_]", stem)[0].lower()
            by_split.setdefault(_SPLIT_ALIASES.get(split, split), []).append(f)
        if not by_split:
            raise DataError(
                f"task.hf_path={path} holds no .parquet or .arrow files; point it at the dataset folder"
            )
        return {split: read(fs) for split, fs in by_split.items()}
    else:
        try:
            loaded = datasets.load_dataset(str(cfg.hf_path))
        except Exception as err:  # offline, unknown id, ...: one message with the fix
            raise DataError(
                f"cannot load task.hf_path={cfg.hf_path!r} ({type(err).__name__}: {err}); download it first "
                "(HF_HUB_OFFLINE=0) or point task.hf_path at a local folder"
            ) from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict(train=loaded)
    return {_SPLIT_ALIASES.get(k, k): (ds.data.table, ds.features) for k, ds in loaded.items()}


def parse_label(value: object, names: list[str] | None, where: str) -> str:
    """A class name from an int (with ClassLabel names), a string, or Visual-RFT's `<answer>737-200</answer>`."""
    if isinstance(value, bool) or value is None:
        raise DataError(f"{where}: label {value!r} is neither a class index nor a class name")
    if isinstance(value, int):
        if not names or not 0 <= value < len(names):
            raise DataError(
                f"{where}: integer label {value} has no class name (the column is not a ClassLabel with "
                f"{value + 1}+ names); use a string label column (task.label_column)"
            )
        return names[value]
    text = str(value)
    match = _ANSWER_TAG.search(text)
    return (match.group(1) if match else text).strip()


def load_fgvc_hf(cfg: TaskConfig, splits: dict[str, str]) -> tuple[dict[str, list[Sample]], tuple[str, ...]]:
    """Read FGVC-Aircraft from a Hugging Face copy with the (image_column, label_column) mapping of `cfg`."""
    import datasets

    tables = _hf_tables(cfg)
    out: dict[str, list[Sample]] = {}
    classes: tuple[str, ...] = ()
    for task_split, split in splits.items():
        if split not in tables:
            raise DataError(
                f"the HF copy {cfg.hf_path or cfg.hf_files} has no split {split!r}; it has {sorted(tables)} "
                "(set task.train_split / eval.split, or task.hf_files)"
            )
        table, features = tables[split]
        for col in (cfg.image_column, cfg.label_column):
            if col not in table.column_names:
                raise DataError(
                    f"split {split!r} of {cfg.hf_path or cfg.hf_files} has no column {col!r}; its columns are "
                    f"{table.column_names} (set task.image_column / task.label_column)"
                )
        feature = features[cfg.label_column]
        names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
        if names:
            classes = tuple(names)
        image_col = table.column(cfg.image_column)
        rows = []
        for i, value in enumerate(table.column(cfg.label_column).to_pylist()):
            where = f"{cfg.hf_path or cfg.hf_files}[{split}][{i}]"
            label = parse_label(value, names, where)
            if not label:
                raise DataError(f"{where}: empty label in column {cfg.label_column!r}")
            image = LazyImage(functools.partial(_arrow_cell, image_col, i), where, cfg.crop_bottom)
            rows.append(Sample(uid=f"{split}-{i}", images=(image,), question="", answer=label, label=label))
        out[task_split] = rows
    if not classes:
        classes = tuple(sorted({s.label for rows in out.values() for s in rows}))
    known = set(classes)
    for rows in out.values():
        for s in rows:
            if s.label not in known:
                raise DataError(
                    f"sample {s.uid}: label {s.label!r} is not one of the {len(classes)} class names"
                )
    return out, classes


def make_fgvc(cfg: TaskConfig, splits: tuple[str, ...]) -> Task:
    wanted = {s: (cfg.train_split if s == "train" else s) for s in splits}
    if cfg.source == "official":
        out, classes = load_fgvc_official(
            cfg.root, level=cfg.annotation_level, splits=wanted, crop_bottom=cfg.crop_bottom
        )
    else:
        out, classes = load_fgvc_hf(cfg, wanted)
    for split, rows in out.items():
        if not rows:
            raise DataError(f"FGVC-Aircraft split {wanted[split]!r} is empty; check the annotation files")
        check_images(rows)
    return Task(
        name="fgvc",
        kind="classification",
        splits=out,
        object_noun="an aircraft",
        answer_slot="species name",  # Visual-RFT's prompt, verbatim
        classes=classes,
    )


# ---------------------------------------------------------------------------------------------------------------
# SAT
# ---------------------------------------------------------------------------------------------------------------


def sat_file(root: str | Path | None, split: str) -> Path:
    """The parquet file of a SAT split; root is its folder (or, for a single split, the file itself)."""
    if split not in SAT_FILES:
        raise DataError(
            f"SAT has no split {split!r}; use one of {sorted(SAT_FILES)} (task.train_split, eval.split)"
        )
    if not root:
        raise DataError(f"task.root is not set for sat; {SAT_FIX}")
    root = Path(root).expanduser()
    if root.is_file() and root.suffix == ".parquet":
        return root
    if not root.is_dir():
        raise DataError(f"SAT folder {root} does not exist; {SAT_FIX}")
    path = root / SAT_FILES[split]
    if not path.is_file():
        raise DataError(f"missing SAT file {path} (split {split!r}); {SAT_FIX}")
    return path


def read_parquet_rows(path: Path, columns: tuple[str, ...], first_n: int = 0):
    """The first `first_n` rows (0 = all) of `columns` as a pyarrow Table; DataError if a column is missing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:
        raise DataError(f"{path} is not a readable parquet file ({err}); re-download it") from None
    missing = [c for c in columns if c not in pf.schema_arrow.names]
    if missing:
        raise DataError(
            f"{path} lacks required column(s) {missing}; it has {pf.schema_arrow.names}. SAT needs {list(columns)}: "
            "use the array/SAT parquet files"
        )
    if not first_n:
        return pf.read(columns=list(columns))
    batches, n = [], 0
    for batch in pf.iter_batches(batch_size=min(first_n, 1024), columns=list(columns)):
        batches.append(batch.slice(0, first_n - n))
        n += batches[-1].num_rows
        if n >= first_n:
            break
    schema = pa.schema([pf.schema_arrow.field(c) for c in columns])
    return pa.Table.from_batches(batches, schema=schema)


def _list_cell(column, row: int, j: int) -> object:
    return column[row].values[j].as_py()


def shuffled_options(options: list[str], seed: int, uid: str) -> tuple[str, ...]:
    """The options in an order fixed by (run seed, uid): reproducible per question, different across seeds."""
    order = list(options)
    random.Random(f"options-{seed}-{uid}").shuffle(order)
    return tuple(order)


def load_sat_split(
    path: Path, split: str, *, seed: int, first_n: int, keep_multi_image: bool, shuffle: bool
) -> list[Sample]:
    """One SAT parquet file as Samples (uid `<split>-<row>`); multi-image rows dropped unless keep_multi_image."""
    import pyarrow.compute as pc

    table = read_parquet_rows(path, SAT_COLUMNS, first_n)
    images = table.column("image_bytes")  # kept chunked: one combined binary array could overflow 2 GiB
    n_images = pc.list_value_length(images).to_pylist()
    questions = table.column("question").to_pylist()
    answers = table.column("answers").to_pylist()
    correct = table.column("correct_answer").to_pylist()
    qtypes = table.column("question_type").to_pylist()
    rows = []
    for i in range(table.num_rows):
        k = n_images[i] or 0
        if k == 0:
            raise DataError(f"{path} row {i}: image_bytes is empty; every SAT question needs 1-2 images")
        if k > 1 and not keep_multi_image:
            continue
        opts = [str(a) for a in answers[i] or []]
        if str(correct[i]) not in opts:
            raise DataError(f"{path} row {i}: correct_answer {correct[i]!r} is not among answers {opts}")
        uid = f"{split}-{i}"
        rows.append(
            Sample(
                uid=uid,
                images=tuple(
                    LazyImage(functools.partial(_list_cell, images, i, j), f"{path} row {i} image {j}")
                    for j in range(k)
                ),
                question=str(questions[i]),
                answer=str(correct[i]),
                options=shuffled_options(opts, seed, uid) if shuffle else tuple(opts),
                qtype=str(qtypes[i] or ""),
            )
        )
    return rows


def make_sat(cfg: TaskConfig, seed: int, splits: tuple[str, ...]) -> Task:
    out = {}
    for split in splits:
        source = cfg.train_split if split == "train" else split
        path = sat_file(cfg.root, source)
        rows = load_sat_split(
            path, source, seed=seed, first_n=cfg.first_n if split == "train" else 0,
            keep_multi_image=cfg.keep_multi_image, shuffle=cfg.shuffle_options,
        )  # fmt: skip
        if not rows:
            raise DataError(
                f"SAT split {source!r} ({path}) is empty after filtering"
                + (
                    ""
                    if cfg.keep_multi_image
                    else " to single-image questions; set task.keep_multi_image=true"
                )
                + (f" or raise task.first_n={cfg.first_n}" if cfg.first_n and split == "train" else "")
            )
        check_images(rows)
        out[split] = rows
    return Task(name="sat", kind="multiple_choice", splits=out)


# ---------------------------------------------------------------------------------------------------------------
# Banner: a generic local format
# ---------------------------------------------------------------------------------------------------------------


def load_banner_jsonl(root: str | Path | None, split: str, *, seed: int, shuffle: bool) -> list[Sample]:
    """Read `<root>/<split>.jsonl` (the format in docs/data.md); image paths are relative to root."""
    if not root:
        raise DataError(
            "task.root is not set for banner; pass task.root=<folder with train.jsonl, test.jsonl>"
        )
    root = Path(root).expanduser()
    path = root / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(f"missing file {path} (split {split!r}); see docs/data.md for the banner format")
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not valid JSON ({err})") from None
        for key in ("image", "question", "answer"):
            if not rec.get(key):
                raise DataError(f"{where}: missing field {key!r}; every row needs image, question and answer")
        options = [str(o) for o in rec.get("options") or []]
        if not options:
            raise DataError(
                f"{where}: no 'options'; open-ended questions are not supported yet (the prompt template is "
                "multiple-choice): add an options list that contains the answer"
            )
        answer = str(rec["answer"])
        if (
            answer not in options
            and len(answer) == 1
            and answer.isalpha()
            and ord(answer.upper()) - 65 < len(options)
        ):
            answer = options[ord(answer.upper()) - 65]  # a letter answer
        if answer not in options:
            raise DataError(f"{where}: answer {answer!r} is not one of the options {options}")
        paths = rec["image"] if isinstance(rec["image"], list) else [rec["image"]]
        images = []
        for p in paths:
            image = root / p
            if not image.is_file():
                raise DataError(
                    f"{where}: image {image} does not exist; fix the 'image' path (relative to {root})"
                )
            images.append(LazyImage(image, str(image)))
        uid = str(rec.get("id") or f"{split}-{lineno}")
        rows.append(
            Sample(
                uid=uid,
                images=tuple(images),
                question=str(rec["question"]),
                answer=answer,
                options=shuffled_options(options, seed, uid) if shuffle else tuple(options),
                qtype=str(rec.get("type") or ""),
            )
        )
    return rows


def make_banner(cfg: TaskConfig, seed: int, splits: tuple[str, ...]) -> Task:
    out = {}
    for split in splits:
        rows = load_banner_jsonl(cfg.root, split, seed=seed, shuffle=cfg.shuffle_options)
        if not rows:
            raise DataError(f"banner split {split!r} ({cfg.root}/{split}.jsonl) has no rows")
        check_images(rows)
        out[split] = rows
    return Task(name="banner", kind="multiple_choice", splits=out)


# ---------------------------------------------------------------------------------------------------------------
# Banner: synthetic advertising banners
# ---------------------------------------------------------------------------------------------------------------

PRODUCTS = ("SHOES", "BAG", "WATCH", "LAMP", "CHAIR", "PHONE", "SOFA", "DRESS", "HAT", "BIKE")
CTAS = ("BUY", "SHOP", "GO", "SAVE", "GET", "ORDER")
BUTTON_COLOURS = ("red", "blue", "green", "orange", "purple")
BANNER_QTYPES = ("discount_by_button", "lower_price", "larger_discount", "button_text", "sale_price")


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _centered_text(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, fill) -> None:
    font = _font(size)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text(
        (xy[0] - (right - left) / 2 - left, xy[1] - (bottom - top) / 2 - top), text, font=font, fill=fill
    )


def render_banner(rng: random.Random, height: int) -> tuple[Image.Image, list[dict]]:
    """A 2:1 banner with a logo and two product panels (name, price, discount badge, call-to-action button).

    Returns:
        (the image, one dict per panel: product, price, discount, cta, button colour), left panel first.
    """
    W, H = 2 * height, height
    bg = tuple(rng.randint(225, 250) for _ in range(3))
    img = Image.new("RGB", (W, H), bg)
    draw = ImageDraw.Draw(img)
    # Logo: a small coloured shape in the top-left corner.
    _draw_shape(
        draw, rng.choice(OBJECT_SHAPES), 0.07 * H, 0.08 * H, 0.055 * H, COLOURS[rng.choice(sorted(COLOURS))]
    )
    products = rng.sample(PRODUCTS, 2)
    prices = rng.sample(range(20, 200, 10), 2)
    discounts = rng.sample(range(10, 80, 10), 2)
    ctas = rng.sample(CTAS, 2)
    buttons = rng.sample(BUTTON_COLOURS, 2)
    panels = []
    for k in range(2):
        x0 = k * height
        cx = x0 + height / 2
        draw.rectangle((x0 + 3, 0.17 * H, x0 + height - 3, H - 3), outline=(180, 180, 180))
        _centered_text(draw, (cx, 0.28 * H), products[k], max(8, H // 9), (20, 20, 20))
        _centered_text(draw, (cx - 0.2 * height, 0.52 * H), f"${prices[k]}", max(9, H // 7), (10, 10, 10))
        badge = (cx + 0.04 * height, 0.43 * H, cx + 0.42 * height, 0.61 * H)
        draw.rectangle(badge, fill=(250, 215, 40))
        _centered_text(
            draw, ((badge[0] + badge[2]) / 2, 0.52 * H), f"-{discounts[k]}%", max(8, H // 10), (0, 0, 0)
        )
        button = (cx - 0.32 * height, 0.7 * H, cx + 0.32 * height, 0.9 * H)
        draw.rectangle(button, fill=COLOURS[buttons[k]])
        _centered_text(draw, (cx, 0.8 * H), ctas[k], max(8, H // 10), (255, 255, 255))
        panels.append(
            {
                "product": products[k],
                "price": prices[k],
                "discount": discounts[k],
                "cta": ctas[k],
                "button": buttons[k],
            }
        )
    return img, panels


def _banner_question(rng: random.Random, panels: list[dict]) -> tuple[str, str, list[str], str]:
    """(question, answer, options, qtype) relating at least two elements of the banner."""
    qtype = rng.choice(BANNER_QTYPES)
    a, b = panels
    if qtype == "discount_by_button":
        p = rng.choice(panels)
        question = f"What discount is shown next to the {p['button']} button?"
        pool = [f"-{d}%" for d in range(10, 80, 10) if d not in (a["discount"], b["discount"])]
        options = [f"-{a['discount']}%", f"-{b['discount']}%", *rng.sample(pool, 2)]
        answer = f"-{p['discount']}%"
    elif qtype == "lower_price":
        question = "Which product has the lower price?"
        options = [a["product"], b["product"]]
        answer = min(panels, key=lambda p: p["price"])["product"]
    elif qtype == "larger_discount":
        question = "Which product has the larger discount?"
        options = [a["product"], b["product"]]
        answer = max(panels, key=lambda p: p["discount"])["product"]
    elif qtype == "button_text":
        p = rng.choice(panels)
        question = f"What does the button under the {p['product']} say?"
        pool = [c for c in CTAS if c not in (a["cta"], b["cta"])]
        options = [a["cta"], b["cta"], *rng.sample(pool, 2)]
        answer = p["cta"]
    else:  # sale_price: read a price and its discount, then compute
        p = rng.choice(panels)
        question = f"What does the {p['product']} cost after its discount?"
        sale = p["price"] * (100 - p["discount"]) / 100
        wrong = {p["price"], round(p["price"] * p["discount"] / 100, 2), round(sale + 10, 2)}
        options = [f"${v:g}" for v in [sale, *sorted(wrong - {sale})]][:4]
        answer = f"${sale:g}"
    rng.shuffle(options)
    return question, answer, options, qtype


def make_banner_synth(train_size: int, test_size: int, data_seed: int, image_size: int) -> Task:
    """The synthetic Banner Analysis stand-in: `image_size` is the banner height (the width is twice it)."""
    splits = {}
    for split, n in (("train", train_size), ("test", test_size)):
        rows = []
        for i in range(n):
            rng = random.Random(f"banner_synth-{data_seed}-{split}-{i}")
            img, panels = render_banner(rng, image_size)
            question, answer, options, qtype = _banner_question(rng, panels)
            rows.append(
                Sample(
                    uid=f"{split}-{i}",
                    images=(img,),
                    question=question,
                    answer=answer,
                    options=tuple(options),
                    qtype=qtype,
                )  # fmt: skip
            )
        splits[split] = rows
    return Task(name="banner_synth", kind="multiple_choice", splits=splits)


def build_dataset_task(cfg: TaskConfig, *, seed: int, splits: tuple[str, ...]) -> Task:
    """The task `cfg.name` (fgvc, sat, banner, banner_synth) with the given splits (rft.tasks.build_task)."""
    splits = tuple(dict.fromkeys(splits))
    if cfg.name == "fgvc":
        return make_fgvc(cfg, splits)
    if cfg.name == "sat":
        return make_sat(cfg, seed, splits)
    if cfg.name == "banner":
        return make_banner(cfg, seed, splits)
    if cfg.name == "banner_synth":
        return make_banner_synth(cfg.train_size, cfg.test_size, cfg.data_seed, cfg.image_size)
    raise DataError(f"rft.datasets does not build task {cfg.name!r}")
