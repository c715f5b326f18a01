"""Command line for data owners: protect a folder of captioned images without Snakemake.

    unlearnable shapes resources/demo --n-images 200
    unlearnable protect resources/demo published/ --method mem --model tiny-vit --rounds 6
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from . import DataError, UnlearnableError
from .faults import describe_fault
from .manifest import build_manifest
from .models import ModelSpec, image_resolution, tokenizer
from .protect.config import ProtectConfig, method_config
from .sources import LayoutConfig, read_dataset


def _protect(args) -> None:
    """Checks first (output apart from the input, method valid), then resumable work in a staging folder."""
    from .image_store import build_image_store
    from .outdir import OutputFolder
    from .paths import real
    from .protect.export import export_published
    from .protect.run import protect

    overrides = {f.name: getattr(args, f.name) for f in fields(ProtectConfig)
                 if f.name != "method" and getattr(args, f.name, None) is not None}
    cfg = method_config({"kind": args.method, **overrides})
    spec = ModelSpec(args.model, args.pretrained)
    layout = LayoutConfig(args.layout, args.images_dir, args.captions_file, args.image_column, args.caption_column)
    if not Path(args.dataset).is_dir():
        raise DataError(f"{args.dataset}: dataset folder not found")
    request = {"dataset": str(real(args.dataset)), "layout": layout.__dict__, "on_bad_sample": args.on_bad_sample,
               "model": spec.__dict__, "protect": cfg.__dict__, "seed": args.seed}
    folder = OutputFolder(args.out, {"dataset": args.dataset}, request, args.overwrite)  # refuses before any work
    rows, quality = read_dataset(args.dataset, layout, args.on_bad_sample)
    table = build_manifest(rows, {i: "train" for i in rows["image_id"]})
    train = table.to_pandas()
    with folder as stage:
        work, private, published = stage / "work", stage / "private", stage / "published"
        store = work / "images.npy"
        if not store.is_file():
            build_image_store(train, args.dataset, store, image_resolution(args.model))
        if not (private / "protection.json").is_file():  # a killed run resumes from its last committed round
            protect(train, store, spec, cfg, args.seed, args.device, private, workdir=work / "protection")
            (private / "KEEP-PRIVATE.txt").write_text(PRIVATE_NOTE)
        if not (published / "export.json").is_file():
            export_published(train, store, private, "both", tokenizer(args.model), published)
        meta = json.loads((published / "export.json").read_text())
        folder.finish(scratch=["work"])
    logging.info("wrote %s: publish %s/published (%d images, %d captions); keep %s/private to yourself "
                 "(dropped rows: %s)", args.out, args.out, meta["files"], meta["captions"], args.out,
                 quality.dropped or "none")


PRIVATE_NOTE = """This folder holds the raw protection: the noise added to every image (noise.npy, int8, 1/255 units)
and the trigger tokens (triggers.npy), with protection.json (settings, losses, timings).
Do not publish it: with it, anyone can subtract the noise and strip the triggers.
Publish only the sibling folder `published/`.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="unlearnable", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sh = sub.add_parser("shapes", help="write the built-in procedural dataset")
    sh.add_argument("out")
    sh.add_argument("--n-images", type=int, default=2400)
    sh.add_argument("--seed", type=int, default=0)
    pr = sub.add_parser("protect", help="protect a folder (images/ + captions.csv) and write what to publish")
    pr.add_argument("dataset")
    pr.add_argument("out")
    pr.add_argument("--method", default="mem", choices=["mem", "em", "random_noise", "random_trigger"])
    pr.add_argument("--model", default="tiny-vit", help="surrogate open_clip architecture")
    pr.add_argument("--pretrained", default="none")
    pr.add_argument("--device", default="auto")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--layout", default="auto", choices=["auto", "flickr8k", "flickr30k", "coco2017", "generic"],
                    help="folder layout; auto detects the Kaggle copies of Flickr8k/Flickr30k/COCO or images/ + CSV")
    pr.add_argument("--images-dir", default="images")
    pr.add_argument("--captions-file", default="captions.csv")
    pr.add_argument("--image-column", default="image")
    pr.add_argument("--caption-column", default="caption")
    pr.add_argument("--on-bad-sample", default="fail", choices=["fail", "skip"])
    pr.add_argument("--overwrite", action="store_true",
                    help="replace OUT when it holds a previous output of unlearnable (only its files are deleted)")
    pr.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    for f in fields(ProtectConfig):
        if f.name == "method":
            continue
        kind = {"bool": lambda v: v.lower() in ("1", "true", "yes"), "int": int, "float": float}.get(str(f.type), str)
        pr.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None,
                        help=f"default: {f.default} (the reference's value)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        if args.command == "shapes":
            from .shapes import ShapesConfig, write_shapes

            write_shapes(args.out, ShapesConfig(n_images=args.n_images, seed=args.seed))
        else:
            _protect(args)
    except UnlearnableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:
        fault = describe_fault(e, args.out)
        if fault is None:
            raise
        print(f"error: {fault}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
