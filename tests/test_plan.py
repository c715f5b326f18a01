"""The rules' input functions, tested as plain Python over a config: what each job reads and how it is set."""
import copy

import pytest

from conftest import REPO

from unlearnable.workflow.configschema import check_references, validate_config
from unlearnable.workflow.plan import DOWNLOADED, GENERATED, Plan

SCHEMA = REPO / "config" / "schema.yaml"


def _config(**over):
    config = {
        "results": "res",
        "datasets": {
            "pre": {"source": {"kind": "kaggle", "dataset": "adityajn105/flickr8k"},
                    "split": {"kind": "paper", "lists": "flickr8k", "train_part": "pretrain", "seed": 0}},
            "own": {"source": {"kind": "kaggle", "dataset": "adityajn105/flickr8k"},
                    "split": {"kind": "paper", "lists": "flickr8k", "train_part": "owner", "seed": 0}},
            "toy": {"source": {"kind": "shapes", "n_images": 40}}},
        "models": {"tiny-vit": {"arch": "tiny-vit", "pretrained": "none"},
                   "small-rn-64": {"arch": "small-rn-64", "pretrained": "none"},
                   "ft": {"arch": "small-rn-64", "pretrained": {"dataset": "pre", "model": "small-rn-64", "seed": 0},
                          "train": {"epochs": 1, "lr": 0.0003}}},
        "methods": {"mem3": {"kind": "mem"}},
        "defences": {"aug": {"kind": "augment", "scale_min": 0.7}, "jpeg": {"kind": "jpeg"}},
        "grid": {"datasets": ["own"], "surrogates": ["tiny-vit"], "victims": ["tiny-vit", "ft"], "seeds": [3, 4],
                 "defences": ["none", "aug", "jpeg"], "runs": [{"method": "clean"}, {"method": "mem3"}]},
        **over}
    config = validate_config(copy.deepcopy(config), SCHEMA)
    check_references(config)
    return Plan(config)


def test_datasets_that_share_a_source_fetch_it_once_into_the_first():
    plan = _config()
    assert plan.source_copies(DOWNLOADED) == ["pre"] and plan.source_copies(GENERATED) == ["toy"]
    assert plan.dataset_root({"dataset": "own"}) == f"{plan.config['resources']}/pre"
    assert plan.layout_params({"dataset": "toy"})["kind"] == "generic"
    assert plan.layout_params({"dataset": "own"})["kind"] == "auto"
    lists = plan.split_lists({"dataset": "own"})
    assert lists and all("flickr8k_" in p for p in lists) and plan.split_lists({"dataset": "toy"}) == []


def test_a_fine_tuned_victim_starts_from_the_clean_checkpoint_the_workflow_trains():
    plan = _config()
    spec = plan.model_spec("ft")
    assert spec["arch"] == "small-rn-64" and spec["pretrained"] == plan.workflow_checkpoint("ft")
    assert spec["pretrained"] == "res/pre/clean/small-rn-64/seed0/model.safetensors"
    assert plan.workflow_checkpoint("tiny-vit") is None and plan.model_spec("tiny-vit")["pretrained"] == "none"
    assert plan.training_settings({"victim": "ft"})["epochs"] == 1
    assert plan.model_store("own", "ft") == "res/own/data/images_64px.npy"  # each victim reads its resolution
    assert plan.model_store("own", "tiny-vit") == "res/own/data/images_32px.npy"


def test_a_victim_trains_on_what_its_cell_names_and_is_tested_on_the_clean_split():
    plan = _config()
    w = {"dataset": "own", "victim": "tiny-vit", "seed": "3"}
    clean = plan.training_data(w)
    assert "folder" not in clean and plan.training_inputs(w) == []
    assert clean["manifest"] == plan.clean_test(w)["test_manifest"]
    cell = {**w, "method": "mem3", "apply": "both", "surrogate": "tiny-vit"}
    published = plan.training_data(cell)
    assert "/published/mem3/" in published["folder"] and plan.training_inputs(cell) == [published["folder"]]
    # augmentation changes no file: the undefended folder, at the defence's crop scale
    assert plan.training_data({**cell, "defence": "aug"}) == published
    assert plan.training_settings({**cell, "defence": "aug"})["augment_scale_min"] == 0.7
    jpeg = plan.training_data({**cell, "defence": "jpeg"})
    assert "/defended/jpeg/" in jpeg["folder"] and jpeg["folder"] != published["folder"]
    assert "/defended/jpeg/" in plan.training_data({**w, "method": "clean", "defence": "jpeg"})["folder"]


def test_the_gallery_shows_each_protection_once_at_the_first_seed_and_skips_file_free_defences():
    plan = _config()
    entries = plan.gallery_entries()
    titles = sorted(e["title"] for e in entries)
    assert len(entries) == 2 and all("seed 3" in t and "mem3" in t for t in titles)
    assert any("defended by jpeg" in t for t in titles) and not any("aug" in t for t in titles)


def test_every_evaluated_model_is_one_run_folder_of_the_grid():
    plan = _config()
    # 2 victims x 2 seeds x (clean + mem3) x 3 defences
    assert len(plan.run_dirs()) == 24 == len(set(plan.run_dirs()))
    assert all(p.endswith("metrics.parquet") for p in plan.run_file("metrics_row"))
    with pytest.raises(KeyError):
        plan.run_file("nothing")
