"""What each protection buys and costs: text->image R@1 over seeds, as a share of clean's, against the
protection's own wall time (from its protection.json), relative to a reference method's.

    python bench/protection_cost.py results/summary.parquet --results results --reference mem3

Wall times come from jobs that may have shared the machine with others: read the cost ratio as a rough
figure, and the R@1 ratios against their spread.
"""
from __future__ import annotations

import argparse

import pandas as pd

from unlearnable.data.folders import ProtectionDir
from unlearnable.report.mdtable import _published
from unlearnable.workflow.grid import protection_dir


def table(summary: pd.DataFrame, results: str, reference: str) -> list[str]:
    s = summary[summary["defence"] == "none"] if "defence" in summary else summary
    clean = s[s["method"] == "clean"].groupby(["dataset", "victim"])["t2i_r1"].mean()
    seconds = {}
    for r in s[s["method"] != "clean"].drop_duplicates(["dataset", "method", "surrogate", "seed"]).itertuples():
        cell = {"dataset": r.dataset, "method": r.method, "surrogate": r.surrogate, "seed": r.seed}
        seconds.setdefault(r.method, []).append(ProtectionDir(protection_dir(results, cell)).record()["seconds"])
    ref = pd.Series(seconds.get(reference, [float("nan")])).mean()
    out = ["| method | published | seeds | t2i R@1 | × clean | protect s | × " + reference + " |",
           "|---|---|---|---|---|---|---|"]
    for (method, apply), g in s.groupby(["method", "apply"], sort=False):
        base = clean.get((g["dataset"].iloc[0], g["victim"].iloc[0]), float("nan"))
        r1 = g["t2i_r1"]
        sec = pd.Series(seconds.get(method, [float("nan")]))
        cost = "–" if method == "clean" else f"{sec.mean():.0f} ± {sec.std(ddof=1):.0f}"
        rel = "–" if method == "clean" else f"{sec.mean() / ref:.2f}"
        shown = "–" if method == "clean" else _published(apply, g["method_params"].iloc[0])
        out.append(f"| {method} | {shown} | {len(r1)} | {r1.mean():.1f} ± {r1.std(ddof=1):.1f} | "
                   f"{r1.mean() / base:.2f} | {cost} | {rel} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("summary")
    ap.add_argument("--results", default="results")
    ap.add_argument("--reference", default="mem3", help="the method whose protection time is 1.00")
    ap.add_argument("--methods", nargs="*", help="only these methods (and clean)")
    args = ap.parse_args()
    s = pd.read_parquet(args.summary)
    if args.methods:
        s = s[s["method"].isin(["clean", *args.methods])]
    print("\n".join(table(s, args.results, args.reference)))


if __name__ == "__main__":
    main()
