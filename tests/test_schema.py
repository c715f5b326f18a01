import copy
from pathlib import Path

import pytest
import yaml

from unlearnable import ConfigError
from unlearnable.workflow.configschema import check_references, validate_config

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"


def base():
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_shipped_config_is_valid_and_defaults_are_filled():
    cfg = base()
    del cfg["train"]["warmup_fraction"]
    validate_config(cfg, SCHEMA)
    check_references(cfg)
    assert cfg["train"]["warmup_fraction"] == 0.1 and cfg["results"] == "results"


@pytest.mark.parametrize("mutate,key,words", [
    (lambda c: c["train"].update(epoch=3), "train.epoch", "unknown key (allowed here: epochs"),
    (lambda c: c["train"].update(epochs="ten"), "train.epochs", "not of type 'integer'"),
    (lambda c: c["datasets"]["shapes"]["split"].update(test=-1), "datasets.shapes.split.test", "minimum"),
    (lambda c: c.update(device="tpu"), "device", "is not one of"),
    (lambda c: c["grid"].pop("seeds"), "grid", "'seeds' is a required property"),
])
def test_bad_config_names_the_key(mutate, key, words):
    cfg = copy.deepcopy(base())
    mutate(cfg)
    with pytest.raises(ConfigError) as e:
        validate_config(cfg, SCHEMA)
    msg = str(e.value)
    assert f"key '{key}'" in msg and words.split()[0] in msg and "\n" not in msg


def test_undefined_names_in_grid():
    cfg = base()
    validate_config(cfg, SCHEMA)
    cfg["grid"]["victims"] = ["tiny-vit", "vit-huge"]
    with pytest.raises(ConfigError, match=r"grid.victims.1.*vit-huge"):
        check_references(cfg)


def test_conda_env_pins_the_same_dependencies_as_the_package_and_not_the_package_itself():
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((REPO / "envs" / "unlearnable.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip == deps  # no `-e ..`: a path would resolve against Snakemake's copy of the file
