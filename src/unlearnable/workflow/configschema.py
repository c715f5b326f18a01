"""Validate the workflow config against its JSON schema, filling defaults, with one-line errors."""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import jsonschema
import yaml

from .. import ConfigError
from ..protect.kinds import METHOD_KINDS


def _with_defaults(cls):
    validate_props = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(cls, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


class _UniqueKeys(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping (PyYAML keeps the last silently). A `<<` merge is no
    repeat: keys written beside it override the merged ones, as YAML says."""

    source = "config"

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"{self.source}: line {line}: key {key!r} is given twice in one mapping (first at "
                                  f"line {seen[key]}); YAML would keep the last silently: remove one")
            seen[key] = line
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path) -> object:
    """A config file, every key given once; a syntax error is one line naming the file."""
    loader = _UniqueKeys(Path(path).read_text())
    loader.source = str(path)
    try:
        return loader.get_single_data()
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    finally:
        loader.dispose()


def check_config_files(paths: list[str | Path], config: dict | None = None) -> None:
    """Re-read the config files a run merges (Snakemake's loader keeps a repeated key's last value). With
    `config`, a dataset's `source` is the last file's whole: Snakemake merges key by key, which would give a
    Kaggle source that a later file points at a local copy both a `dataset` and a `path`."""
    loaded = [load_yaml(path) for path in paths]
    if config is not None:
        whole_sources(config, loaded)


def whole_sources(config: dict, files: list[dict]) -> dict:
    """Each dataset's `source` as the last of `files` that gives one states it, never merged with an earlier."""
    for data in files:
        for name, ds in ((data or {}).get("datasets") or {}).items():
            if isinstance(ds, dict) and isinstance(ds.get("source"), dict) and name in config.get("datasets", {}):
                config["datasets"][name]["source"] = copy.deepcopy(ds["source"])
    return config


def layered(files: list[dict]) -> dict:
    """Config files as Snakemake layers its `--configfile`s: each deep-updates the ones before it (a dataset's
    `source` replaced whole)."""
    def update(a: dict, b: dict) -> dict:
        for k, v in b.items():
            a[k] = update(a.get(k, {}), v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return a

    config = {}
    for data in files:
        config = update(config, copy.deepcopy(data or {}))
    return whole_sources(config, files)


def load_schema(schema_path: str | Path) -> dict:
    """The schema file with its kinds' enums filled from the library's registries: the file names no kind, so a
    newly registered one needs no schema edit (tests/test_registry.py)."""
    from ..defend.defences import KINDS as DEFENCE_KINDS

    schema = yaml.safe_load(Path(schema_path).read_text())
    props = schema["properties"]["methods"]["additionalProperties"]["properties"]
    props["kind"]["enum"] = list(METHOD_KINDS)
    schema["$defs"]["defence"]["properties"]["kind"]["enum"] = [k for k in DEFENCE_KINDS if k != "none"]  # built in
    return schema


def validate_config(config: dict, schema_path: str | Path, source: str = "config") -> dict:
    """Fill defaults in place and raise ConfigError naming the first offending key."""
    schema = load_schema(schema_path)
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        e = _chosen_branch(errors[0])
        key = ".".join(str(p) for p in e.absolute_path) or "<top level>"
        msg = e.message
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):
            allowed = e.schema.get("properties", {})
            extra = [k for k in e.instance if k not in allowed]
            key = f"{key}.{extra[0]}" if key != "<top level>" else extra[0]
            msg = f"unknown key (allowed here: {', '.join(allowed)})"
        raise ConfigError(f"{source}: key '{key}': {msg}")
    return config


def _chosen_branch(e: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For a `oneOf` of variants told apart by `kind`, the error inside the variant the user chose.

    jsonschema reports "is not valid under any of the given schemas", which hides a typo such as `pth:`.
    """
    if e.validator not in ("oneOf", "anyOf") or not e.context:
        return e
    by_branch: dict[int, list] = {}
    for sub in e.context:
        by_branch.setdefault(sub.schema_path[0], []).append(sub)
    chosen = [errs for errs in by_branch.values()
              if not any(list(s.relative_path) == ["kind"] or (s.validator == "required" and "kind" in s.message)
                         for s in errs)]
    if len(chosen) != 1:
        return e
    return _chosen_branch(sorted(chosen[0], key=lambda s: len(s.path))[0])


# A name under datasets, models, methods or defences becomes a folder of the results layout: one path segment,
# never `..`, a separator or a hidden name, so no name can lead an output out of `results` or into an input.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def check_names(config: dict, source: str = "config") -> None:
    for section in ("datasets", "models", "methods", "defences"):
        for name in config.get(section) or {}:
            if not NAME.fullmatch(str(name)) or ".." in str(name):
                raise ConfigError(f"{source}: key '{section}.{name}': a name becomes a results folder, so it must "
                                  "be letters, digits and _ . + - (starting with a letter or digit, no '..')")


def check_references(config: dict, source: str = "config") -> None:
    """Names used by the grid must be defined: a typo fails before any job runs."""
    check_names(config, source)
    grid = config["grid"]
    for i, name in enumerate(grid["datasets"]):
        if name not in config["datasets"]:
            raise ConfigError(f"{source}: key 'grid.datasets.{i}': dataset {name!r} is not defined under 'datasets'")
    for axis in ("victims", "surrogates"):
        for i, name in enumerate(grid.get(axis, [])):
            if name not in config["models"]:
                raise ConfigError(f"{source}: key 'grid.{axis}.{i}': model {name!r} is not defined under 'models'")
    for i, run in enumerate(grid["runs"]):
        method = run["method"]
        if method != "clean" and method not in config.get("methods", {}):
            raise ConfigError(f"{source}: key 'grid.runs.{i}.method': {method!r} is not defined under 'methods'")
        if method != "clean" and not (run.get("surrogates") or grid.get("surrogates")):
            raise ConfigError(f"{source}: key 'grid.surrogates': protected runs need at least one surrogate model")
        for j, name in enumerate(run.get("surrogates") or []):
            if name not in config["models"]:
                raise ConfigError(f"{source}: key 'grid.runs.{i}.surrogates.{j}': model {name!r} is not defined "
                                  "under 'models'")
        for j, name in enumerate(run.get("defences") or []):
            if name not in (grid.get("defences") or ["none"]):
                raise ConfigError(f"{source}: key 'grid.runs.{i}.defences.{j}': defence {name!r} is not one of "
                                  "grid.defences")
        ensembles = [s for s in (run.get("surrogates") or grid.get("surrogates") or [])
                     if "ensemble" in config["models"][s]]
        kind = config.get("methods", {}).get(method, {}).get("kind")
        if ensembles and kind in METHOD_KINDS and METHOD_KINDS[kind].trigger == "hotflip":
            raise ConfigError(f"{source}: key 'grid.runs.{i}': {method!r} searches its trigger by HotFlip in one "
                              f"model; the ensemble {ensembles[0]!r} is for image noise alone")
    for i, name in enumerate(grid.get("defences") or []):
        if name != "none" and name not in config.get("defences", {}):
            raise ConfigError(f"{source}: key 'grid.defences.{i}': defence {name!r} is not defined under 'defences'")
    if "none" in config.get("defences", {}):
        raise ConfigError(f"{source}: key 'defences.none': 'none' is reserved for the undefended data")
    from ..defend.defences import Defence

    for name, spec in config.get("defences", {}).items():
        Defence.from_config(name, spec)  # a chain's steps are checked here
    for name, ds in config["datasets"].items():
        if ds.get("split", {}).get("kind") == "paper" and not ds["split"].get("lists"):
            raise ConfigError(f"{source}: key 'datasets.{name}.split.lists': `kind: paper` needs the lists to use "
                              "(flickr8k, flickr30k or mscoco)")
    check_models(config, source)
    for name, spec in config.get("methods", {}).items():
        if name == "clean":
            raise ConfigError(f"{source}: key 'methods.clean': 'clean' is reserved for the unprotected baseline")
        from ..protect.config import method_config

        try:
            method_config(spec)
        except ConfigError as e:
            raise ConfigError(f"{source}: key 'methods.{name}': {e}") from None


def _check_ensemble(config: dict, name: str, source: str) -> None:
    """An ensemble's members are single models of one input resolution, and an ensemble is only a surrogate."""
    from ..clip.models import image_resolution

    m = config["models"][name]
    extra = set(m) - {"ensemble"} - ({"pretrained"} if m["pretrained"] in (None, "", "none") else set())
    if extra:
        raise ConfigError(f"{source}: key 'models.{name}': an ensemble takes only `ensemble` (its members carry "
                          f"their own weights), not {sorted(extra)}")
    for i, member in enumerate(m["ensemble"]):
        spec = config["models"].get(member)
        if spec is None or "arch" not in spec:
            raise ConfigError(f"{source}: key 'models.{name}.ensemble.{i}': {member!r} is not a single model "
                              "defined under 'models'")
    sizes = {image_resolution(config["models"][x]["arch"]) for x in m["ensemble"]}
    if len(sizes) > 1:
        raise ConfigError(f"{source}: key 'models.{name}.ensemble': members must share an input resolution "
                          f"({sorted(sizes)} px)")
    if name in config["grid"].get("victims", []):
        raise ConfigError(f"{source}: key 'grid.victims': {name!r} is an ensemble, which only a surrogate can be")


def check_models(config: dict, source: str = "config") -> None:
    """Every model's architecture exists and its `pretrained` weights file is there, before any job runs."""
    from pathlib import Path

    from ..clip.models import looks_like_file, pretrained_tags, suggest_models

    for name, m in config["models"].items():
        if ("arch" in m) == ("ensemble" in m):
            raise ConfigError(f"{source}: key 'models.{name}': give either arch (one model) or ensemble (a list of "
                              "models), not both or neither")
        if "ensemble" in m:
            _check_ensemble(config, name, source)
            continue
        arch, pre = m["arch"], m["pretrained"]
        if not suggest_models(arch, exact=True):
            raise ConfigError(f"{source}: key 'models.{name}.arch': unknown architecture {arch!r}; close names: "
                              f"{', '.join(suggest_models(arch)) or 'none'} (all: open_clip.list_models())")
        if pre in (None, "", "none"):
            continue
        if isinstance(pre, dict):  # a CLIP the workflow trains from scratch on clean data (fine-tuned victims)
            key = f"{source}: key 'models.{name}.pretrained"
            if pre["dataset"] not in config["datasets"]:
                raise ConfigError(f"{key}.dataset': dataset {pre['dataset']!r} is not defined under 'datasets'")
            base = config["models"].get(pre["model"])
            if base is None or "arch" not in base:
                raise ConfigError(f"{key}.model': model {pre['model']!r} is not a single model defined under 'models'")
            if base["arch"] != arch:
                raise ConfigError(f"{key}.model': {pre['model']!r} is a {base['arch']}, not a {arch}")
            if base["pretrained"] not in (None, "", "none"):
                raise ConfigError(f"{key}.model': {pre['model']!r} must be trained from scratch (pretrained: none)")
            continue
        if looks_like_file(pre):
            if not Path(pre).is_file():
                raise ConfigError(f"{source}: key 'models.{name}.pretrained': weights file not found: {pre}")
        elif pre not in pretrained_tags(arch):
            raise ConfigError(f"{source}: key 'models.{name}.pretrained': {pre!r} is neither a file nor an "
                              f"open_clip tag of {arch} (tags: {', '.join(pretrained_tags(arch)) or 'none'})")


def unwritable(folder: str | os.PathLike) -> str | None:
    """Why the workflow could not create or write `folder`, checked at start-up (Snakemake would otherwise
    die scanning it with a traceback); None when it can."""
    p = Path(os.path.abspath(folder))
    while not os.path.lexists(p):
        p = p.parent
    if not p.is_dir():
        return f"{folder}: {p} is not a folder"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{folder}: {p} is not writable (permission denied or a read-only file system)"
    return None


def check_folders(config: dict, source: str = "config") -> None:
    """`results` and `resources` (written by the workflow) never overlap each other or a local dataset."""
    from ..data.source_kinds import source_kind
    from ..paths import overlap

    in_place = {n for n, d in config["datasets"].items() if source_kind(d["source"]["kind"]).in_place}
    inputs = {f"datasets.{n}.source.path": config["datasets"][n]["source"]["path"] for n in in_place}
    outputs = {"results": config["results"]}
    if set(config["datasets"]) - in_place:
        outputs["resources"] = config["resources"]
    for out_key, out in outputs.items():
        for in_key, path in inputs.items():
            if how := overlap(out, path):
                raise ConfigError(f"{source}: key '{out_key}': the output folder {out} {how} the dataset folder "
                                  f"{path} (key '{in_key}'); outputs must lie apart from every input")
    for out_key, out in outputs.items():
        if problem := unwritable(out):
            raise ConfigError(f"{source}: key '{out_key}': {problem}")
    if "resources" in outputs and (how := overlap(config["results"], config["resources"])):
        raise ConfigError(f"{source}: key 'results': {config['results']} {how} the resources folder "
                          f"{config['resources']}; keep them apart")
