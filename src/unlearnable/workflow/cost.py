"""What a grid will cost before it runs: device-hours per stage, from the bench's per-sample pass costs.

Counts come from the grid (datasets x runs x surrogates x victims x seeds, shared work counted once, as the
DAG shares it) and each stage's schedule; per-sample seconds and FLOPs come from `bench/mem_round.py`'s JSON
for the model. A CPU bench gives measured CPU hours; GPU hours are then estimated from FLOP counts at an
assumed utilisation of a named GPU's peak, and printed as estimates. Image decoding, publishing and defences
are I/O and are not modelled in time.

Disk, per stage: the largest scratch one job needs at once (`peak`) and what the stage's jobs leave behind
(`kept`). A training job holds its checkpoint twice while committing it (weights and AdamW's two moments); a
protection its noise (int8, one row per unit at the surrogate's resolution), an undo log of at most an eighth
of it (256 MiB at most) and its surrogate's checkpoint twice; publishing an image store and as many bytes of
PNG files; the image stores one uint8 image per dataset image and resolution.
"""
from __future__ import annotations

import copy
import functools
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .. import ConfigError
from ..clip.models import image_resolution
from ..clip.train import TrainConfig
from ..data.source_kinds import source_kind
from ..paths import CONFIG_DIR
from ..protect.config import method_config
from .configschema import check_references, layered, load_yaml, validate_config
from .grid import cells, expand_trigger_lengths, quality_path, victim_train

# training pairs and test pairs (images x captions) under the paper's splits, for datasets not yet on disk
KNOWN_SIZES = {"flickr8k": (6091 * 5, 1000 * 5), "flickr30k": (29783 * 5, 1000 * 5), "mscoco": (566747, 5000 * 5)}
GPU_PEAK = {"H100": 989e12}


def grid_path(grid: str | Path) -> Path:
    """A grid file as given, else a shipped grid by name (`paper` or `paper.yaml`, see `config/grids/`)."""
    if Path(grid).is_file():
        return Path(grid)
    shipped = CONFIG_DIR / "grids" / Path(grid).name
    for candidate in (shipped, shipped.with_name(shipped.name + ".yaml")):
        if candidate.is_file():
            return candidate
    names = ", ".join(sorted(p.stem for p in (CONFIG_DIR / "grids").glob("*.yaml")))
    raise ConfigError(f"{grid}: no such grid file, and no shipped grid of that name ({names})")


def merged_config(grid_file: str | Path, base: str | Path = CONFIG_DIR / "config.yaml",
                  more: tuple[str | Path, ...] = ()) -> dict:
    """The config Snakemake would run: `base` deep-updated by `grid_file` and then `more` (as further
    `--configfile`s; a dataset's source replaced whole), validated, axes expanded."""
    grid_file = grid_path(grid_file)
    config = layered([load_yaml(base), load_yaml(grid_file), *(load_yaml(f) for f in more)])
    validate_config(config, CONFIG_DIR / "schema.yaml", source=str(grid_file))
    check_references(config, source=str(grid_file))
    return expand_trigger_lengths(config)


def dataset_size(config: dict, name: str, overrides: dict[str, int]) -> tuple[int, int, str]:
    """(train pairs, test pairs, where the figure comes from)."""
    quality = Path(quality_path(config["results"], name))
    if name in overrides:
        return overrides[name], KNOWN_SIZES.get(name, (0, 5000))[1], "--pairs"
    if quality.is_file():
        s = json.loads(quality.read_text())["splits"]
        return s["train"]["captions"], s["test"]["captions"], str(quality)
    generated = _generated_size(config["datasets"][name]) if name in config["datasets"] else None
    if generated:
        return (*generated, "the generator's settings")
    if name in KNOWN_SIZES:
        return (*KNOWN_SIZES[name], "the paper's split sizes")
    raise ConfigError(f"dataset {name!r}: size unknown (no {quality}); give it with --pairs {name}=N")


def _generated_size(ds: dict) -> tuple[int, int] | None:
    """(train pairs, test pairs) of a generated dataset, from its settings (defaults: its generator's own)."""
    kind = source_kind(ds["source"]["kind"])
    if kind.pairs is None:
        return None
    return kind.pairs(kind.settings_of(ds["source"]), ds["split"])


UNDO_LIMIT = 256 * 2 ** 20


@functools.lru_cache(maxsize=None)
def parameter_count(arch: str) -> int:
    from ..clip.models import ModelSpec, create_model

    quiet = logging.getLogger()
    level, quiet.level = quiet.level, logging.ERROR  # open_clip narrates every model it builds
    try:
        return sum(p.numel() for p in create_model(ModelSpec(arch)).parameters())
    finally:
        quiet.level = level


def _bytes(config: dict, model: str) -> tuple[int, int]:
    """(fp32 weights, one training checkpoint: weights and AdamW's two moments) of a model or an ensemble."""
    members = config["models"][model].get("ensemble", [model])
    weights = sum(4 * parameter_count(config["models"][m]["arch"]) for m in members)
    return weights, 3 * weights


@dataclass
class Bench:
    model: str
    device_kind: str
    device_name: str
    seconds: dict[str, float]  # per sample, per pass
    flops: dict[str, float]  # per sample, per pass
    flip_work: int  # k x candidates of the HotFlip pass it timed

    @classmethod
    def load(cls, path: str | Path) -> "Bench":
        r = json.loads(Path(path).read_text())
        passes = r["passes"]
        return cls(r["model"], r["device_kind"], r["device_name"],
                   {k: p["per_sample_seconds"] for k, p in passes.items()},
                   {k: p["flops_per_sample"] for k, p in passes.items()},
                   r["config"]["token_num"] * r["config"]["candidates"])


def sample_passes(config: dict, overrides: dict[str, int] | None = None) -> list[dict]:
    """Every stage of work's sample-passes by kind: {stage, model, passes: {train|pgd_step|hotflip|encode: n}}; one
    per job, and one per evaluation (which runs inside its training job)."""
    overrides = overrides or {}
    arch = {name: m["arch"] for name, m in config["models"].items() if "arch" in m}
    size = {name: len(m.get("ensemble", [name])) for name, m in config["models"].items()}
    for name, m in config["models"].items():  # an ensemble: its first member's kind, times its members
        arch.setdefault(name, arch[m["ensemble"][0]] if "ensemble" in m else None)
    jobs: dict[tuple, dict] = {}
    for cell in cells(config):
        pairs, test_pairs, _ = dataset_size(config, cell["dataset"], overrides)
        # the victim's own schedule: a fine-tuned victim overrides `train` (fewer epochs)
        train = TrainConfig(**victim_train(config, cell["victim"]))
        steps = pairs // min(train.batch_size, pairs) * min(train.batch_size, pairs)
        victim = arch[cell["victim"]]
        seed = cell["seed"]
        weights, ckpt = _bytes(config, cell["victim"])
        trained = {"disk_peak": 2 * ckpt, "disk_kept": weights}
        images = round((pairs + test_pairs) / 5)  # five captions an image, as in every dataset known here
        for model in (cell["victim"], cell["surrogate"]):
            if model in config["models"]:
                res = image_resolution(arch[model])
                store = images * res * res * 3
                jobs[("data", cell["dataset"], res)] = {"stage": "image store", "model": None, "passes": {},
                                                        "disk_peak": store, "disk_kept": store}
        if cell["method"] == "clean":
            jobs[("train", cell["dataset"], cell["victim"], seed, cell.get("defence", "none"))] = {
                "stage": "train clean", "model": victim, "passes": {"train": train.epochs * steps}, **trained}
        else:
            m = method_config(config["methods"][cell["method"]])
            sur = arch[cell["surrogate"]]
            units = pairs if m.granularity == "pair" else round(pairs / 5)
            res = image_resolution(sur)
            noise = units * res * res * 3
            if m.optimises:
                flips = min(m.hotflip_rounds, m.rounds) * units if m.kind.trigger == "hotflip" else 0
                jobs[("protect", cell["dataset"], cell["method"], cell["surrogate"], seed)] = {
                    "stage": "protect", "model": sur, "flip_work": m.trigger_len * m.candidates, "passes": {
                        "train": m.rounds * m.surrogate_steps * m.batch_size * size[cell["surrogate"]],
                        "pgd_step": m.rounds * m.pgd_steps * units * size[cell["surrogate"]], "hotflip": flips},
                    "disk_peak": noise + min(UNDO_LIMIT, noise // 8) + 2 * _bytes(config, cell["surrogate"])[1],
                    "disk_kept": noise}
            published = noise  # its image store, one image per unit, and about as much again in PNG files
            jobs[("publish", cell["dataset"], cell["method"], cell["apply"], cell["surrogate"], seed)] = {
                "stage": "publish", "model": None, "passes": {}, "disk_peak": 2 * published,
                "disk_kept": 2 * published}
            jobs[("retrain", cell["dataset"], cell["method"], cell["apply"], cell["surrogate"], cell["victim"], seed,
                  cell.get("defence", "none"))] = {
                "stage": "retrain", "model": victim, "passes": {"train": train.epochs * steps}, **trained}
        # evaluation is a stage of work, done at the end of each training job
        jobs[("evaluate",) + tuple(cell.values())] = {"stage": "evaluate", "model": victim,
                                                     "passes": {"encode": test_pairs}}
    return list(jobs.values())


def estimate(config: dict, benches: list[Bench], overrides: dict[str, int] | None = None,
             assumed_mfu: float = 0.3, gpu: str = "H100") -> dict:
    by_model = {b.model: b for b in benches}
    stages: dict[str, dict] = {}
    for job in sample_passes(config, overrides):
        bench = by_model.get(job["model"])
        if bench is None and job["passes"]:
            raise ConfigError(f"no bench for model {job['model']!r}: run bench/mem_round.py --model {job['model']} "
                              f"--out FILE and pass --bench FILE")
        s = stages.setdefault(job["stage"], {"count": 0, "device_seconds": 0.0, "flops": 0.0, "disk_peak": 0,
                                             "disk_kept": 0})
        s["count"] += 1
        s["disk_peak"] = max(s["disk_peak"], job.get("disk_peak", 0))
        s["disk_kept"] += job.get("disk_kept", 0)
        for kind, n in job["passes"].items():
            scale = job.get("flip_work", bench.flip_work) / bench.flip_work if kind == "hotflip" else 1.0
            s["device_seconds"] += n * bench.seconds[kind] * scale
            s["flops"] += n * bench.flops[kind] * scale
    order = ["image store", "train clean", "protect", "publish", "retrain", "evaluate"]
    stages = {k: stages[k] for k in order if k in stages}
    kinds = {b.device_kind for b in benches}
    out = {"measured_on": sorted({f"{b.device_kind}: {b.device_name}" for b in benches}), "stages": stages,
           "total_device_hours": sum(s["device_seconds"] for s in stages.values()) / 3600,
           "total_flops": sum(s["flops"] for s in stages.values()),
           "total_disk_kept": sum(s["disk_kept"] for s in stages.values())}
    if kinds == {"cpu"}:
        rate = GPU_PEAK[gpu] * assumed_mfu
        out["gpu_estimate"] = {"gpu": gpu, "assumed_mfu": assumed_mfu,
                               "hours": {k: s["flops"] / rate / 3600 for k, s in stages.items()},
                               "total_hours": out["total_flops"] / rate / 3600}
    return out


def format_estimate(est: dict, grid_file: str) -> str:
    lines = [f"{grid_file}: predicted cost, from benches measured on {', '.join(est['measured_on'])}",
             f"{'stage':<12} {'count':>5} {'device-hours':>13} {'PFLOP':>9} {'peak GB/job':>12} {'kept GB':>9}"]
    gpu = est.get("gpu_estimate")
    if gpu:
        lines[1] += f" {gpu['gpu'] + '-hours (estimate)':>22}"
    for name, s in est["stages"].items():
        timed = s["device_seconds"] > 0 or name in ("train clean", "protect", "retrain", "evaluate")
        hours = f"{s['device_seconds'] / 3600:>13.1f} {s['flops'] / 1e15:>9.1f}" if timed else f"{'-':>13} {'-':>9}"
        row = f"{name:<12} {s['count']:>5} {hours} {s['disk_peak'] / 1e9:>12.1f} {s['disk_kept'] / 1e9:>9.1f}"
        if gpu:
            row += f" {gpu['hours'][name]:>22.2f}" if timed else f" {'-':>22}"
        lines.append(row)
    total = (f"{'total':<12} {'':>5} {est['total_device_hours']:>13.1f} {est['total_flops'] / 1e15:>9.1f} {'':>12} "
             f"{est['total_disk_kept'] / 1e9:>9.1f}")
    if gpu:
        total += f" {gpu['total_hours']:>22.2f}"
    lines.append(total)
    if gpu:
        lines.append(f"Only CPU figures exist: device-hours above are measured CPU hours (the bench's threads). "
                     f"{gpu['gpu']} hours are an ESTIMATE from FLOP counts at an assumed {gpu['assumed_mfu']:.0%} "
                     f"of its bf16 peak; run the bench on a GPU for measured figures.")
    lines.append("count: jobs, except for evaluate: models evaluated, each at the end of its training job.")
    lines.append("peak GB/job: the most disk one job of the stage needs at once; kept GB: what its jobs leave. "
                 "Not timed: image decoding and publishing (I/O).")
    return "\n".join(lines)


def cost(grid_file: str, bench_files: list[str], pairs: list[str] = (), assumed_mfu: float = 0.3) -> str:
    overrides = {}
    for item in pairs:
        name, _, n = item.partition("=")
        if not n.isdigit():
            raise ConfigError(f"--pairs {item!r}: expected NAME=N")
        overrides[name] = int(n)
    config = merged_config(grid_file)
    est = estimate(copy.deepcopy(config), [Bench.load(b) for b in bench_files], overrides, assumed_mfu)
    return format_estimate(est, grid_file)
