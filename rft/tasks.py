"""Tasks: each dataset row becomes image(s), a prompt and a ground truth; plus the seeded sample budgets.

A task owns its prompt templates (think and no-think), its splits and what counts as a correct answer. Two
synthetic tasks are rendered offline with PIL, deterministically from a data seed:

- `fgvc_synth`, the stand-in for FGVC-Aircraft: 16 "glyph models" (4 silhouettes x 1-4 small marker dots) that
  differ in a small visual detail, with colour, size, position and background noise as nuisances.
- `sat_synth`, the stand-in for SAT: spatial relations between two rendered objects, asked as multiple choice
  with the options shuffled.

Budgets only ever subsample the train split; the test split is never touched by sampling. Budgets are nested:
with the same seed, the 1-shot set is a subset of the 2-shot set, so a budget ladder adds data rather than
redrawing it.
"""

from __future__ import annotations

import random
import string
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

from rft.rewards import normalize_answer

if TYPE_CHECKING:
    from rft.config import TaskConfig

# Bump when the synthetic renderers or prompts change: it is part of the tiny tokenizer's cache key.
CORPUS_VERSION = 1

THINK_INSTRUCTION = (
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    "The output answer format should be as follows:\n<think> ... </think> <answer>{slot}</answer>\n"
    "Please strictly follow the format."
)
NOTHINK_INSTRUCTION = (
    "Output the final answer in <answer> </answer> tags."
    "The output answer format should be as follows:\n<answer>{slot}</answer>\nPlease strictly follow the format."
)
MC_THINK_INSTRUCTION = (
    "Output the thinking process in <think> </think> and final answer (option) in <answer> </answer> tags."
)
MC_NOTHINK_INSTRUCTION = "Output the final answer (option) in <answer> </answer> tags."


@dataclass(frozen=True)
class Sample:
    """One task row.

    Attributes:
        uid: Stable id, unique within the task.
        images: The image(s) shown before the question: PIL images, or rft.datasets.LazyImage objects that
            decode on `.convert(mode)` (real datasets, too large to hold decoded).
        question: The task's question text, without the output-format instruction.
        answer: Canonical ground truth: a class name, or the text of the correct option.
        options: Multiple-choice options in display order (already shuffled); empty for open answers.
        label: Class label for k-shot budgets; empty for tasks without classes.
        qtype: Question type, for per-type accuracy.
        rationale: A short reasoning trace; when set, SFT imitates `<think> rationale </think> <answer>…`.
            Empty for every target task (study.md: no traces exist); only the tiny_base corpus
            (rft.testbed) has them.
    """

    uid: str
    images: tuple[Image.Image, ...]
    question: str
    answer: str
    options: tuple[str, ...] = ()
    label: str = ""
    qtype: str = ""
    rationale: str = ""


def option_letter(i: int) -> str:
    return string.ascii_uppercase[i]


def accepted_answers(sample: Sample) -> frozenset[str]:
    """Normalised strings that count as correct: the answer text, and for multiple choice also its letter."""
    accepted = {normalize_answer(sample.answer)}
    if sample.options:
        accepted.add(normalize_answer(option_letter(sample.options.index(sample.answer))))
    return frozenset(accepted)


def format_options(options: tuple[str, ...]) -> str:
    return " ".join(f"({option_letter(i)}) {o}" for i, o in enumerate(options))


@dataclass
class Task:
    """A task: named splits of Samples plus the prompt rules.

    Attributes:
        name: Task name (the `task=` option).
        kind: "classification" (k-shot budgets, open answers) or "multiple_choice".
        splits: Split name -> samples.
        object_noun: For classification prompts, what the image contains ("an aircraft").
        answer_slot: For classification prompts, the placeholder in the format example ("species name").
        classes: Class names of a classification task.
    """

    name: str
    kind: str
    splits: dict[str, list[Sample]]
    object_noun: str = ""
    answer_slot: str = ""
    classes: tuple[str, ...] = field(default_factory=tuple)

    def prompt(self, sample: Sample, think: bool) -> str:
        """The user-turn text for a sample (the image comes before it in the chat message)."""
        if self.kind == "classification":
            instruction = (THINK_INSTRUCTION if think else NOTHINK_INSTRUCTION).format(slot=self.answer_slot)
            return (
                f"This is an image containing {self.object_noun}. Please identify the model of the "
                f"{self.object_noun.split()[-1]} based on the image.\n{instruction}"
            )
        instruction = MC_THINK_INSTRUCTION if think else MC_NOTHINK_INSTRUCTION
        return f"{sample.question} Options: {format_options(sample.options)}  {instruction}"

    def split(self, name: str) -> list[Sample]:
        if name not in self.splits:
            raise ValueError(f"task {self.name!r} has no split {name!r}; it has {sorted(self.splits)}")
        return self.splits[name]


# ---------------------------------------------------------------------------------------------------------------
# Budgets
# ---------------------------------------------------------------------------------------------------------------


class BudgetError(ValueError):
    """The requested budget cannot be drawn from the pool."""


def apply_budget(samples: list[Sample], kind: str, size: int, seed: int) -> list[Sample]:
    """Draw a seeded, reproducible training subset.

    Args:
        samples: The train pool.
        kind: "shots" (size examples per class), "samples" (size examples in all) or "full" (the whole pool).
        size: Shots per class or number of samples; ignored for "full".
        seed: Budget seed; the same seed gives nested sets for growing sizes.

    Returns:
        The subset, in a seeded order.

    Raises:
        BudgetError: the budget is larger than the pool (or than a class), or a shot budget on unlabelled data.
    """
    if kind == "full":
        return list(samples)
    rng = random.Random(f"budget-{seed}")
    if kind == "samples":
        if size > len(samples):
            raise BudgetError(
                f"budget of {size} samples is larger than the train pool ({len(samples)}); "
                f"pass budget.size<={len(samples)} or budget=full"
            )
        order = list(samples)
        rng.shuffle(order)
        return order[:size]
    if kind != "shots":
        raise BudgetError(f"unknown budget kind {kind!r}; use shots, samples or full")
    by_class: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if not s.label:
            raise BudgetError("a shots budget needs class labels; use budget=samples for this task")
        by_class[s.label].append(s)
    picked: list[Sample] = []
    for label in sorted(by_class):
        pool = sorted(by_class[label], key=lambda s: s.uid)
        if size > len(pool):
            raise BudgetError(
                f"budget of {size} shots is larger than class {label!r}, which has {len(pool)} train images; "
                f"pass budget.size<={min(len(v) for v in by_class.values())}"
            )
        rng_c = random.Random(f"budget-{seed}-{label}")
        rng_c.shuffle(pool)
        picked.extend(pool[:size])
    rng.shuffle(picked)
    return picked


# ---------------------------------------------------------------------------------------------------------------
# Synthetic renderers
# ---------------------------------------------------------------------------------------------------------------

GLYPH_SHAPES = ("delta", "box", "orb", "kite")
# Marker dots per glyph: 1 to GLYPH_MAX_DOTS.
GLYPH_MAX_DOTS = 4
GLYPH_CLASSES = tuple(f"{shape}-{dots}" for shape in GLYPH_SHAPES for dots in range(1, GLYPH_MAX_DOTS + 1))
COLOURS = {
    "red": (220, 40, 40),
    "blue": (40, 80, 220),
    "green": (40, 170, 60),
    "yellow": (230, 200, 30),
    "purple": (140, 60, 190),
    "orange": (240, 130, 20),
}
OBJECT_SHAPES = ("circle", "square", "triangle")


def _noisy_background(rng: random.Random, size: int) -> Image.Image:
    base = tuple(rng.randint(200, 250) for _ in range(3))
    img = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(img)
    for _ in range(size // 4):
        x, y = rng.randrange(size), rng.randrange(size)
        shade = tuple(max(0, c - rng.randint(10, 40)) for c in base)
        draw.point((x, y), fill=shade)
    return img


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    if shape in ("orb", "circle"):
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape in ("box", "square"):
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape in ("delta", "triangle"):
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    elif shape == "kite":
        draw.polygon([(cx, cy - r), (cx - 0.7 * r, cy), (cx, cy + r), (cx + 0.7 * r, cy)], fill=fill)
    else:
        raise ValueError(shape)


def render_glyph(
    label: str,
    rng: random.Random,
    size: int,
    draw_shape=_draw_shape,
    scale: tuple[float, float] = (0.28, 0.36),
) -> Image.Image:
    """A glyph of class `label` ("<shape>-<dots>"): silhouette plus small white dots along its middle.

    `draw_shape(draw, shape, cx, cy, r, fill)` draws the silhouette and `scale` bounds its radius (a fraction of
    `size`); the testbed passes extra shapes and other sizes.
    """
    shape, dots = label.rsplit("-", 1)
    img = _noisy_background(rng, size)
    draw = ImageDraw.Draw(img)
    r = size * rng.uniform(*scale)
    cx = size / 2 + rng.uniform(-0.08, 0.08) * size
    cy = size / 2 + rng.uniform(-0.08, 0.08) * size
    colour = COLOURS[rng.choice(sorted(COLOURS))]
    draw_shape(draw, shape, cx, cy, r, colour)
    n = int(dots)
    dot_r = max(2.0, size / 28)
    span = 1.1 * r
    for i in range(n):
        x = cx - span / 2 + span * (i + 0.5) / n
        draw.ellipse((x - dot_r, cy + 0.2 * r - dot_r, x + dot_r, cy + 0.2 * r + dot_r), fill=(255, 255, 255))
    return img


def make_fgvc_synth(train_per_class: int, test_per_class: int, data_seed: int, image_size: int) -> Task:
    """The fine-grained classification stand-in for FGVC-Aircraft."""
    splits: dict[str, list[Sample]] = {}
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
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


def _spatial_row(rng: random.Random, size: int, uid: str) -> Sample:
    names = rng.sample([(c, s) for c in sorted(COLOURS) for s in OBJECT_SHAPES], 2)
    img = _noisy_background(rng, size)
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
        _draw_shape(draw, shape, x, y, r, COLOURS[colour])
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


def vocabulary_corpus() -> list[str]:
    """Every prompt and answer string the synthetic tasks can produce (the tiny tokenizer's training text)."""
    fgvc = make_fgvc_synth(1, 0, 0, 28)
    sat = make_sat_synth(64, 0, 0, 28)
    lines = []
    for task in (fgvc, sat):
        for s in task.splits["train"]:
            for think in (True, False):
                lines.append(task.prompt(s, think))
            lines.append(f"<think> the answer is {s.answer} </think> <answer>{s.answer}</answer>")
    lines += [f"<answer>{c}</answer>" for c in GLYPH_CLASSES]
    lines += [f"<answer>{option_letter(i)}</answer>" for i in range(4)]
    return lines


# Task name -> kind, known before any data is rendered or read (used by config validation).
TASK_KINDS = {
    "fgvc_synth": "classification",
    "sat_synth": "multiple_choice",
    "fgvc": "classification",
    "sat": "multiple_choice",
    "banner": "multiple_choice",
    "banner_synth": "multiple_choice",
}


def build_task(
    cfg: TaskConfig | str, *, seed: int = 0, splits: tuple[str, ...] = ("train", "test"), **fields: object
) -> Task:
    """Build the task `cfg.name`. For synthetic classification tasks the sizes are per class.

    Args:
        cfg: The task config, or a task name plus TaskConfig `fields` (`build_task("fgvc_synth", train_size=6)`).
        seed: The run seed; real multiple-choice tasks shuffle their options with it (per question uid).
        splits: The splits a real dataset loads ("train" is the pool of `cfg.train_split`); synthetic tasks
            always render train and test.

    Raises:
        ValueError: unknown task name (lists the known ones).
        rft.datasets.DataError: missing or malformed data, with the file or field and the fix.
    """
    if isinstance(cfg, str):
        from rft.config import TaskConfig

        cfg = TaskConfig(name=cfg, **fields)
    if cfg.name == "fgvc_synth":
        return make_fgvc_synth(cfg.train_size, cfg.test_size, cfg.data_seed, cfg.image_size)
    if cfg.name == "sat_synth":
        return make_sat_synth(cfg.train_size, cfg.test_size, cfg.data_seed, cfg.image_size)
    if cfg.name in TASK_KINDS:
        from rft.datasets import build_dataset_task  # imports this module

        return build_dataset_task(cfg, seed=seed, splits=splits)
    raise ValueError(f"unknown task {cfg.name!r}; known tasks: {sorted(TASK_KINDS)}")


class PromptStream:
    """An endless, seeded stream of training samples: each epoch is a fresh permutation of the train set.

    The position (epoch, index) is plain state, so a resumed run continues exactly where it stopped.
    """

    def __init__(self, samples: list[Sample], seed: int):
        if not samples:
            raise BudgetError(
                "the training set is empty; check task.* and budget.* (budget.size must be > 0)"
            )
        self.samples = samples
        self.seed = seed
        self.epoch = 0
        self.index = 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        order = list(range(len(self.samples)))
        random.Random(f"stream-{self.seed}-{epoch}").shuffle(order)
        return order

    def take(self, n: int) -> list[Sample]:
        """The next n samples, crossing into the next epoch's permutation when this one runs out."""
        out = []
        for _ in range(n):
            if self.index == len(self._order):
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            out.append(self.samples[self._order[self.index]])
            self.index += 1
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.index = state["epoch"], state["index"]
        self._order = self._permutation(self.epoch)
