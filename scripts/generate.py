"""Snakemake adapter: write a generated dataset (`shapes`, or the Flickr8k `standin`)."""
from unlearnable.jobrunner import run_job
from unlearnable.shapes import ShapesConfig, write_shapes
from unlearnable.standin import StandinConfig, write_standin

smk = snakemake  # noqa: F821
src = {k: v for k, v in smk.params.source.items() if k != "kind"}
if smk.params.source["kind"] == "standin":
    job = lambda: write_standin(smk.output[0], StandinConfig(**src), workers=smk.threads)  # noqa: E731
else:
    job = lambda: write_shapes(smk.output[0], ShapesConfig(**src))  # noqa: E731
run_job(smk.log[0], 1, job, where=smk.output[0])
