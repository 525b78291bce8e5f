"""`model=tiny_base`: the tiny Qwen2-VL, briefly pretrained on CPU so that it starts with partial skill.

A random-init tiny model never emits the answer format, so every GRPO group has zero reward variance and RFT
cannot move; comparing RFT with SFT on it says nothing. `tiny_base` is the `tiny` preset after a few minutes of
the suite's own SFT loop (`rft.sft.train`, unchanged) on a broad synthetic corpus, in the tasks' output format
with short think traces (`<think> the circle is red </think> <answer>red</answer>`; a quarter of the samples use
the answer-only prompt and target, so `reward=nothink` is in distribution too):

- colour: "What colour is the <shape>?" (one or two objects, so the name must pick the object)
- shape: "Which shape is <colour>?"
- count: "How many objects are in the picture?" (1-4 objects)
- position: "Is the <colour> <shape> left or right of the centre?" / "above or below the centre?" (options
  shuffled, one or two objects anywhere in the image)
- glyph parts: "What silhouette does this glyph have?" / "How many white dots does this glyph carry?" (1-6 dots)
- glyph names: "Which glyph model is drawn here?" -- only for glyphs with 5 or 6 dots, classes fgvc_synth has not
- text: "What word is written in the image?" (a rendered word)

Disjointness from the target tasks (fgvc_synth, sat_synth), by construction and tested in tests/test_testbed.py:
1. Images: every corpus image is drawn from an RNG seeded `testbed-<seed>-<kind>-<i>`; the targets seed theirs
   `fgvc_synth-...` / `sat_synth-...`, so no image is shared (the test compares the bytes of every image).
2. Questions: every corpus question comes from the templates above, none of which is a target template (the
   fgvc_synth "identify the model of the glyph" prompt, sat_synth's "to the left or to the right of the ..."),
   so no (prompt, answer) pair is shared.
3. Labels: the corpus never names a fgvc_synth class (its glyph names have 5-6 dots, the classes 1-4). Zero-shot
   fgvc_synth skill therefore needs composition (silhouette + dot count + the naming pattern), and sat_synth
   skill needs the position-of-one-object questions to transfer to the relation between two objects. That is
   the "partial skill" a base model should have: above chance, below ceiling.

The result is cached under `cache_dir`, keyed by a hash of everything that determines it (the `tiny` preset's
key, the corpus and SFT settings, the seed), written to a temp folder and renamed into place.

    python -m rft.testbed --cache-dir ~/.cache/rft-suite/models     # `make tiny-base`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from rft.tasks import (
    COLOURS,
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
TESTBED_VERSION = 1
# The architecture tiny_base starts from (rft.models.TINY_PRESETS).
BASE_PRESET = "tiny"
# Rendered image side: the same as the target tasks' default, so the pixel budget matches.
IMAGE_SIZE = 112
# Fraction of corpus samples asked with the answer-only prompt (target `<answer>X</answer>`, no trace).
NOTHINK_FRACTION = 0.25
# Dots of the glyphs the corpus names; fgvc_synth's classes have 1-4, so no class name is ever taught.
NAMED_GLYPH_DOTS = (5, 6)
WORDS = ("sun", "map", "cup", "hat", "pen", "key", "egg", "fox", "jam", "owl", "ink", "bus")
# The SFT recipe (rft.config.SFTConfig fields); `steps` sets the corpus size: one epoch of steps x batch_size.
PRETRAIN = dict(steps=200, batch_size=16, micro_batch_size=16, lr=3e-3, warmup_ratio=0.05, max_grad_norm=1.0)
# Answer-slot words of the open-question format example, per corpus question type.
SLOTS = {
    "colour": "colour name",
    "shape": "shape name",
    "count": "number",
    "glyph_silhouette": "silhouette name",
    "glyph_dots": "number",
    "glyph_name": "glyph model",
    "text": "word",
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
        _draw_shape(draw, shape, x, y, r, COLOURS[colour])
    return img, centres


def gen_colour(rng: random.Random):
    objects = _objects(rng, rng.choice((1, 2)))
    img, _ = _scene(rng, objects, IMAGE_SIZE * 0.14)
    colour, shape = rng.choice(objects)
    return (img,), f"What colour is the {shape}?", colour, (), f"the {shape} is {colour}"


def gen_shape(rng: random.Random):
    objects = _objects(rng, rng.choice((1, 2)))
    img, _ = _scene(rng, objects, IMAGE_SIZE * 0.14)
    colour, shape = rng.choice(objects)
    return (img,), f"Which shape is {colour}?", shape, (), f"the {colour} one is a {shape}"


def gen_count(rng: random.Random):
    n = rng.randint(1, 4)
    shape, colour = rng.choice(OBJECT_SHAPES), rng.choice(sorted(COLOURS))
    img, _ = _scene(rng, [(colour, shape)] * n, IMAGE_SIZE * 0.09)
    noun = "object" if n == 1 else "objects"
    return (img,), "How many objects are in the picture?", str(n), (), f"{n} {noun}"


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
        side = "left" if low else "right"
    else:
        answer, options = ("above" if low else "below"), ["above", "below"]
        question = f"Is the {colour} {shape} above or below the centre?"
        side = "top" if low else "bottom"
    rng.shuffle(options)
    return (img,), question, answer, tuple(options), f"{colour} {shape} on the {side}"


def gen_glyph_silhouette(rng: random.Random):
    shape = rng.choice(GLYPH_SHAPES)
    img = render_glyph(f"{shape}-{rng.randint(1, 6)}", rng, IMAGE_SIZE)
    return (img,), "What silhouette does this glyph have?", shape, (), f"the shape is a {shape}"


def gen_glyph_dots(rng: random.Random):
    dots = rng.randint(1, 6)
    img = render_glyph(f"{rng.choice(GLYPH_SHAPES)}-{dots}", rng, IMAGE_SIZE)
    return (img,), "How many white dots does this glyph carry?", str(dots), (), f"{dots} dots"


def gen_glyph_name(rng: random.Random):
    shape, dots = rng.choice(GLYPH_SHAPES), rng.choice(NAMED_GLYPH_DOTS)
    img = render_glyph(f"{shape}-{dots}", rng, IMAGE_SIZE)
    rationale = f"{shape} {dots}"
    return (img,), "Which glyph model is drawn here?", f"{shape}-{dots}", (), rationale


def gen_text(rng: random.Random):
    word = rng.choice(WORDS)
    img = _noisy_background(rng, IMAGE_SIZE)
    font = ImageFont.load_default(size=rng.randint(26, 34))
    fill = tuple(c // 2 for c in COLOURS[rng.choice(sorted(COLOURS))])
    left, top, right, bottom = ImageDraw.Draw(img).textbbox((0, 0), word, font=font)
    x = rng.uniform(2, max(3, IMAGE_SIZE - (right - left) - 2))
    y = rng.uniform(2, max(3, IMAGE_SIZE - (bottom - top) - 2)) - top
    ImageDraw.Draw(img).text((x, y), word, font=font, fill=fill)
    spelled = " ".join(word)
    return (img,), "What word is written in the image?", word, (), spelled


GENERATORS = {
    "colour": gen_colour,
    "shape": gen_shape,
    "count": gen_count,
    "position": gen_position,
    "glyph_silhouette": gen_glyph_silhouette,
    "glyph_dots": gen_glyph_dots,
    "glyph_name": gen_glyph_name,
    "text": gen_text,
}


def make_corpus(size: int, seed: int) -> CorpusTask:
    """`size` corpus samples, question types in rotation, every image from its own `testbed-...` rng."""
    rows = []
    kinds = sorted(GENERATORS)
    for i in range(size):
        kind = kinds[i % len(kinds)]
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
