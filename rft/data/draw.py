"""Drawing primitives shared by the synthetic tasks and the tiny_base corpus (PIL, deterministic from an RNG).

A noisy background, three object shapes and four glyph silhouettes, six colours, and `render_glyph`, which draws
one fine-grained glyph class: a silhouette with 1 to `GLYPH_MAX_DOTS` small white dots along its middle.
"""

from __future__ import annotations

import random

from PIL import Image, ImageDraw

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


def noisy_background(rng: random.Random, size: int) -> Image.Image:
    base = tuple(rng.randint(200, 250) for _ in range(3))
    img = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(img)
    for _ in range(size // 4):
        x, y = rng.randrange(size), rng.randrange(size)
        shade = tuple(max(0, c - rng.randint(10, 40)) for c in base)
        draw.point((x, y), fill=shade)
    return img


def draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill) -> None:
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
    draw_shape=draw_shape,
    scale: tuple[float, float] = (0.28, 0.36),
) -> Image.Image:
    """A glyph of class `label` ("<shape>-<dots>"): silhouette plus small white dots along its middle.

    `draw_shape(draw, shape, cx, cy, r, fill)` draws the silhouette and `scale` bounds its radius (a fraction of
    `size`); the testbed passes extra shapes and other sizes.
    """
    shape, dots = label.rsplit("-", 1)
    img = noisy_background(rng, size)
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
