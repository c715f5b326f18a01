"""What `unlearnable protect` does when told nothing: the owner's defaults, chosen on real photos.

Measured on the real Flickr8k (`config/grids/flickr8k-real.yaml`, 3 seeds; docs/results.md "The owner's
defaults"): MEM-3 made per photo against a 64-px ModifiedResNet surrogate (`small-rn-64`), 4 rounds of 30
surrogate steps, HotFlip in the first 2 over 8 candidates, lr 1e-3. It fits the budget of 30 minutes per 1,000
photos with room (2.4 minutes on 2 quiet cores, the whole command), and the owner's own two commands end to end
(`bench/owner_end_to_end.py`) measured it keeping 79% of what a CLIP from scratch learns from 1,000 published
photos. `robust_em` ties it on the grid's mean over both victims and `scraper` (it alone keeps something under
the scraper and against a fine-tuned CLIP) but kept nothing end to end on the owner's published files, so the
default stays MEM; `--method robust_em` takes the schedule its grid cell measured. `--schedule reference` gives
the reference's 20 rounds of 200 surrogate steps back.
"""
from __future__ import annotations

from types import MappingProxyType

from ..protect.kinds import DEFAULT_KIND, ROBUST_EM

OWNER_METHOD = DEFAULT_KIND
OWNER_MODEL = "small-rn-64"
OWNER_GRANULARITY = "image"  # one noise and trigger per photo, in all its captions: what an owner publishes
# Per kind, the schedule it was measured with on real photos (its cell of config/grids/flickr8k-real.yaml); a kind
# not here takes its own defaults (the reference's).
OWNER_SCHEDULES = MappingProxyType({
    DEFAULT_KIND: MappingProxyType({"rounds": 4, "surrogate_steps": 30, "hotflip_rounds": 2, "candidates": 8,
                                    "lr": 1e-3}),
    ROBUST_EM: MappingProxyType({"surrogate_steps": 40, "lr": 1e-3}),
})
SCHEDULES = ("owner", "reference")


def owner_settings(method: str = OWNER_METHOD, schedule: str = "owner") -> dict:
    """The settings the owner's command starts from, before the user's own flags."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r} is not one of {SCHEDULES}")
    own = dict(OWNER_SCHEDULES.get(method, {})) if schedule == "owner" else {}
    return {"granularity": OWNER_GRANULARITY, **own}
