import re

import numpy as np

from unlearnable.workflow.jobrunner import run_job


def test_every_job_logs_its_wall_time_and_peak_memory(tmp_path):
    log = tmp_path / "job.log"
    run_job(str(log), 1, lambda: np.ones(64 * 2 ** 20 // 8).sum())  # touches 64 MiB
    m = re.search(r"usage: wall ([\d.]+) s, peak RSS (\d+) MiB", log.read_text())
    assert m and float(m.group(1)) >= 0 and int(m.group(2)) >= 64
