"""`shapes`: a procedural, seeded image-caption dataset a tiny CLIP can learn on a laptop CPU.

Each image holds one main object (shape, colour, size, grid position) on a coloured background and,
sometimes, a second smaller object placed relative to it. Every caption names all of the main object's
attributes (with synonyms and varied word order), so captions identify images almost uniquely and
retrieval has a meaningful ceiling. The dataset is written in the generic on-disk layout
(`images/*.png` + `captions.csv` with columns `image,caption`) and read back by the same ingest code as
real data.
"""
from __future__ import annotations

import csv
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..atomic import atomic_path

log = logging.getLogger(__name__)

SHAPES = {
    "circle": ["circle", "disc", "round dot"],
    "square": ["square", "box", "block"],
    "triangle": ["triangle", "wedge", "three-sided shape"],
    "cross": ["cross", "plus sign", "plus"],
}
COLOURS = {
    "red": (220, 30, 30),
    "green": (40, 180, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 220, 40),
    "purple": (150, 50, 190),
    "cyan": (40, 210, 220),
    "orange": (250, 140, 20),
    "pink": (250, 130, 190),
}
BACKGROUNDS = {"black": (15, 15, 15), "gray": (128, 128, 128), "white": (240, 240, 240)}
SIZES = {"small": ["small", "tiny", "little"], "large": ["large", "big", "huge"]}
ROWS = ["top", "middle", "bottom"]
COLS = ["left", "center", "right"]

TEMPLATES = [
    "a {size} {colour} {shape} in the {pos} of a {bg} picture",
    "{size} {colour} {shape} at the {pos} on a {bg} background",
    "there is a {colour} {shape} , {size} , placed at the {pos} , {bg} backdrop",
    "on {bg} , a {shape} that is {colour} and {size} sits in the {pos}",
    "the {pos} shows a {size} {shape} coloured {colour} against {bg}",
    "{bg} scene : one {size} {colour} {shape} toward the {pos}",
    "picture of a {colour} {size} {shape} located {pos} over a {bg} ground",
    "a {bg} canvas with a {size} {colour} {shape} in its {pos} area",
]
RELATIONS = {(0, -1): "left of", (0, 1): "right of", (-1, 0): "above", (1, 0): "below"}


@dataclass(frozen=True)
class ShapesConfig:
    n_images: int = 2400
    image_size: int = 64
    captions_per_image: int = 5
    second_object_prob: float = 0.4
    seed: int = 0


def _position_name(r: int, c: int, rng: np.random.Generator) -> str:
    if r == 1 and c == 1:
        return str(rng.choice(["center", "middle"]))
    if r == 1:
        return f"middle {COLS[c]}" if rng.random() < 0.5 else f"{COLS[c]} side"
    if c == 1:
        return f"{ROWS[r]} middle" if rng.random() < 0.5 else f"{ROWS[r]} edge"
    return f"{ROWS[r]} {COLS[c]}" + (" corner" if rng.random() < 0.5 else "")


def _draw(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, fill, angle: float) -> None:
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "square":
        pts = [(cx + r * math.cos(angle + k * math.pi / 2 + math.pi / 4) * 1.2,
                cy + r * math.sin(angle + k * math.pi / 2 + math.pi / 4) * 1.2) for k in range(4)]
        draw.polygon(pts, fill=fill)
    elif kind == "triangle":
        pts = [(cx + r * 1.25 * math.cos(angle - math.pi / 2 + k * 2 * math.pi / 3),
                cy + r * 1.25 * math.sin(angle - math.pi / 2 + k * 2 * math.pi / 3)) for k in range(3)]
        draw.polygon(pts, fill=fill)
    elif kind == "cross":
        w = r * 0.42
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=fill)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=fill)
    else:  # pragma: no cover - guarded by SHAPES
        raise ValueError(kind)


def render_sample(index: int, cfg: ShapesConfig) -> tuple[Image.Image, list[str]]:
    """Image and captions for one index; independent of every other index (so any subset is reproducible)."""
    rng = np.random.default_rng([cfg.seed, index])
    scale = 4  # supersample, then downsample: anti-aliased edges like a real photo's
    s = cfg.image_size * scale
    bg = str(rng.choice(list(BACKGROUNDS)))
    shape = str(rng.choice(list(SHAPES)))
    colour = str(rng.choice(list(COLOURS)))
    size = str(rng.choice(list(SIZES)))
    r_cell, c_cell = int(rng.integers(3)), int(rng.integers(3))
    img = Image.new("RGB", (s, s), BACKGROUNDS[bg])
    draw = ImageDraw.Draw(img)
    cell = s / 3
    radius = cell * (0.28 if size == "small" else 0.45) * rng.uniform(0.9, 1.1)
    cx = (c_cell + 0.5) * cell + rng.uniform(-0.08, 0.08) * cell
    cy = (r_cell + 0.5) * cell + rng.uniform(-0.08, 0.08) * cell
    _draw(draw, shape, cx, cy, radius, COLOURS[colour], rng.uniform(-0.3, 0.3))

    extra = ""
    if rng.random() < cfg.second_object_prob:
        options = [(d, rel) for d, rel in RELATIONS.items() if 0 <= r_cell + d[0] < 3 and 0 <= c_cell + d[1] < 3]
        (dr, dc), rel = options[int(rng.integers(len(options)))]
        shape2 = str(rng.choice([k for k in SHAPES if k != shape]))
        colour2 = str(rng.choice([k for k in COLOURS if k != colour]))
        _draw(draw, shape2, (c_cell + dc + 0.5) * cell, (r_cell + dr + 0.5) * cell, cell * 0.18,
              COLOURS[colour2], 0.0)
        extra = f" , with a {colour2} {SHAPES[shape2][0]} {rel} it"  # where the second object sits
    img = img.resize((cfg.image_size, cfg.image_size), Image.Resampling.LANCZOS)

    templates = rng.permutation(len(TEMPLATES))[: cfg.captions_per_image]
    captions = []
    for t in templates:
        words = dict(
            size=str(rng.choice(SIZES[size])),
            colour=colour,
            shape=str(rng.choice(SHAPES[shape])),
            pos=_position_name(r_cell, c_cell, rng),
            bg=bg,
        )
        captions.append(TEMPLATES[int(t)].format(**words) + extra)
    return img, captions


def write_shapes(out_dir: str | Path, cfg: ShapesConfig = ShapesConfig()) -> Path:
    """Write the dataset atomically: a half-written folder never appears under `out_dir`."""
    if cfg.n_images < 1 or cfg.image_size < 8 or not 1 <= cfg.captions_per_image <= len(TEMPLATES):
        from .. import ConfigError

        raise ConfigError(f"shapes source: invalid settings {cfg}")
    out_dir = Path(out_dir)
    t0 = time.time()
    with atomic_path(out_dir) as tmp:
        (tmp / "images").mkdir(parents=True)
        with open(tmp / "captions.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["image", "caption"])
            for i in range(cfg.n_images):
                img, caps = render_sample(i, cfg)
                name = f"shape_{i:06d}.png"
                img.save(tmp / "images" / name, optimize=False)
                for c in caps:
                    w.writerow([name, c])
                if (i + 1) % 500 == 0 or i + 1 == cfg.n_images:
                    rate = (i + 1) / (time.time() - t0)
                    log.info("shapes: %d/%d images (%.0f img/s, ETA %.0fs)", i + 1, cfg.n_images, rate,
                             (cfg.n_images - i - 1) / rate)
    return out_dir
