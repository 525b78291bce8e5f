"""The FGVC-Aircraft family: the real benchmark (`fgvc`) and its synthetic stand-in (`fgvc_synth`).

- `fgvc`: FGVC-Aircraft 2013b (Maji et al., arXiv 1306.5151) from the official archive layout, or from a Hugging
  Face copy (hub id, `save_to_disk` folder, or parquet/arrow files) with a configurable column mapping; the train
  pool and the evaluated splits may come from different sources (Visual-RFT: its 4-shot HF copy, the official
  test split). The bottom `crop_bottom` (20) pixels, the copyright banner, are cropped off as the official
  protocol asks. The prompt names the annotation level (model, family or manufacturer).
- `fgvc_synth`: 16 "glyph models" (4 silhouettes x 1-4 small dots) that differ in a small visual detail, with
  colour, size, position and background noise as nuisances; rendered offline, deterministic from the data seed.

Most variant names leave their maker out (`707-320`, `A300B4`), so the official archive's family and manufacturer
annotations are read too (also for an HF copy, when the archive is at `task.root`): a label also counts when
written with its parents (`qualified_names`), and an HF copy's variant labels map to families or manufacturers.
Both use Visual-RFT's classification prompt (`rft.data.base.THINK_INSTRUCTION`).
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from rft.config import TaskConfig
from rft.data.base import NOTHINK_INSTRUCTION, THINK_INSTRUCTION, DataError, Sample, Task
from rft.data.draw import GLYPH_CLASSES, render_glyph
from rft.data.images import LazyImage, check_images
from rft.rewards import normalize_answer

FGVC_DIR = "fgvc-aircraft-2013b"
FGVC_SPLITS = ("train", "val", "trainval", "test")
FGVC_CLASS_FILES = {"variant": "variants.txt", "family": "families.txt", "manufacturer": "manufacturers.txt"}
FGVC_FIX = (
    "run `make data-fgvc` (or `python experiments/data.py fgvc --dest data/`) or pass task.root=<folder>"
)

# HF split names that mean one of ours.
_SPLIT_ALIASES = {"validation": "val", "valid": "val"}
# What the prompt asks for and the format example's slot, per annotation level (variant: Visual-RFT's, verbatim).
_LEVEL_WORDS = {"variant": ("model", "species name"), "family": ("family", "family name"),
                "manufacturer": ("manufacturer", "manufacturer name")}  # fmt: skip
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


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
    names = qualified_names(fgvc_hierarchy(data, set(splits.values())), level, classes=classes)
    out = {
        k: [dataclasses.replace(s, aliases=names.get(s.label, ())) for s in rows] for k, rows in out.items()
    }
    return out, classes


# Words that end a company's full name but not the name people write ("Douglas Aircraft Company" -> "Douglas").
_COMPANY_SUFFIXES = {"aircraft", "aerospace", "aviation", "corporation", "company"}


def fgvc_hierarchy(data: Path, splits: Iterable[str]) -> dict[str, tuple[str, str]]:
    """variant -> (family, manufacturer), read from the official annotation files of `splits`.

    `images_variant_<split>.txt`, `images_family_<split>.txt` and `images_manufacturer_<split>.txt` list the same
    image ids; joining them by id gives each variant's family and manufacturer.

    Raises:
        DataError: A file is missing, an id is absent from one level, or a variant has two parents.
    """
    hierarchy: dict[str, tuple[str, str]] = {}
    for split in sorted(splits):
        levels = {}
        for level in ("variant", "family", "manufacturer"):
            path = data / f"images_{level}_{split}.txt"
            rows = [line.partition(" ") for line in _read_lines(path, FGVC_FIX)]
            levels[level] = {image_id: label.strip() for image_id, _, label in rows}
        for image_id, variant in levels["variant"].items():
            parents = []
            for level in ("family", "manufacturer"):
                if image_id not in levels[level]:
                    raise DataError(
                        f"image {image_id} is in images_variant_{split}.txt but not in "
                        f"{data / f'images_{level}_{split}.txt'}; the annotation files do not match: "
                        "re-download the archive"
                    )
                parents.append(levels[level][image_id])
            family, maker = parents
            if hierarchy.setdefault(variant, (family, maker)) != (family, maker):
                raise DataError(
                    f"variant {variant!r} has two parents in {data}: {hierarchy[variant]} and "
                    f"{(family, maker)} (image {image_id}, split {split}); re-download the archive"
                )
    return hierarchy


class Annotations(NamedTuple):
    """The official archive's annotations, for labels that come from elsewhere (an HF copy)."""

    data: Path  # the archive's data/ folder
    hierarchy: dict[str, tuple[str, str]]  # variant -> (family, manufacturer)
    classes: tuple[str, ...]  # the class list of the annotation level, in its file's order


def official_annotations(root: str | Path | None, level: str) -> Annotations | None:
    """The hierarchy (from the train, val and test annotation files) and the level's class list of the archive
    at `root`; None when no archive is there. Raises DataError when the archive is there but incomplete."""
    try:
        data = fgvc_data_dir(root)
    except DataError:
        return None
    classes = tuple(_read_lines(data / FGVC_CLASS_FILES[level], FGVC_FIX))
    return Annotations(data, fgvc_hierarchy(data, ("train", "val", "test")), classes)


def _at_level(label: str, level: str, ann: Annotations, where: str) -> str:
    """An HF label at `level`: a variant maps through the hierarchy; a name of the level stays as it is."""
    if level != "variant" and label in ann.hierarchy:
        return ann.hierarchy[label][0 if level == "family" else 1]
    if label in ann.classes:
        return label
    raise DataError(
        f"{where}: label {label!r} is not an FGVC-Aircraft {level} name "
        f"({ann.data / FGVC_CLASS_FILES[level]}){' nor a variant' if level != 'variant' else ''}; "
        "check task.label_column, or that the copy is FGVC-Aircraft 2013b"
    )


def _join(prefix: str, name: str) -> set[str]:
    """`name` written after `prefix`: "Boeing" + "707-320" -> {"Boeing 707-320"}.

    A name that already starts with the prefix stays as it is ("Cessna" + "Cessna 172"); a name that shares
    the prefix's first word may also drop it ("Cessna Citation" + "Cessna 525" -> "Cessna Citation 525").
    """
    if normalize_answer(name).startswith(normalize_answer(prefix)):
        return {name}
    forms = {f"{prefix} {name}"}
    first, _, rest = name.partition(" ")
    if rest and first.lower() == prefix.split()[0].lower():
        forms.add(f"{prefix} {rest}")
    return forms


def _maker_names(maker: str) -> set[str]:
    """A manufacturer's full name and its short name ("Douglas Aircraft Company" -> also "Douglas")."""
    words = maker.split()
    while len(words) > 1 and words[-1].lower() in _COMPANY_SUFFIXES:
        words.pop()
    return {maker, " ".join(words)}


def qualified_names(
    hierarchy: dict[str, tuple[str, str]], level: str, classes: Iterable[str] = ()
) -> dict[str, tuple[str, ...]]:
    """label -> the other written forms that name it, for a label of the given annotation level.

    - variant: the variant after its manufacturer (full or short name) and/or its family:
      "707-320" -> "Boeing 707-320", "Boeing 707 707-320"; "Cessna 525" -> "Cessna Citation 525". A family is
      used only when it is not itself the name of another variant, so "A320 A321" (which reads as two answers)
      and "MD-80 MD-87" are not accepted.
    - family: the family after its manufacturer ("A320" -> "Airbus A320").
    - manufacturer: no other form.

    A form that would name two labels is dropped from both, so the accepted sets never overlap.

    Args:
        hierarchy: variant -> (family, manufacturer), from `fgvc_hierarchy`.
        level: The annotation level the labels are at (variant, family or manufacturer).
        classes: Every class name of the level (its class list file), when `hierarchy` covers only some of
            them: a family that is the name of any of these is never used as a qualifier.

    Returns:
        label -> raw forms, sorted, without the label itself.
    """
    if level == "manufacturer":
        return {}
    if level == "family":
        parents = {family: maker for family, maker in hierarchy.values()}
        forms = {f: {g for m in _maker_names(maker) for g in _join(m, f)} for f, maker in parents.items()}
    else:
        forms = {
            v: {g for m in _maker_names(maker) for g in _join(m, v)} for v, (_, maker) in hierarchy.items()
        }
        # Names that already mean a variant ("A320", "MD-80", "Embraer ERJ 145"): never a qualifier.
        taken = {normalize_answer(c) for c in classes}
        for v, gs in forms.items():
            taken |= {normalize_answer(g) for g in gs} | {normalize_answer(v)}
        for v, (family, maker) in hierarchy.items():
            if normalize_answer(family) in taken:
                continue
            for qualifier in {family} | {g for m in _maker_names(maker) for g in _join(m, family)}:
                forms[v] |= _join(qualifier, v)
    owners: dict[str, set[str]] = {}
    for label, gs in forms.items():
        for key in {normalize_answer(g) for g in gs} | {normalize_answer(label)}:
            owners.setdefault(key, set()).add(label)
    unique = {label: {g for g in gs if owners[normalize_answer(g)] == {label}} for label, gs in forms.items()}
    return {
        label: tuple(sorted(g for g in gs if normalize_answer(g) != normalize_answer(label)))
        for label, gs in unique.items()
    }


def hf_split_name(path: Path) -> str:
    """The split a file of an HF copy holds, from its name or, for the Hub's auto-converted parquet layout
    (`<config>/<split>/0000.parquet`, `<config>/partial-<split>/0000.parquet`), from its folder.

    `train-00000-of-00001.parquet` -> train; `default/test/0000.parquet` -> test; `validation.arrow` -> val.
    """
    split = re.split(r"[-_]", path.name.split(".")[0])[0].lower()
    if split.isdigit():
        split = path.parent.name.lower().removeprefix("partial-")
    return _SPLIT_ALIASES.get(split, split)


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
            by_split.setdefault(hf_split_name(Path(f)), []).append(f)
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


def load_fgvc_hf(
    cfg: TaskConfig, splits: dict[str, str], annotations: Annotations | None = None
) -> tuple[dict[str, list[Sample]], tuple[str, ...]]:
    """Read FGVC-Aircraft from a Hugging Face copy with the (image_column, label_column) mapping of `cfg`.

    With the official `annotations`, labels are mapped to `cfg.annotation_level` (a variant to its family or
    manufacturer), must be names of that level's class list (which becomes the class list), and get their
    written forms (`Sample.aliases`). Without them only variant labels can be read, and only the label counts.

    Raises:
        DataError: annotation_level is family or manufacturer and `annotations` is None, a split or column is
            missing, or a label is not a class name.
    """
    import datasets

    level = cfg.annotation_level
    if level != "variant" and annotations is None:
        raise DataError(
            f"task.annotation_level={level} with a Hugging Face copy (task.hf_path={cfg.hf_path!r}) needs the "
            f"official annotation files to map each variant label to its {level}, and task.root={cfg.root!r} "
            "holds no fgvc-aircraft-2013b archive: pass task.root=<fgvc-aircraft-2013b folder> (`make data-fgvc`), "
            "or use task.annotation_level=variant"
        )
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
            if annotations is not None:
                label = _at_level(label, level, annotations, where)
            image = LazyImage(functools.partial(_arrow_cell, image_col, i), where, cfg.crop_bottom)
            rows.append(Sample(uid=f"{split}-{i}", images=(image,), question="", answer=label, label=label))
        out[task_split] = rows
    if annotations is not None:
        classes = annotations.classes
        names = qualified_names(annotations.hierarchy, level, classes=classes)
        out = {
            k: [dataclasses.replace(s, aliases=names.get(s.label, ())) for s in rows]
            for k, rows in out.items()
        }
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


@dataclass
class FGVCTask(Task):
    """FGVC-Aircraft's task: Visual-RFT's prompt, asking for the model (variant), family or manufacturer."""

    level: str = "variant"

    def prompt(self, sample: Sample, think: bool) -> str:
        if self.level == "variant":
            return super().prompt(sample, think)  # Visual-RFT's, verbatim
        instruction = (THINK_INSTRUCTION if think else NOTHINK_INSTRUCTION).format(slot=self.answer_slot)
        return (
            f"This is an image containing {self.object_noun}. Please identify the {_LEVEL_WORDS[self.level][0]} "
            f"of the {self.object_noun.split()[-1]} based on the image.\n{instruction}"
        )


def make_fgvc(cfg: TaskConfig, splits: tuple[str, ...]) -> Task:
    """FGVC-Aircraft's splits: the train pool (`task.train_split` of `task.train_source`, default `task.source`)
    and the evaluated splits (of `task.source`), at `task.annotation_level`."""
    train_source = cfg.train_source or cfg.source
    wanted = {s: (cfg.train_split if s == "train" else s) for s in splits}
    by_source: dict[str, dict[str, str]] = {"official": {}, "hf": {}}
    for s, split in wanted.items():
        by_source[train_source if s == "train" else cfg.source][s] = split
    out: dict[str, list[Sample]] = {}
    classes: tuple[str, ...] = ()
    if by_source["official"]:
        out, classes = load_fgvc_official(
            cfg.root, level=cfg.annotation_level, splits=by_source["official"], crop_bottom=cfg.crop_bottom
        )
    if by_source["hf"]:
        hf, hf_classes = load_fgvc_hf(
            cfg, by_source["hf"], official_annotations(cfg.root, cfg.annotation_level)
        )
        out.update(hf)  # with the archive at hand, its labels were checked against the same class list
        classes = classes or hf_classes
    for split, rows in out.items():
        if not rows:
            raise DataError(f"FGVC-Aircraft split {wanted[split]!r} is empty; check the annotation files")
        check_images(rows)
    return FGVCTask(
        name="fgvc",
        kind="classification",
        splits=out,
        object_noun="an aircraft",
        answer_slot=_LEVEL_WORDS[cfg.annotation_level][1],  # variant: Visual-RFT's, verbatim
        classes=classes,
        level=cfg.annotation_level,
    )


def make_fgvc_synth(
    train_per_class: int, test_per_class: int, data_seed: int, image_size: int, val_per_class: int = 0
) -> Task:
    """The fine-grained classification stand-in for FGVC-Aircraft; a `val` split too when `val_per_class` > 0."""
    splits: dict[str, list[Sample]] = {}
    sizes = [("train", train_per_class), ("test", test_per_class)] + (
        [("val", val_per_class)] if val_per_class else []
    )
    for split, per_class in sizes:
        rows = []
        for label in GLYPH_CLASSES:
            for i in range(per_class):
                rng = random.Random(f"fgvc_synth-{data_seed}-{split}-{label}-{i}")
                img = render_glyph(label, rng, image_size)
                rows.append(
                    Sample(uid=f"{split}-{label}-{i}", images=(img,), question="", answer=label, label=label)
                )
        splits[split] = rows
    return Task(
        name="fgvc_synth",
        kind="classification",
        splits=splits,
        object_noun="a glyph",
        answer_slot="glyph model",
        classes=GLYPH_CLASSES,
    )
