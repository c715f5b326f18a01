"""The Snakemake workflow's library side: jobs, the grid and its paths, config schema, tracking, cost."""
