"""Protections: per-unit image noise (int8, units of 1/255) plus per-unit text triggers.

`mem` (the paper's method), `em` (image-only error minimisation), `random_noise` and `random_trigger`
(controls) all produce the same artifact, so export, retrain and evaluation treat them alike.
Nothing is imported here: `artifact`, `publish_plan` and `fullsize` run in processes without torch.
"""
