"""Small datasets written in the exact layouts of the three Kaggle copies (see ecosystem notes)."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = ["red", "green", "blue", "yellow"]


def _jpeg(path: Path, i: int, size: int = 24) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.array([[220, 30, 30], [30, 200, 30], [30, 30, 220], [230, 220, 20]][i % 4], dtype=np.uint8)
    px = np.broadcast_to(rgb, (size, size, 3)).copy()
    px[: size // 2, : size // 2] = (i * 37) % 256  # a per-image mark, so no two images are identical
    Image.fromarray(px).save(path, quality=90)


def captions_for(i: int, n: int = 5) -> list[str]:
    c = COLOURS[i % 4]
    return [f"a {c} square, seen from above" if k == 0 else f"picture {i} of a {c} tile number {k}" for k in range(n)]


def flickr8k(root: Path, names: list[str], images: bool = True) -> Path:
    """`Images/*.jpg` + `captions.txt` (CSV header `image,caption`; captions with commas, some quoted)."""
    lines = ["image,caption"]
    for i, name in enumerate(names):
        if images:
            _jpeg(root / "Images" / name, i)
        for k, cap in enumerate(captions_for(i)):
            lines.append(f'{name},"{cap}"' if k == 0 and i % 2 else f"{name},{cap}")
    (root / "captions.txt").write_text("\n".join(lines) + "\n")
    return root


def flickr30k(root: Path, names: list[str], images: bool = True, malformed_row: bool = True) -> Path:
    """`flickr30k_images/results.csv` (pipe-separated, padded header) + images nested one level deeper."""
    base = root / "flickr30k_images"
    lines = ["image_name| comment_number| comment"]
    for i, name in enumerate(names):
        if images:
            _jpeg(base / "flickr30k_images" / name, i)
        for k, cap in enumerate(captions_for(i)):
            if malformed_row and i == 1 and k == 4:
                lines.append(f"{name}| {k}   {cap}")  # the known row whose second '|' is missing
            else:
                lines.append(f"{name}| {k}| {cap}")
    base.mkdir(parents=True, exist_ok=True)
    (base / "results.csv").write_text("\n".join(lines) + "\n")
    return root


def coco2017(root: Path, train_ids: list[int], val_ids: list[int], images: bool = True) -> Path:
    """`coco2017/{train2017,val2017}/{id:012d}.jpg` + `coco2017/annotations/captions_{train,val}2017.json`."""
    base = root / "coco2017"
    ann_id = 0
    for split, ids in (("train2017", train_ids), ("val2017", val_ids)):
        imgs, anns = [], []
        for i, image_id in enumerate(ids):
            name = f"{image_id:012d}.jpg"
            if images:
                _jpeg(base / split / name, image_id)
            imgs.append({"id": image_id, "file_name": name, "height": 24, "width": 24})
            for cap in captions_for(image_id):
                anns.append({"id": ann_id, "image_id": image_id, "caption": cap})
                ann_id += 1
        (base / "annotations").mkdir(parents=True, exist_ok=True)
        (base / "annotations" / f"captions_{split}.json").write_text(json.dumps({"images": imgs, "annotations": anns}))
    return root


def zip_folder(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, p.relative_to(folder).as_posix())
    return out


def coco_from_photos(root: Path, n_images: int = 48, seed: int = 0) -> Path:
    """COCO 2017 layout filled with real photographs: random crops of the two photos matplotlib ships."""
    from matplotlib import cbook

    photos = [
        (Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"),
         ["a portrait of a woman in a navy uniform", "an old photograph of an officer with medals",
          "a woman with white hair wearing a uniform", "a close up of a person in dark clothes",
          "a formal portrait of a naval officer"]),
        (Image.open(cbook.get_sample_data("Minduka_Present_Blue_Pack.png")).convert("RGB"),
         ["a blue gift box with a ribbon", "a wrapped present in blue paper", "a small blue package",
          "a present tied with a bow", "a blue box on a white background"]),
    ]
    rng = np.random.default_rng(seed)
    base = root / "coco2017"
    ids = {"train2017": [], "val2017": []}
    for k in range(n_images):
        image_id = 100 + 7 * k
        photo, caps = photos[k % 2]
        w, h = photo.size
        s = int(min(w, h) * rng.uniform(0.5, 0.95))
        x, y = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
        crop = photo.crop((x, y, x + s, y + s)).resize((64, 64), Image.BICUBIC)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        split = "val2017" if k % 6 == 5 else "train2017"
        (base / split).mkdir(parents=True, exist_ok=True)
        crop.save(base / split / f"{image_id:012d}.jpg", quality=92)
        ids[split].append((image_id, caps))
    ann_id = 0
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    for split, items in ids.items():
        anns = []
        for image_id, caps in items:
            for c in caps:
                anns.append({"id": ann_id, "image_id": image_id, "caption": c})
                ann_id += 1
        data = {"images": [{"id": i, "file_name": f"{i:012d}.jpg", "height": 64, "width": 64} for i, _ in items],
                "annotations": anns}
        (base / "annotations" / f"captions_{split}.json").write_text(json.dumps(data))
    return root
