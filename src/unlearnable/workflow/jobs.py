"""One function per workflow stage, taking plain paths and dataclasses.

The Snakemake scripts are thin adapters over these; nothing here knows about Snakemake. Every job starts a
fresh Python, so torch, open_clip and the CLIP code (about 6 s to import here) are imported inside the
stages that use them: a defence, a manifest, an image store or the summary never pays for them.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import atomic_path, write_json
from ..data import manifest as mf
from ..data.folders import ProtectionDir, PublishedDir
from ..data.image_store import build_image_store, open_image_store
from ..data.sources import LayoutConfig, layout_read, read_dataset
from ..data.splits import SplitConfig, assign_split
from ..usage import peak_rss_mib
from .tracking import cell_parent, log_to_run, tracked_run

if TYPE_CHECKING:
    import pandas as pd

    from ..clip.models import ModelSpec
    from ..clip.train import TrainConfig

log = logging.getLogger(__name__)


def make_manifest(dataset_root: str | Path, split: SplitConfig, out_manifest: str | Path,
                  out_quality: str | Path, layout: LayoutConfig = LayoutConfig(),
                  on_bad_sample: str = "fail") -> dict:
    rows, quality = read_dataset(dataset_root, layout, on_bad_sample)
    table = mf.build_manifest(rows, assign_split(rows["image_id"].tolist(), split))
    summary = {**mf.quality_summary(table, quality), "layout": layout_read(rows), "layout_config": asdict(layout),
               "split_config": asdict(split)}
    for needed in ("train", "test"):  # refuse here, before any protection or training is spent on it
        if summary["splits"][needed]["images"] == 0:
            raise mf.DataError(f"{dataset_root}: the split leaves no {needed} images ({summary['images']} images "
                               f"in all); check 'split' (val/test sizes, lists, caps) or add data")
    for name, s in summary["splits"].items():
        log.info("split %s: %d images, %d captions", name, s["images"], s["captions"])
    if summary["dropped"]:
        log.warning("dropped rows: %s", summary["dropped"])
    if summary["repaired"]:
        log.warning("repaired rows: %s", summary["repaired"])
    if summary["repeated"]:
        log.info("rows kept that repeat a caption of the same image: %s", summary["repeated"])
    mf.write_manifest(table, out_manifest)
    write_json(out_quality, summary)
    return summary


def make_image_store(manifest_path: str | Path, dataset_root: str | Path, out: str | Path, resolution: int) -> None:
    build_image_store(mf.read_manifest(manifest_path), dataset_root, out, resolution)


def _train_rows(manifest_path: str | Path) -> pd.DataFrame:
    rows = mf.read_manifest(manifest_path)
    return rows[rows["split"] == "train"]


def train_job(manifest_path: str | Path, store_path: str | Path, spec: ModelSpec, cfg: TrainConfig, seed: int,
              device: str, out_model: str | Path, out_record: str | Path, cell: dict, tracking: dict) -> list[dict]:
    """Train a CLIP from scratch on the `train` rows of a manifest (clean data or a published folder)."""
    import mlflow

    from ..clip.models import save_weights
    from ..clip.victim import train_victim
    from ..provenance import configure_determinism, resolve_device, versions

    dev = resolve_device(device)
    configure_determinism(dev)
    rows = _train_rows(manifest_path)
    params = {"cell": cell, "model": asdict(spec), "train": asdict(cfg), "seed": seed, "device": str(dev),
              "train_pairs": len(rows), "train_images": int(rows["image_id"].nunique())}
    meta = PublishedDir(Path(manifest_path).parent).export_record()  # a published folder says which runs made it
    upstream, visibility = {}, {}
    if meta:
        upstream = {"publish": meta.get("mlflow_run_id"), "protect": meta.get("protect_mlflow_run_id")}
        visibility = meta.get("visibility") or {}
    t0 = time.time()
    parent = cell_parent(tracking["uri"], tracking["experiment"], _cell_name(cell), _tags(cell, "cell"),
                         tracking.get("artifacts"))
    with _run(tracking, f"train/{_cell_name(cell)}", params, _tags(cell, "train"), parent) as run:
        state = Path(out_model).with_name("train_state.pt")  # per-epoch checkpoint: a retried job resumes
        model, history = train_victim(rows, open_image_store(store_path), spec, cfg, seed, dev,
                                      on_epoch=lambda e, row: mlflow.log_metrics(
                                          {k: v for k, v in row.items() if k != "epoch"}, step=e), checkpoint=state)
        with atomic_path(out_model) as tmp:
            save_weights(model, tmp, {"model": spec.name, "seed": str(seed)})
        state.unlink(missing_ok=True)
        record = {**params, "history": history, "seconds": time.time() - t0, "versions": versions(dev, cfg.precision),
                  "visibility": visibility,
                  "mlflow_run_id": run.info.run_id, "mlflow_parent_run_id": parent, "upstream_runs": upstream}
        write_json(out_record, record)
        mlflow.log_artifact(str(out_record))
    return history


def evaluate_job(model_path: str | Path, train_record: str | Path, manifest_path: str | Path,
                 store_path: str | Path, device: str, out_json: str | Path, out_parquet: str | Path,
                 tracking: dict, batch_size: int | None = None, workers: int = 0, precision: str = "auto") -> dict:
    """Retrieval on the clean test split; one JSON and one Parquet row per evaluated model."""
    import mlflow

    from ..clip.evaluate import EVAL_BATCH
    from ..clip.models import ModelSpec, create_model, load_weights
    from ..clip.victim import evaluate_victim
    from ..provenance import configure_determinism, resolve_device, seed_everything, versions

    record = json.loads(Path(train_record).read_text())
    spec, cell, seed = ModelSpec(**record["model"]), record["cell"], record["seed"]
    dev = resolve_device(device)
    configure_determinism(dev)
    seed_everything(seed)
    model = create_model(ModelSpec(spec.name))
    load_weights(model, model_path)
    model.to(dev)
    rows = mf.read_manifest(manifest_path)
    test = rows[rows["split"] == "test"]
    if test.empty:
        raise mf.DataError(f"{manifest_path}: no test split to evaluate on")
    t0 = time.time()
    metrics = evaluate_victim(model, spec, test, open_image_store(store_path), dev, batch_size or EVAL_BATCH, workers,
                              precision)
    log.info("clean test: i2t R@1 %.2f  t2i R@1 %.2f  rsum %.1f (chance t2i R@1 %.2f)", metrics["i2t_r1"],
             metrics["t2i_r1"], metrics["rsum"], metrics["chance_t2i_r1"])
    parent = record.get("mlflow_parent_run_id")
    with _run(tracking, f"eval/{_cell_name(cell)}", {"cell": cell, "model": asdict(spec), "seed": seed},
              _tags(cell, "evaluate"), parent) as run:
        mlflow.log_metrics(metrics)
        result = {"cell": cell, "seed": seed, "model": asdict(spec), "metrics": metrics,
                  "train_config": record.get("train"), "train_seconds": record.get("seconds"),
                  "visibility": record.get("visibility") or {},
                  "eval_seconds": time.time() - t0,
                  "versions": {**versions(dev, precision), **{k: v for k, v in (record.get("versions") or {}).items()
                                                              if k in ("device", "gpu", "cudnn", "precision")}},
                  "mlflow_run_id": run.info.run_id, "train_mlflow_run_id": record.get("mlflow_run_id")}
        write_json(out_json, result)
        mlflow.log_artifact(str(out_json))
    if parent:
        links = {"train_run_id": record.get("mlflow_run_id"), "evaluate_run_id": run.info.run_id,
                 **{f"{k}_run_id": v for k, v in (record.get("upstream_runs") or {}).items()}}
        log_to_run(tracking["uri"], parent, {**metrics, "train_seconds": record.get("seconds") or 0.0},
                   {k: v for k, v in links.items() if v})
    with atomic_path(out_parquet) as tmp:
        pq.write_table(pa.Table.from_pylist([summary_row(result)]), tmp)
    return result


CELL_KEYS = ("dataset", "method", "apply", "surrogate", "victim")
VISIBILITY_KEYS = ("psnr", "ssim", "mean_shift_max")


def summary_row(result: dict) -> dict:
    cell = result["cell"]
    row = {k: str(cell.get(k, "")) for k in CELL_KEYS}
    row["defence"] = str(cell.get("defence", "none"))
    row["method_params"] = json.dumps(cell.get("method_params", {}), sort_keys=True)
    row["seed"] = int(result["seed"])
    row.update({k: float(v) for k, v in result["metrics"].items()})
    vis = result.get("visibility") or {}
    for k in VISIBILITY_KEYS:  # the published images against the clean ones (NaN for clean training data)
        row[k] = float(vis.get(k, float("nan")))
    row["mlflow_run_id"] = result.get("mlflow_run_id", "")
    # what the numbers are reproducible on: the CPU and threads, and where training ran (GPU kind, precision)
    for key in ("cpu", "torch_threads", "device", "gpu", "cudnn", "precision"):
        row[key] = str(result.get("versions", {}).get(key, ""))
    return row


def _cell_name(cell: dict) -> str:
    defence = cell.get("defence", "none")
    return ("/".join(str(cell.get(k, "-")) for k in CELL_KEYS) + f"/seed{cell.get('seed', '')}"
            + (f"/defence-{defence}" if defence != "none" else ""))


def _run(tracking: dict, name: str, params: dict, tags: dict, parent_run_id: str | None = None):
    return tracked_run(tracking["uri"], tracking["experiment"], name, params, tags, parent_run_id=parent_run_id,
                       artifact_root=tracking.get("artifacts"))


def _tags(cell: dict, stage: str) -> dict[str, str]:
    """Every grid axis as a tag (plus the method's kind and trigger length), so the MLflow UI can filter."""
    tags = {k: str(v) for k, v in cell.items() if not isinstance(v, dict)}
    params = cell.get("method_params") or {}
    if params:
        from ..protect.config import method_config

        resolved = method_config(params)
        tags.update(kind=resolved.method, token_num=str(resolved.trigger_len), eps=str(resolved.eps))
    return {**tags, "stage": stage}


def collect_summary(metric_parquets: list[str | Path], out: str | Path) -> pd.DataFrame:
    table = pa.concat_tables([pq.read_table(p) for p in metric_parquets], promote_options="default")
    df = table.to_pandas()
    df = df.sort_values(["dataset", "method", "apply", "surrogate", "victim"]
                        + (["defence"] if "defence" in df else []) + ["seed"])
    with atomic_path(out) as tmp:
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
    return df


def protect_job(manifest_path: str | Path, store_path: str | Path, surrogate: ModelSpec, cfg, seed: int,
                device: str, out_dir: str | Path, cell: dict, tracking: dict, precision: str = "auto") -> dict:
    """Run a protection method on the train rows; MLflow gets its config, timings and loss trajectory."""
    import mlflow

    from ..protect.run import protect

    train = _train_rows(manifest_path)
    surrogates = [asdict(s) for s in surrogate] if isinstance(surrogate, list) else asdict(surrogate)
    params = {"cell": cell, "protect": asdict(cfg), "surrogate": surrogates, "seed": seed, "device": device,
              "precision": precision}
    with _run(tracking, f"protect/{_cell_name(cell)}", params, _tags(cell, "protect")) as run:
        # the cell names the protection in the report; the run id lets every cell using it link to it
        meta = protect(train, store_path, surrogate, cfg, seed, device, out_dir,
                       extra_meta={"cell": cell, "mlflow_run_id": run.info.run_id}, precision=precision)
        log.info("protection written: peak RSS %.0f MiB", peak_rss_mib())
        for h in meta["history"]:
            mlflow.log_metrics({k: v for k, v in h.items() if k != "round" and v == v}, step=h["round"])
        mlflow.log_metric("protect_seconds", meta["seconds"])
        mlflow.log_artifact(str(ProtectionDir(out_dir).record_path))
    return meta


def export_job(manifest_path: str | Path, store_path: str | Path, protection: str | Path, apply: str,
               surrogate: ModelSpec, out_dir: str | Path, cell: dict, tracking: dict, workers: int = 2) -> dict:
    """Write the folder a data owner would publish; MLflow gets its size and trigger round-trip rate."""
    import mlflow

    from ..clip.models import tokenizer
    from ..protect.export import export_published

    train = _train_rows(manifest_path)
    t0 = time.time()
    with _run(tracking, f"publish/{_cell_name(cell)}", {"cell": cell, "protection": str(protection)},
              _tags(cell, "publish")) as run:
        protect_run = ProtectionDir(protection).record().get("mlflow_run_id")
        meta = export_published(train, store_path, protection, apply, tokenizer(surrogate.name), out_dir,
                                {"mlflow_run_id": run.info.run_id, "protect_mlflow_run_id": protect_run}, workers)
        mlflow.log_metrics({"files": meta["files"], "captions": meta["captions"],
                            "trigger_roundtrip_rate": meta["trigger_roundtrip_rate"],
                            "publish_seconds": time.time() - t0})
    return meta


def defend_job(manifest_path: str | Path, store_path: str | Path, name: str, spec: dict, out_dir: str | Path,
               workers: int = 2) -> dict:
    """A scraper's defence applied to the train rows of a folder (published, or the clean dataset). A
    token-level defence counts CLIP BPE tokens: every architecture here shares open_clip's one tokenizer
    (tests/test_models.py checks it), so the defended folder does not depend on the victim."""
    from ..defend.defences import Defence, defend_folder

    defence = Defence.from_config(name, spec)
    t0 = time.time()
    tok = None
    if defence.needs_tokenizer:  # only strip_trigger counts tokens; the others need no torch or open_clip
        from ..clip.models import tokenizer

        tok = tokenizer("RN50")
    meta = defend_folder(_train_rows(manifest_path), store_path, defence, tok, out_dir, workers)
    log.info("defence %s (%s): %d images, %d of %d captions kept, %d changed (%.1fs)", name, defence.kind,
             meta["images"], meta["captions_kept"], meta["captions_in"], meta["captions_changed"], time.time() - t0)
    return meta
