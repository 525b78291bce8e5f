"""The Banner Analysis family: your own banner QA (`banner`) and a synthetic stand-in (`banner_synth`).

- `banner`: a generic local multiple-choice VQA format (JSONL plus images, docs/data.md), so anyone's own banner
  data plugs in; Banner Analysis itself is not public.
- `banner_synth`: advertising banners rendered offline with PIL, with questions that relate several elements (a
  price and its discount, a button and its product); deterministic from the data seed.
"""

from __future__ import annotations

import functools
import json
import os
import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from rft.config import TaskConfig
from rft.data.base import DataError, Sample, Task, option_problem, shuffled_options
from rft.data.draw import COLOURS, OBJECT_SHAPES, draw_shape
from rft.data.images import LazyImage, check_images


def load_banner_jsonl(root: str | Path | None, split: str, *, seed: int, shuffle: bool) -> list[Sample]:
    """Read `<root>/<split>.jsonl` (the format in docs/data.md); image paths are relative to root."""
    if not root:
        raise DataError(
            "task.root is not set for banner; pass task.root=<folder with train.jsonl, test.jsonl>"
        )
    root = Path(root).expanduser()
    path = root / f"{split}.jsonl"
    if not path.is_file():
        fix = (
            " A schedule grid (schedule=grid) chooses its length on val.jsonl: add one in the same format, or "
            "pass schedule.select_split=''"
            if split == "val"
            else ""
        )
        raise DataError(
            f"missing file {path} (split {split!r}); see docs/data.md for the banner format.{fix}"
        )
    rows = []
    seen: dict[str, int] = {}  # id -> line
    # utf-8-sig: a BOM (Windows editors write one) is dropped; splitlines takes CRLF too
    for lineno, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not valid JSON ({err})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{where}: a row must be a JSON object, got {type(rec).__name__}")
        for key in ("image", "question", "answer"):
            if not rec.get(key):
                raise DataError(f"{where}: missing field {key!r}; every row needs image, question and answer")
        raw_options = rec.get("options")
        if raw_options is not None and not isinstance(raw_options, list):
            raise DataError(
                f'{where}: \'options\' must be a JSON list of strings (e.g. ["left", "right"]), got '
                f"{type(raw_options).__name__} {raw_options!r}"
            )
        options = [str(o) for o in raw_options or []]
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
        uid = str(rec.get("id") or f"{split}-{lineno}")
        if uid in seen:
            raise DataError(f"{where}: id {uid!r} is already used at line {seen[uid]}; ids must be unique")
        seen[uid] = lineno
        shown = shuffled_options(options, seed, uid) if shuffle else tuple(options)
        if problem := option_problem(shown, shuffle):
            raise DataError(f"{where}: {problem}")
        paths = rec["image"] if isinstance(rec["image"], list) else [rec["image"]]
        images = []
        for p in paths:
            rel = os.path.normpath(str(p))
            if os.path.isabs(rel) or rel == ".." or rel.startswith(".." + os.sep):
                raise DataError(
                    f"{where}: image path {p!r} leaves the data folder {root}; write it relative to that "
                    "folder, inside it (copy or link the image there)"
                )
            image = root / rel
            if not image.is_file():
                raise DataError(
                    f"{where}: image {image} does not exist; fix the 'image' path (relative to {root})"
                )
            images.append(LazyImage(image, str(image)))
        rows.append(
            Sample(
                uid=uid,
                images=tuple(images),
                question=str(rec["question"]),
                answer=answer,
                options=shown,
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
    draw_shape(
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


def make_banner_synth(
    train_size: int, test_size: int, data_seed: int, image_size: int, val_size: int = 0
) -> Task:
    """The synthetic Banner Analysis stand-in: `image_size` is the banner height (the width is twice it); a `val`
    split too when `val_size` > 0."""
    splits = {}
    for split, n in [("train", train_size), ("test", test_size)] + ([("val", val_size)] if val_size else []):
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
