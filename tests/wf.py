"""Running the Snakemake workflow on a tiny config in a temporary working directory (test helpers)."""
import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

TINY = {
    "device": "cpu",
    "datasets": {"shapes": {"source": {"kind": "shapes", "n_images": 120, "image_size": 32, "seed": 1},
                            "split": {"val": 10, "test": 30, "seed": 0}}},
    "models": {"tiny-vit": {"arch": "tiny-vit"}},
    "train": {"epochs": 2, "batch_size": 32},
    "methods": {"mem": {"kind": "mem", "granularity": "image", "rounds": 4, "surrogate_steps": 3, "hotflip_rounds": 2,
                        "candidates": 4, "pgd_steps": 2, "batch_size": 32, "lr": 0.001}},
    "grid": {"datasets": ["shapes"], "surrogates": ["tiny-vit"], "victims": ["tiny-vit"], "seeds": [0],
             "runs": [{"method": "clean"}, {"method": "mem"}]},
}
PROTECTION = "results/shapes/protect/mem/tiny-vit/seed0"


def validated(overlay: dict) -> dict:
    """The config the workflow reads with `overlay` as its `--configfile`: the shipped config under it, defaults
    filled, checked."""
    from unlearnable.workflow.configschema import check_references, layered, load_yaml, validate_config

    config = validate_config(layered([load_yaml(REPO / "config" / "config.yaml"), overlay]),
                             REPO / "config" / "schema.yaml")
    check_references(config)
    return config


def snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    cmd = [SNAKEMAKE, "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(workdir), "--configfile",
           str(workdir / "config.yaml"), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)

# Big enough that a clean CLIP learns the shapes well, small enough for a test: the efficacy claims.
EFFICACY = {
    "device": "cpu",
    "datasets": {"shapes": {"source": {"kind": "shapes", "n_images": 500, "image_size": 32, "seed": 0},
                            "split": {"val": 0, "test": 100, "seed": 0}}},
    "models": {"tiny-vit": {"arch": "tiny-vit"}},
    "train": {"epochs": 6, "batch_size": 32},
    "methods": {"random_noise": {"kind": "random_noise", "granularity": "image"},
                "mem3": {"kind": "mem", "granularity": "image", "rounds": 4, "surrogate_steps": 20,
                         "hotflip_rounds": 2, "candidates": 4, "pgd_steps": 4, "batch_size": 32, "lr": 0.001}},
    "grid": {"datasets": ["shapes"], "surrogates": ["tiny-vit"], "victims": ["tiny-vit"], "seeds": [0],
             "runs": [{"method": "clean"}, {"method": "random_noise"}, {"method": "mem3"}]},
}


def in_second_pass(work: Path) -> bool:
    """A protection's progress line says round 1 is done and round 2's pass has begun (its surrogate trained
    and committed, its rows being rewritten in place)."""
    try:
        p = json.loads((work / "progress.json").read_text())
    except (OSError, ValueError):
        return False
    return p["rounds_done"] >= 1 and p["pass_batches_done"] is not None
