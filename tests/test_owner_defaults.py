"""bench/owner_defaults.py: the owner's defaults are chosen by a measured table, so its arithmetic and its
choice are tested here on a grid made up by the test."""
import sys

import pandas as pd
import pytest

from conftest import REPO

from unlearnable.data.folders import ProtectionDir
from unlearnable.report.stats import RECALLS
from unlearnable.workflow.grid import protection_dir

sys.path.insert(0, str(REPO / "bench"))
import owner_defaults  # noqa: E402

# t2i R@10 by (method, victim, defence); chance 1.0
R10 = {("clean", "scratch"): (11.0, 9.0), ("clean", "ft"): (21.0, 17.0),
       ("slow_strong", "scratch"): (1.0, 1.0), ("slow_strong", "ft"): (1.0, 1.0),     # retains 100% everywhere
       ("fast_weak", "scratch"): (6.0, 9.0), ("fast_weak", "ft"): (11.0, 17.0)}       # 50% undefended, 0% scraper
SECONDS = {"slow_strong": 3600.0, "fast_weak": 600.0}  # for 1,000 photos (image units): 60 and 10 minutes


def _grid(results, seeds=(0, 1)):
    rows = []
    for (method, victim), values in R10.items():
        for defence, r10 in zip(("none", "scraper"), values):
            for seed in seeds:
                rows.append({"dataset": "d", "method": method, "apply": "" if method == "clean" else "both",
                             "surrogate": "" if method == "clean" else "s", "victim": victim, "defence": defence,
                             "seed": seed, "method_params": "{}", "rsum": 0.0, "i2t_medr": 1.0, "t2i_medr": 1.0,
                             "chance_rsum": 1.0, **{k: 1.0 for k in RECALLS}, "t2i_r10": r10 + 0.1 * (seed - 0.5),
                             **{f"chance_{k}": 1.0 for k in RECALLS}})
    for method, seconds in SECONDS.items():
        for seed in seeds:
            folder = ProtectionDir(protection_dir(str(results), {"dataset": "d", "method": method, "surrogate": "s",
                                                                 "seed": seed}))
            folder.path.mkdir(parents=True)
            ids = [f"img{i // 5}" for i in range(5000)]  # 1,000 photos, 5 captions each
            pd.DataFrame({"unit": range(5000), "image_id": ids}).to_parquet(folder.units_path)
            folder.write_record({"seconds": seconds * (1 + 0.1 * seed)})
    return pd.DataFrame(rows)


def test_the_owner_table_reads_time_per_1000_photos_and_retained_protection(tmp_path):
    table = owner_defaults.owner_table(str(tmp_path), _grid(tmp_path), "t2i_r10").set_index("method")
    assert abs(table.loc["slow_strong", "min_per_1000"] - 63.0) < 1e-9  # 60 and 66 minutes
    assert abs(table.loc["fast_weak", "min_per_1000"] - 10.5) < 1e-9
    assert abs(table.loc["fast_weak", "scratch/none"] - 0.5) < 1e-9
    assert abs(table.loc["fast_weak", "ft/none"] - 0.5) < 1e-9
    assert abs(table.loc["fast_weak", "scratch/scraper"]) < 1e-9
    assert abs(table.loc["slow_strong", "mean_retained"] - 1.0) < 0.02
    assert table.loc["fast_weak", "scratch/none/seeds"] == 2


def test_the_choice_is_the_best_within_the_budget(tmp_path):
    table = owner_defaults.owner_table(str(tmp_path), _grid(tmp_path), "t2i_r10")
    assert "| **slow_strong** |" in owner_defaults.markdown(table, "t2i_r10", budget=120)
    within = owner_defaults.markdown(table, "t2i_r10", budget=30)
    assert "| **fast_weak** |" in within and "| slow_strong |" in within
    assert "none qualifies" in owner_defaults.markdown(table, "t2i_r10", budget=5)


def test_the_mean_retained_carries_its_spread_over_seeds(tmp_path):
    grid = _grid(tmp_path)
    hit = (grid["method"] == "fast_weak") & (grid["victim"] == "scratch") & (grid["defence"] == "none") & (
        grid["seed"] == 1)
    grid.loc[hit, "t2i_r10"] = 1.05  # seed 1 retains 100% in that cell (clean 11.05), seed 0 50%
    table = owner_defaults.owner_table(str(tmp_path), grid, "t2i_r10").set_index("method")
    seed_means = pd.Series([(0.5 + 0 + 0.5 + 0) / 4, (1.0 + 0 + 0.5 + 0) / 4])
    assert abs(table.loc["fast_weak", "mean_sd"] - seed_means.std(ddof=1)) < 0.01
    assert table.loc["slow_strong", "mean_sd"] < 0.01


def _choice_table(rows):
    return pd.DataFrame([{"method": m, "min_per_1000": t, "mean_retained": (a + b) / 2, "mean_sd": sd,
                          "a/none": a, "a/scraper": b} for m, t, a, b, sd in rows])


def test_a_lead_inside_the_spread_goes_to_the_best_worst_cell():
    # strong_then_undone leads by 5 points with an sd of 8: no difference, and its worst cell is -30%
    table = _choice_table([("strong_then_undone", 5, 0.90, -0.30, 0.08), ("steady", 6, 0.40, 0.10, 0.04),
                           ("slow", 90, 1.0, 1.0, 0.0)])
    method, why = owner_defaults.choose(table, budget=30)
    assert method == "steady" and "strong_then_undone (30%)" in why and "worst cell" in why
    # with a tight spread the lead holds
    table.loc[0, "mean_sd"], table.loc[1, "mean_sd"] = 0.01, 0.01
    assert owner_defaults.choose(table, budget=30)[0] == "strong_then_undone"
    assert owner_defaults.choose(table, budget=120)[0] == "slow"
    assert owner_defaults.choose(table, budget=1)[0] is None


def test_the_owners_commands_end_to_end_decide_between_protections_the_grid_ties(tmp_path):
    table = _choice_table([("strong_then_undone", 5, 0.90, -0.30, 0.08), ("steady", 6, 0.40, 0.10, 0.04)])
    e2e = pd.DataFrame([{"method": "strong_then_undone", "end_to_end": 0.40},
                        {"method": "steady", "end_to_end": 0.01}])
    method, why = owner_defaults.choose(table, budget=30, e2e=e2e)
    assert method == "strong_then_undone" and "end to end" in why and "steady 1%" in why
    assert owner_defaults.choose(table, budget=30, e2e=e2e.iloc[:0])[0] == "steady"  # none measured: worst cell
    table.loc[:, "mean_sd"] = 0.01  # no tie: the grid's leader, whatever the end-to-end figures
    assert owner_defaults.choose(table, budget=30, e2e=e2e.assign(end_to_end=[0.0, 0.9]))[0] == "strong_then_undone"


def test_an_end_to_end_result_is_named_by_the_grid_cell_with_its_full_config(tmp_path):
    import json
    from dataclasses import asdict

    from unlearnable.protect.config import method_config

    params = {"mem3_image": {"kind": "mem", "granularity": "image", "rounds": 4},
              "mem3": {"kind": "mem", "granularity": "pair", "rounds": 4}}
    summary = pd.DataFrame([{"method": m, "method_params": json.dumps(p)} for m, p in params.items()]
                           + [{"method": "clean", "method_params": "{}"}])
    record = {"method": "mem", "runs": [{"protection": json.loads(json.dumps(asdict(method_config(
        params["mem3_image"]))))}] * 3, "summary": {"none.retained": {"mean": 0.8, "sd": 0.06},
                                                   "scraper.retained": {"mean": 0.04, "sd": 0.08}}}
    path = tmp_path / "e2e.json"
    path.write_text(json.dumps(record))
    row = owner_defaults.end_to_end([path], summary).iloc[0]
    assert row["method"] == "mem3_image" and row["seeds"] == 3 and abs(row["end_to_end"] - 0.42) < 1e-9
    record["runs"][0]["protection"]["rounds"] = 5  # a protection the grid did not measure
    path.write_text(json.dumps(record))
    with pytest.raises(SystemExit, match="none of the grid's methods"):
        owner_defaults.end_to_end([path], summary)
