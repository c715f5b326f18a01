"""Grid expansion: shared cells computed once, new seeds/methods add only their jobs, the paper grid's plan."""
import copy
import re
import subprocess

import pytest
import yaml
from wf import REPO, SNAKEMAKE, TINY, snakemake, validated

from unlearnable.workflow.grid import cells, expand_trigger_lengths

GPU_RULES = {"protect", "train_clean", "retrain", "train_clean_defended", "retrain_defended"}
MODEL_JOBS = ("protect_job", "train_job", "evaluate_job")  # the library functions that build a model
WORKERS = yaml.safe_load((REPO / "config/grids/paper.yaml").read_text())["train"]["workers"]


def model_rules() -> set[str]:
    """Rules whose script builds a model, read from the rule files and their scripts (not from a list)."""
    found, text = set(), "".join(smk.read_text() for smk in sorted((REPO / "rules").glob("*.smk")))
    for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.M):
        script = re.search(r'script:\s*\n\s*"\.\./(scripts/[\w.]+)"', body)
        if script and any(f in (REPO / script.group(1)).read_text() for f in MODEL_JOBS):
            found.add(name)
    for parent, name in re.findall(r"^use rule (\w+) as (\w+)", text, re.M):  # it runs its parent's script
        if parent in found:
            found.add(name)
    return found


def job_counts(stdout: str) -> dict[str, int]:
    table = stdout[stdout.rindex("Job stats:"):].splitlines()[3:]
    counts = {}
    for line in table:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def jobs(stdout: str) -> list[dict]:
    """Each planned job of a dry run: rule name, wildcards and resources as printed."""
    out = []
    for block in re.split(r"\n(?=\[[^\]]+\]\nrule )", stdout):
        m = re.search(r"^rule (\w+):", block, re.M)
        if not m:
            continue
        wc = re.search(r"^\s+wildcards: (.*)$", block, re.M)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        out.append({"rule": m.group(1),
                    "wildcards": dict(kv.split("=", 1) for kv in wc.group(1).split(", ")) if wc else {},
                    "resources": dict(kv.split("=", 1) for kv in res.group(1).split(", ")) if res else {}})
    return out


def test_cells_share_clean_baselines_and_cover_transfer():
    cfg = copy.deepcopy(TINY)
    cfg["models"]["tiny-rn"] = {"arch": "tiny-rn"}
    cfg["grid"].update(surrogates=["tiny-vit", "tiny-rn"], victims=["tiny-vit", "tiny-rn"], seeds=[0, 1])
    cs = cells(validated(cfg))
    clean = [c for c in cs if c["method"] == "clean"]
    assert len(clean) == 4 and all(c["surrogate"] == "none" for c in clean)  # per victim x seed, not per surrogate
    transfer = {(c["surrogate"], c["victim"]) for c in cs if c["method"] == "mem"}
    assert transfer == {(s, v) for s in ("tiny-vit", "tiny-rn") for v in ("tiny-vit", "tiny-rn")}
    assert len(cs) == 4 + 8


def test_a_victims_schedule_is_the_grids_then_its_own_then_the_defences():
    """One reader of a victim's training settings, for the rules and for `cost`: a fine-tuned victim's own
    `train` overrides the grid's, and a defence's crop scale comes last."""
    from unlearnable.workflow.grid import victim_train

    cfg = {"train": {"epochs": 4, "lr": 1e-3, "batch_size": 128},
           "models": {"scratch": {"arch": "a"}, "ft": {"arch": "a", "train": {"epochs": 1, "lr": 3e-4}}}}
    assert victim_train(cfg, "scratch") == {"epochs": 4, "lr": 1e-3, "batch_size": 128}
    assert victim_train(cfg, "ft", augment_scale_min=0.5) == {"epochs": 1, "lr": 3e-4, "batch_size": 128,
                                                             "augment_scale_min": 0.5}


def test_a_run_may_name_its_own_surrogates():
    """The owner's threat model for one method only: its protection is also made with the pretrained
    surrogate, without doubling every other method's protections."""
    cfg = copy.deepcopy(TINY)
    cfg["models"]["tiny-rn"] = {"arch": "tiny-rn"}
    cfg["methods"]["em"] = {"kind": "em"}
    cfg["grid"].update(surrogates=["tiny-vit"], victims=["tiny-vit"])
    cfg["grid"]["runs"] = [{"method": "clean"}, {"method": "mem"},
                           {"method": "em", "surrogates": ["tiny-vit", "tiny-rn"]}]
    got = {(c["method"], c["surrogate"]) for c in cells(validated(cfg))}
    assert got == {("clean", "none"), ("mem", "tiny-vit"), ("em", "tiny-vit"), ("em", "tiny-rn")}


def test_trigger_length_axis_reuses_the_methods_own_length():
    cfg = copy.deepcopy(TINY)
    cfg["grid"]["trigger_lengths"] = [1, 3, 5]
    cfg = expand_trigger_lengths(validated(cfg))
    assert [r["method"] for r in cfg["grid"]["runs"]] == ["clean", "mem-k1", "mem", "mem-k5"]
    assert cfg["methods"]["mem-k5"] == {**TINY["methods"]["mem"], "token_num": 5}


@pytest.mark.slow
def test_adding_a_seed_or_a_method_plans_only_the_new_cells(finished):
    more_seeds = copy.deepcopy(TINY)
    more_seeds["grid"]["seeds"] = [0, 1]
    res = snakemake(finished, more_seeds, "-n")
    assert res.returncode == 0, res.stderr[-2000:]
    assert job_counts(res.stdout) == {"train_clean": 1, "protect": 1, "publish": 1, "retrain": 1,
                                      "summary": 1, "report": 1, "all": 1, "total": 7}
    assert {j["wildcards"].get("seed") for j in jobs(res.stdout) if "seed" in j["wildcards"]} == {"1"}
    more_methods = copy.deepcopy(TINY)
    more_methods["methods"]["random_noise"] = {"kind": "random_noise", "granularity": "image"}
    more_methods["grid"]["runs"].append({"method": "random_noise"})
    res = snakemake(finished, more_methods, "-n")
    assert res.returncode == 0, res.stderr[-2000:]
    assert job_counts(res.stdout) == {"protect": 1, "publish": 1, "retrain": 1, "summary": 1,
                                      "report": 1, "all": 1, "total": 6}
    assert {j["wildcards"]["method"] for j in jobs(res.stdout) if "method" in j["wildcards"]} == {"random_noise"}
    snakemake(finished, TINY, "-n")  # leave the finished run's config as it was


def test_paper_grid_plan_on_slurm_before_any_data_exists(tmp_path):
    res = subprocess.run([SNAKEMAKE, "-s", str(REPO / "workflow/Snakefile"), "-d", str(tmp_path), "-n",
                          "--configfile", str(REPO / "config/grids/paper.yaml"),
                          "--workflow-profile", str(REPO / "profiles/slurm")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    counts = job_counts(res.stdout)
    # 3 datasets x 3 seeds: 9 clean baselines; x 3 methods: 27 protections, publications and retrains
    assert {k: counts[k] for k in ("download", "manifest", "image_store", "train_clean", "protect", "publish",
                                   "retrain")} == {
        "download": 3, "manifest": 3, "image_store": 3, "train_clean": 9, "protect": 27, "publish": 27,
        "retrain": 27}  # 36 models, each evaluated by the job that trained it
    planned = jobs(res.stdout)
    assert {j["wildcards"].get("dataset") for j in planned if j["rule"] == "download"} == {
        "flickr8k", "flickr30k", "mscoco"}
    for j in planned:
        if j["rule"] in GPU_RULES:
            assert j["resources"]["slurm_partition"] == "gpu" and j["resources"]["gpu"] == "1", j
        elif j["rule"] in {"manifest", "image_store", "publish"}:
            assert j["resources"]["slurm_partition"] == "cpu" and "gpu" not in j["resources"], j
    assert not (tmp_path / "results").exists() and not (tmp_path / "resources").exists()


@pytest.mark.parametrize("profile", ["default", "slurm"])
def test_paper_plan_puts_every_model_job_on_a_gpu_and_nothing_else(profile, tmp_path):
    """paper.yaml runs on CUDA: every job that builds a model must request a GPU (SLURM: the GPU partition),
    on both shipped profiles, and no other job may request one."""
    assert model_rules() == GPU_RULES
    cores = ["--cores", "16"] if profile == "default" else []  # SLURM: the README's dry run, as written
    res = subprocess.run([SNAKEMAKE, "-s", str(REPO / "workflow/Snakefile"), "-d", str(tmp_path), "-n", *cores,
                          "--configfile", str(REPO / "config/grids/paper.yaml"),
                          "--workflow-profile", str(REPO / "profiles" / profile)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    planned = [j for j in jobs(res.stdout) if j["rule"] != "all"]
    assert {j["rule"] for j in planned} >= {"protect", "train_clean", "retrain", "manifest", "publish", "summary"}
    for j in planned:
        gpu = j["resources"].get("gpu", "0") != "0"
        assert gpu == (j["rule"] in model_rules()), j
        if profile == "slurm" and j["rule"] not in {"download", "tracking_store", "summary", "report"}:
            assert j["resources"]["slurm_partition"] == ("gpu" if gpu else "cpu"), j
        if gpu and j["rule"] != "protect":  # the loader workers get CPUs of their own (SLURM: --cpus-per-task)
            assert j["resources"]["cpus_per_task"] == str(1 + WORKERS), j


def test_snakemake_lint_is_clean():
    res = subprocess.run([SNAKEMAKE, "-s", str(REPO / "workflow/Snakefile"), "--lint"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert "Congratulations, your workflow is in a good condition!" in res.stdout + res.stderr, res.stdout[-3000:]


@pytest.mark.parametrize("copy", ["kaggle", "local"])
def test_the_real_photo_grid_plans_its_trimmed_cells_from_one_copy_of_flickr8k(copy, tmp_path):
    """flickr8k-real.yaml: both halves of the split read one copy (one download, or the local copy that the
    second config file names in place of the Kaggle source), and the runs' own defences trim the cells."""
    files = [REPO / "config/grids/flickr8k-real.yaml"]
    if copy == "local":
        files.append(REPO / "config/grids/copies/flickr8k-local.yaml")
        (tmp_path / "shared/data/flickr8k-224").mkdir(parents=True)  # its path, relative to the working folder
    res = subprocess.run([SNAKEMAKE, "-s", str(REPO / "workflow/Snakefile"), "-d", str(tmp_path / "wd"), "-n",
                          "--configfile", str(REPO / "config/config.yaml"), *map(str, files)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    counts = job_counts(res.stdout)
    assert counts.get("download", 0) == (1 if copy == "kaggle" else 0)
    # per seed: 7 protections (2 of them random); 7 defended published folders (each run's own
    # defences); both victims train on each of 14 protected cells; the clean baseline under all 4 defences,
    # and once more on the pretraining half (the fine-tuned victim's start)
    assert {k: counts.get(k, 0) for k in ("manifest", "protect", "publish", "defend_published", "defend_clean",
                                          "train_clean", "train_clean_defended", "retrain", "retrain_defended")} == {
        "manifest": 2, "protect": 21, "publish": 21, "defend_published": 21, "defend_clean": 3, "train_clean": 7,
        "train_clean_defended": 18, "retrain": 42, "retrain_defended": 42}
    planned = jobs(res.stdout)
    roots = {j["wildcards"].get("dataset") for j in planned if j["rule"] == "download"}
    assert roots == ({"flickr8k_pretrain"} if copy == "kaggle" else set())
    strip = {j["wildcards"]["method"] for j in planned if j["rule"] == "retrain_defended"
             and j["wildcards"]["defence"] == "strip3"}
    assert strip == {"mem3"}
