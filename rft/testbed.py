"""`model=tiny_base`: the `small` tiny Qwen2-VL after a short SFT pretraining, so that it starts with partial skill.

A random-init tiny model never emits the answer format, so every GRPO group has zero reward variance and RFT cannot
move. `tiny_base` is `rft.tiny`'s `small` preset after `PRETRAIN["steps"]` steps of the suite's own SFT loop
(`rft.sft.train`, in `PHASES`) on a synthetic corpus in the target tasks' output format with short think traces:
glyph silhouettes (answer-only), glyph models traced "<silhouette> <n> dots", and left/right or above/below
relations traced in image order. The corpus shares the target tasks' prompts and vocabulary but no image, and
draws its objects at sizes the targets never use (tests/test_testbed.py checks both); docs/tiny_study.md says
what the testbed can and cannot measure. The folder is cached under `cache_dir`, keyed by a hash of everything
that determines it, and written atomically. The pipeline builds it on first use; so does:

    python -m rft.testbed --cache-dir ~/.cache/rft-suite/models     # `make tiny-base`
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import random
import shutil
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image, ImageDraw

from rft import sft, tiny
from rft.config import LoggerConfig, ModelConfig, RunConfig, SFTConfig
from rft.data.base import (
    MC_NOTHINK_INSTRUCTION,
    MC_THINK_INSTRUCTION,
    NOTHINK_INSTRUCTION,
    THINK_INSTRUCTION,
    Sample,
    Task,
    format_options,
)
from rft.data.draw import (
    COLOURS,
    GLYPH_MAX_DOTS,
    GLYPH_SHAPES,
    OBJECT_SHAPES,
    draw_shape,
    noisy_background,
    render_glyph,
)
from rft.models import load_model
from rft.tracking import Tracker

log = logging.getLogger(__name__)

# Bump when the corpus, its prompts or the pretraining recipe change: it is part of the cache key.
TESTBED_VERSION = 7
# The architecture tiny_base starts from (rft.tiny.TINY_PRESETS).
BASE_PRESET = "small"
# Rendered image side: the same as the target tasks' default, so the pixel budget matches.
IMAGE_SIZE = 112
# Fraction of corpus samples asked with the answer-only prompt (target `<answer>X</answer>`, no trace).
NOTHINK_FRACTION = 0.25
# Glyph silhouettes only the corpus draws; glyphs are named "<silhouette>-<dots>" over these and fgvc_synth's four.
EXTRA_SILHOUETTES = ("hex", "oval", "pent", "slab")
# The object noun of the corpus's classification questions (fgvc_synth's own template and noun).
GLYPH_NOUN = "a glyph"
RELATION_OBJECTS = [(c, s) for c in sorted(COLOURS) for s in OBJECT_SHAPES]
# Object radius as a fraction of the image side, drawn per sample from one of these ranges. sat_synth draws 0.12
# and the corpus never does (a size shift the zero-shot skill must carry over); the larger objects are what lets
# the small LM find objects at all (docs/tiny_study.md).
RELATION_SCALES = ((0.09, 0.11), (0.13, 0.22))
# Glyph radius ranges; fgvc_synth draws 0.28-0.36.
GLYPH_SCALES = ((0.20, 0.27), (0.37, 0.42))
# CPU threads of the build. The float summation order follows the thread count and thousands of steps amplify
# the difference (docs/tiny_study.md), so the count is pinned: a machine of the same type rebuilds the same
# model whatever its core count.
BUILD_THREADS = 2
# Answer-slot words of the open-question format example, per corpus question type.
SLOTS = {
    "glyph_silhouette": "silhouette name",
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


def _draw_corpus_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
    """The target tasks' shapes (rft.data.draw.draw_shape) plus the corpus-only glyph silhouettes."""
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
        draw_shape(draw, shape, cx, cy, r, fill)


def _glyph(shape: str, dots: int, rng: random.Random) -> Image.Image:
    """A glyph as rft.data.draw.render_glyph draws it (same nuisances and dot layout), for any silhouette, at a size
    fgvc_synth never draws (GLYPH_SCALES)."""
    scale = rng.choice(GLYPH_SCALES)
    return render_glyph(f"{shape}-{dots}", rng, IMAGE_SIZE, draw_shape=_draw_corpus_shape, scale=scale)


def _glyph_parts(rng: random.Random) -> tuple[str, int]:
    """A (silhouette, dots) pair: any of the 8 silhouettes, 1 to fgvc_synth's GLYPH_MAX_DOTS (4) dots, so
    fgvc_synth's 16 names are among them. At the corpus's small glyph sizes, 5 or 6 dots ran together."""
    return rng.choice(GLYPH_SHAPES + EXTRA_SILHOUETTES), rng.randint(1, GLYPH_MAX_DOTS)


def gen_glyph_model(rng: random.Random):
    """fgvc_synth's question, traced "<silhouette> <n> dots" and answered "<silhouette>-<n>"."""
    shape, dots = _glyph_parts(rng)
    question = (
        f"This is an image containing {GLYPH_NOUN}. Please identify the model of the {GLYPH_NOUN.split()[-1]} "
        "based on the image."
    )
    return (_glyph(shape, dots, rng),), question, f"{shape}-{dots}", (), f"{shape} {dots} dots"


def gen_glyph_silhouette(rng: random.Random):
    """ "What silhouette does this glyph have?", answer-only (no rationale): the perception warm-up."""
    shape, dots = _glyph_parts(rng)
    return (_glyph(shape, dots, rng),), "What silhouette does this glyph have?", shape, (), ""


def gen_relation(rng: random.Random):
    """sat_synth's question form, at object sizes it never draws (RELATION_SCALES).

    As in sat_synth, the two objects sit on either side of the image's middle along the asked axis. The trace
    first describes the scene in image order, then restates the asked-about object with its side: "red circle
    above blue square below so blue square below".
    """
    names = rng.sample(RELATION_OBJECTS, 2)
    img = noisy_background(rng, IMAGE_SIZE)
    draw = ImageDraw.Draw(img)
    r = IMAGE_SIZE * rng.uniform(*rng.choice(RELATION_SCALES))
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
        _draw_corpus_shape(draw, shape, x, y, r, COLOURS[colour])
    rng.shuffle(options)
    (ca, sa), (cb, sb) = names
    relation = "to the left or to the right of" if horizontal else "above or below"
    question = f"Is the {ca} {sa} {relation} the {cb} {sb}?"
    first_side, second_side = ("left", "right") if horizontal else ("above", "below")
    first, second = (f"{ca} {sa}", f"{cb} {sb}") if a_main < b_main else (f"{cb} {sb}", f"{ca} {sa}")
    trace = f"{first} {first_side} {second} {second_side} so {ca} {sa} {answer}"
    return (img,), question, answer, tuple(options), trace


GENERATORS = {
    "glyph_model": gen_glyph_model,
    "glyph_silhouette": gen_glyph_silhouette,
    "relation": gen_relation,
}


class Phase(NamedTuple):
    """One `rft.sft.train` call of the pretraining, over its own corpus slice."""

    steps: int  # optimizer steps
    batch_size: int
    lr: float  # peak; warm-up then linear decay within the phase
    rotation: tuple[str, ...]  # the order question types take turns in


# Glyph perception first, answer-only; then fgvc_synth's question with its trace; then mostly relations, with glyph
# names replayed. Each skill needs a large enough block of its own samples at its own learning rate (the probes
# behind this order are in docs/tiny_study.md).
PHASES = (
    Phase(800, 16, 5e-4, ("glyph_silhouette",)),
    Phase(400, 16, 5e-4, ("glyph_model",)),
    Phase(4500, 8, 1e-3, ("relation", "relation", "relation", "glyph_model")),
)
# The SFT settings every phase shares (rft.config.SFTConfig fields); `steps` is the sum of PHASES' steps, and a
# smaller value (tests) shrinks every phase in proportion.
PRETRAIN = dict(steps=sum(phase.steps for phase in PHASES), warmup_ratio=0.05, max_grad_norm=1.0)
# Every question type, for corpus samples outside a phase (tests, inspection).
ROTATION = tuple(dict.fromkeys(kind for phase in PHASES for kind in phase.rotation))


def make_corpus(size: int, seed: int, rotation: tuple[str, ...] = ROTATION, offset: int = 0) -> CorpusTask:
    """`size` corpus samples, question types in `rotation`, every image from its own `testbed-...` rng.

    `offset` numbers the samples from there, so the phases of one build never share a sample.
    """
    rows = []
    for i in range(offset, offset + size):
        kind = rotation[i % len(rotation)]
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


def phase_steps(steps: int) -> list[int]:
    """Each phase's share of `steps` in proportion to PHASES' steps (exactly those at the default), at least 1."""
    if steps < len(PHASES):
        raise ValueError(f"tiny_base needs at least {len(PHASES)} SFT steps (one per phase), got {steps}")
    total = sum(phase.steps for phase in PHASES)
    out = [max(1, round(phase.steps * steps / total)) for phase in PHASES]
    while sum(out) != steps:  # rounding: the largest phase gives or takes the difference
        out[out.index(max(out))] += 1 if sum(out) < steps else -1
    return out


def tiny_base_dir(cache_dir: Path, seed: int, steps: int) -> Path:
    """The cache folder of tiny_base; its name hashes the base preset's key, the recipe, the steps and the seed."""
    base = tiny.tiny_model_dir(BASE_PRESET, seed, cache_dir).name
    recipe = {**PRETRAIN, "steps": steps}
    key = json.dumps(
        [
            base,
            TESTBED_VERSION,
            recipe,
            PHASES,
            NOTHINK_FRACTION,
            IMAGE_SIZE,
            GLYPH_MAX_DOTS,
            GLYPH_SCALES,
            RELATION_SCALES,
            seed,
        ],
        sort_keys=True,
    )
    name = "tiny_base" if steps == PRETRAIN["steps"] else f"tiny_base{steps}"
    return cache_dir / f"{name}-s{seed}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"


# The repo ships the default build (seed 0, PRETRAIN steps) as `rft/assets/tiny_base/`, so a fresh clone needs no
# pretraining; `BUILD.json` there names the cache folder it is and the sha256 of its weights.
SHIPPED = Path(__file__).parent / "assets" / "tiny_base"
WEIGHTS = "model.safetensors"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_build(name: str) -> tuple[Path, str] | None:
    """The shipped folder and its weights' sha256 when the repo ships the build named `name`, else None."""
    meta = SHIPPED / "BUILD.json"
    if not meta.is_file():
        return None
    build = json.loads(meta.read_text())
    return (SHIPPED, build["sha256"]) if build["name"] == name else None


def install_shipped(out: Path) -> bool:
    """Copy the shipped tiny_base into the cache folder `out` (atomically, checksum verified); False if none."""
    shipped = shipped_build(out.name)
    if shipped is None:
        return False
    folder, digest = shipped
    if sha256(folder / WEIGHTS) != digest:
        raise RuntimeError(
            f"{folder / WEIGHTS} does not match the sha256 in {folder / 'BUILD.json'}: the checkout is damaged; "
            "restore it (git checkout rft/assets) or rebuild with `make tiny-base`"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with tiny.building(out) as tmp:
        for f in folder.iterdir():
            if f.name != "BUILD.json":
                shutil.copy2(f, tmp / f.name)
    log.info("tiny_base: installed the shipped build (sha256 %s) into %s", digest[:12], out)
    return True


def build_tiny_base(
    cache_dir: Path, seed: int = 0, steps: int | None = None, *, rebuild: bool = False
) -> Path:
    """Return the folder of tiny_base: `small` + `steps` SFT steps on the corpus, in PHASES.

    A cached folder is used as it is; else the shipped build is copied in when it is this one (seed 0, default
    steps); else it is built, on the CPU with `BUILD_THREADS` threads, so the weights are reproducible.

    Args:
        cache_dir: The model cache (model.cache_dir); `tiny` is built there too if missing.
        seed: Weight-init seed of `tiny`, and the corpus and data-order seed.
        steps: SFT steps (default PRETRAIN["steps"]); tests pass a few to build a reduced model quickly.
        rebuild: Build from scratch even when a shipped build exists (`make tiny-base` checks it).

    Returns:
        A folder saved with save_pretrained (model, tokenizer, processor).
    """
    steps = PRETRAIN["steps"] if steps is None else steps
    cache_dir = Path(cache_dir).expanduser()
    out = tiny_base_dir(cache_dir, seed, steps)
    if (out / "config.json").is_file():
        return out
    if not rebuild and install_shipped(out):
        return out
    log.info("building tiny_base (%d SFT steps, seed %d) into %s", steps, seed, out)
    model, processor = load_model(
        ModelConfig(
            id=BASE_PRESET,
            seed=seed,
            min_pixels=28 * 28,
            max_pixels=IMAGE_SIZE * IMAGE_SIZE,
            cache_dir=str(cache_dir),
        )
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(BUILD_THREADS)
    try:
        with tiny.building(out) as tmp:
            torch.manual_seed(seed)
            offset = 0
            for k, (phase, n_steps) in enumerate(zip(PHASES, phase_steps(steps), strict=True), 1):
                cfg = RunConfig(
                    method=SFTConfig(
                        epochs=1,
                        batch_size=phase.batch_size,
                        micro_batch_size=phase.batch_size,
                        lr=phase.lr,
                        warmup_ratio=PRETRAIN["warmup_ratio"],
                        max_grad_norm=PRETRAIN["max_grad_norm"],
                    ),
                    logger=LoggerConfig(backend="none"),
                    seed=seed,
                    device="cpu",  # the shipped weights are a CPU build; a GPU would round differently
                )
                n = n_steps * phase.batch_size
                corpus = make_corpus(n, seed, phase.rotation, offset)
                offset += n
                tracker = Tracker(
                    tmp / "pretrain" / f"phase{k}", enabled=True, backend="none", project="", name="tiny_base",
                    mode="disabled", config={}, axes={},
                )  # fmt: skip
                stats, _ = sft.train(cfg, corpus, corpus.split("train"), model, processor, tracker)
                tracker.finish()
                log.info(
                    "tiny_base pretraining phase %d (%s) done: %s",
                    k,
                    ", ".join(sorted(set(phase.rotation))),
                    stats,
                )
            model.save_pretrained(tmp)
            processor.save_pretrained(tmp)
    finally:
        torch.set_num_threads(threads)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Build the pretrained tiny_base model (`make tiny-base`).")
    parser.add_argument("--cache-dir", type=Path, required=True, help="the model cache (model.cache_dir)")
    parser.add_argument("--seed", type=int, default=0, help="weight-init, corpus and data-order seed")
    parser.add_argument("--steps", type=int, default=None, help=f"SFT steps (default {PRETRAIN['steps']})")
    parser.add_argument(
        "--rebuild",
        action="store_true",
        help="build from scratch (not from the shipped copy) and compare the weights with the shipped sha256",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    out = build_tiny_base(args.cache_dir, args.seed, args.steps, rebuild=args.rebuild)
    shipped = shipped_build(out.name)
    if args.rebuild and shipped is not None:
        got = sha256(out / WEIGHTS)
        if got != shipped[1]:
            raise SystemExit(
                f"error: the rebuilt weights (sha256 {got}) differ from the shipped ones ({shipped[1]}): this machine "
                f"rounds differently, or the recipe changed without updating {SHIPPED} (see docs/tiny_study.md)"
            )
        print(f"rebuilt tiny_base matches the shipped weights bit for bit (sha256 {got})")
    print(out)
    return out


if __name__ == "__main__":
    main()
