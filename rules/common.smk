# Config validation, path helpers and input functions shared by every stage.
import re
import sys
from pathlib import Path

# The workflow runs this repository's library, installed or not: on the path here (parse time) and, through
# PYTHONPATH, in every job, including jobs in a `--sdm conda` environment, which holds only dependencies.
_SRC = str(Path(workflow.basedir).parent / "src")
sys.path.insert(0, _SRC)

from unlearnable.workflow.jobenv import put_library_on_job_path

put_library_on_job_path(_SRC)

from unlearnable import ConfigError, UnlearnableError
from unlearnable.workflow.configschema import check_config_files, check_folders, check_references, validate_config
from unlearnable.workflow.grid import (WILDCARDS, artifacts_dir, cells as grid_cells, checkpoint_path, defence,
                                       defended_clean_dir, defended_files, defended_published_dir,
                                       expand_trigger_lengths, log_path, manifest_path, protection_cell, protection_dir,
                                       protection_dirs, published_dir, published_dirs, quality_path, report_path,
                                       run_dir, run_files, source_copy, store_path, summary_path, tracking_path,
                                       training_cell, victim_train)
from unlearnable.clip.models import image_resolution

try:
    check_config_files(workflow.configfiles, config)
    validate_config(config, workflow.source_path("../config/schema.yaml"), source="config")
    check_references(config, source="config")
    check_folders(config, source="config")
    expand_trigger_lengths(config)
except ConfigError as _e:
    sys.exit(f"error: {_e}")

RESULTS = config["results"]
RESOURCES = config["resources"]
GRID = config["grid"]
# a source shared by several datasets (the parts of one split) is downloaded or generated once, for the first
SOURCE_COPIES = [d for d in config["datasets"] if source_copy(config, d) == d]
GENERATED_DATASETS = [d for d in SOURCE_COPIES if config["datasets"][d]["source"]["kind"] in ("shapes", "standin")]
KAGGLE_DATASETS = [d for d in SOURCE_COPIES if config["datasets"][d]["source"]["kind"] == "kaggle"]
SPLIT_LISTS = Path(workflow.basedir).parent / "config" / "splits"

# Output patterns, from the one owner of the results layout (unlearnable.workflow.grid).
MANIFEST = manifest_path(RESULTS, "{dataset}")
STORE = store_path(RESULTS, "{dataset}", "{res}")
TRACKING = tracking_path(RESULTS)
PROTECTION = protection_dir(RESULTS, WILDCARDS)
PUBLISHED = published_dir(RESULTS, WILDCARDS)
DEFENDED_PUBLISHED = defended_published_dir(RESULTS, WILDCARDS)
DEFENDED_CLEAN = defended_clean_dir(RESULTS, WILDCARDS, "{res}")
CLEAN_RUN = run_dir(RESULTS, {**WILDCARDS, "method": "clean", "defence": "none"})
RETRAIN_RUN = run_dir(RESULTS, {**WILDCARDS, "defence": "none"})
DEFENDED_CLEAN_RUN = run_dir(RESULTS, {**WILDCARDS, "method": "clean"})
DEFENDED_RETRAIN_RUN = run_dir(RESULTS, WILDCARDS)


def _alternatives(names):
    return "|".join(map(re.escape, names)) if names else "(?!x)x"


wildcard_constraints:
    dataset=_alternatives(config["datasets"]),
    method=_alternatives(config["methods"]),
    apply="both|noise|trigger",
    surrogate=_alternatives(config["models"]),
    victim=_alternatives(config["models"]),
    seed=r"\d+",
    defence=_alternatives(config.get("defences", {})),
    res=r"\d+",


def dataset_root(wildcards):
    src = config["datasets"][wildcards.dataset]["source"]
    return src["path"] if src["kind"] == "local" else f"{RESOURCES}/{source_copy(config, wildcards.dataset)}"


def layout_params(wildcards):
    """What the manifest reader needs to know about a dataset's folder."""
    ds = config["datasets"][wildcards.dataset]
    src = ds["source"]
    keys = ("images_dir", "captions_file", "image_column", "caption_column")
    default = {"shapes": "generic", "standin": "flickr8k"}.get(src["kind"], "auto")  # generated: known layouts
    return {"kind": src.get("layout", default),
            "max_image_pixels": ds["max_image_pixels"], **{k: src[k] for k in keys if k in src}}


def split_params(wildcards):
    return {**config["datasets"][wildcards.dataset]["split"], "lists_dir": str(SPLIT_LISTS)}


def split_lists(wildcards):
    """The paper's list files, as inputs, so that editing one re-splits the dataset."""
    split = config["datasets"][wildcards.dataset]["split"]
    if split["kind"] != "paper":
        return []
    return [str(p) for p in sorted(SPLIT_LISTS.glob(f"{split['lists']}_*.txt"))]


def members(model):
    """An ensemble's member models, or the model itself."""
    return config["models"][model].get("ensemble", [model])


def workflow_checkpoint(model):
    """The clean CLIP a model starts from when the workflow trains it (a list for an ensemble); else None."""
    if "ensemble" in config["models"][model]:
        return [c for m in members(model) for c in [workflow_checkpoint(m)] if c] or None
    pre = config["models"][model].get("pretrained", "none")
    return checkpoint_path(RESULTS, pre) if isinstance(pre, dict) else None


def model_spec(model):
    """What a job needs to build a model: its architecture and the weights it starts from (an ensemble: its
    members', under `ensemble`)."""
    m = config["models"][model]
    if "ensemble" in m:
        return {"ensemble": [model_spec(x) for x in m["ensemble"]]}
    return {"arch": m["arch"], "pretrained": workflow_checkpoint(model) or m.get("pretrained", "none")}


def model_res(model):
    return image_resolution(config["models"][members(model)[0]]["arch"])


def model_store(dataset, model):
    """The image store a model reads: the dataset at the model's input resolution."""
    return store_path(RESULTS, dataset, model_res(model))


def gpu_count(wildcards=None):
    """GPU-tagged rules ask for one GPU whenever they will run on CUDA."""
    import torch

    dev = config["device"]
    return 1 if dev == "cuda" or (dev == "auto" and torch.cuda.is_available()) else 0


def torch_threads():
    """Fixed per job (not scaled to --cores), so numbers do not depend on how many jobs run at once."""
    return config["threads_per_job"]


def train_threads():
    """A training job's CPUs: its torch threads plus one per loader worker gathering its batches (on SLURM,
    --cpus-per-task follows), so one core is not left to feed the GPU, pin memory and every worker."""
    return torch_threads() + config["train"]["workers"]


def cpus(n):
    """A job's --cpus-per-task on a cluster: its threads as declared, not as capped by the local --cores (a dry
    run caps them at 1, and a login node at its own cores), so `snakemake -n` prints what the cluster gets."""
    return lambda wildcards: n


def clean_test(w):
    """What a training job evaluates its model on: the clean test split at the victim's resolution."""
    return {"test_manifest": manifest_path(RESULTS, w.dataset), "test_store": model_store(w.dataset, w.victim)}


EVAL = {"batch_size": config["eval"]["batch_size"], "workers": config["eval"]["workers"]}


def run_dirs():
    """Every evaluated model of the grid, as its results folder."""
    return [run_dir(RESULTS, c) for c in grid_cells(config)]


def run_file(key):
    """One file of every evaluated model's run folder (`metrics_row`, `record`, ...)."""
    return [run_files(r)[key] for r in run_dirs()]


def gallery_entries(wildcards=None):
    """One gallery entry per dataset/method/surrogate/defence at the first seed, published with noise and
    trigger (under a defence that changes files: its defended copy)."""
    chosen = {}
    for c in grid_cells(config):
        if c["method"] != "clean" and c["seed"] == GRID["seeds"][0]:
            if c["defence"] != "none" and not defended_files(config, c["defence"]):
                continue  # augmentation alone changes no file
            key = (c["dataset"], c["method"], c["surrogate"], c["defence"])
            if key not in chosen or c["apply"] == "both":
                chosen[key] = c
    return [{"path": published_dir(RESULTS, c) if c["defence"] == "none" else defended_published_dir(RESULTS, c),
             "manifest": manifest_path(RESULTS, c["dataset"]),
             "store": model_store(c["dataset"], c["surrogate"]),
             "title": f"{c['dataset']}: {c['method']}" + (f" [{c['apply']}]" if c["apply"] != "both" else "")
             + f", surrogate {c['surrogate']}, seed {c['seed']}"
             + (f", defended by {c['defence']}" if c["defence"] != "none" else "")} for c in chosen.values()]


def wildcard_cell(w, **extra):
    """The cell a job's wildcards name (`seed` as a number)."""
    cell = dict(w.items())
    if "seed" in cell:
        cell["seed"] = int(cell["seed"])
    return {**cell, **extra}


def training_data(w):
    """What a training job's victim trains on: the clean train split, or the published folder of its
    protection; under a defence that changes files, the defended copy of either (augmentation alone changes
    none: the undefended data)."""
    cell = wildcard_cell(w)
    changed = defended_files(config, cell.get("defence", "none"))
    if cell.get("method", "clean") == "clean":
        if not changed:
            return {"manifest": manifest_path(RESULTS, w.dataset), "store": model_store(w.dataset, w.victim)}
        folder = defended_clean_dir(RESULTS, cell, model_res(w.victim))
    else:
        folder = defended_published_dir(RESULTS, cell) if changed else published_dir(RESULTS, cell)
    return {"manifest": f"{folder}/manifest.parquet", "store": f"{folder}/images.npy", "folder": folder}


def training_inputs(w):
    """The folder a training job trains on (none for the clean train split: it is the job's test input too)."""
    data = training_data(w)
    return [data["folder"]] if "folder" in data else []


def training_settings(w):
    """A victim's training settings; under a defence that augments, with its crop scale."""
    extra = {"augment_scale_min": defence(config, w.defence).augment_scale_min} if "defence" in w.keys() else {}
    return victim_train(config, w.victim, **extra)


def all_outputs():
    return [summary_path(RESULTS), report_path(RESULTS)]


_RESULTS_LOCK = []


onstart:
    # only the main Snakemake process runs this (jobs get --no-hooks), and only when jobs will run
    from unlearnable.workflow.results_lock import hold_results_lock

    try:
        _RESULTS_LOCK.append(hold_results_lock(RESULTS))
    except UnlearnableError as _e:
        sys.exit(f"error: {_e}")  # Snakemake releases its own lock on the way out
    except OSError as _e:
        sys.exit(f"error: {_e.filename or RESULTS}: {_e.strerror or _e}")
