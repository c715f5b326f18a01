# `make run`: install into .venv (first time only) and run the main job on the built-in dataset.
# `make test`: install into .venv (first time only) and run the test suite.
# `make lint`: ruff and snakemake --lint (CI runs it before the tests).
# `make wheel-test`: build the wheel and run it from a fresh venv outside the checkout (CI runs it).
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= 2
# pytest-xdist workers for `make test`; `--dist loadfile` keeps a test module on one worker, so that its module
# fixtures (a fake Kaggle server on port 80, a SLURM cluster) are built once (session fixtures: once per worker)
TEST_WORKERS ?= 2
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: run test lint wheel-test bench gpu-check clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/snakemake --cores $(CORES)
	@echo "report: $(CURDIR)/results/report/index.html"
	@$(VENV)/bin/unlearnable table results/summary.parquet

test: $(VENV)/.installed
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile

lint: $(VENV)/.installed  # ruff (pyproject.toml) and Snakemake's own linter
	$(VENV)/bin/ruff check src tests scripts bench
	$(VENV)/bin/snakemake --lint

wheel-test: $(VENV)/.installed
	bash .ci/wheel-test

bench: $(VENV)/.installed
	$(PY) bench/mem_round.py --out bench/results/mem_round-RN50-cpu.json
	$(PY) bench/poison_bench.py --model tiny-vit --images 400 --scale 8 --out bench/results/poison_bench.json

gpu-check: $(VENV)/.installed  # on a machine with a GPU: syncs, bf16, speed, a MEM round, the tiny grid vs the CPU (<10 min)
	$(PY) bench/gpu_check.py --out bench/results/gpu_check.json

clean:
	rm -rf results/* resources .snakemake
