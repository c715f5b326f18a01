# Config validation, output patterns, job resources, and the plan's input functions bound for the rules.
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
from unlearnable.workflow.grid import (WILDCARDS, artifacts_dir, defence, defended_clean_dir, defended_published_dir,
                                       expand_trigger_lengths, log_path, manifest_path, protection_cell, protection_dir,
                                       protection_dirs, published_dir, published_dirs, quality_path, report_path,
                                       run_dir, run_files, store_path, summary_path, tracking_path, training_cell)
from unlearnable.workflow.plan import DOWNLOADED, GENERATED, Plan

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


# The rules' input functions: the plan of this config (unlearnable.workflow.plan, tested without Snakemake),
# asked with the job's wildcards as a dict.
PLAN = Plan(config, SPLIT_LISTS)


def _asked(method):
    return lambda wildcards: method(dict(wildcards.items()))


dataset_root = _asked(PLAN.dataset_root)
layout_params = _asked(PLAN.layout_params)
split_params = _asked(PLAN.split_params)
split_lists = _asked(PLAN.split_lists)
clean_test = _asked(PLAN.clean_test)
training_data = _asked(PLAN.training_data)
training_inputs = _asked(PLAN.training_inputs)
training_settings = _asked(PLAN.training_settings)
gallery_entries = PLAN.gallery_entries
workflow_checkpoint = PLAN.workflow_checkpoint
model_spec = PLAN.model_spec
model_store = PLAN.model_store
run_file = PLAN.run_file
all_outputs = PLAN.all_outputs
EVAL = PLAN.eval_settings()


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
