"""Validate the workflow config against its JSON schema, filling defaults, with one-line errors."""
from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from . import ConfigError


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


def validate_config(config: dict, schema_path: str | Path, source: str = "config") -> dict:
    """Fill defaults in place and raise ConfigError naming the first offending key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.path), list(map(str, e.path))))
    if errors:
        e = errors[0]
        key = ".".join(str(p) for p in e.absolute_path) or "<top level>"
        msg = e.message
        if e.validator == "additionalProperties":
            msg = msg.replace("Additional properties are not allowed", "unknown key")
        raise ConfigError(f"{source}: key '{key}': {msg}")
    return config


def check_references(config: dict, source: str = "config") -> None:
    """Names used by the grid must be defined: a typo fails before any job runs."""
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
        if method != "clean" and not grid.get("surrogates"):
            raise ConfigError(f"{source}: key 'grid.surrogates': protected runs need at least one surrogate model")
    for name, ds in config["datasets"].items():
        if ds.get("split", {}).get("kind") == "paper" and not ds["split"].get("lists"):
            raise ConfigError(f"{source}: key 'datasets.{name}.split.lists': `kind: paper` needs the lists to use "
                              "(flickr8k, flickr30k or mscoco)")
    for name, spec in config.get("methods", {}).items():
        if name == "clean":
            raise ConfigError(f"{source}: key 'methods.clean': 'clean' is reserved for the unprotected baseline")
        from .protect.config import method_config

        try:
            method_config(spec)
        except ConfigError as e:
            raise ConfigError(f"{source}: key 'methods.{name}': {e}") from None
