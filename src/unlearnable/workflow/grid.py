"""The result grid: datasets x methods (x trigger lengths) x surrogates x victims x seeds, as cells.

A cell is one evaluated model. Cells share upstream work through the DAG's file names: one manifest per
dataset, one clean baseline per dataset/victim/seed, one protection per dataset/method/surrogate/seed, one
retrain per protection/apply/victim/seed. Transfer is simply surrogate != victim.
"""
from __future__ import annotations

import copy

from .. import ConfigError
from ..data.folders import ReportDir, RunDir



def expand_trigger_lengths(config: dict) -> dict:
    """`grid.trigger_lengths: [1, 3, 5]` turns every trigger method of `grid.runs` into one run per length.

    A derived method is named `<name>-k<n>`, except where n is the method's own length: that keeps its name,
    so the cells it already has are reused rather than recomputed.
    """
    grid = config["grid"]
    lengths = grid.get("trigger_lengths") or []
    if not lengths:
        return config
    from ..protect.config import method_config
    from ..protect.kinds import method_kind

    methods, runs = config.setdefault("methods", {}), []
    for run in grid["runs"]:
        spec = methods.get(run["method"])
        if spec is None or not method_kind(spec["kind"]).has_trigger:
            runs.append(run)
            continue
        own = method_config(spec).token_num
        for n in lengths:
            name = run["method"] if n == own else f"{run['method']}-k{n}"
            if name != run["method"]:
                if name in methods and methods[name] != {**spec, "token_num": n}:
                    raise ConfigError(f"config: key 'methods.{name}' clashes with the trigger-length axis")
                methods[name] = {**copy.deepcopy(spec), "token_num": n}
            runs.append({**run, "method": name})
    grid["runs"] = list({(r["method"], r["apply"], tuple(r.get("surrogates") or ())): r
                         for r in runs}.values())
    return config


def cells(config: dict) -> list[dict]:
    """Every cell of the grid, in a stable order. Each protection is crossed with every defence (or its run's
    own subset), and so is the clean baseline, so that each drop is measured against clean data under the
    same defence."""
    grid, out = config["grid"], []
    for d in grid["datasets"]:
        for run in grid["runs"]:
            for defence in run.get("defences") or grid.get("defences") or ["none"]:
                for v in grid["victims"]:
                    for s in grid["seeds"]:
                        if run["method"] == "clean":
                            out.append({"dataset": d, "method": "clean", "apply": "none", "surrogate": "none",
                                        "victim": v, "seed": s, "defence": defence})
                            continue
                        for sur in run.get("surrogates") or grid["surrogates"]:
                            out.append({"dataset": d, "method": run["method"], "apply": run["apply"],
                                        "surrogate": sur, "victim": v, "seed": s, "defence": defence})
    unique = {tuple(c.values()): c for c in out}
    return list(unique.values())


def source_copy(config: dict, name: str) -> str:
    """The dataset whose copy of the source `name` reads: the first dataset with the same source, so that the
    parts of one split (a pretraining half and the owner's half) download or generate it once."""
    source = config["datasets"][name]["source"]
    return next(d for d, ds in config["datasets"].items() if ds["source"] == source)


def defence(config: dict, name: str):
    """The `defences.<name>` entry as a `Defence` (a chain with its steps); `none` is the identity."""
    from ..defend.defences import Defence

    return Defence() if name == "none" else Defence.from_config(name, config["defences"][name])


def defended_files(config: dict, name: str) -> bool:
    """Whether the victim trains on a defended copy of the folder (False for none, and for augmentation
    alone, which changes no file)."""
    return defence(config, name).changes_files


# The results layout. Every path a rule writes is composed here, once: the rules call these functions with
# WILDCARDS for their output patterns, the input functions, summary and report with real cells.
WILDCARDS = {k: "{" + k + "}" for k in ("dataset", "method", "apply", "surrogate", "victim", "seed", "defence")}
def victim_train(config: dict, model: str, **extra) -> dict:
    """A victim's training settings: the grid's `train`, then the model's own overrides (a fine-tuned victim's
    fewer epochs), then `extra` (a defence's crop scale). The rules and `cost` both read them here."""
    return {**config["train"], **config["models"][model].get("train", {}), **extra}


def run_files(run: str) -> dict[str, str]:
    """The files a training job writes into its run folder: its model, record and metrics."""
    return RunDir.files(run)


def tracking_path(results: str) -> str:
    return f"{results}/tracking.json"


def artifacts_dir(results: str) -> str:
    """MLflow's artifact store beside the grid's tracking database."""
    return f"{results}/mlartifacts"


def summary_path(results: str) -> str:
    return f"{results}/summary.parquet"


FILE_SUFFIXES = (".parquet", ".npy", ".json", ".html", ".safetensors")


def log_path(results: str, output: str, root: str | None = None) -> str:
    """A job's log: the place of what it writes (its output folder, or its first output file without the
    suffix) under `root` (the results folder; the raw-data folder for a download), moved under results/logs
    and ending in `.log`. One rule for every job, so a log is found from what it logged."""
    root = (results if root is None else root).rstrip("/")
    if not output.startswith(root + "/"):
        raise ValueError(f"{output} is not under {root}")
    rel = output[len(root) + 1:]
    rel = next((rel.removesuffix(s) for s in FILE_SUFFIXES if rel.endswith(s)), rel)
    return f"{results}/logs/{rel}.log"


def report_path(results: str, key: str = "html") -> str:
    """One file of the report (keys: `ReportDir.FILES`)."""
    return f"{results}/report/{ReportDir.FILES[key]}"  # as composed, not normalised: logs and rules match on it


def data_dir(results: str, dataset: str) -> str:
    return f"{results}/{dataset}/data"


def manifest_path(results: str, dataset: str) -> str:
    return f"{data_dir(results, dataset)}/manifest.parquet"


def quality_path(results: str, dataset: str) -> str:
    return f"{data_dir(results, dataset)}/quality.json"


def store_path(results: str, dataset: str, res) -> str:
    """A dataset's images decoded once at `res` pixels (uint8 NHWC); its `.json` beside it."""
    return f"{data_dir(results, dataset)}/images_{res}px.npy"


def checkpoint_path(results: str, pretrained: dict) -> str:
    """The clean CLIP a `pretrained: {dataset, model, seed}` entry names."""
    cell = {"dataset": pretrained["dataset"], "method": "clean", "victim": pretrained["model"],
            "seed": pretrained["seed"]}
    return run_files(run_dir(results, cell))["model"]


def training_cell(config: dict, wildcards: dict) -> dict:
    """A training job's cell from its wildcards: what tracking tags and the summary row key on."""
    w = wildcards
    cell = {"dataset": w["dataset"], "method": w.get("method", "clean"), "apply": w.get("apply", "none"),
            "surrogate": w.get("surrogate", "none"), "victim": w["victim"], "seed": int(w["seed"])}
    if "method" in w:
        cell["method_params"] = config["methods"][w["method"]]
    cell["defence"] = w.get("defence", "none")  # an undefended run is tagged `none`, so MLflow can filter it
    return cell


def protection_cell(config: dict, wildcards: dict) -> dict:
    """A protection's or published folder's cell from its job's wildcards."""
    cell = {k: wildcards[k] for k in ("dataset", "method", "apply", "surrogate") if k in wildcards}
    return {**cell, "seed": int(wildcards["seed"]), "method_params": config["methods"][wildcards["method"]]}


def defended(results: str, cell: dict) -> str:
    """`results/<dataset>`, or `results/<dataset>/defended/<defence>` under a defence."""
    base = f"{results}/{cell['dataset']}"
    return base if cell.get("defence", "none") == "none" else f"{base}/defended/{cell['defence']}"


def run_dir(results: str, cell: dict) -> str:
    """The folder of a cell's trained model and metrics (undefended cells keep their original place)."""
    if cell["method"] == "clean":
        return f"{defended(results, cell)}/clean/{cell['victim']}/seed{cell['seed']}"
    return (f"{defended(results, cell)}/retrain/{cell['method']}/{cell['apply']}/{cell['surrogate']}/"
            f"{cell['victim']}/seed{cell['seed']}")


def protection_dir(results: str, cell: dict) -> str:
    """The protection a protected cell's training data was made with (shared by every victim and `apply`)."""
    return f"{results}/{cell['dataset']}/protect/{cell['method']}/{cell['surrogate']}/seed{cell['seed']}"


def published_dir(results: str, cell: dict) -> str:
    """The published folder a protected cell's victim was retrained on (shared by every victim)."""
    return (f"{results}/{cell['dataset']}/published/{cell['method']}/{cell['apply']}/{cell['surrogate']}/"
            f"seed{cell['seed']}")


def defended_published_dir(results: str, cell: dict) -> str:
    """The defended copy of a cell's published folder (under a defence that changes files)."""
    return (f"{defended(results, cell)}/published/{cell['method']}/{cell['apply']}/{cell['surrogate']}/"
            f"seed{cell['seed']}")


def defended_clean_dir(results: str, cell: dict, res: int) -> str:
    """The defended copy of a dataset's clean training images at `res` pixels."""
    return f"{defended(results, cell)}/data/clean_{res}px"


def protection_dirs(results: str, config: dict) -> list[str]:
    """Every protection of the grid (for the report's gallery and loss curves)."""
    return list(dict.fromkeys(protection_dir(results, c) for c in cells(config) if c["method"] != "clean"))


def published_dirs(results: str, config: dict) -> list[str]:
    """Every published folder, and every defended copy of one (defences that change files)."""
    out = []
    for c in cells(config):
        if c["method"] == "clean":
            continue
        out.append(published_dir(results, c))
        if defended_files(config, c["defence"]):
            out.append(defended_published_dir(results, c))
    return list(dict.fromkeys(out))
