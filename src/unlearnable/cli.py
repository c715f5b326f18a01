"""Command line for data owners: protect a folder of captioned images without Snakemake.

    unlearnable shapes resources/demo --n-images 200
    unlearnable protect resources/demo published/ --method mem --model tiny-vit --rounds 6
"""
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from dataclasses import fields
from pathlib import Path

from . import UnlearnableError
from .manifest import build_manifest
from .models import ModelSpec, image_resolution, tokenizer
from .protect.config import ProtectConfig, method_config
from .sources import LayoutConfig, read_dataset


def _protect(args) -> None:
    from .image_store import build_image_store
    from .protect.export import export_published
    from .protect.run import protect

    layout = LayoutConfig(args.layout, args.images_dir, args.captions_file, args.image_column, args.caption_column)
    rows, quality = read_dataset(args.dataset, layout, args.on_bad_sample)
    table = build_manifest(rows, {i: "train" for i in rows["image_id"]})
    train = table.to_pandas()
    spec = ModelSpec(args.model, args.pretrained)
    overrides = {f.name: getattr(args, f.name) for f in fields(ProtectConfig)
                 if f.name != "method" and getattr(args, f.name, None) is not None}
    cfg = method_config({"kind": args.method, **overrides})
    with tempfile.TemporaryDirectory(dir=Path(args.out).parent if Path(args.out).parent.exists() else None) as tmp:
        store = build_image_store(train, args.dataset, Path(tmp) / "images.npy", image_resolution(args.model))
        protect(train, store, spec, cfg, args.seed, args.device, Path(tmp) / "protection")
        meta = export_published(train, store, Path(tmp) / "protection", "both", tokenizer(args.model), args.out)
    logging.info("wrote %s: %d images, %d captions (dropped rows: %s)", args.out, meta["files"], meta["captions"],
                 quality.dropped or "none")


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
    for f in fields(ProtectConfig):
        if f.name == "method":
            continue
        kind = {"bool": lambda v: v.lower() in ("1", "true", "yes"), "int": int, "float": float}.get(str(f.type), str)
        pr.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None,
                        help=f"default: {f.default} (the reference's value)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "shapes":
            from .shapes import ShapesConfig, write_shapes

            write_shapes(args.out, ShapesConfig(n_images=args.n_images, seed=args.seed))
        else:
            _protect(args)
    except UnlearnableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
