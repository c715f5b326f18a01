"""Protection hyper-parameters. Defaults are the reference code's hard-coded values; a kind's own defaults
over them are in `kinds.py`."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .. import ConfigError
from .eot import ScraperTransforms
from .kinds import DEFAULT_KIND, MethodKind, kinds_where, method_kind


@dataclass(frozen=True)
class ProtectConfig:
    method: str = DEFAULT_KIND
    granularity: str = "pair"  # pair: one noise+trigger per caption row (paper); image: one per image;
    # cluster: one per cluster of images with similar captions (`clusters` of them)
    clusters: int = 0
    eps: int = 8  # L-inf budget in units of 1/255
    step: int = 1  # PGD step in units of 1/255
    pgd_steps: int = 8
    token_num: int = 3  # trigger length k
    rounds: int = 20
    surrogate_steps: int = 200
    hotflip_rounds: int = 5
    candidates: int = 16
    shuffle: bool = True  # caption shuffling inside PGD (the paper's setting)
    batch_size: int = 128
    lr: float = 1e-4
    weight_decay: float = 0.2
    eot: tuple = ()  # image defences (specs as under `defences`) the noise is optimised through, with the identity
    noise_block: int = 1  # low-frequency noise: constant over noise_block x noise_block pixel squares (1: per pixel)
    colour_eps: int = 0  # a per-unit colour transform (gain + offset per channel) moving no channel more than this
    common_words: int = 0  # trigger words from this many common English words absent from the captions (0: any)
    trigger_position: str = "start"  # start: right after start-of-text (paper); inside: before a seeded word

    def validate(self) -> None:
        kind = self.kind  # refuses an unregistered kind
        if self.granularity not in ("pair", "image", "cluster"):
            raise ConfigError(f"method granularity {self.granularity!r} is not 'pair', 'image' or 'cluster'")
        if (self.granularity == "cluster") != (self.clusters >= 2):
            raise ConfigError("method: granularity 'cluster' needs clusters >= 2, and clusters needs granularity "
                              "'cluster'")
        if self.granularity == "cluster" and kind.has_trigger:
            raise ConfigError("method: granularity 'cluster' is for image noise alone (kinds "
                              f"{', '.join(kinds_where(lambda k: not k.has_trigger))}), not {self.method}")
        if not 0 <= self.eps <= 127 or self.step < 1 or self.pgd_steps < 0:
            raise ConfigError("method: eps must be in [0, 127], step >= 1 and pgd_steps >= 0 (units of 1/255)")
        if self.common_words < 0 or self.trigger_position not in ("start", "inside"):
            raise ConfigError("method: common_words must be >= 0 and trigger_position 'start' or 'inside'")
        if (self.common_words or self.trigger_position != "start") and self.trigger_len == 0:
            raise ConfigError(f"method: common_words and trigger_position shape a trigger; kind {self.method} "
                              "has none")
        if not 0 <= self.colour_eps <= 64:
            raise ConfigError("method: colour_eps must be in [0, 64] (units of 1/255)")
        if self.colour_eps and (self.granularity == "cluster" or kind.noise == "none"):
            raise ConfigError("method: colour_eps is a per-image or per-pair colour transform (kinds "
                              f"{', '.join(kinds_where(lambda k: k.noise != 'none'))}; granularity pair or image), "
                              f"not {self.method} at granularity {self.granularity}")
        if self.eps + self.colour_eps > 127:
            raise ConfigError("method: eps + colour_eps must be at most 127 (the noise is stored as int8)")
        if self.noise_block < 1:
            raise ConfigError("method: noise_block must be >= 1 (pixels per side of a square of equal noise)")
        if self.noise_block > 1 and kind.noise == "none":
            raise ConfigError(f"method: noise_block shapes image noise; kind {self.method} has none")
        if self.token_num < 0 or self.candidates < 1 or self.batch_size < 2:
            raise ConfigError("method: token_num >= 0, candidates >= 1 and batch_size >= 2 are required")
        ScraperTransforms(self.eot)  # parses and checks each spec
        if self.eot and not self.optimises:
            raise ConfigError("method: eot needs an optimised noise (kinds "
                              f"{', '.join(kinds_where(lambda k: k.optimises))}), not {self.method}")
        if kind.has_trigger and self.token_num < 1:
            raise ConfigError(f"method: token_num must be >= 1 for kind {self.method} (its trigger would be "
                              "empty and the data published unprotected); use kind em for image noise alone")
        self._refuse_unprotected(kind)

    def _refuse_unprotected(self, kind: MethodKind) -> None:
        """Settings under which a kind would publish every image as it was, or fail after the work began."""
        unprotected = "the data would be published unprotected"
        if kind.noise != "none" and not kind.has_trigger and self.eps + self.colour_eps < 1:
            raise ConfigError(f"method: eps must be >= 1 for kind {self.method} (or colour_eps >= 1): with no "
                              f"noise budget {unprotected}")
        if kind.optimises and self.rounds < 1:
            raise ConfigError(f"method: rounds must be >= 1 for kind {self.method}: with no round {unprotected}")
        if kind.noise_only and self.pgd_steps < 1:
            raise ConfigError(f"method: pgd_steps must be >= 1 for kind {self.method}: with no PGD step "
                              f"{unprotected}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"method: lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"method: weight_decay must be a finite number >= 0, got {self.weight_decay}")

    @property
    def kind(self) -> MethodKind:
        return method_kind(self.method)

    @property
    def optimises(self) -> bool:
        return self.kind.optimises

    @property
    def trigger_len(self) -> int:
        return self.token_num if self.kind.has_trigger else 0


def method_config(spec: dict) -> ProtectConfig:
    """A `methods.<name>` config entry -> ProtectConfig, with per-kind defaults."""
    kind = spec["kind"]
    params = {**method_kind(kind).defaults, **{k: v for k, v in spec.items() if k != "kind"}}
    if "eot" in params:
        params["eot"] = tuple(dict(e) for e in params["eot"])
    cfg = ProtectConfig(method=kind, **params)
    cfg.validate()
    return cfg
