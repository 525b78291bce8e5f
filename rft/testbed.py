"""`model=tiny_base`: a small Qwen2-VL, briefly pretrained on CPU so that it starts with partial skill.

A random-init tiny model never emits the answer format, so every GRPO group has zero reward variance and RFT
cannot move; comparing RFT with SFT on it says nothing. `tiny_base` is the `small` preset (rft.models.TINY_PRESETS)
after a few minutes of the suite's own SFT loop (`rft.sft.train`, unchanged) on a synthetic corpus in the target
tasks' output format with short think traces (`<think> kite 5 dots </think> <answer>kite-5</answer>`; a quarter of
the samples use the answer-only prompt and target, so `reward=nothink` is in distribution too). The corpus teaches
the perception the targets need (silhouette, dot count, where one object is relative to another) on held-out
combinations:

- glyph_model: fgvc_synth's own classification prompt ("This is an image containing a glyph. Please identify the
  model of the glyph ..."), answered "<silhouette>-<dots>" -- but only for glyphs that are not fgvc_synth classes:
  the corpus-only silhouettes (hex, oval, pent, slab) with 1-6 dots, and fgvc_synth's silhouettes with 5-6 dots.
- glyph_dots / glyph_silhouette: "How many white dots does this glyph carry?" / "What silhouette does this glyph
  have?" over every silhouette with 1-6 dots. All three glyph questions share one trace, "<silhouette> <n> dots",
  so the trace describes the glyph whatever the question and the class name copies it.
- relation: sat_synth's question form ("Is the A to the left or to the right of the B?", "above or below", options
  shuffled), but every pair has a kite or a corpus-only colour (pink, brown, cyan), objects sat_synth never draws.
- position ("Is the red circle left or right of the centre?") and colour ("What colour is the square?").

Disjointness from the target tasks (fgvc_synth, sat_synth), by construction and tested in tests/test_testbed.py:
1. Images: every corpus image is drawn from an RNG seeded `testbed-<seed>-<kind>-<i>`; the targets seed theirs
   `fgvc_synth-...` / `sat_synth-...`, so no image is shared (the test compares the bytes of every image).
2. Questions: no corpus question is a target question (sat_synth never asks about a kite or a corpus colour;
   fgvc_synth's questions are the bare template), and no (prompt, answer) pair is shared: a glyph_model prompt is
   fgvc_synth's, but its answer never is a fgvc_synth class.
3. Labels: the corpus never names a fgvc_synth class (1-4 dots on delta, box, orb, kite), neither as an answer
   nor as a trace. Zero-shot fgvc_synth skill therefore needs composition (a target silhouette with 1-4 dots,
   described and named as the corpus names other glyphs), and sat_synth skill needs the relation between objects
   to transfer to pairs of objects the corpus never asks about. That is the "partial skill" a base model should
   have: above chance, below ceiling.

The result is cached under `cache_dir`, keyed by a hash of everything that determines it (the `tiny` preset's
key, the corpus and SFT settings, the seed), written to a temp folder and renamed into place.

    python -m rft.testbed --cache-dir ~/.cache/rft-suite/models     # `make tiny-base`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

from rft.tasks import (
    COLOURS,
    GLYPH_CLASSES,
    GLYPH_SHAPES,
    MC_NOTHINK_INSTRUCTION,
    MC_THINK_INSTRUCTION,
    NOTHINK_INSTRUCTION,
    OBJECT_SHAPES,
    THINK_INSTRUCTION,
    Sample,
    Task,
    _draw_shape,
    _noisy_background,
    format_options,
    render_glyph,
)

log = logging.getLogger(__name__)

# Bump when the corpus, its prompts or the pretraining recipe change: it is part of the cache key.
TESTBED_VERSION = 2
# The architecture tiny_base starts from (rft.models.TINY_PRESETS).
BASE_PRESET = "small"
# Rendered image side: the same as the target tasks' default, so the pixel budget matches.
IMAGE_SIZE = 112
# Fraction of corpus samples asked with the answer-only prompt (target `<answer>X</answer>`, no trace).
NOTHINK_FRACTION = 0.25
# Glyph silhouettes only the corpus draws; glyphs are named "<silhouette>-<dots>" with 1-6 dots, except that a
# fgvc_synth silhouette is named only with 5-6 dots, so no fgvc_synth class (1-4 dots) is ever taught.
EXTRA_SILHOUETTES = ("hex", "oval", "pent", "slab")
# The object noun of the corpus's classification questions (fgvc_synth's own template and noun).
GLYPH_NOUN = "a glyph"
# Colours only the corpus uses; with the kite they make object pairs sat_synth never asks about.
EXTRA_COLOURS = {"pink": (240, 120, 180), "brown": (130, 80, 40), "cyan": (40, 190, 210)}
CORPUS_COLOURS = {**COLOURS, **EXTRA_COLOURS}
RELATION_OBJECTS = [(c, s) for c in sorted(CORPUS_COLOURS) for s in OBJECT_SHAPES + ("kite",)]
# The SFT recipe (rft.config.SFTConfig fields); `steps` sets the corpus size: one epoch of steps x batch_size.
PRETRAIN = dict(steps=240, batch_size=16, micro_batch_size=16, lr=2e-3, warmup_ratio=0.05, max_grad_norm=1.0)
# Answer-slot words of the open-question format example, per corpus question type.
SLOTS = {
    "colour": "colour name",
    "glyph_silhouette": "silhouette name",
    "glyph_dots": "number",
    "glyph_model": "glyph model",
}


class CorpusTask(Task):
    """The corpus as a Task: each sample carries its own question, and asks to think iff it has a rationale."""

    def prompt(self, sample: Sample, think: bool) -> str:
        think = bool(sample.rationale)  # the per-sample choice overrides the run's reward.think
        if sample.options:
            instruction = MC_THINK_INSTRUCTION if think else MC_NOTHINK_INSTRUCTION
            return f"{sample.question} Options: {format_options(sample.options)}  {instruction}"
        instruction = (THINK_INSTRUCTION if think else NOTHINK_INSTRUCTION).format(slot=SLOTS[sample.qtype])
        return f"{sample.question}\n{instruction}"


# ---------------------------------------------------------------------------------------------------------------
# Corpus generators: each returns (images, question, answer, options, rationale) from a seeded rng.
# ---------------------------------------------------------------------------------------------------------------


def _objects(rng: random.Random, n: int) -> list[tuple[str, str]]:
    """n (colour, shape) pairs with distinct colours and distinct shapes, so a colour or a shape names one."""
    colours = rng.sample(sorted(COLOURS), n)
    shapes = rng.sample(OBJECT_SHAPES + ("kite",), n)
    return list(zip(colours, shapes, strict=True))


def _scene(rng: random.Random, objects: list[tuple[str, str]], r: float) -> tuple[Image.Image, list]:
    """Objects at random non-overlapping positions; returns the image and the centres."""
    img = _noisy_background(rng, IMAGE_SIZE)
    draw = ImageDraw.Draw(img)
    centres: list[tuple[float, float]] = []
    for colour, shape in objects:
        for _ in range(100):
            x, y = rng.uniform(r + 2, IMAGE_SIZE - r - 2), rng.uniform(r + 2, IMAGE_SIZE - r - 2)
            if all((x - a) ** 2 + (y - b) ** 2 > (2.2 * r) ** 2 for a, b in centres):
                break
        centres.append((x, y))
        _draw_corpus_shape(draw, shape, x, y, r, CORPUS_COLOURS[colour])
    return img, centres


def _draw_corpus_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    """The target tasks' shapes (rft.tasks._draw_shape) plus the corpus-only glyph silhouettes."""
    if shape == "hex":
        pts = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (math.pi * k / 3 for k in range(6))]
        draw.polygon(pts, fill=fill)
    elif shape == "oval":
        draw.ellipse((cx - r, cy - 0.7 * r, cx + r, cy + 0.7 * r), fill=fill)
    elif shape == "pent":
        pts = [(cx + r * math.sin(a), cy - r * math.cos(a)) for a in (2 * math.pi * k / 5 for k in range(5))]
        draw.polygon(pts, fill=fill)
    elif shape == "slab":
        draw.rectangle((cx - r, cy - 0.55 * r, cx + r, cy + 0.6 * r), fill=fill)
    else:
        _draw_shape(draw, shape, cx, cy, r, fill)


def _glyph(shape: str, dots: int, rng: random.Random) -> Image.Image:
    """A glyph as rft.tasks.render_glyph draws it (same nuisances and dot layout), for any silhouette and 1-6 dots."""
    return render_glyph(f"{shape}-{dots}", rng, IMAGE_SIZE, draw_shape=_draw_corpus_shape)


def _glyph_parts(rng: random.Random) -> tuple[str, int]:
    """A (silhouette, dots) pair that is never a fgvc_synth class: a target silhouette only with 5-6 dots."""
    while True:
        shape, dots = rng.choice(GLYPH_SHAPES + EXTRA_SILHOUETTES), rng.randint(1, 6)
        if f"{shape}-{dots}" not in GLYPH_CLASSES:
            return shape, dots


def _trace(shape: str, dots: int) -> str:
    """The shared glyph trace: what the glyph shows, whatever the question."""
    return f"{shape} {dots} dots"


def gen_glyph_model(rng: random.Random):
    shape, dots = _glyph_parts(rng)
    question = (
        f"This is an image containing {GLYPH_NOUN}. Please identify the model of the {GLYPH_NOUN.split()[-1]} "
        "based on the image."
    )
    return (_glyph(shape, dots, rng),), question, f"{shape}-{dots}", (), _trace(shape, dots)


def gen_glyph_dots(rng: random.Random):
    shape, dots = rng.choice(GLYPH_SHAPES + EXTRA_SILHOUETTES), rng.randint(1, 6)
    question = "How many white dots does this glyph carry?"
    return (_glyph(shape, dots, rng),), question, str(dots), (), _trace(shape, dots)


def gen_glyph_silhouette(rng: random.Random):
    shape, dots = rng.choice(GLYPH_SHAPES + EXTRA_SILHOUETTES), rng.randint(1, 6)
    question = "What silhouette does this glyph have?"
    return (_glyph(shape, dots, rng),), question, shape, (), _trace(shape, dots)


def gen_relation(rng: random.Random):
    """sat_synth's question form over object pairs it never asks about (one object is a kite or a corpus colour)."""
    while True:
        names = rng.sample(RELATION_OBJECTS, 2)
        if any(c in EXTRA_COLOURS or s == "kite" for c, s in names):
            break
    img = _noisy_background(rng, IMAGE_SIZE)
    draw = ImageDraw.Draw(img)
    r = IMAGE_SIZE * 0.12
    horizontal = rng.random() < 0.5
    lo, hi = r + 2, IMAGE_SIZE - r - 2
    a_main, b_main = rng.uniform(lo, IMAGE_SIZE / 2 - r), rng.uniform(IMAGE_SIZE / 2 + r, hi)
    if rng.random() < 0.5:
        a_main, b_main = b_main, a_main
    a_off, b_off = rng.uniform(lo, hi), rng.uniform(lo, hi)
    if horizontal:
        pos = ((a_main, a_off), (b_main, b_off))
        answer, options = ("left" if a_main < b_main else "right"), ["left", "right"]
    else:
        pos = ((a_off, a_main), (b_off, b_main))
        answer, options = ("above" if a_main < b_main else "below"), ["above", "below"]
    for (colour, shape), (x, y) in zip(names, pos, strict=True):
        _draw_corpus_shape(draw, shape, x, y, r, CORPUS_COLOURS[colour])
    rng.shuffle(options)
    (ca, sa), (cb, sb) = names
    relation = "to the left or to the right of" if horizontal else "above or below"
    question = f"Is the {ca} {sa} {relation} the {cb} {sb}?"
    return (img,), question, answer, tuple(options), f"{ca} {sa} is {answer}"


def gen_position(rng: random.Random):
    objects = _objects(rng, rng.choice((1, 2)))
    r = IMAGE_SIZE * 0.12
    # Keep every centre clearly off the middle line of the asked axis.
    for _ in range(100):
        img, centres = _scene(rng, objects, r)
        axis = rng.choice((0, 1))
        k = rng.randrange(len(objects))
        if abs(centres[k][axis] - IMAGE_SIZE / 2) > 0.1 * IMAGE_SIZE:
            break
    colour, shape = objects[k]
    low = centres[k][axis] < IMAGE_SIZE / 2
    if axis == 0:
        answer, options = ("left" if low else "right"), ["left", "right"]
        question = f"Is the {colour} {shape} left or right of the centre?"
    else:
        answer, options = ("above" if low else "below"), ["above", "below"]
        question = f"Is the {colour} {shape} above or below the centre?"
    rng.shuffle(options)
    return (img,), question, answer, tuple(options), f"{colour} {shape} is {answer}"


def gen_colour(rng: random.Random):
    objects = _objects(rng, rng.choice((1, 2)))
    img, _ = _scene(rng, objects, IMAGE_SIZE * 0.14)
    colour, shape = rng.choice(objects)
    return (img,), f"What colour is the {shape}?", colour, (), f"the {shape} is {colour}"


GENERATORS = {
    "glyph_model": gen_glyph_model,
    "glyph_dots": gen_glyph_dots,
    "glyph_silhouette": gen_glyph_silhouette,
    "relation": gen_relation,
    "position": gen_position,
    "colour": gen_colour,
}
# The order question types take turns in (so a corpus prefix has the mix): weighted toward the two target forms.
ROTATION = (
    "glyph_model", "relation", "glyph_dots", "glyph_model", "relation", "glyph_silhouette",
    "glyph_model", "relation", "position", "glyph_model", "relation", "colour",
)  # fmt: skip


def make_corpus(size: int, seed: int) -> CorpusTask:
    """`size` corpus samples, question types in rotation, every image from its own `testbed-...` rng."""
    rows = []
    for i in range(size):
        kind = ROTATION[i % len(ROTATION)]
        rng = random.Random(f"testbed-{seed}-{kind}-{i}")
        images, question, answer, options, rationale = GENERATORS[kind](rng)
        think = rng.random() >= NOTHINK_FRACTION
        rows.append(
            Sample(
                uid=f"corpus-{kind}-{i}",
                images=images,
                question=question,
                answer=answer,
                options=options,
                qtype=kind,
                rationale=rationale if think else "",
            )
        )
    return CorpusTask(name="tiny_base_corpus", kind="multiple_choice", splits={"train": rows})


# ---------------------------------------------------------------------------------------------------------------
# Build and cache
# ---------------------------------------------------------------------------------------------------------------


def tiny_base_dir(cache_dir: Path, seed: int, steps: int) -> Path:
    """The cache folder of tiny_base; its name hashes the base preset's key, the recipe, the steps and the seed."""
    from rft import models

    base = models.tiny_model_dir(BASE_PRESET, seed, cache_dir).name
    recipe = {**PRETRAIN, "steps": steps}
    key = json.dumps([base, TESTBED_VERSION, recipe, NOTHINK_FRACTION, IMAGE_SIZE, seed], sort_keys=True)
    name = "tiny_base" if steps == PRETRAIN["steps"] else f"tiny_base{steps}"
    return cache_dir / f"{name}-s{seed}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


def build_tiny_base(cache_dir: Path, seed: int = 0, steps: int | None = None) -> Path:
    """Build (once) and return the folder of tiny_base: `tiny` + `steps` SFT steps on the corpus.

    Args:
        cache_dir: The model cache (model.cache_dir); `tiny` is built there too if missing.
        seed: Weight-init seed of `tiny`, and the corpus and data-order seed.
        steps: SFT steps (default PRETRAIN["steps"]); tests pass a few to build a reduced model quickly.

    Returns:
        A folder saved with save_pretrained (model, tokenizer, processor, pretrain_metrics.jsonl).
    """
    from rft import models, sft
    from rft.config import LoggerConfig, RunConfig, SFTConfig
    from rft.tracking import Tracker

    steps = PRETRAIN["steps"] if steps is None else steps
    cache_dir = Path(cache_dir).expanduser()
    out = tiny_base_dir(cache_dir, seed, steps)
    if (out / "config.json").is_file():
        return out
    log.info("building tiny_base (%d SFT steps, seed %d) into %s", steps, seed, out)
    import torch

    spec = models.ModelSpec(
        id=BASE_PRESET,
        path=None,
        builtin=True,
        seed=seed,
        dtype="float32",
        attn_implementation="sdpa",
        min_pixels=28 * 28,
        max_pixels=IMAGE_SIZE * IMAGE_SIZE,
        trust_remote_code=False,
        cache_dir=str(cache_dir),
    )
    model, processor = models.load_model(spec)
    batch = PRETRAIN["batch_size"]
    cfg = RunConfig(
        method=SFTConfig(
            epochs=1,
            batch_size=batch,
            micro_batch_size=PRETRAIN["micro_batch_size"],
            lr=PRETRAIN["lr"],
            warmup_ratio=PRETRAIN["warmup_ratio"],
            max_grad_norm=PRETRAIN["max_grad_norm"],
        ),
        logger=LoggerConfig(backend="none"),
        seed=seed,
    )
    corpus = make_corpus(steps * batch, seed)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=cache_dir))
    try:
        torch.manual_seed(seed)
        tracker = Tracker(
            tmp / "pretrain", enabled=True, backend="none", project="", name="tiny_base", mode="disabled",
            config={}, axes={},
        )  # fmt: skip
        stats, _ = sft.train(cfg, corpus, corpus.split("train"), model, processor, tracker)
        tracker.finish()
        log.info("tiny_base pretraining done: %s", stats)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").is_file():  # another job may have won the race
            raise
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Build the pretrained tiny_base model (`make tiny-base`).")
    parser.add_argument("--cache-dir", type=Path, required=True, help="the model cache (model.cache_dir)")
    parser.add_argument("--seed", type=int, default=0, help="weight-init, corpus and data-order seed")
    parser.add_argument("--steps", type=int, default=None, help=f"SFT steps (default {PRETRAIN['steps']})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    out = build_tiny_base(args.cache_dir, args.seed, args.steps)
    print(out)
    return out


if __name__ == "__main__":
    main()
