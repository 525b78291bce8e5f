"""Tests for the real datasets (rft.data.fgvc, sat, banner) and experiments/data.py on fixtures written here in each official format.

Fixtures: FGVC-Aircraft 2013b's archive layout (JPEGs with a red 20-px bottom banner, labels with spaces), HF
parquet and save_to_disk copies (ClassLabel ints, Visual-RFT `<answer>` solutions, PNG bytes), array/SAT parquet
files (1-2 images per row, raw bytes or {"bytes"} structs, JPEG and PNG) and the local banner JSONL format. Every
bad input must raise one DataError that names the file or field and the fix. The smoke runs (`slow`) push each
task x method through rft.pipeline.run on the tiny model; nothing touches the network.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from experiments import data as data_cli
from experiments.schemas import to_run_config
from rft.config import (
    BudgetConfig,
    EvalConfig,
    LoggerConfig,
    ModelConfig,
    RFTConfig,
    RunConfig,
    SFTConfig,
    TaskConfig,
    ZeroShotConfig,
)
from rft.data.base import DataError, accepted_answers
from rft.data.budget import BudgetError, apply_budget
from rft.data.fgvc import hf_split_name
from rft.data.images import LazyImage, ParquetCell, verify_images
from rft.data.registry import TASKS, build_task
from rft.rewards import normalize_answer

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ["707-320", "Cessna 172", "F/A-18"]
FAMILIES = {"707-320": "Boeing 707", "Cessna 172": "Cessna 172", "F/A-18": "F/A-18"}
MAKERS = {"707-320": "Boeing", "Cessna 172": "Cessna", "F/A-18": "McDonnell Douglas"}
PER_SPLIT = {"train": 4, "val": 1, "test": 2}
BANNER_RGB = (255, 0, 0)
W, H = 64, 60  # 40 px of aircraft above the 20-px banner

# Visual-RFT's classification prompt (shared/docs/study.md), character for character.
VISUAL_RFT_PROMPT = (
    "This is an image containing an aircraft. Please identify the model of the aircraft based on the image.\n"
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags.The output "
    "answer format should be as follows:\n<think> ... </think> <answer>species name</answer>\n"
    "Please strictly follow the format."
)


def image_bytes(fmt: str, colour=(40, 90, 200), size=(W, H), banner: bool = False) -> bytes:
    img = Image.new("RGB", size, colour)
    if banner:
        img.paste(BANNER_RGB, (0, size[1] - 20, size[0], size[1]))
    buf = io.BytesIO()
    img.save(buf, format=fmt, quality=95) if fmt == "JPEG" else img.save(buf, format=fmt)
    return buf.getvalue()


def write_fgvc(root: Path) -> Path:
    """The official fgvc-aircraft-2013b/ layout; returns the fgvc-aircraft-2013b folder."""
    data = root / "fgvc-aircraft-2013b" / "data"
    (data / "images").mkdir(parents=True)
    (data / "variants.txt").write_text("\n".join(VARIANTS) + "\n")
    (data / "families.txt").write_text("\n".join(sorted(set(FAMILIES.values()))) + "\n")
    (data / "manufacturers.txt").write_text("\n".join(sorted(set(MAKERS.values()))) + "\n")
    ids: dict[str, list[tuple[str, str]]] = {s: [] for s in PER_SPLIT}
    n = 1000000
    for split, per in PER_SPLIT.items():
        for k, variant in enumerate(VARIANTS):
            for _ in range(per):
                n += 1
                (data / "images" / f"{n}.jpg").write_bytes(
                    image_bytes("JPEG", (40 + 60 * k, 90, 200), banner=True)
                )
                ids[split].append((str(n), variant))
    ids["trainval"] = ids["train"] + ids["val"]
    for level, names in (("variant", None), ("family", FAMILIES), ("manufacturer", MAKERS)):
        for split, rows in ids.items():
            lines = [f"{i} {names[v] if names else v}" for i, v in rows]
            (data / f"images_{level}_{split}.txt").write_text("\n".join(lines) + "\n")
    return data.parent


SAT_ROWS = [
    # (n_images, question, answers, correct, qtype)
    (1, "Is the lamp left of the sofa?", ["left", "right"], "right", "obj_relation"),
    (1, "How many chairs are there?", ["one", "two", "three", "four"], "three", "count"),
    (2, "Did the camera move forward?", ["yes", "no"], "yes", "ego_movement"),
    (1, "Which object is closer?", ["the lamp", "the sofa", "the table", "the rug"], "the rug", "depth"),
    (1, "Is the table above the rug?", ["above", "below"], "above", "obj_relation"),
    (2, "Which way did the box move?", ["left", "right", "up"], "up", "obj_movement"),
]


def write_sat(folder: Path, *, struct_cells: bool = False, rows=SAT_ROWS, drop: str | None = None) -> Path:
    """SAT_{train,val,test}.parquet in array/SAT's columns; cells are raw bytes or {"bytes", "path"} structs."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, repeat in (("train", 4), ("val", 2), ("test", 1)):
        cells, questions, answers, correct, qtypes = [], [], [], [], []
        for r in range(repeat):
            for i, (k, q, opts, c, t) in enumerate(rows):
                imgs = [image_bytes("PNG" if j else "JPEG", (10 * i, 20 * r, 100 + j)) for j in range(k)]
                cells.append([{"bytes": b, "path": None} for b in imgs] if struct_cells else imgs)
                questions.append(q)
                answers.append(opts)
                correct.append(c)
                qtypes.append(t)
        cols = {"image_bytes": cells, "question": questions, "answers": answers, "correct_answer": correct,
                "question_type": qtypes}  # fmt: skip
        if drop:
            del cols[drop]
        pq.write_table(pa.table(cols), folder / f"SAT_{split}.parquet")
    return folder


def write_banner(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    for split, n in (("train", 6), ("test", 3)):
        lines = []
        for i in range(n):
            name = f"images/{split}_{i}.{'png' if i % 2 else 'jpg'}"
            (root / name).write_bytes(
                image_bytes("PNG" if i % 2 else "JPEG", (200, 20 * i, 50), size=(96, 48))
            )
            rec = {"image": name, "question": f"What discount is shown on banner {i}?",
                   "options": ["-10%", "-20%", "-30%"], "answer": "-20%" if i % 2 else "C", "type": f"t{i % 2}"}  # fmt: skip
            lines.append(json.dumps(rec))
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def fgvc_root(tmp_path_factory) -> Path:
    return write_fgvc(tmp_path_factory.mktemp("fgvc"))


@pytest.fixture(scope="module")
def sat_root(tmp_path_factory) -> Path:
    return write_sat(tmp_path_factory.mktemp("sat") / "SAT")


@pytest.fixture(scope="module")
def banner_root(tmp_path_factory) -> Path:
    return write_banner(tmp_path_factory.mktemp("banner"))


def fgvc(root, **kw) -> TaskConfig:
    return TaskConfig(name="fgvc", root=str(root), **kw)


def compose_run(overrides: list[str]):
    """The typed RunConfig Hydra composes from conf/ with these command-line overrides."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return to_run_config(compose(config_name="config", overrides=overrides))


def write_hf_copy(
    path: Path, labels: dict[str, list[str]], *, column: str = "solution", banner: bool = True
) -> Path:
    """An HF copy as parquet files `<split>-00000-of-00001.parquet`; labels in Visual-RFT's `<answer>` form when
    column is "solution" (its 4-shot copy: image/problem/solution), plain strings otherwise."""
    import datasets

    path.mkdir(parents=True, exist_ok=True)
    for split, names in labels.items():
        rows = {
            "image": [{"bytes": image_bytes("JPEG", banner=banner), "path": None}] * len(names),
            "problem": ["This is an image containing an aircraft. ..."] * len(names),
            column: [f"<answer>{n}</answer>" if column == "solution" else n for n in names],
        }
        feats = datasets.Features({"image": datasets.Image(), "problem": datasets.Value("string"),
                                   column: datasets.Value("string")})  # fmt: skip
        datasets.Dataset.from_dict(rows, features=feats).to_parquet(
            str(path / f"{split}-00000-of-00001.parquet")
        )
    return path


# ---------------------------------------------------------------------------------------------------------------
# FGVC-Aircraft
# ---------------------------------------------------------------------------------------------------------------


def test_fgvc_official_layout(fgvc_root: Path) -> None:
    task = build_task(fgvc(fgvc_root), splits=("train", "test"))
    assert task.kind == TASKS["fgvc"].kind == "classification"
    assert task.classes == tuple(VARIANTS)
    assert len(task.split("train")) == 12 and len(task.split("test")) == 6
    assert {s.label for s in task.split("train")} == set(VARIANTS)  # "Cessna 172" kept whole
    s = task.split("test")[0]
    assert s.answer == s.label and s.uid.isdigit() and isinstance(s.images[0], LazyImage)
    # root may also be the data/ folder or the folder above; other levels and splits
    assert len(build_task(fgvc(fgvc_root / "data")).split("train")) == 12
    assert len(build_task(fgvc(fgvc_root.parent)).split("train")) == 12
    fam = build_task(fgvc(fgvc_root, annotation_level="manufacturer", train_split="trainval"))
    assert len(fam.split("train")) == 15 and "McDonnell Douglas" in fam.classes


def test_fgvc_prompt_is_visual_rft_verbatim(fgvc_root: Path) -> None:
    task = build_task(fgvc(fgvc_root))
    assert task.prompt(task.split("test")[0], think=True) == VISUAL_RFT_PROMPT


def test_fgvc_banner_is_cropped(fgvc_root: Path) -> None:
    lazy = build_task(fgvc(fgvc_root)).split("test")[0].images[0]
    img = lazy.convert("RGB")
    assert img.size == (W, H - 20)
    r, g, b = img.getpixel((W // 2, H - 21))  # the last row left must be aircraft, not banner red
    assert r < 200 and b > 150
    raw = LazyImage(lazy.source, "raw").convert("RGB")
    assert raw.size == (W, H) and raw.getpixel((W // 2, H - 5))[0] > 200  # the fixture does have a banner
    assert lazy.numpy().shape == (H - 20, W, 3)


def test_fgvc_kshot_balanced_and_reproducible(fgvc_root: Path) -> None:
    pool = build_task(fgvc(fgvc_root)).split("train")
    for k in (1, 2, 4):
        picked = apply_budget(pool, "shots", k, seed=0)
        counts = {c: sum(s.label == c for s in picked) for c in VARIANTS}
        assert counts == dict.fromkeys(VARIANTS, k)
        assert [s.uid for s in picked] == [s.uid for s in apply_budget(pool, "shots", k, seed=0)]
    one, two = apply_budget(pool, "shots", 1, seed=0), apply_budget(pool, "shots", 2, seed=0)
    assert {s.uid for s in one} <= {s.uid for s in two}  # nested budgets
    draws = {tuple(sorted(s.uid for s in apply_budget(pool, "shots", 2, seed=seed))) for seed in range(4)}
    assert len(draws) > 1
    with pytest.raises(BudgetError, match="budget.size<=4"):
        apply_budget(pool, "shots", 5, seed=0)


def test_fgvc_hf_parquet_classlabel(tmp_path: Path) -> None:
    import datasets

    feats = datasets.Features({"img": datasets.Image(), "cls": datasets.ClassLabel(names=VARIANTS)})
    for split, n in (("train", 6), ("test", 3)):
        rows = {
            "img": [{"bytes": image_bytes("PNG", banner=True), "path": None}] * n,
            "cls": [i % 3 for i in range(n)],
        }
        datasets.Dataset.from_dict(rows, features=feats).to_parquet(
            str(tmp_path / f"{split}-00000-of-00001.parquet")
        )
    cfg = fgvc(None, source="hf", hf_path=str(tmp_path), image_column="img", label_column="cls")
    task = build_task(cfg)
    assert task.classes == tuple(VARIANTS) and len(task.split("train")) == 6
    assert task.split("test")[1].answer == "Cessna 172"
    assert task.split("test")[0].images[0].convert("RGB").size == (W, H - 20)
    with pytest.raises(DataError, match="no column 'label'.*task.image_column / task.label_column"):
        build_task(fgvc(None, source="hf", hf_path=str(tmp_path), image_column="img"))


def test_fgvc_hf_visual_rft_solution(tmp_path: Path) -> None:
    import datasets

    feats = datasets.Features({"image": datasets.Image(), "problem": datasets.Value("string"),
                               "solution": datasets.Value("string")})  # fmt: skip
    rows = {"image": [{"bytes": image_bytes("JPEG"), "path": None}] * 3, "problem": ["p"] * 3,
            "solution": ["<answer>737-200</answer>", "<answer> Cessna 172 </answer>", "<answer>A300B4</answer>"]}  # fmt: skip
    datasets.DatasetDict(train=datasets.Dataset.from_dict(rows, features=feats)).save_to_disk(
        str(tmp_path / "v")
    )
    cfg = fgvc(None, source="hf", hf_path=str(tmp_path / "v"), label_column="solution", crop_bottom=0)
    task = build_task(cfg, splits=("train",))
    assert [s.answer for s in task.split("train")] == ["737-200", "Cessna 172", "A300B4"]
    assert task.classes == ("737-200", "A300B4", "Cessna 172")
    with pytest.raises(DataError, match="has no split 'test'"):
        build_task(cfg, splits=("train", "test"))


def test_fgvc_prompt_names_the_annotation_level(fgvc_root: Path) -> None:
    for level in ("family", "manufacturer"):
        task = build_task(fgvc(fgvc_root, annotation_level=level))
        s = task.split("test")[0]
        assert task.prompt(s, think=True) == VISUAL_RFT_PROMPT.replace(
            "the model of", f"the {level} of"
        ).replace("species name", f"{level} name")
        assert task.prompt(s, think=False).startswith(
            f"This is an image containing an aircraft. Please identify the {level} of the aircraft based on the image.\n"
        )
        assert task.prompt(s, think=False).endswith(
            f"<answer>{level} name</answer>\nPlease strictly follow the format."
        )


def test_fgvc_visualrft_setup_trains_on_the_hf_copy_and_evaluates_the_official_test_split(
    fgvc_root: Path, tmp_path: Path
) -> None:
    hf = write_hf_copy(tmp_path / "virft", {"train": VARIANTS * 2})  # Visual-RFT's copy: a train split only
    cfg = compose_run(["task=fgvc_visualrft", f"task.root={fgvc_root}", f"task.hf_path={hf}"]).task
    assert (cfg.name, cfg.source, cfg.train_source) == ("fgvc", "official", "hf")
    assert (cfg.label_column, cfg.crop_bottom) == ("solution", 0)
    task = build_task(cfg, splits=("train", "test"))
    train, test = task.split("train"), task.split("test")
    assert [s.uid for s in train] == [f"train-{i}" for i in range(6)] and [
        s.label for s in train
    ] == VARIANTS * 2
    assert len(test) == 6 and all(s.uid.isdigit() for s in test)  # the archive's images_variant_test.txt
    assert task.classes == tuple(VARIANTS)
    hf_707, official_707 = (next(s for s in rows if s.label == "707-320") for rows in (train, test))
    assert (
        "Boeing 707-320" in hf_707.aliases and hf_707.aliases == official_707.aliases
    )  # one matcher for both
    assert task.prompt(test[0], think=True) == VISUAL_RFT_PROMPT
    assert (
        train[0].images[0].convert("RGB").size == test[0].images[0].convert("RGB").size == (W, H)
    )  # uncropped
    cropped = build_task(dataclasses.replace(cfg, crop_bottom=20), splits=("train", "test"))
    assert {cropped.split(k)[0].images[0].convert("RGB").size for k in ("train", "test")} == {(W, H - 20)}
    # a copy whose labels are not the archive's class names
    write_hf_copy(tmp_path / "bad", {"train": ["707-320", "Concorde"]})
    with pytest.raises(
        DataError, match="label 'Concorde' is not an FGVC-Aircraft variant name .*variants.txt"
    ):
        build_task(dataclasses.replace(cfg, hf_path=str(tmp_path / "bad")), splits=("train", "test"))
    with pytest.raises(Exception, match="train_source='web' must be official, hf or null"):
        dataclasses.replace(cfg, train_source="web")


def test_fgvc_hf_copy_at_family_and_manufacturer_level(fgvc_root: Path, tmp_path: Path) -> None:
    hf = write_hf_copy(tmp_path / "copy", {"train": VARIANTS * 2, "test": VARIANTS}, column="variant")
    base = dict(source="hf", hf_path=str(hf), label_column="variant", crop_bottom=0)
    fam = build_task(fgvc(fgvc_root, annotation_level="family", **base))
    assert [s.label for s in fam.split("test")] == [FAMILIES[v] for v in VARIANTS]
    assert fam.classes == tuple(sorted(set(FAMILIES.values())))  # families.txt
    fa18 = next(s for s in fam.split("test") if s.label == "F/A-18")
    assert "McDonnell Douglas F/A-18" in fa18.aliases
    maker = build_task(fgvc(fgvc_root, annotation_level="manufacturer", **base))
    assert [s.label for s in maker.split("train")] == [MAKERS[v] for v in VARIANTS] * 2
    # a copy already labelled with families reads as it is
    fam_copy = write_hf_copy(tmp_path / "fam", {"test": sorted(set(FAMILIES.values()))}, column="variant")
    got = build_task(
        fgvc(fgvc_root, annotation_level="family", **{**base, "hf_path": str(fam_copy)}), splits=("test",)
    )
    assert [s.label for s in got.split("test")] == sorted(set(FAMILIES.values()))
    # without the archive: variant level reads (no aliases), other levels say what to do
    bare = build_task(fgvc(tmp_path / "nowhere", **base))
    assert bare.split("test")[0].aliases == () and bare.classes == tuple(sorted(VARIANTS))
    with pytest.raises(DataError, match="annotation_level=family with a Hugging Face copy .*needs the official "
                       "annotation files.*pass task.root=<fgvc-aircraft-2013b folder>"):  # fmt: skip
        build_task(fgvc(tmp_path / "nowhere", annotation_level="family", **base))


def test_fgvc_hf_split_names_from_the_hub_layout(tmp_path: Path) -> None:
    import datasets

    assert hf_split_name(Path("d/train-00000-of-00001.parquet")) == "train"
    assert hf_split_name(Path("d/default/train/0000.parquet")) == "train"
    assert hf_split_name(Path("d/default/partial-test/0001.parquet")) == "test"
    assert hf_split_name(Path("d/default/validation/0000.parquet")) == "val"
    assert hf_split_name(Path("d/validation-00000-of-00001.arrow")) == "val"
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=VARIANTS)})
    for split, n in (("train", 6), ("test", 3)):  # refs/convert/parquet: <config>/<split>/0000.parquet
        (tmp_path / "default" / split).mkdir(parents=True)
        rows = {
            "image": [{"bytes": image_bytes("PNG"), "path": None}] * n,
            "label": [i % 3 for i in range(n)],
        }
        datasets.Dataset.from_dict(rows, features=feats).to_parquet(
            str(tmp_path / "default" / split / "0000.parquet")
        )
    task = build_task(fgvc(None, source="hf", hf_path=str(tmp_path)))
    assert (
        sorted(task.splits) == ["test", "train"]
        and len(task.split("train")) == 6
        and len(task.split("test")) == 3
    )


def test_hf_files_override_as_documented(tmp_path: Path) -> None:
    from hydra.errors import ConfigCompositionException

    doc = (REPO / "docs" / "data.md").read_text()
    command = re.search(
        r"`(python experiments/run\.py task=fgvc task\.source=hf [^`]*hf_files[^`]*)`", doc
    ).group(1)
    overrides = [
        a.replace("/path", str(tmp_path)) for a in shlex.split(command)[2:]
    ]  # as the shell passes them
    write_hf_copy(tmp_path, {"train": VARIANTS * 2, "test": VARIANTS}, column="label")
    cfg = compose_run([*overrides, "task.crop_bottom=0"]).task
    assert cfg.hf_files == {"train": f"{tmp_path}/train*.parquet", "test": f"{tmp_path}/test*.parquet"}
    task = build_task(cfg)
    assert len(task.split("train")) == 6 and [s.label for s in task.split("test")] == VARIANTS
    single = compose_run(
        ["task=fgvc", "task.source=hf", f"+task.hf_files.train={tmp_path}/train*.parquet"]
    ).task
    assert single.hf_files == {"train": f"{tmp_path}/train*.parquet"}
    with pytest.raises(ConfigCompositionException):  # why the docs use `+`: the schema's dict is empty
        compose_run(["task=fgvc", "task.source=hf", "task.hf_files={train: /x/train.parquet}"])


# ---------------------------------------------------------------------------------------------------------------
# SAT
# ---------------------------------------------------------------------------------------------------------------


def sat(root, **kw) -> TaskConfig:
    return TaskConfig(name="sat", root=str(root), **kw)


def test_sat_single_image_filter_and_first_n(sat_root: Path) -> None:
    task = build_task(sat(sat_root), splits=("train", "val"))
    assert len(task.split("train")) == 16  # the train pool: 4 of every 6 rows have 1 image
    assert all(len(s.images) == 1 for s in task.split("train"))
    assert (
        len(task.split("val")) == 12
    )  # evaluation keeps the 2-image questions (Qwen2-VL takes several images)
    single = build_task(sat(sat_root, eval_multi_image=False), splits=("train", "val"))
    assert len(single.split("val")) == 8 and all(len(s.images) == 1 for s in single.split("val"))
    multi = build_task(sat(sat_root, keep_multi_image=True), splits=("train", "test"))
    assert len(multi.split("train")) == 24 and {len(s.images) for s in multi.split("train")} == {1, 2}
    two = next(s for s in multi.split("test") if len(s.images) == 2)
    assert [im.convert("RGB").size for im in two.images] == [(W, H), (W, H)]  # a JPEG and a PNG
    first = build_task(sat(sat_root, first_n=6), splits=("train",)).split("train")
    assert [s.uid for s in first] == ["train-0", "train-1", "train-3", "train-4"]
    s = first[1]
    assert s.qtype == "count" and s.answer == "three" and sorted(s.options) == ["four", "one", "three", "two"]


def test_sat_struct_cells(tmp_path: Path) -> None:
    task = build_task(sat(write_sat(tmp_path, struct_cells=True)), splits=("train", "test"))
    assert task.split("test")[0].images[0].convert("RGB").size == (W, H)


def test_sat_options_shuffled_by_seed(sat_root: Path) -> None:
    def orders(seed):
        return [s.options for s in build_task(sat(sat_root), seed=seed, splits=("train",)).split("train")]

    assert orders(0) == orders(0)
    assert orders(0) != orders(1)
    original = [r[2] for r in SAT_ROWS if r[0] == 1]
    assert any(list(o) != original[i % 4] for i, o in enumerate(orders(0)))
    s = build_task(sat(sat_root), seed=3, splits=("train",)).split("train")[1]
    letter = "ABCD"[s.options.index(s.answer)]
    assert accepted_answers(s) == {normalize_answer(s.answer), normalize_answer(letter)}
    unshuffled = build_task(sat(sat_root, shuffle_options=False), seed=3, splits=("train",)).split("train")
    assert [list(s.options) for s in unshuffled[:4]] == original


def test_sat_prompt_lists_the_shuffled_options(sat_root: Path) -> None:
    task = build_task(sat(sat_root), splits=("train",))
    s = task.split("train")[0]
    assert task.prompt(s, think=True).startswith(
        f"{s.question} Options: (A) {s.options[0]} (B) {s.options[1]}"
    )


def test_sat_budget_is_seeded_and_bounded(sat_root: Path) -> None:
    pool = build_task(sat(sat_root), splits=("train",)).split("train")
    assert [s.uid for s in apply_budget(pool, "samples", 5, 0)] == [
        s.uid for s in apply_budget(pool, "samples", 5, 0)
    ]
    with pytest.raises(BudgetError, match="larger than the train pool"):
        apply_budget(pool, "samples", 17, 0)


def test_sat_images_are_read_only_when_used(sat_root: Path) -> None:
    pool = build_task(sat(sat_root), splits=("train",)).split("train")
    store = pool[0].images[0].source.store
    assert (
        isinstance(pool[0].images[0].source, ParquetCell) and store.rows_held == 0
    )  # text only after loading
    picked = apply_budget(pool, "samples", 3, 0)
    verify_images(picked)  # one pass fetches the budgeted rows
    assert store.rows_held == 3
    for s in [*reversed(pool), *pool[:3]]:  # any order, also behind the stream
        row = int(s.uid.split("-")[1])
        r, g, b = (
            s.images[0].convert("RGB").getpixel((W // 2, H // 2))
        )  # write_sat's colour: (10 i, 20 repeat, 100)
        assert abs(r - 10 * (row % 6)) < 8 and abs(g - 20 * (row // 6)) < 8 and abs(b - 100) < 8
    assert store.rows_held == len(pool)


def test_sat_whole_train_file_in_bounded_memory(tmp_path: Path) -> None:
    """`task.first_n=0` on a file with one large row group: streamed in batches, images dropped after the check."""
    noise = Image.frombytes("RGB", (100, 100), os.urandom(100 * 100 * 3))
    buf = io.BytesIO()
    noise.save(buf, format="PNG")
    png, n = buf.getvalue(), 1500  # ~30 KB each, incompressible: ~45 MB of images in one row group
    folder = tmp_path / "SAT"
    folder.mkdir()
    table = pa.table({"image_bytes": [[png]] * (n - 2) + [[png, png]] * 2, "question": ["Is it left?"] * n,
                      "answers": [["left", "right"]] * n, "correct_answer": ["left"] * n,
                      "question_type": ["obj_relation"] * n})  # fmt: skip
    # one row group; ~1 MB pages, as writers make them
    kw = dict(use_dictionary=False, compression="none", write_batch_size=16, data_page_size=1 << 20)
    pq.write_table(table, folder / "SAT_train.parquet", row_group_size=n, **kw)
    assert pq.ParquetFile(folder / "SAT_train.parquet").num_row_groups == 1
    size = n * len(png)
    code = f"""
import pyarrow as pa, pyarrow.parquet as pq
from rft.config import TaskConfig
from rft.data.registry import build_task
pool = build_task(TaskConfig(name="sat", root={str(folder)!r}, first_n=0), splits=("train",)).split("train")
peak = pa.default_memory_pool().max_memory()
pq.ParquetFile({str(folder / "SAT_train.parquet")!r}).read(columns=["image_bytes"])  # what the old loader did
print(len(pool), peak, pa.default_memory_pool().max_memory())
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    rows, peak, whole = map(int, out.stdout.split())
    assert rows == n - 2  # the 2-image rows are filtered out of the train pool
    assert whole > size  # reading the row group whole holds every image at once...
    assert peak < size / 4  # ...streaming holds a page buffer and a batch


# ---------------------------------------------------------------------------------------------------------------
# Banner
# ---------------------------------------------------------------------------------------------------------------


def test_banner_jsonl(banner_root: Path) -> None:
    task = build_task(TaskConfig(name="banner", root=str(banner_root), shuffle_options=False))
    assert len(task.split("train")) == 6 and len(task.split("test")) == 3
    s0, s1 = task.split("train")[:2]
    assert s0.answer == "-30%" and s1.answer == "-20%"  # a letter answer maps to its option
    assert s0.qtype == "t0" and s0.images[0].convert("RGB").size == (96, 48)


def test_banner_synth_is_deterministic_and_checkable() -> None:
    cfg = TaskConfig(name="banner_synth", train_size=20, test_size=5)
    a, b = build_task(cfg), build_task(cfg)
    assert [(s.question, s.answer, s.options) for s in a.split("train")] == [
        (s.question, s.answer, s.options) for s in b.split("train")
    ]
    assert a.split("train")[0].images[0].tobytes() == b.split("train")[0].images[0].tobytes()
    assert a.split("train")[0].images[0].size == (224, 112)
    other = build_task(TaskConfig(name="banner_synth", train_size=20, test_size=5, data_seed=1))
    assert [s.question for s in other.split("train")] != [s.question for s in a.split("train")]
    for s in a.split("train"):
        assert s.answer in s.options and len(set(s.options)) == len(s.options) >= 2
    assert (
        len({s.qtype for s in build_task(TaskConfig(name="banner_synth", train_size=60)).split("train")}) == 5
    )


def test_banner_synth_sale_price_is_consistent() -> None:
    import random

    from rft.data.banner import _banner_question, render_banner

    for i in range(40):
        rng = random.Random(i)
        _, panels = render_banner(rng, 112)
        q, answer, options, qtype = _banner_question(rng, panels)
        if qtype == "sale_price":
            p = next(p for p in panels if p["product"] in q)
            assert answer == f"${p['price'] * (100 - p['discount']) // 100}"


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one DataError naming the file or field and the fix
# ---------------------------------------------------------------------------------------------------------------


def test_missing_root_names_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        build_task(fgvc(tmp_path / "nowhere"))
    assert "make data-fgvc" in str(err.value) and "python experiments/data.py fgvc" in str(err.value)
    assert "task.root=" in str(err.value)
    with pytest.raises(DataError, match="make data-sat"):
        build_task(sat(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="task.root is not set"):
        build_task(TaskConfig(name="fgvc"))


def test_missing_split_file(tmp_path: Path) -> None:
    root = write_fgvc(tmp_path)
    (root / "data" / "images_variant_test.txt").unlink()
    with pytest.raises(DataError, match="images_variant_test.txt"):
        build_task(fgvc(root))
    with pytest.raises(DataError, match="missing SAT file .*SAT_static.parquet"):
        build_task(sat(write_sat(tmp_path / "SAT"), train_split="static"))


def test_listed_image_absent(tmp_path: Path) -> None:
    root = write_fgvc(tmp_path)
    victim = (root / "data" / "images_variant_test.txt").read_text().split()[0]
    (root / "data" / "images" / f"{victim}.jpg").unlink()
    with pytest.raises(DataError, match=f"images_variant_test.txt:1: image .*{victim}.jpg does not exist"):
        build_task(fgvc(root))


def test_unreadable_and_truncated_images(tmp_path: Path) -> None:
    root = write_fgvc(tmp_path)
    images = root / "data" / "images"
    first = (root / "data" / "images_variant_test.txt").read_text().split()[0]
    (images / f"{first}.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(DataError, match=f"{first}.jpg is not a readable image"):
        build_task(fgvc(root))
    full = image_bytes("JPEG", banner=True)
    (images / f"{first}.jpg").write_bytes(full[: len(full) - 200])  # header intact, body cut
    task = build_task(fgvc(root))  # the header check passes...
    with pytest.raises(DataError, match=f"{first}.jpg is corrupt"):
        verify_images(task.split("test"))  # ...the full decode does not


def test_label_not_in_class_list(tmp_path: Path) -> None:
    root = write_fgvc(tmp_path)
    path = root / "data" / "images_variant_train.txt"
    path.write_text(path.read_text() + "1000001 Concorde\n")
    with pytest.raises(
        DataError, match="images_variant_train.txt:13: label 'Concorde' is not in .*variants.txt"
    ):
        build_task(fgvc(root))


def test_parquet_missing_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="lacks required column.*question_type"):
        build_task(sat(write_sat(tmp_path, drop="question_type")))


def test_empty_split_after_filtering(tmp_path: Path) -> None:
    root = write_sat(tmp_path, rows=[r for r in SAT_ROWS if r[0] == 2])
    with pytest.raises(DataError, match="empty after filtering.*task.keep_multi_image=true"):
        build_task(sat(root))
    assert len(build_task(sat(root, keep_multi_image=True)).split("test")) == 2  # eval keeps them by default
    with pytest.raises(
        DataError, match="SAT split 'test' .*empty after filtering.*task.eval_multi_image=true"
    ):
        build_task(sat(root, keep_multi_image=True, eval_multi_image=False))


def test_banner_bad_rows(tmp_path: Path) -> None:
    root = write_banner(tmp_path)
    path = root / "test.jsonl"
    good = path.read_text()
    path.write_text(
        good + json.dumps({"image": "images/x.png", "question": "q", "options": ["x", "y"], "answer": "x"})
    )
    with pytest.raises(DataError, match="test.jsonl:4: image .*x.png does not exist"):
        build_task(TaskConfig(name="banner", root=str(root)))
    path.write_text(
        good
        + json.dumps({"image": "images/test_0.jpg", "question": "q", "options": ["x", "y"], "answer": "z"})
    )
    with pytest.raises(DataError, match="test.jsonl:4: answer 'z' is not one of the options"):
        build_task(TaskConfig(name="banner", root=str(root)))
    path.write_text(good + json.dumps({"image": "images/test_0.jpg", "question": "q"}))
    with pytest.raises(DataError, match="test.jsonl:4: missing field 'answer'"):
        build_task(TaskConfig(name="banner", root=str(root)))


@pytest.mark.parametrize(
    "row, message",
    [
        ({"options": "ABCD", "answer": "A"}, r"'options' must be a JSON list of strings .* got str 'ABCD'"),
        ({"options": "left,right", "answer": "left,right"}, "'options' must be a JSON list"),
        ({"options": ["yes"], "answer": "yes"}, r"it has 1 option\(s\) \['yes'\]; .* at least 2"),
        ({"options": ["Left", "left."], "answer": "Left"}, "'Left' and 'left.' are the same answer once normalised"),
        ({"options": ["B", "A"], "answer": "B"}, "option 'B' is an option letter"),
        ({"options": ["x", "y"], "answer": "x", "image": "../outside.png"}, "image path '../outside.png' leaves"),
        ({"options": ["x", "y"], "answer": "x", "image": "/etc/passwd"}, "image path '/etc/passwd' leaves"),
        ({"options": ["x", "y"], "answer": "x", "id": "dup"}, "test.jsonl:5: id 'dup' is already used at line 4"),
    ],
    ids=["options_string", "options_csv", "one_option", "same_normalised", "letter_option", "dotdot", "absolute",
         "duplicate_id"],
)  # fmt: skip
def test_banner_rows_that_would_score_wrong_answers_are_refused(
    tmp_path: Path, row: dict, message: str
) -> None:
    root = write_banner(tmp_path / "banner")
    (tmp_path / "outside.png").write_bytes(image_bytes("PNG"))
    rec = {"image": "images/test_0.jpg", "question": "q", **row}
    extra = [
        {"image": "images/test_0.jpg", "question": "q", "options": ["x", "y"], "answer": "x", "id": "dup"}
    ]
    lines = [json.dumps(r) for r in ([*extra, rec] if row.get("id") == "dup" else [rec])]
    with (root / "test.jsonl").open("a") as f:
        f.write("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        build_task(TaskConfig(name="banner", root=str(root)))


def test_banner_letter_options_in_their_own_place_pass_unshuffled(tmp_path: Path) -> None:
    root = write_banner(tmp_path)
    rec = {"image": "images/test_0.jpg", "question": "q", "options": ["A", "B"], "answer": "B"}
    with (root / "test.jsonl").open("a") as f:
        f.write(json.dumps(rec) + "\n")
    task = build_task(TaskConfig(name="banner", root=str(root), shuffle_options=False))
    assert task.split("test")[-1].options == ("A", "B")
    with pytest.raises(DataError, match="option 'A' is an option letter"):
        build_task(TaskConfig(name="banner", root=str(root)))  # shuffled: the letter depends on the seed


def test_sat_rows_that_would_score_wrong_answers_are_dropped_and_counted(tmp_path: Path, caplog) -> None:
    rows = [*SAT_ROWS[:2], (1, "Same?", ["yes", "Yes"], "yes", "x"), (1, "One?", ["only"], "only", "x"),
            (1, "Letters?", ["B", "A"], "A", "x")]  # fmt: skip
    root = write_sat(tmp_path / "SAT", rows=rows)
    with caplog.at_level("WARNING", logger="rft.data.sat"):
        task = build_task(sat(root, first_n=0))
    assert {s.question for s in task.split("train")} == {r[1] for r in SAT_ROWS[:2]}
    assert "dropped 12 question(s) whose options would let a wrong answer score as correct" in caplog.text
    assert "row 2: options 'yes' and 'Yes' are the same answer once normalised" in caplog.text


def test_bad_data_fails_before_any_result_row(tmp_path: Path) -> None:
    from rft.pipeline import run

    cfg = smoke_config(TaskConfig(name="fgvc", root=str(tmp_path / "nowhere")), "zeroshot", tmp_path)
    with pytest.raises(DataError, match="make data-fgvc"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "results.csv").exists()


# ---------------------------------------------------------------------------------------------------------------
# experiments/data.py
# ---------------------------------------------------------------------------------------------------------------


def test_download_fgvc_from_local_tarball(tmp_path: Path, fgvc_root: Path) -> None:
    tar_path = tmp_path / "fgvc-aircraft-2013b.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(fgvc_root, arcname="fgvc-aircraft-2013b")
    dest = tmp_path / "data"
    assert data_cli.main(["fgvc", "--dest", str(dest), "--url", tar_path.as_uri(), "--no-md5"]) == 0
    assert sorted(p.name for p in dest.iterdir()) == ["fgvc-aircraft-2013b"]  # no temp folder left behind
    assert len(build_task(fgvc(dest / "fgvc-aircraft-2013b")).split("train")) == 12
    assert (
        data_cli.main(["fgvc", "--dest", str(dest), "--url", "file:///does/not/exist.tar.gz"]) == 0
    )  # complete
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        tar.add(fgvc_root / "data" / "variants.txt", arcname="fgvc-aircraft-2013b/data/variants.txt")
    assert data_cli.main(["fgvc", "--dest", str(tmp_path / "d2"), "--url", bad.as_uri(), "--no-md5"]) == 1
    assert list((tmp_path / "d2").iterdir()) == []
    assert (
        data_cli.main(
            [
                "fgvc",
                "--dest",
                str(tmp_path / "d3"),
                "--url",
                tar_path.as_uri(),
                "--no-md5",
                "--sha256",
                "0" * 64,
            ]
        )
        == 1
    )


def test_extract_tar_without_the_data_filter(tmp_path: Path, fgvc_root: Path, monkeypatch) -> None:
    """Python < 3.11.4 (Debian 12's 3.11.2) has no tarfile.data_filter: extraction still works and stays inside."""
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    tar_path = tmp_path / "fgvc-aircraft-2013b.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(fgvc_root, arcname="fgvc-aircraft-2013b")
    dest = tmp_path / "data"
    assert data_cli.main(["fgvc", "--dest", str(dest), "--url", tar_path.as_uri(), "--no-md5"]) == 0
    assert len(build_task(fgvc(dest / "fgvc-aircraft-2013b")).split("train")) == 12
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(fgvc_root / "data" / "variants.txt", arcname="../escaped.txt")
    with pytest.raises(tarfile.TarError, match="refusing member '../escaped.txt'"):
        data_cli.extract_tar(evil, tmp_path / "x")
    assert not (tmp_path / "escaped.txt").exists()


def test_download_checks_the_published_md5(tmp_path: Path, fgvc_root: Path, capsys) -> None:
    assert (
        data_cli.FGVC_MD5 == "d4acdd33327262359767eeaa97a4f732"
    )  # published beside the archive on the VGG page
    tar_path = tmp_path / "fgvc-aircraft-2013b.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        tar.add(fgvc_root, arcname="fgvc-aircraft-2013b")
    dest = tmp_path / "d1"
    assert (
        data_cli.main(["fgvc", "--dest", str(dest), "--url", tar_path.as_uri()]) == 1
    )  # not the official bytes
    err = capsys.readouterr().err
    md5 = hashlib.md5(tar_path.read_bytes()).hexdigest()
    assert f"md5 {md5} does not match the expected {data_cli.FGVC_MD5}" in err and "--no-md5" in err
    assert list(dest.iterdir()) == []
    assert data_cli.main(["fgvc", "--dest", str(dest), "--url", tar_path.as_uri(), "--md5", md5]) == 0
    assert len(build_task(fgvc(dest / "fgvc-aircraft-2013b")).split("train")) == 12


def test_download_sat_from_local_source(tmp_path: Path, sat_root: Path) -> None:
    dest = tmp_path / "data"
    assert (
        data_cli.main(["sat", "--dest", str(dest), "--source", str(sat_root), "--splits", "train", "test"])
        == 0
    )
    assert sorted(p.name for p in (dest / "SAT").iterdir()) == ["SAT_test.parquet", "SAT_train.parquet"]
    assert len(build_task(sat(dest / "SAT")).split("test")) == 6
    broken = write_sat(tmp_path / "broken", drop="answers")
    assert (
        data_cli.main(["sat", "--dest", str(tmp_path / "d2"), "--source", str(broken), "--splits", "val"])
        == 1
    )
    assert list((tmp_path / "d2" / "SAT").iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# Smoke: each task x method through rft.pipeline.run on the tiny model
# ---------------------------------------------------------------------------------------------------------------


def smoke_config(task: TaskConfig, method: str, tmp_path: Path) -> RunConfig:
    methods = {
        "zeroshot": ZeroShotConfig(max_new_tokens=8),
        "sft": SFTConfig(epochs=1, batch_size=4, micro_batch_size=4, lr=1e-3, max_new_tokens=8),
        "rft": RFTConfig(
            steps=2,
            rollout_batch_size=4,
            group_size=2,
            micro_batch_size=4,
            lr=1e-3,
            beta=0.0,
            max_new_tokens=8,
            samples_every=1,
        ),  # fmt: skip
    }
    shots = TASKS[task.name].kind == "classification"
    return RunConfig(
        task=task,
        method=methods[method],
        model=ModelConfig(
            min_pixels=784,
            max_pixels=12544,
            cache_dir=f"{os.environ.get('RFT_CACHE', '~/.cache/rft-suite')}/models",
        ),
        budget=BudgetConfig(kind="shots" if shots else "samples", size=1 if shots else 4),
        eval=EvalConfig(limit=3, batch_size=3),
        logger=LoggerConfig(backend="none"),
        name=f"{task.name}-{method}",
        results_csv=str(tmp_path / "results.csv"),
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", ["zeroshot", "sft", "rft"])
@pytest.mark.parametrize("task_name", ["fgvc", "sat", "banner", "banner_synth"])
def test_smoke_task_x_method(task_name, method, tmp_path, fgvc_root, sat_root, banner_root) -> None:
    from rft.pipeline import run

    roots = {"fgvc": fgvc_root, "sat": sat_root, "banner": banner_root, "banner_synth": None}
    task = TaskConfig(
        name=task_name, root=str(roots[task_name]) if roots[task_name] else None, train_size=8, test_size=3
    )
    record = run(smoke_config(task, method, tmp_path), tmp_path / "run")
    assert record.status == "finished" and record.metrics["eval/n"] == 3.0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["min_pixels"] == 784 and results["max_pixels"] == 12544
    with open(tmp_path / "results.csv") as f:
        assert [r["task"] for r in csv.DictReader(f)] == [task_name]


def test_images_decode_as_a_person_sees_them(tmp_path: Path) -> None:
    """EXIF orientation applied; palette, LA, RGBA, CMYK and 16-bit images become sensible RGB."""
    tall = Image.new("RGB", (30, 20), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    buf = io.BytesIO()
    tall.save(buf, format="JPEG", exif=exif.tobytes())
    rotated = LazyImage(buf.getvalue(), "rotated", crop_bottom=5)
    assert rotated.convert("RGB").size == (20, 25) == rotated.size()  # turned, then cropped

    def lazy(img: Image.Image, fmt: str = "PNG") -> LazyImage:
        out = io.BytesIO()
        img.save(out, format=fmt)
        return LazyImage(out.getvalue(), f"{img.mode}.{fmt}")

    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert lazy(clear).convert("RGB").getpixel((0, 0)) == (255, 255, 255)  # transparent is white, not black
    assert lazy(Image.new("LA", (4, 4), (0, 0))).convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    assert lazy(palette).convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    grey16 = Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16))  # mid-grey in 16 bits
    assert lazy(grey16).convert("RGB").getpixel((0, 0)) == (128, 128, 128)
    cmyk = lazy(Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "JPEG").convert("RGB")
    assert cmyk.mode == "RGB" and cmyk.getpixel((0, 0))[0] > 200 > cmyk.getpixel((0, 0))[1]
