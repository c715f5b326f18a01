"""Command line for data owners: protect a folder of captioned images without Snakemake, and check the result.

    unlearnable shapes demo/ --n-images 200                      # a small built-in dataset to try things on
    unlearnable protect demo/ out/ --rounds 6 --surrogate-steps 40 --lr 0.001
    unlearnable verify demo/ out/published                       # what the protection buys on this data

`protect` writes OUT/published/ (the folder to publish: every image at its original name, size and format,
captions.csv with the triggers in) and OUT/private/ (the raw noise and triggers: keep it to yourself).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path

from . import DataError, UnlearnableError
from .clip.models import ModelSpec
from .data.sources import LAYOUTS, LayoutConfig
from .faults import describe_fault
from .owner.defaults import OWNER_GRANULARITY, OWNER_METHOD, OWNER_MODEL, OWNER_SCHEDULES, SCHEDULES, owner_settings
from .protect.config import ProtectConfig, method_config
from .protect.kinds import METHOD_KINDS
from .report.stats import RECALLS, RETAINED_METRIC

SETTING_HELP = {  # each setting's default (ProtectConfig's, then each kind's own) is appended by _setting_help
    "granularity": f"image: one noise and trigger per image, in all its captions (what an owner publishes; "
                   f"default here: {OWNER_GRANULARITY}); pair: one per caption row (the paper), published at model "
                   "resolution",
    "eps": "L-inf noise budget, in units of 1/255",
    "step": "PGD step size, in units of 1/255",
    "pgd_steps": "PGD steps per pass over the data",
    "token_num": "trigger length k, in CLIP tokens",
    "rounds": "outer rounds of surrogate training + trigger/noise updates",
    "surrogate_steps": "surrogate CLIP training steps per round",
    "hotflip_rounds": "rounds (from the first) that also update the triggers by HotFlip",
    "candidates": "HotFlip candidate tokens per trigger position",
    "shuffle": "shuffle captions inside PGD so the noise binds to the trigger, not the caption",
    "batch_size": "batch size of the surrogate and of the protection passes",
    "lr": "surrogate AdamW learning rate",
    "weight_decay": "surrogate AdamW weight decay",
}


def _setting_help(f) -> str:
    """A setting's help with its defaults as their owners state them: the owner's schedules (per kind measured
    on real photos), the reference's, then each kind's own."""
    if f.name == "granularity":
        return SETTING_HELP[f.name]
    own = [f"{n} {k.defaults[f.name]}" for n, k in METHOD_KINDS.items() if f.name in k.defaults]
    default = f"{f.default}" + (f"; {', '.join(own)}" if own else "")
    owned = [f"{n} {sched[f.name]}" for n, sched in OWNER_SCHEDULES.items() if f.name in sched]
    owner = f"owner: {', '.join(owned)}; " if owned else ""
    return f"{SETTING_HELP[f.name]} ({owner}reference: {default})" if f.name in SETTING_HELP else \
        f"default: {default}"


def _bool(v: str) -> bool:
    if v.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {v!r}")
    return v.lower() in ("true", "1", "yes")


def _positive(v: str) -> int:
    if not v.isdigit() or int(v) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v!r}")
    return int(v)


def _quality(v: str) -> int:
    if not v.isdigit() or not 1 <= int(v) <= 100:
        raise argparse.ArgumentTypeError(f"expected a JPEG quality in 1..100, got {v!r}")
    return int(v)


def _layout(args) -> LayoutConfig:
    return LayoutConfig(args.layout, args.images_dir, args.captions_file, args.image_column, args.caption_column)


def _protect(args) -> None:
    from .owner.protect_folder import protect_folder

    overrides = {f.name: getattr(args, f.name) for f in fields(ProtectConfig)
                 if f.name != "method" and getattr(args, f.name, None) is not None}
    cfg = method_config({"kind": args.method, **owner_settings(args.method, args.schedule), **overrides})
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    result = protect_folder(args.dataset, args.out, cfg, ModelSpec(args.model, args.pretrained), seed=args.seed,
                            device=args.device, precision=args.precision, layout=_layout(args),
                            on_bad_sample=args.on_bad_sample, max_images=args.max_images, size=args.size,
                            jpeg_quality=args.jpeg_quality, overwrite=args.overwrite, restart=args.restart,
                            progress=progress)
    meta = result.published.record()
    gap = meta.get("clip_view_gap")
    logging.info("wrote %s: publish %s (%d images, %d captions); keep %s to yourself%s (dropped rows: %s)",
                 args.out, result.published.path, meta["files"], meta["captions"], result.protection.path,
                 f"; CLIP's view of the published files is within {gap['max']}/255 (mean {gap['mean']:.2f}/255) "
                 "of the optimised input" if gap else "", result.dropped or "none")


def _verify(args) -> None:
    from .clip.train import TrainConfig
    from .defend.defences import Defence
    from .owner.verify import format_drop, verify

    defence = Defence.parse(args.defence) if args.defence else None  # checked before any training
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, precision=args.precision)
    if args.json is not None:
        _check_json_output(args.json, {"clean": args.clean, "published": args.published})
    result = verify(args.clean, args.published, ModelSpec(args.model), cfg, args.test, args.seed, args.device,
                    _layout(args), args.max_images, defence)
    _emit(format_drop(result))
    if args.json:
        from .atomic import write_json

        write_json(args.json, {"written_by": "unlearnable verify", **result})


def _check_json_output(path: str, inputs: dict[str, str]) -> None:
    """`verify --json`: a file apart from every input, and never a file verify did not write."""
    from .paths import refuse_overlap

    if not path.strip():
        raise DataError("--json: an empty path; name a new file")
    refuse_overlap(path, inputs, "--json file")
    p = Path(path)
    if p.is_dir():
        raise DataError(f"--json {path} is a folder; name a file")
    if p.exists():
        try:
            ours = json.loads(p.read_text()).get("written_by") == "unlearnable verify"
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise DataError(f"--json {path} exists and was not written by unlearnable verify; name a new file")


def _layout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layout", default="auto", choices=list(LAYOUTS),
                   help="folder layout; auto detects images/ + CSV or the Kaggle copies of Flickr8k/Flickr30k/COCO")
    p.add_argument("--images-dir", default="images", help="generic layout: folder of the images")
    p.add_argument("--captions-file", default="captions.csv", help="generic layout: CSV of the captions")
    p.add_argument("--image-column", default="image", help="generic layout: CSV column of the file name")
    p.add_argument("--caption-column", default="caption", help="generic layout: CSV column of the caption")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="unlearnable", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    sh = sub.add_parser("shapes", help="write the built-in procedural dataset (images/ + captions.csv)")
    sh.add_argument("out", help="a new folder")
    sh.add_argument("--n-images", type=_positive, default=2400)
    sh.add_argument("--seed", type=int, default=0)

    pr = sub.add_parser("protect", help="protect a folder of captioned images; write what to publish",
                        description="Protect DATASET (images/ + captions.csv, or a Kaggle layout) and write "
                        "OUT/published/ (to publish) and OUT/private/ (the raw protection: keep it). OUT must be "
                        "a new folder apart from DATASET. Re-running the same command after a kill resumes.")
    pr.add_argument("dataset", help="the folder to protect (never modified)")
    pr.add_argument("out", help="output folder: new, or a previous output with --overwrite")
    pr.add_argument("--method", default=OWNER_METHOD, choices=list(METHOD_KINDS),
                    help=f"default {OWNER_METHOD}, chosen on real photos (README). "
                         + "; ".join(f"{n}: {k.help}" for n, k in METHOD_KINDS.items()))
    pr.add_argument("--model", default=OWNER_MODEL, help=f"surrogate open_clip architecture (default {OWNER_MODEL})")
    pr.add_argument("--schedule", default=SCHEDULES[0], choices=SCHEDULES,
                    help="owner (default): the schedule each method was measured with on real photos ("
                         + "; ".join(f"{n}: " + ", ".join(f"{k} {v}" for k, v in sched.items())
                                     for n, sched in OWNER_SCHEDULES.items())
                         + "; README); reference: the reference code's schedule. A flag below overrides either; "
                           "a method not named takes its own defaults")
    pr.add_argument("--pretrained", default="none", help="surrogate weights: none, an open_clip tag or a file")
    pr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    pr.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                    help="auto: bf16 autocast on CUDA, fp32 on the CPU")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--max-images", type=_positive, default=None,
                    help="protect a seeded random subset of this many images (default: all)")
    pr.add_argument("--size", default="original", choices=["original", "model"],
                    help="original: publish each image at its own name, size and format (default); model: "
                         "lossless PNGs at the model's resolution")
    pr.add_argument("--jpeg-quality", type=_quality, default=95, help="quality of published JPEGs (default 95)")
    _layout_args(pr)
    pr.add_argument("--on-bad-sample", default="fail", choices=["fail", "skip"],
                    help="fail: stop at the first bad row or image; skip: drop it and go on")
    pr.add_argument("--overwrite", action="store_true",
                    help="replace OUT when it holds a previous output of unlearnable (only its files are deleted)")
    pr.add_argument("--restart", action="store_true",
                    help="start over when the input changed since an unfinished run (default: refuse to resume)")
    pr.add_argument("--threads", type=_positive, default=None, help="CPU threads for torch (default: torch's)")
    pr.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                    help="progress bar over rounds and batches (default: when stderr is a terminal)")
    for f in fields(ProtectConfig):
        if f.name in ("method", "eot", "clusters"):  # config-file settings (a list of defences; cluster units)
            continue
        kind = {"bool": _bool, "int": int, "float": float}.get(str(f.type), str)
        choices = ["pair", "image"] if f.name == "granularity" else None
        pr.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None, choices=choices,
                        help=_setting_help(f))

    ve = sub.add_parser("verify", help="train a small CLIP on the clean and on the published folder; print the drop",
                        description="Split CLEAN's images (seeded) into train and test, train one victim on the "
                        "train images of CLEAN and one on their published copies, and test both on CLEAN's test "
                        "images: the drop in recall (@1 and @10) is what the protection buys on this data.")
    ve.add_argument("clean", help="the original folder")
    ve.add_argument("published", help="OUT/published from `unlearnable protect`")
    ve.add_argument("--model", default=OWNER_MODEL,
                    help=f"victim architecture (default {OWNER_MODEL}, the victim the owner's defaults were chosen "
                    "against)")
    ve.add_argument("--epochs", type=_positive, default=8)
    ve.add_argument("--batch-size", type=_positive, default=64)
    ve.add_argument("--lr", type=float, default=1e-3)
    ve.add_argument("--test", type=float, default=0.2, help="held-out clean images: a fraction (<1) or a count")
    ve.add_argument("--max-images", type=_positive, default=None, help="cap on the training images")
    ve.add_argument("--seed", type=int, default=0)
    ve.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ve.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                    help="auto: bf16 autocast on CUDA, fp32 on the CPU")
    ve.add_argument("--threads", type=_positive, default=None)
    ve.add_argument("--json", default=None, help="also write the metrics to this JSON file")
    ve.add_argument("--defence", default=None, metavar="KIND[:PARAM=VALUE,...][+...]",
                    help="what a scraper does before training, applied to both training folders: e.g. jpeg, "
                         "jpeg:quality=30, resize:scale=0.5, blur:sigma=1, rare_words, wordlist, drop_first:k=3, "
                         "strip_trigger:k=3, unlikely_words:k=3, augment:scale_min=0.5; steps joined by + run in "
                         "order (strip_trigger+rare_words+jpeg); scraper and scraper_hard are the shipped chains")
    _layout_args(ve)

    ta = sub.add_parser("table", help="print a run's results as the README's markdown table (mean ± sd)")
    ta.add_argument("summary", help="results/summary.parquet of a finished run")
    ta.add_argument("--metric", default=None, choices=RECALLS,
                    help="the recall the protection retained is read on (default: the paper's t2i_r1); t2i_r10 "
                         "where the clean victim sits near chance at R@1")

    co = sub.add_parser("cost", help="predict a grid's device-hours per stage from the bench's per-sample costs",
                        description="Read GRID (merged over the shipped config.yaml, as snakemake --configfile does) "
                        "and bench/mem_round.py JSON files (one per model), and print each stage's device-hours.")
    co.add_argument("grid", help="a grid file (e.g. config/grids/paper.yaml), or the name of a shipped grid (paper)")
    co.add_argument("--bench", action="append", required=True, help="bench/mem_round.py --out JSON (repeatable)")
    co.add_argument("--pairs", action="append", default=[], help="NAME=N: training pairs of a dataset not on disk")
    co.add_argument("--assume-mfu", type=float, default=0.3,
                    help="GPU utilisation assumed when only CPU benches exist (default 0.3)")
    return ap


def _emit(text: str) -> None:
    """Print and flush now, so a closed pipe raises inside main's handlers rather than at interpreter exit."""
    print(text, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    try:
        if args.command == "shapes":
            from .data.shapes import ShapesConfig, write_shapes

            write_shapes(args.out, ShapesConfig(n_images=args.n_images, seed=args.seed))
        elif args.command == "protect":
            _protect(args)
        elif args.command == "table":
            from .report.mdtable import table_command

            _emit(table_command(args.summary, args.metric or RETAINED_METRIC))
        elif args.command == "cost":
            from .workflow.cost import cost

            _emit(cost(args.grid, args.bench, args.pairs, args.assume_mfu))
        else:
            _verify(args)
    except UnlearnableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `unlearnable table ... | head`: the reader left, which is no error of ours. Point stdout at /dev/null so
        # the interpreter's last flush cannot raise again, and exit as a process killed by SIGPIPE would.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        resumable = args.command == "protect"
        print("interrupted; run the same command to resume" if resumable else "interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        fault = describe_fault(e, getattr(args, "out", None) or getattr(args, "published", None))
        if fault is None:
            raise
        print(f"error: {fault}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
