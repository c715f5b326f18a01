# The MLflow store is created once here, before any parallel job logs to it. The experiment (one per grid,
# `mlflow.experiment`) is read by each job from the config, not from this file, so that switching grids
# never invalidates results that grids share.


rule tracking_store:
    output:
        TRACKING,
    params:
        uri=config["mlflow"]["tracking_uri"],
        artifacts=artifacts_dir(RESULTS),
    log:
        log_path(RESULTS, TRACKING),
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/tracking_store.py"
