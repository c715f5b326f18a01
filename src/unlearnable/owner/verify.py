"""What a protection buys on the owner's own data: a victim trained on the clean folder vs on the published one.

Both victims train on the same images (a seeded per-image train split of the clean folder; the published
folder's copies of those images, triggers and all) and are tested on the same clean held-out images,
which neither saw. The drop in retrieval between them is what the protection removed.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import pandas as pd

from .. import DataError
from ..clip.models import ModelSpec, image_resolution, tokenizer
from ..clip.train import TrainConfig
from ..clip.victim import caption_tokens, evaluate_victim, train_victim
from ..data.folders import DefendedDir, PublishedDir
from ..data.image_store import build_image_store, open_image_store
from ..data.manifest import build_manifest, read_manifest
from ..data.sources import LayoutConfig, read_dataset
from ..data.splits import SplitConfig, assign_split
from ..provenance import configure_determinism, resolve_device

log = logging.getLogger(__name__)


def published_base_id(image_path: str) -> str:
    """A model-size published file's clean image id: its path below `images/` without suffix (`<id>.png`, an
    id may hold folders), less the `__<caption id>` of per-pair files."""
    rel = Path(image_path.removeprefix("images/")).with_suffix("")
    return str(rel.with_name(rel.name.split("__")[0]))


def _stored(rows: pd.DataFrame, root: Path, split: str, path: Path, res: int) -> tuple[pd.DataFrame, object]:
    """Rows as a one-split manifest, and their images decoded into a store at `path`."""
    table = build_manifest(rows.drop(columns=["split"], errors="ignore"), {i: split for i in rows["image_id"]})
    table = table.to_pandas()
    return table, open_image_store(build_image_store(table, root, path, res))


def _train_and_test(rows: pd.DataFrame, root: Path, test: tuple, spec: ModelSpec, cfg: TrainConfig, seed: int,
                    device, work: Path, name: str, defence=None) -> dict:
    """`test`: (table, store, caption tokens) of the clean held-out images, shared by both victims. `defence`: what a
    scraper does to this folder before training on it: the workflow's own defend stage (`defend_folder`), on
    the images at model resolution."""
    from dataclasses import replace

    from ..defend.defences import defend_folder

    table, store = _stored(rows, root, "train", work / f"{name}.npy", image_resolution(spec.name))
    if defence is not None and defence.augment_scale_min is not None:
        cfg = replace(cfg, augment_scale_min=defence.augment_scale_min)
    if defence is not None and defence.changes_files:  # the workflow's defend stage, into the scratch folder
        defended = DefendedDir(work / f"{name}-defended")
        defend_folder(table, work / f"{name}.npy", defence, tokenizer(spec.name), defended.path)
        table, store = read_manifest(defended.manifest_path), open_image_store(defended.store_path)
    log.info("victim trained on the %s folder: %d images, %d captions", name, table["image_id"].nunique(), len(table))
    model, _ = train_victim(table, store, spec, cfg, seed, device)
    test_table, test_store, test_tokens = test
    return evaluate_victim(model, spec, test_table, test_store, device, precision=cfg.precision, tokens=test_tokens)


def published_layout(published_root: Path) -> tuple[LayoutConfig, dict]:
    """How to read a published folder, and its export record (`{}` for a folder without one)."""
    folder = PublishedDir(published_root)
    export = folder.record() if folder.complete else {}
    layout = export.get("layout") or {}
    return LayoutConfig(kind="generic", **{k: v for k, v in layout.items() if k != "kind"}), export


def matched_ids(published: pd.DataFrame, clean: pd.DataFrame, export: dict) -> pd.Series:
    """Each published row's clean image id: by place for full-size copies (`sources` lists the moved files),
    by file stem for model-size ones; None where the published file matches no clean image."""
    if export.get("size") != "original":
        base = published["image_path"].map(published_base_id)
        return base.where(base.isin(set(clean["image_id"])))
    id_of_path = dict(zip(clean["image_path"], clean["image_id"]))
    sources = export.get("sources", {})
    return published["image_path"].map(lambda p: id_of_path.get(sources.get(p, p)))


def verify(clean_root: str | Path, published_root: str | Path, spec: ModelSpec, cfg: TrainConfig, test: float,
           seed: int = 0, device: str = "auto", layout: LayoutConfig = LayoutConfig(),
           max_images: int | None = None, defence=None) -> dict:
    """`defence` (a `defences.Defence`): what a scraper does to the published folder before training on it."""
    clean_root, published_root = Path(clean_root), Path(published_root)
    dev = resolve_device(device)
    configure_determinism(dev)
    clean, _ = read_dataset(clean_root, layout)
    pub_layout, export = published_layout(published_root)
    published, _ = read_dataset(published_root, pub_layout)
    split = assign_split(sorted(set(clean["image_id"])), SplitConfig(val=0, test=test, seed=seed,
                                                                     max_train_images=max_images))
    clean["split"] = clean["image_id"].map(split)
    train_ids = set(clean.loc[clean["split"] == "train", "image_id"])
    published["base"] = matched_ids(published, clean, export)
    unknown = sorted(set(published.loc[published["base"].isna(), "image_path"]))
    if unknown:
        raise DataError(f"{published_root}: {len(unknown)} published images match no image of {clean_root} "
                        f"(e.g. {unknown[0]}); was it published from this folder?")
    pub_train = published[published["base"].isin(train_ids)].drop(columns=["base"])
    missing = train_ids - set(published["base"])
    if missing:
        raise DataError(f"{published_root}: {len(missing)} training images of {clean_root} were not published "
                        f"(e.g. {sorted(missing)[0]})")
    clean_train, clean_test = clean[clean["split"] == "train"], clean[clean["split"] == "test"]
    with tempfile.TemporaryDirectory(prefix="unlearnable-verify-") as tmp:
        work = Path(tmp)
        test_table, test_store = _stored(clean_test, clean_root, "test", work / "test.npy",
                                         image_resolution(spec.name))
        test = (test_table, test_store, caption_tokens(spec, test_table["caption"].tolist()))
        results = {name: _train_and_test(rows, root, test, spec, cfg, seed, dev, work, name, defence)
                   for name, rows, root in (("clean", clean_train, clean_root),
                                            ("published", pub_train, published_root))}
    return {"train_images": len(train_ids), "test_images": int(clean_test["image_id"].nunique()),
            "test_captions": len(clean_test),
            "defence": defence.describe() if defence is not None else None, **results}


# R@10 beside R@1: a small victim on a few thousand real photos sits near chance at R@1 (docs/results.md).
DROP_KS = (1, 10)


def format_drop(result: dict) -> str:
    c, p = result["clean"], result["published"]
    lines = [f"clean test split: {result['test_images']} images, {result['test_captions']} captions; "
             f"victims trained on {result['train_images']} images",
             *([f"both victims trained through the defence {result['defence']}"] if result.get("defence") else []),
             f"{'recall (%)':<22}{'trained on clean':>18}{'on published':>14}{'drop':>8}{'chance':>8}"]
    for k in DROP_KS:
        for key, label in ((f"i2t_r{k}", "image -> text"), (f"t2i_r{k}", "text -> image")):
            lines.append(f"{f'{label} R@{k}':<22}{c[key]:>18.1f}{p[key]:>14.1f}{c[key] - p[key]:>8.1f}"
                         f"{c['chance_' + key]:>8.2f}")
    return "\n".join(lines)

