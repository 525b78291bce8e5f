"""The SAT family: the real spatial benchmark (`sat`) and its synthetic stand-in (`sat_synth`).

- `sat`: SAT (Ray et al., arXiv 2412.07755) from the `array/SAT` parquet files, streamed in bounded memory with
  the images read only when used. The train pool keeps single-image questions by default (VisualThinker-R1-Zero's
  choice); evaluation keeps the 2-image ones too. Options shuffled per question, seeded by the run seed and the uid.
- `sat_synth`: two rendered objects and a left/right or above/below question, asked as multiple choice with the
  options shuffled; deterministic from the data seed.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from PIL import ImageDraw

from rft.config import TaskConfig
from rft.data.base import DataError, Sample, Task, option_problem, shuffled_options
from rft.data.draw import COLOURS, OBJECT_SHAPES, draw_shape, noisy_background
from rft.data.images import LazyImage, ParquetCell, ParquetImages

log = logging.getLogger(__name__)

SAT_DIR = "SAT"
SAT_FILES = {"train": "SAT_train.parquet", "val": "SAT_val.parquet", "test": "SAT_test.parquet",
             "static": "SAT_static.parquet"}  # fmt: skip
SAT_COLUMNS = ("image_bytes", "question", "answers", "correct_answer", "question_type")
SAT_FIX = "run `make data-sat` (or `python experiments/data.py sat --dest data/`) or pass task.root=<folder>"


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


# Rows per streamed batch: SAT rows hold 1-2 encoded images (~100 KB each), so a batch stays a few MB.
SAT_BATCH_ROWS = 64


def open_parquet(path: Path, columns: tuple[str, ...]):
    """A `pyarrow.parquet.ParquetFile` set up to stream pages; DataError if it is unreadable or lacks a column."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    except Exception as err:
        raise DataError(f"{path} is not a readable parquet file ({err}); re-download it") from None
    missing = [c for c in columns if c not in pf.schema_arrow.names]
    if missing:
        raise DataError(
            f"{path} lacks required column(s) {missing}; it has {pf.schema_arrow.names}. SAT needs {list(columns)}: "
            "use the array/SAT parquet files"
        )
    return pf


def load_sat_split(
    path: Path, split: str, *, seed: int, first_n: int, multi_image: bool, shuffle: bool
) -> list[Sample]:
    """One SAT parquet file as Samples (uid `<split>-<row>`), read in bounded memory.

    The file is streamed in batches of `SAT_BATCH_ROWS` rows (one row group of the 172K-row train file is too
    large to read whole). Each kept row's text is kept and its images header-checked, then dropped: a sample's
    images are `ParquetImages` cells, fetched again only when used (`rft.data.images.verify_images`).

    Args:
        first_n: Read only the first N rows (0 = all), before filtering (VisualThinker-R1-Zero).
        multi_image: Keep the rows with 2 images (motion questions); false keeps single-image rows only.
        shuffle: Shuffle the options per question, seeded by (seed, uid).
    """
    import pyarrow.compute as pc

    pf = open_parquet(path, SAT_COLUMNS)
    store = ParquetImages(path, "image_bytes", SAT_BATCH_ROWS)
    rows: list[Sample] = []
    dropped: list[str] = []  # rows whose options would let a wrong answer score (`option_problem`)
    start = 0
    for batch in pf.iter_batches(batch_size=SAT_BATCH_ROWS, columns=list(SAT_COLUMNS)):
        if first_n:
            batch = batch.slice(0, first_n - start)
        cells = batch.column("image_bytes")
        n_images = pc.list_value_length(cells).to_pylist()
        questions, answers, correct, qtypes = (
            batch.column(c).to_pylist() for c in ("question", "answers", "correct_answer", "question_type")
        )
        for r in range(batch.num_rows):
            i, k = start + r, n_images[r] or 0
            if k == 0:
                raise DataError(f"{path} row {i}: image_bytes is empty; every SAT question needs 1-2 images")
            if k > 1 and not multi_image:
                continue
            opts = [str(a) for a in answers[r] or []]
            if str(correct[r]) not in opts:
                raise DataError(f"{path} row {i}: correct_answer {correct[r]!r} is not among answers {opts}")
            names = [f"{path} row {i} image {j}" for j in range(k)]
            for j, name in enumerate(names):  # the header check, while the bytes are at hand
                LazyImage(cells[r].values[j].as_py(), name).check()
            uid = f"{split}-{i}"
            shown = shuffled_options(opts, seed, uid) if shuffle else tuple(opts)
            if problem := option_problem(shown, shuffle):  # upstream rows may have these: drop, never score
                dropped.append(f"row {i}: {problem}")
                continue
            rows.append(
                Sample(
                    uid=uid,
                    images=tuple(LazyImage(ParquetCell(store, i, j), name) for j, name in enumerate(names)),
                    question=str(questions[r]),
                    answer=str(correct[r]),
                    options=shown,
                    qtype=str(qtypes[r] or ""),
                )
            )
        start += batch.num_rows
        if first_n and start >= first_n:
            break
    if dropped:
        log.warning(
            "%s: dropped %d question(s) whose options would let a wrong answer score as correct, e.g. %s",
            path,
            len(dropped),
            "; ".join(dropped[:3]),
        )
    return rows


def make_sat(cfg: TaskConfig, seed: int, splits: tuple[str, ...]) -> Task:
    """SAT's splits: the train pool (`task.train_split`, its first `task.first_n` rows, single-image unless
    `task.keep_multi_image`) and the evaluated splits (2-image questions kept unless `task.eval_multi_image=false`)."""
    out = {}
    for split in splits:
        train = split == "train"
        source = cfg.train_split if train else split
        path = sat_file(cfg.root, source)
        multi = cfg.keep_multi_image if train else cfg.eval_multi_image
        rows = load_sat_split(
            path, source, seed=seed, first_n=cfg.first_n if train else 0, multi_image=multi,
            shuffle=cfg.shuffle_options,
        )  # fmt: skip
        if not rows:
            key = "task.keep_multi_image" if train else "task.eval_multi_image"
            raise DataError(
                f"SAT split {source!r} ({path}) is empty after filtering"
                + ("" if multi else f" to single-image questions; set {key}=true")
                + (f" or raise task.first_n={cfg.first_n}" if cfg.first_n and train else "")
            )
        out[split] = rows
    return Task(name="sat", kind="multiple_choice", splits=out)


def _spatial_row(rng: random.Random, size: int, uid: str) -> Sample:
    names = rng.sample([(c, s) for c in sorted(COLOURS) for s in OBJECT_SHAPES], 2)
    img = noisy_background(rng, size)
    draw = ImageDraw.Draw(img)
    r = size * 0.12
    qtype = rng.choice(("left_right", "above_below"))
    # Keep the two objects clearly separated along the asked axis.
    lo, hi = r + 2, size - r - 2
    a_main, b_main = rng.uniform(lo, size / 2 - r), rng.uniform(size / 2 + r, hi)
    if rng.random() < 0.5:
        a_main, b_main = b_main, a_main
    a_off, b_off = rng.uniform(lo, hi), rng.uniform(lo, hi)
    if qtype == "left_right":
        pos_a, pos_b = (a_main, a_off), (b_main, b_off)
        answer = "left" if a_main < b_main else "right"
        options = ["left", "right"]
    else:
        pos_a, pos_b = (a_off, a_main), (b_off, b_main)
        answer = "above" if a_main < b_main else "below"
        options = ["above", "below"]
    for (colour, shape), (x, y) in zip(names, (pos_a, pos_b), strict=True):
        draw_shape(draw, shape, x, y, r, COLOURS[colour])
    rng.shuffle(options)
    (ca, sa), (cb, sb) = names
    relation = "to the left or to the right of" if qtype == "left_right" else "above or below"
    question = f"Is the {ca} {sa} {relation} the {cb} {sb}?"
    return Sample(
        uid=uid, images=(img,), question=question, answer=answer, options=tuple(options), qtype=qtype
    )


def make_sat_synth(
    train_size: int, test_size: int, data_seed: int, image_size: int, val_size: int = 0
) -> Task:
    """The spatial multiple-choice stand-in for SAT; a `val` split too when `val_size` > 0."""
    sizes = [("train", train_size), ("test", test_size)] + ([("val", val_size)] if val_size else [])
    splits = {
        split: [
            _spatial_row(random.Random(f"sat_synth-{data_seed}-{split}-{i}"), image_size, f"{split}-{i}")
            for i in range(n)
        ]
        for split, n in sizes
    }
    return Task(name="sat_synth", kind="multiple_choice", splits=splits)
