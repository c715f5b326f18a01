import copy
import re
from pathlib import Path

import pytest
import yaml

from unlearnable import ConfigError
from unlearnable.workflow.configschema import check_references, load_schema, validate_config

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


def test_library_defaults_are_the_schemas():
    """A default is stated once: every `train` key the schema gives a default has that default in TrainConfig,
    and every method key the library knows is a key the schema accepts (and the other way round)."""
    from dataclasses import fields

    from unlearnable.clip.train import TrainConfig
    from unlearnable.protect.config import ProtectConfig

    schema = yaml.safe_load(SCHEMA.read_text())
    train = schema["properties"]["train"]["properties"]
    library = {f.name: f.default for f in fields(TrainConfig)}
    for key, spec in train.items():
        if "default" in spec:
            assert library[key] == spec["default"], key
    method_keys = set(schema["properties"]["methods"]["additionalProperties"]["properties"]) - {"kind"}
    assert method_keys == {f.name for f in fields(ProtectConfig)} - {"method"}


def test_readme_configuration_table_names_every_key_the_schema_accepts():
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Configuration")
    table = readme[start:readme.index("\n## ", start + 1)]
    schema = yaml.safe_load(SCHEMA.read_text())
    for key in schema["properties"]:
        assert f"`{key}" in table, key
    methods_row = next(line for line in table.splitlines() if line.startswith("| `methods.<name>`"))
    for key in schema["properties"]["methods"]["additionalProperties"]["properties"]:
        assert f"`{key}`" in methods_row, key
    for kind in load_schema(SCHEMA)["properties"]["methods"]["additionalProperties"]["properties"]["kind"]["enum"]:
        assert f"`{kind}`" in methods_row, kind
    grid_row = next(line for line in table.splitlines() if line.startswith("| `grid`"))
    for key in schema["properties"]["grid"]["properties"]:
        assert f"`{key}`" in grid_row, key


def test_readme_is_a_guide_before_its_results_and_names_no_issue_or_commit():
    """The README reads as a user guide: its first results table comes within 250 lines, after the metrics
    are defined; neither it nor docs/ cites an issue number or a commit (the reader has neither)."""
    readme = (REPO / "README.md").read_text()
    lines = readme.splitlines()
    first_table = next(i for i, line in enumerate(lines) if line.startswith("| method |"))
    assert first_table < 250, first_table
    assert readme.index("## What the numbers mean") < readme.index("| method |")
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert not re.search(r"\bissues? #?\d+|#\d{1,4}\b|\bcommit [0-9a-f]{7,40}\b|\bPR \d+", text, re.I), doc.name
        assert not re.search(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b", text), doc.name  # a hash
