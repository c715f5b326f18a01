"""Protections: per-unit image noise (int8, units of 1/255) plus per-unit text triggers.

`mem` (the paper's method), `em` (image-only error minimisation), `random_noise` and `random_trigger`
(controls) all produce the same artifact, so export, retrain and evaluation treat them alike.
"""
from .config import ProtectConfig  # noqa: F401
