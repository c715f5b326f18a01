"""The registry of protection kinds: each kind's name, what it makes, its defaults over `ProtectConfig`'s (the
reference code's values) and its one-line help. Everything else (the config schema's enum, the CLI's choices and
help, the grid's trigger axis, the report's trigger plot, the cost model, the engine's HotFlip) asks a kind here,
so adding a method is one `register` call plus whatever new code it runs."""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from .. import ConfigError
from ..defend.defences import SCRAPER

NOISES = ("optimised", "random", "none")  # optimised: the error-minimising engine (PGD against a surrogate)
TRIGGERS = ("hotflip", "random", "none")  # hotflip: searched over the CLIP vocabulary against a surrogate


@dataclass(frozen=True)
class MethodKind:
    name: str
    noise: str
    trigger: str
    help: str
    defaults: Mapping = field(default_factory=dict)  # ProtectConfig fields this kind sets over the reference's

    def __post_init__(self):
        if self.noise not in NOISES or self.trigger not in TRIGGERS or (self.noise, self.trigger) == ("none", "none"):
            raise ValueError(f"kind {self.name!r}: noise in {NOISES}, trigger in {TRIGGERS}, not both 'none'")
        object.__setattr__(self, "defaults", MappingProxyType(dict(self.defaults)))

    @property
    def has_trigger(self) -> bool:
        return self.trigger != "none"

    @property
    def optimises(self) -> bool:
        """Needs a surrogate: its noise or its trigger is optimised against one."""
        return self.noise == "optimised" or self.trigger == "hotflip"

    @property
    def noise_only(self) -> bool:
        """Optimised image noise and no trigger: what an ensemble of surrogates and a cluster granularity serve."""
        return self.noise == "optimised" and not self.has_trigger


METHOD_KINDS: dict[str, MethodKind] = {}


def register(kind: MethodKind) -> MethodKind:
    if kind.name in METHOD_KINDS or kind.name == "clean":
        raise ValueError(f"method kind {kind.name!r} is registered already (or reserved)")
    METHOD_KINDS[kind.name] = kind
    return kind


def method_kind(name: str) -> MethodKind:
    if name not in METHOD_KINDS:
        raise ConfigError(f"method kind {name!r} is not one of {tuple(METHOD_KINDS)}")
    return METHOD_KINDS[name]


def kinds_where(test) -> tuple[str, ...]:
    return tuple(n for n, k in METHOD_KINDS.items() if test(k))


# The reference's EM baseline (poison_mm.py): 5 rounds x 50 surrogate steps, aligned captions, no trigger.
_EM = {"rounds": 5, "surrogate_steps": 50, "token_num": 0, "shuffle": False, "hotflip_rounds": 0}

DEFAULT_KIND = register(MethodKind("mem", "optimised", "hotflip",
                                  "noise + trigger, the paper's multi-step error minimisation (default)")).name
register(MethodKind("em", "optimised", "none", "error-minimising image noise only (the reference's EM baseline)",
                    _EM))
# Image noise that protects on its own (the noise-only study, docs/results.md "Noise alone"): error-minimising
# noise with no trigger, at 16/255, with twice em's rounds and PGD steps.
register(MethodKind("strong_em", "optimised", "none", "noise only at 16/255, twice em's schedule",
                    {**_EM, "eps": 16, "rounds": 10, "pgd_steps": 16}))
# Noise that survives a scraper (docs/results.md "Protection that survives a scraper"): em's schedule at
# strong_em's 16/255, one value per 8 x 8 square, optimised through the shipped `scraper` chain (its resize and
# JPEG, then the victim's crops and flips); the robustness grid's lowfreq8_eot_short. strong_em's longer
# schedule through the chain (lowfreq8_eot) kept no more under the scraper, at 3x this one's time.
ROBUST_EM = register(MethodKind("robust_em", "optimised", "none",
                    "noise at 16/255 in 8x8 squares, optimised through a scraper's resize, JPEG, crops and flips",
                    {**_EM, "eps": 16, "noise_block": 8, "eot": ({"kind": SCRAPER},)})).name
register(MethodKind("random_noise", "random", "none", "control: uniform random noise at the budget"))
register(MethodKind("random_trigger", "none", "random", "control: random trigger tokens, no noise"))
