# The MLflow store is created once here, before any parallel job logs to it.


rule tracking_store:
    output:
        f"{RESULTS}/tracking.json",
    params:
        uri=config["mlflow"]["tracking_uri"],
        experiment=config["mlflow"]["experiment"],
        artifacts=f"{RESULTS}/mlartifacts",
    log:
        f"{RESULTS}/logs/tracking_store.log",
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/tracking_store.py"
