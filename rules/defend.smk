# A scraper's defence: the folder a victim trains on after it, for the clean baseline and for every
# published folder, so that each drop is measured against clean data under the same defence. A protection
# is made once and defended many times. Augmentation changes no file: it is a setting of training.


rule defend_clean:
    input:
        manifest=MANIFEST,
        store=STORE,
    output:
        directory(DEFENDED_CLEAN),
    params:
        data=lambda w, input: {"manifest": input.manifest, "store": input.store},
        defence=lambda w: config["defences"][w.defence],
    log:
        log_path(RESULTS, DEFENDED_CLEAN),
    threads: torch_threads()
    resources:
        cpus_per_task=cpus(torch_threads()),
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/defend.py"


rule defend_published:
    input:
        published=PUBLISHED,
    output:
        directory(DEFENDED_PUBLISHED),
    params:
        data=lambda w, input: {"manifest": f"{input.published}/manifest.parquet",
                               "store": f"{input.published}/images.npy"},
        defence=lambda w: config["defences"][w.defence],
    log:
        log_path(RESULTS, DEFENDED_PUBLISHED),
    threads: torch_threads()
    resources:
        cpus_per_task=cpus(torch_threads()),
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/defend.py"


use rule train_clean as train_clean_defended with:
    output:
        **run_files(DEFENDED_CLEAN_RUN),
    log:
        log_path(RESULTS, DEFENDED_CLEAN_RUN),


use rule train_clean as retrain_defended with:
    output:
        **run_files(DEFENDED_RETRAIN_RUN),
    log:
        log_path(RESULTS, DEFENDED_RETRAIN_RUN),
