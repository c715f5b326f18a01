# Every evaluated model -> one summary table -> the human-facing report.


rule summary:
    input:
        [f"{r}/metrics.parquet" for r in run_dirs()],
    output:
        f"{RESULTS}/summary.parquet",
    log:
        f"{RESULTS}/logs/summary.log",
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/summary.py"


rule report:
    input:
        summary=f"{RESULTS}/summary.parquet",
        records=[f"{r}/train.json" for r in run_dirs()],
        protections=protection_dirs(RESULTS, config),
        published=published_dirs(RESULTS, config),
    output:
        html=report(f"{RESULTS}/report/index.html", category="Results", caption="../report/results.rst"),
        recall=report(f"{RESULTS}/report/recall.png", category="Results", caption="../report/recall.rst"),
        curves=report(f"{RESULTS}/report/training_curves.png", category="Training", caption="../report/curves.rst"),
        transfer=report(f"{RESULTS}/report/transfer_matrix.png", category="Results",
                        caption="../report/transfer.rst"),
        trigger_lengths=report(f"{RESULTS}/report/trigger_lengths.png", category="Results",
                               caption="../report/trigger_lengths.rst"),
        heatmap=report(f"{RESULTS}/report/retained_heatmap.png", category="Defences",
                       caption="../report/retained_heatmap.rst"),
        visibility=report(f"{RESULTS}/report/visibility_scraper.png", category="Defences",
                          caption="../report/visibility.rst"),
        table=report(f"{RESULTS}/report/results.csv", category="Results", caption="../report/results.rst"),
    params:
        config=config,
        gallery=gallery_entries,
    log:
        f"{RESULTS}/logs/report.log",
    conda:
        "../envs/unlearnable.yaml"
    script:
        "../scripts/report.py"
