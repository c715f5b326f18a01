"""What a workflow job pays before its first line of work: a fresh Python importing its Snakemake adapter's
modules and setting up the job runner, for two source trees measured interleaved in one run (A B A B ...).

    git worktree add /tmp/before <old commit>
    python bench/job_startup.py --trees /tmp/before . --grid config/grids/defences.yaml \\
        --out bench/results/job_startup.json

A defence job that counts CLIP tokens (strip_trigger, the scraper chains) also loads the tokenizer; it is timed
as its own kind. The grid's dry run gives how many jobs of each kind it runs, and so its start-up in
core-seconds. Medians over --reps; a ratio from one run on one machine is what this measures.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
RULE_SCRIPT = {"defend_clean": "defend", "defend_published": "defend", "train_clean": "train",
               "train_clean_defended": "train", "retrain": "train", "retrain_defended": "train",
               "protect": "protect", "publish": "publish", "manifest": "manifest", "image_store": "image_store",
               "summary": "summary", "generate": "generate"}
TOKENIZER = "from unlearnable.clip.models import tokenizer\ntokenizer('RN50')\n"


def startup_code(tree: Path, script: str, tokens: bool) -> str:
    """The adapter's imports (everything above `smk = snakemake`), then the job runner with no work."""
    lines = (tree / "scripts" / f"{script}.py").read_text().split("smk = snakemake")[0]
    return (lines + "\nfrom unlearnable.workflow.jobrunner import run_job\nrun_job(None, 1, lambda: None)\n"
            + (TOKENIZER if tokens else ""))


def time_once(tree: Path, code: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "MLFLOW_DISABLE_TELEMETRY": "true"}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tree, capture_output=True)
    return time.perf_counter() - t0


def grid_counts(grid: str) -> dict[str, int]:
    """Jobs per kind in the grid's dry run (a defence job that counts tokens is kind `defend+tokens`)."""
    sys.path.insert(0, str(REPO / "src"))
    from unlearnable.defend.defences import Defence

    defences = yaml.safe_load((REPO / grid).read_text()).get("defences", {})
    res = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-n", "--forceall", "--configfile",
                          grid], cwd=REPO, capture_output=True, text=True, check=True)
    counts: dict[str, int] = {}
    for block in re.split(r"\n(?=\[[^\]]+\]\nrule )", res.stdout):
        rule = re.search(r"^rule (\w+):", block, re.M)
        kind = RULE_SCRIPT.get(rule.group(1)) if rule else None
        if kind == "defend":
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M).group(1)
            name = dict(kv.split("=", 1) for kv in wildcards.split(", "))["defence"]
            kind += "+tokens" if Defence.from_config(name, defences[name]).needs_tokenizer else ""
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trees", nargs=2, type=Path, required=True, help="before and after (repository roots)")
    ap.add_argument("--grid", default="config/grids/defences.yaml")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out")
    args = ap.parse_args()
    counts = grid_counts(args.grid)
    kinds = sorted(counts)
    seconds: dict[str, dict[str, list[float]]] = {str(t): {k: [] for k in kinds} for t in args.trees}
    for rep in range(args.reps):
        for kind in kinds:
            script, _, tokens = kind.partition("+")
            for tree in args.trees:
                seconds[str(tree)][kind].append(time_once(tree, startup_code(tree, script, bool(tokens))))
        print(f"rep {rep + 1}/{args.reps} done", flush=True)
    medians = {t: {k: statistics.median(v) for k, v in by.items()} for t, by in seconds.items()}
    before, after = (str(t) for t in args.trees)
    print(f"{'job kind':<16}{'jobs':>6}{'before s':>10}{'after s':>10}")
    for k in kinds:
        print(f"{k:<16}{counts[k]:>6}{medians[before][k]:>10.2f}{medians[after][k]:>10.2f}")
    total = {t: sum(counts[k] * m[k] for k in kinds) for t, m in medians.items()}
    n = sum(counts.values())
    print(f"grid {args.grid}: {n} jobs, start-up {total[before]:.0f} -> {total[after]:.0f} core-seconds "
          f"({total[before] / n:.2f} -> {total[after] / n:.2f} s per job)")
    if args.out:
        from unlearnable.provenance import versions

        Path(args.out).write_text(json.dumps({
            "what": "fresh Python importing each adapter's modules and setting up the job runner, median of reps",
            "grid": args.grid, "jobs": counts, "reps": args.reps, "trees": [before, after],
            "median_seconds": medians, "grid_startup_core_seconds": total, "versions": versions()}, indent=1))


if __name__ == "__main__":
    main()
