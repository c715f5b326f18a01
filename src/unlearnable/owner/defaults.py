"""What `unlearnable protect` does when told nothing: the owner's defaults, chosen on real photos.

Measured on the real Flickr8k (`config/grids/flickr8k-real.yaml`, docs/results.md "The owner's defaults"),
seed 0: MEM-3 made per photo against a 64-px ModifiedResNet surrogate (`small-rn-64`) for 4 rounds of 30
surrogate steps, HotFlip in the first 2 over 8 candidates, took 2.4 minutes per 1,000 photos on 2 quiet cores
(the whole command), and brought a CLIP trained from scratch on the published photos from t2i R@10 7.08 to 1.80
(87% retained). The method is the paper's and was the default before; the model and schedule are what fit the
budget of 30 minutes per 1,000 photos. The reference's schedule (`ProtectConfig`'s defaults, and the
workflow's) runs 20 rounds of 200 surrogate steps where this runs 4 of 30; `--schedule reference` gives it
back. Against a victim fine-tuned from a CLIP that knows real photos, and through a scraper's cleaning, it keeps
little (5% and -16% on seed 0), where `robust_em` keeps 18% and 26%; averaged over the four, the two tie on
seed 0 (19% and 20%). Seeds 1 and 2 decide between them.
"""
from __future__ import annotations

from types import MappingProxyType

from ..protect.kinds import DEFAULT_KIND

OWNER_METHOD = DEFAULT_KIND
OWNER_MODEL = "small-rn-64"
OWNER_GRANULARITY = "image"  # one noise and trigger per photo, in all its captions: what an owner publishes
# Per kind, the schedule it was measured with on real photos (its cell of config/grids/flickr8k-real.yaml); a kind
# not here takes its own defaults (the reference's).
OWNER_SCHEDULES = MappingProxyType({
    "mem": MappingProxyType({"rounds": 4, "surrogate_steps": 30, "hotflip_rounds": 2, "candidates": 8, "lr": 1e-3}),
    "robust_em": MappingProxyType({"surrogate_steps": 40, "lr": 1e-3}),
})
OWNER_SCHEDULE = OWNER_SCHEDULES[OWNER_METHOD]  # the default method's
SCHEDULES = ("owner", "reference")


def owner_settings(method: str = OWNER_METHOD, schedule: str = "owner") -> dict:
    """The settings the owner's command starts from, before the user's own flags."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r} is not one of {SCHEDULES}")
    own = dict(OWNER_SCHEDULES.get(method, {})) if schedule == "owner" else {}
    return {"granularity": OWNER_GRANULARITY, **own}
