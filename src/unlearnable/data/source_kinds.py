"""Every dataset source kind, registered once: how the workflow gets its files and what it knows of them.

A `generate`d source is written by the workflow in a known layout from its settings dataclass; a `download`ed
one is fetched once (the only network access); a `local` one is read where it lies and never written. The
config schema's source branches, the rules, the plan and the cost model ask this table, so a new source is one
registration (tests/test_registry.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import ConfigError

GETS = ("generate", "download", "in_place")


@dataclass(frozen=True)
class SourceKind:
    name: str
    get: str  # generate | download | in_place
    help: str
    layout: str | None = None  # the layout a generated source is written in
    settings: Callable[[], type] | None = None  # a generated source's settings dataclass (imported on use)
    write: Callable[[Path, object, int], Path] | None = None  # (folder, settings, threads) -> folder
    pairs: Callable[[object, dict], tuple[int, int]] | None = None  # (settings, split) -> (train, test) pairs

    @property
    def generated(self) -> bool:
        return self.get == "generate"

    @property
    def in_place(self) -> bool:
        return self.get == "in_place"

    def settings_of(self, source: dict):
        """A generated source's config entry as its settings dataclass (defaults: the dataclass's own)."""
        return self.settings()(**{k: v for k, v in source.items() if k != "kind"})


SOURCE_KINDS: dict[str, SourceKind] = {}


def register(kind: SourceKind) -> SourceKind:
    if kind.get not in GETS or kind.generated != (kind.settings is not None and kind.write is not None):
        raise ValueError(f"source kind {kind.name}: get must be one of {GETS}; a generated kind needs settings "
                         "and write, no other kind has them")
    SOURCE_KINDS[kind.name] = kind
    return kind


def source_kind(name: str) -> SourceKind:
    try:
        return SOURCE_KINDS[name]
    except KeyError:
        raise ConfigError(f"source kind {name!r} is not one of {', '.join(SOURCE_KINDS)}") from None


def kinds_that(get: str) -> tuple[str, ...]:
    return tuple(k.name for k in SOURCE_KINDS.values() if k.get == get)


def _shapes_settings():
    from .shapes import ShapesConfig
    return ShapesConfig


def _write_shapes(out: Path, cfg, threads: int) -> Path:
    from .shapes import write_shapes
    return write_shapes(out, cfg)


def _shapes_pairs(cfg, split: dict) -> tuple[int, int]:
    from .splits import SplitConfig, split_count

    s = SplitConfig(**split)
    test = split_count(s.test, cfg.n_images, "split.test")
    train = cfg.n_images - test - split_count(s.val, cfg.n_images, "split.val")
    return train * cfg.captions_per_image, test * cfg.captions_per_image


def _standin_settings():
    from .standin import StandinConfig
    return StandinConfig


def _write_standin(out: Path, cfg, threads: int) -> Path:
    from .standin import write_standin
    return write_standin(out, cfg, workers=threads)


def _standin_pairs(cfg, split: dict) -> tuple[int, int]:
    from .standin import FLICKR8K_IMAGES

    listed = round(1000 * cfg.n_images / FLICKR8K_IMAGES)  # its val and test lists, scaled with its size
    return (cfg.n_images - 2 * listed) * cfg.captions_per_image, listed * cfg.captions_per_image


register(SourceKind("shapes", "generate", "the built-in procedural dataset: coloured shapes, captions naming them",
                    layout="generic", settings=_shapes_settings, write=_write_shapes, pairs=_shapes_pairs))
register(SourceKind("standin", "generate", "a stand-in with Flickr8k's Kaggle layout and size",
                    layout="flickr8k", settings=_standin_settings, write=_write_standin, pairs=_standin_pairs))
register(SourceKind("local", "in_place", "a folder on disk in one of the layouts, read where it lies"))
register(SourceKind("kaggle", "download", "a Kaggle dataset, downloaded once (credentials needed)"))
