"""The data owner's road: a folder of captioned images in, a folder to publish and a private protection out.
`unlearnable protect` and `unlearnable.protect_folder` are this function; the workflow runs the same two
stages (`protect.run.protect`, then `protect.export.export_published`) on the train split of its manifest.

Every check runs before any compute (the output apart from the input, the settings, the model, each file's
place in the published folder); the work is staged and resumable, so a killed run picks up where it stopped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .. import DataError
from ..clip.models import ModelSpec, image_resolution, tokenizer
from ..data.fingerprint import input_fingerprint
from ..data.folders import ProtectionDir, PublishedDir
from ..data.manifest import build_manifest
from ..data.sources import LayoutConfig, layout_read, read_dataset
from ..protect.config import ProtectConfig

PRIVATE_NOTE = f"""This folder holds the raw protection: the noise added to every image ({ProtectionDir.NOISE}, int8,
1/255 units, at the model's resolution) and the trigger tokens ({ProtectionDir.TRIGGERS}), with {ProtectionDir.RECORD}
(settings, losses, timings). Do not publish it: with it, anyone can subtract the noise and strip the triggers.
Publish only the sibling folder `published/`.
"""
SIZES = ("original", "model")


@dataclass(frozen=True)
class OwnerResult:
    """What `protect_folder` made: the folder to publish, the one to keep, and the rows left out as bad."""
    published: PublishedDir
    protection: ProtectionDir
    dropped: dict = field(default_factory=dict)


def selected_rows(rows, max_images: int | None, seed: int):
    """All rows, or those of a seeded random subset of `max_images` images."""
    if not max_images:
        return rows
    from ..data.splits import SplitConfig, assign_split

    keep = assign_split(sorted(set(rows["image_id"])), SplitConfig(val=0, test=0, seed=seed,
                                                                  max_train_images=max_images))
    return rows[rows["image_id"].map(keep).notna()].reset_index(drop=True)


def protect_folder(dataset: str | Path, out: str | Path, cfg: ProtectConfig, model: ModelSpec = ModelSpec("tiny-vit"),
                   *, seed: int = 0, device: str = "auto", precision: str = "auto",
                   layout: LayoutConfig = LayoutConfig(), on_bad_sample: str = "fail", max_images: int | None = None,
                   size: str = "original", jpeg_quality: int = 95, overwrite: bool = False, restart: bool = False,
                   progress: bool = False) -> OwnerResult:
    """Protect the captioned images of `dataset` into `out/published` (publish it) and `out/private` (keep it).
    `size`: `original` publishes every image at its own name, size and format; `model` at the model's
    resolution as PNG (what the workflow's victims train on)."""
    from ..data.image_store import build_image_store
    from .lean import run_lean
    from .outdir import OutputFolder
    from ..paths import real
    from ..protect import fullsize, run
    from ..protect.export import caption_texts, export_published
    from ..protect.publish_plan import animated_sources, plan_publication

    cfg.validate()
    if size not in SIZES:
        raise DataError(f"size {size!r} is not one of {SIZES}")
    if size == "original" and cfg.granularity != "image":
        raise DataError(f"size original (--size) needs granularity image (--granularity), one noise per image file, "
                        f"not {cfg.granularity}; use size model for per-pair noise")
    image_resolution(model.name)  # an unknown model fails here, before any work
    if not Path(dataset).is_dir():
        raise DataError(f"{dataset}: dataset folder not found")
    request = {"dataset": str(real(dataset)), "layout": layout.__dict__, "model": model.__dict__,
               "on_bad_sample": on_bad_sample, "protect": cfg.__dict__, "seed": seed, "max_images": max_images,
               "size": size, "jpeg_quality": jpeg_quality, "precision": precision}
    folder = OutputFolder(out, {"dataset": dataset}, request, overwrite)  # refuses before any work
    rows, quality = read_dataset(dataset, layout, on_bad_sample)
    folder.expect_inputs(input_fingerprint(dataset, layout_read(rows).get("caption_files", [])
                                           + sorted(set(rows["image_path"]))), restart)
    rows = selected_rows(rows, max_images, seed)
    if on_bad_sample == "skip" and size == "original":  # an animated file is a bad sample: left out
        for source, why in animated_sources(rows, dataset).items():
            quality.bad("animated_image", why)
            rows = rows[rows["image_path"] != source]
        if rows.empty:
            raise DataError(f"{dataset}: no image left to protect after the bad samples were skipped")
    train = build_manifest(rows, {i: "train" for i in rows["image_id"]}).to_pandas()
    # every file's place, format and name is decided (or refused) now, before any compute
    plan = plan_publication(rows, dataset, layout) if size == "original" else None
    with folder as stage:
        work, private, published = stage / "work", ProtectionDir(stage / "private"), PublishedDir(stage / "published")
        store = work / "images.npy"
        if not store.is_file():  # full-size photos are decoded away from torch's memory (see lean)
            run_lean(build_image_store, train, dataset, store, image_resolution(model.name))
        if not private.complete:  # a killed run resumes from its last committed round
            run.protect(train, store, model, cfg, seed, device, private.path, workdir=work / "protection",
                        progress=progress, precision=precision)
        note = private.path / "KEEP-PRIVATE.txt"
        if not note.is_file():
            note.write_text(PRIVATE_NOTE)
        if not published.complete:  # a failed publish re-runs alone, never the protection
            if size == "original":
                captions = caption_texts(train, private.path, tokenizer(model.name))
                run_lean(fullsize.export_full_size, train, dataset, store, private.path, captions, published.path,
                         plan, jpeg_quality)
            else:
                export_published(train, store, private.path, "both", tokenizer(model.name), published.path)
        folder.finish(scratch=["work"])
    out = Path(out)
    return OwnerResult(PublishedDir(out / "published"), ProtectionDir(out / "private"), dict(quality.dropped))
