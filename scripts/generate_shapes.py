"""Snakemake adapter: generate the built-in `shapes` dataset."""
from unlearnable.jobrunner import run_job
from unlearnable.shapes import ShapesConfig, write_shapes

src = {k: v for k, v in snakemake.params.source.items() if k != "kind"}  # noqa: F821
run_job(snakemake.log[0], 1, lambda: write_shapes(snakemake.output[0], ShapesConfig(**src)),  # noqa: F821
        where=snakemake.output[0])  # noqa: F821
