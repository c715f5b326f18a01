"""One registry owns every protection kind and its defaults: the schema's enum, the CLI's choices and help, the
grid and the engine ask it, no other module names a kind, and a kind registered here, in a test, runs through
all of them with no other edit."""
import ast
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO

from unlearnable import ConfigError
from unlearnable.cli import parser as build_parser
from unlearnable.data import source_kinds
from unlearnable.defend import defences
from unlearnable.protect import kinds
from unlearnable.protect.config import ProtectConfig, method_config
from unlearnable.workflow import grid, plan
from unlearnable.workflow.configschema import check_references, load_schema, validate_config

SCHEMA = REPO / "config" / "schema.yaml"
PKG = REPO / "src" / "unlearnable"


def _kind_props(schema):
    return (schema["properties"]["methods"]["additionalProperties"]["properties"]["kind"],
            schema["$defs"]["defence"]["properties"]["kind"])


def test_the_schema_file_names_no_kind_and_its_loader_fills_the_registries():
    method, defence = _kind_props(yaml.safe_load(SCHEMA.read_text()))
    assert "enum" not in method and "enum" not in defence  # nothing to drift from the registry
    method, defence = _kind_props(load_schema(SCHEMA))
    assert method["enum"] == list(kinds.METHOD_KINDS)
    assert defence["enum"] == [k for k in defences.KINDS if k != "none"]


def test_the_schemas_sources_are_the_registered_ones_with_their_settings():
    """The schema validates each registered source kind's settings: one branch per kind, and a generated
    kind's keys are fields of its settings dataclass (whose defaults the generator and the cost model use)."""
    branches = yaml.safe_load(SCHEMA.read_text())["properties"]["datasets"]["additionalProperties"]["properties"][
        "source"]["oneOf"]
    by_kind = {b["properties"]["kind"]["const"]: b["properties"] for b in branches}
    assert list(by_kind) == list(source_kinds.SOURCE_KINDS)
    for name, kind in source_kinds.SOURCE_KINDS.items():
        if kind.generated:
            assert set(by_kind[name]) - {"kind"} <= {f.name for f in fields(kind.settings())}, name
    assert set(plan.GENERATED) | set(plan.DOWNLOADED) | set(source_kinds.kinds_that("in_place")) \
        == set(source_kinds.SOURCE_KINDS)


def test_the_clis_choices_default_and_help_come_from_the_registry():
    protect = next(a for a in build_parser()._subparsers._group_actions[0].choices["protect"]._actions
                   if a.dest == "method")
    assert protect.choices == list(kinds.METHOD_KINDS)
    assert protect.default == ProtectConfig().method
    for name, kind in kinds.METHOD_KINDS.items():
        assert f"{name}: {kind.help}" in protect.help
    rounds = next(a for a in build_parser()._subparsers._group_actions[0].choices["protect"]._actions
                  if a.dest == "rounds")
    assert f"reference: {ProtectConfig().rounds};" in rounds.help and "em 5" in rounds.help


def _string_constants(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value, node.lineno


# Not a kind: the grid's defence *named* scraper, whose visibility plot the report draws; the command that
# writes the shapes dataset; the kaggle package's logger and configuration folder.
NOT_KINDS = {("report/plots.py", "scraper"), ("report/html.py", "scraper"), ("cli.py", "shapes"),
             ("data/kaggle_source.py", "kaggle")}


def test_each_kind_is_named_in_one_module():
    """A method kind's name is a string only in protect/kinds.py, a defence kind's only in defend/defences.py,
    a source kind's only in data/source_kinds.py: elsewhere code asks a kind's properties."""
    homes = {**{k: "protect/kinds.py" for k in kinds.METHOD_KINDS},
             **{k: "defend/defences.py" for k in defences.KINDS if k != "none"},
             **{k: "data/source_kinds.py" for k in source_kinds.SOURCE_KINDS}}
    found = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        for value, line in _string_constants(path):
            if value in homes and rel != homes[value] and (rel, value) not in NOT_KINDS:
                found.append(f"{rel}:{line}: {value!r}")
    assert not found, found


def test_the_guard_above_sees_a_kind_named_elsewhere():
    source = 'if cfg.method == "robust_em":\n    pass\n'
    assert ("robust_em", 1) in list(_string_constants_of(source))


def _string_constants_of(source: str):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value, node.lineno


def test_defaults_are_stated_once():
    """A kind's defaults are overrides of ProtectConfig's fields, never a restatement of its reference value;
    the evaluation batch the schema defaults to is the library's."""
    from unlearnable.clip.evaluate import EVAL_BATCH

    reference = {f.name: f.default for f in fields(ProtectConfig)}
    for name, kind in kinds.METHOD_KINDS.items():
        assert set(kind.defaults) <= set(reference), name
        same = [k for k, v in kind.defaults.items() if v == reference[k]]
        assert not same, f"{name} restates the reference's {same}"
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["properties"]["eval"]["properties"]["batch_size"]["default"] == EVAL_BATCH
    for kind, params in defences.PARAMS.items():  # a defence's parameters have no second default in the code
        fn = defences.IMAGE_DEFENCES.get(kind)
        if fn is not None:
            import inspect

            defaulted = [p for p in inspect.signature(fn).parameters.values() if p.default is not p.empty]
            assert not defaulted, (kind, defaulted)


def _stated_defaults() -> dict[str, set]:
    """Every default the library states once: a config dataclass's field, or a schema property's `default`."""
    stated: dict[str, set] = {}
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any("dataclass" in ast.unparse(d) for d in node.decorator_list):
                for st in node.body:
                    if isinstance(st, ast.AnnAssign) and isinstance(st.value, ast.Constant) \
                            and st.value.value is not None:
                        stated.setdefault(st.target.id, set()).add(st.value.value)

    def walk(x):
        if isinstance(x, dict):
            for key, sub in (x.get("properties") or {}).items():
                if isinstance(sub, dict) and "default" in sub and not isinstance(sub["default"], (dict, list)):
                    stated.setdefault(key, set()).add(sub["default"])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(yaml.safe_load(SCHEMA.read_text()))
    return stated


def restated_fallbacks(files, stated) -> list[str]:
    """`.get("eps", 8)`-style fallbacks that repeat a default stated in a dataclass or the schema."""
    found = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) in ("get", "pop", "setdefault") \
                    and len(node.args) == 2 and all(isinstance(a, ast.Constant) for a in node.args):
                key, value = (a.value for a in node.args)
                if value in stated.get(key, ()):
                    found.append(f"{path.relative_to(PKG)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_no_fallback_restates_a_default():
    """A config value read with a fallback takes the fallback from its one statement (the dataclass, or the
    schema, whose defaults the loader fills in), never from a second literal."""
    found = restated_fallbacks(sorted(PKG.rglob("*.py")), _stated_defaults())
    assert not found, "\n".join(found)


def test_the_fallback_guard_sees_a_restated_default(tmp_path):
    bad = PKG / "_probe_restated.py"
    try:
        bad.write_text('def f(src, split):\n    return src.get("captions_per_image", 5), split.get("test", 0.1), '
                       'split.get("test", 0.3)\n')
        found = restated_fallbacks([bad], _stated_defaults())
    finally:
        bad.unlink()
    assert [f.split(": ", 1)[1] for f in found] == ["src.get('captions_per_image', 5)", "split.get('test', 0.1)"]


@pytest.fixture
def toy_kind():
    """A new method: error-minimising noise at 4/255 for 2 rounds. Registered here and nowhere else."""
    kind = kinds.register(kinds.MethodKind("toy_em", "optimised", "none", "a test's noise at 4/255",
                                           {"eps": 4, "rounds": 2, "surrogate_steps": 2, "token_num": 0,
                                            "hotflip_rounds": 0}))
    yield kind
    del kinds.METHOD_KINDS[kind.name]


def _toy_config():
    return {"datasets": {"shapes": {"source": {"kind": "shapes", "n_images": 40}}},
            "models": {"tiny-vit": {"arch": "tiny-vit", "pretrained": "none"}},
            "methods": {"toy": {"kind": "toy_em"}},
            "grid": {"datasets": ["shapes"], "surrogates": ["tiny-vit"], "victims": ["tiny-vit"], "seeds": [0],
                     "runs": [{"method": "clean"}, {"method": "toy"}]}}


def test_a_registered_toy_kind_reaches_the_schema_the_cli_and_the_grid(toy_kind):
    config = validate_config(_toy_config(), SCHEMA)
    check_references(config, "config")
    assert method_config(config["methods"]["toy"]).eps == 4
    assert {c["method"] for c in grid.cells(config) if c["method"] != "clean"} == {"toy"}
    protect = next(a for a in build_parser()._subparsers._group_actions[0].choices["protect"]._actions
                   if a.dest == "method")
    assert "toy_em" in protect.choices and "a test's noise at 4/255" in protect.help
    args = build_parser().parse_args(["protect", "in", "out", "--method", "toy_em"])
    assert args.method == "toy_em"


def test_without_its_registration_the_toy_kind_is_refused():
    with pytest.raises(ConfigError, match="methods.toy.kind"):
        validate_config(_toy_config(), SCHEMA)
    with pytest.raises(ConfigError, match="toy_em"):
        method_config({"kind": "toy_em"})


def test_a_registered_toy_kind_protects_through_the_engine(toy_kind, shapes_store, tmp_path):
    """Its code is the engine's: a protection made with it keeps its own budget and makes no trigger."""
    from unlearnable.clip.models import ModelSpec
    from unlearnable.data.folders import ProtectionDir
    from unlearnable.protect.run import protect

    df, store = shapes_store
    train = df[df.split == "train"].reset_index(drop=True).head(24)
    cfg = method_config({"kind": "toy_em", "granularity": "image", "batch_size": 8, "pgd_steps": 2})
    protect(train, store, ModelSpec("tiny-vit"), cfg, seed=0, device="cpu", out_dir=tmp_path / "p")
    folder = ProtectionDir(tmp_path / "p")
    noise = np.asarray(folder.noise())
    assert np.abs(noise).max() <= 4 and np.abs(noise).max() > 0
    assert folder.triggers().shape[1] == 0
    assert folder.record()["config"]["method"] == "toy_em"


def test_the_readme_example_registers_a_kind_and_its_table_lists_every_kind():
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Methods and defences"):readme.index("## Configuration")]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    for name in kinds.METHOD_KINDS:
        assert any(f"`{name}`" in line.split("|")[1] for line in table), name
    api = readme[readme.index("## From Python"):]
    code = api[api.index("ul.register_method"):]
    code = code[:code.index("```")]
    try:
        exec(compile(code, "README.md", "exec"), {"ul": __import__("unlearnable")})
        assert kinds.METHOD_KINDS["em4"].defaults["eps"] == 4
        assert method_config({"kind": "em4"}).rounds == kinds.METHOD_KINDS["em"].defaults["rounds"]
    finally:
        kinds.METHOD_KINDS.pop("em4", None)
