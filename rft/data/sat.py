"""The SAT family: the real spatial benchmark (`sat`) and its synthetic stand-in (`sat_synth`).

- `sat`: SAT (Ray et al., arXiv 2412.07755) from the `array/SAT` parquet files. Single-image questions only by
  default (VisualThinker-R1-Zero's choice); options shuffled per question, seeded by the run seed and the uid.
- `sat_synth`: two rendered objects and a left/right or above/below question, asked as multiple choice with the
  options shuffled; deterministic from the data seed.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

from PIL import ImageDraw

from rft.config import TaskConfig
from rft.data.base import DataError, Sample, Task, shuffled_options
from rft.data.draw import COLOURS, OBJECT_SHAPES, draw_shape, noisy_background
from rft.data.images import LazyImage, check_images

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


def make_sat_synth(train_size: int, test_size: int, data_seed: int, image_size: int) -> Task:
    """The spatial multiple-choice stand-in for SAT."""
    splits = {
        split: [
            _spatial_row(random.Random(f"sat_synth-{data_seed}-{split}-{i}"), image_size, f"{split}-{i}")
            for i in range(n)
        ]
        for split, n in (("train", train_size), ("test", test_size))
    }
    return Task(name="sat_synth", kind="multiple_choice", splits=splits)
