"""What each job of a validated config reads and how it is set, from its wildcards: the rules' input functions,
as plain Python over the config, so they are tested without Snakemake (tests/test_plan.py). `rules/common.smk`
binds them to the rules and holds nothing else but the config checks and the job resources."""
from __future__ import annotations

from pathlib import Path

from ..data.folders import PublishedDir
from ..data.source_kinds import kinds_that, source_kind
from ..paths import CONFIG_DIR
from .grid import (cells, checkpoint_path, defence, defended_clean_dir, defended_files, defended_published_dir,
                   manifest_path, published_dir, report_path, run_dir, run_files, source_copy, store_path,
                   summary_path, victim_train)

GENERATED, DOWNLOADED = kinds_that("generate"), kinds_that("download")  # the sources the workflow writes


class Plan:
    def __init__(self, config: dict, split_lists_dir: str | Path = CONFIG_DIR / "splits"):
        self.config, self.results = config, config["results"]
        self.split_lists_dir = Path(split_lists_dir)

    # datasets
    def source_copies(self, kinds: tuple[str, ...] | None = None) -> list[str]:
        """Datasets that hold their source's one copy (a source shared by the parts of one split is fetched or
        generated once, for the first), of the given source kinds."""
        datasets = self.config["datasets"]
        return [d for d in datasets if source_copy(self.config, d) == d
                and (kinds is None or datasets[d]["source"]["kind"] in kinds)]

    def dataset_root(self, w: dict) -> str:
        src = self.config["datasets"][w["dataset"]]["source"]
        if source_kind(src["kind"]).in_place:
            return src["path"]
        return f"{self.config['resources']}/{source_copy(self.config, w['dataset'])}"

    def layout_params(self, w: dict) -> dict:
        """What the manifest reader needs to know about a dataset's folder."""
        ds = self.config["datasets"][w["dataset"]]
        src = ds["source"]
        keys = ("images_dir", "captions_file", "image_column", "caption_column")
        return {"kind": src.get("layout", source_kind(src["kind"]).layout or "auto"),
                "max_image_pixels": ds["max_image_pixels"], **{k: src[k] for k in keys if k in src}}

    def split_params(self, w: dict) -> dict:
        return {**self.config["datasets"][w["dataset"]]["split"], "lists_dir": str(self.split_lists_dir)}

    def split_lists(self, w: dict) -> list[str]:
        """The paper's list files, as inputs, so that editing one re-splits the dataset."""
        split = self.config["datasets"][w["dataset"]]["split"]
        if split["kind"] != "paper":
            return []
        return [str(p) for p in sorted(self.split_lists_dir.glob(f"{split['lists']}_*.txt"))]

    # models
    def members(self, model: str) -> list[str]:
        """An ensemble's member models, or the model itself."""
        return self.config["models"][model].get("ensemble", [model])

    def workflow_checkpoint(self, model: str):
        """The clean CLIP a model starts from when the workflow trains it (a list for an ensemble); else None."""
        if "ensemble" in self.config["models"][model]:
            return [c for m in self.members(model) for c in [self.workflow_checkpoint(m)] if c] or None
        pre = self.config["models"][model]["pretrained"]
        return checkpoint_path(self.results, pre) if isinstance(pre, dict) else None

    def model_spec(self, model: str) -> dict:
        """What a job needs to build a model: its architecture and the weights it starts from (an ensemble: its
        members', under `ensemble`)."""
        m = self.config["models"][model]
        if "ensemble" in m:
            return {"ensemble": [self.model_spec(x) for x in m["ensemble"]]}
        return {"arch": m["arch"], "pretrained": self.workflow_checkpoint(model) or m["pretrained"]}

    def model_res(self, model: str) -> int:
        from ..clip.models import image_resolution

        return image_resolution(self.config["models"][self.members(model)[0]]["arch"])

    def model_store(self, dataset: str, model: str) -> str:
        """The image store a model reads: the dataset at the model's input resolution."""
        return store_path(self.results, dataset, self.model_res(model))

    # training
    def clean_test(self, w: dict) -> dict:
        """What a training job evaluates its model on: the clean test split at the victim's resolution."""
        return {"test_manifest": manifest_path(self.results, w["dataset"]),
                "test_store": self.model_store(w["dataset"], w["victim"])}

    def training_data(self, w: dict) -> dict:
        """What a training job's victim trains on: the clean train split, or the published folder of its
        protection; under a defence that changes files, the defended copy of either (augmentation alone changes
        none: the undefended data)."""
        cell = {**w, **({"seed": int(w["seed"])} if "seed" in w else {})}
        changed = defended_files(self.config, cell.get("defence", "none"))
        if cell.get("method", "clean") == "clean":
            if not changed:
                return {"manifest": manifest_path(self.results, w["dataset"]),
                        "store": self.model_store(w["dataset"], w["victim"])}
            folder = defended_clean_dir(self.results, cell, self.model_res(w["victim"]))
        else:
            folder = defended_published_dir(self.results, cell) if changed else published_dir(self.results, cell)
        return {"manifest": f"{folder}/{PublishedDir.MANIFEST}", "store": f"{folder}/{PublishedDir.STORE}",
                "folder": folder}

    def training_inputs(self, w: dict) -> list[str]:
        """The folder a training job trains on (none for the clean train split: it is the job's test input)."""
        data = self.training_data(w)
        return [data["folder"]] if "folder" in data else []

    def training_settings(self, w: dict) -> dict:
        """A victim's training settings; under a defence that augments, with its crop scale."""
        extra = {"augment_scale_min": defence(self.config, w["defence"]).augment_scale_min} if "defence" in w \
            else {}
        return victim_train(self.config, w["victim"], **extra)

    def eval_settings(self) -> dict:
        return {"batch_size": self.config["eval"]["batch_size"], "workers": self.config["eval"]["workers"]}

    # the summary and the report
    def run_dirs(self) -> list[str]:
        """Every evaluated model of the grid, as its results folder."""
        return [run_dir(self.results, c) for c in cells(self.config)]

    def run_file(self, key: str) -> list[str]:
        """One file of every evaluated model's run folder (`metrics_row`, `record`, ...)."""
        return [run_files(r)[key] for r in self.run_dirs()]

    def gallery_entries(self, w=None) -> list[dict]:
        """One gallery entry per dataset/method/surrogate/defence at the first seed, published with noise and
        trigger (under a defence that changes files: its defended copy)."""
        chosen, first_seed = {}, self.config["grid"]["seeds"][0]
        for c in cells(self.config):
            if c["method"] != "clean" and c["seed"] == first_seed:
                if c["defence"] != "none" and not defended_files(self.config, c["defence"]):
                    continue  # augmentation alone changes no file
                key = (c["dataset"], c["method"], c["surrogate"], c["defence"])
                if key not in chosen or c["apply"] == "both":
                    chosen[key] = c
        return [{"path": published_dir(self.results, c) if c["defence"] == "none"
                 else defended_published_dir(self.results, c),
                 "manifest": manifest_path(self.results, c["dataset"]),
                 "store": self.model_store(c["dataset"], c["surrogate"]),
                 "title": f"{c['dataset']}: {c['method']}" + (f" [{c['apply']}]" if c["apply"] != "both" else "")
                 + f", surrogate {c['surrogate']}, seed {c['seed']}"
                 + (f", defended by {c['defence']}" if c["defence"] != "none" else "")} for c in chosen.values()]

    def all_outputs(self) -> list[str]:
        return [summary_path(self.results), report_path(self.results)]
