# effnetv2-mini
#   make reproduce [PLAN=auto]    the reproduction: quick plan if Imagenette + GPU, else smoke; runs/PLAN/report.{md,html}
#   make test                     lint, unit tests and every notebook (nbval, smoke profile)
#   make lab                      JupyterLab with the project's kernel
#   make bench                    our V2-S vs torchvision's, CPU (see docs/benchmarks.md)
#   make book [BOOK=DIR]          a published run (or run directory) as a site: build/book/html
# Each target creates the virtual environment $(VENV) if it is missing and installs what it needs.
# VENV=/some/cache/venv reuses an environment outside the checkout (CI does this: .ci/run).

PYTHON ?= python3
VENV ?= .venv
PLAN ?= auto
BOOK ?= published/laptop
BIN := $(VENV)/bin
PY := $(BIN)/python
# Reinstall when pyproject.toml changes or the checkout moves (the editable install points at it).
STAMP := $(VENV)/.effnetv2-mini-$(shell (cat pyproject.toml; echo "$(CURDIR)") | sha1sum | cut -c1-12)

.PHONY: install test lint reproduce report lab bench book book-screenshots clean-notebooks

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip setuptools
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.effnetv2-mini-*
	@touch $@

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check effnetv2_mini reproduce tests bench

# Notebook runs resume from their run directories: start nbval from none, so every notebook really trains.
# Two pytest workers (pytest-xdist), one test file or notebook each at a time, one thread each (OMP_NUM_THREADS=1,
# inherited by the notebooks' kernels and every training the tests start): two workers of two threads each on two
# cores made the suite twice as slow (OpenMP threads spin while they wait for a core).
test: lint
	rm -rf notebooks/runs
	OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile --nbval-lax --nbval-current-env tests notebooks

reproduce: $(STAMP)
	$(PY) -m reproduce run $(PLAN)

report: $(STAMP)
	$(PY) -m reproduce report $(PLAN)

# The repository root, so that notebooks/, runs/ and docs/ are all in the file browser; the notebooks declare the
# effnetv2-mini kernel installed here. As root (common on GPU clouds) Jupyter needs --allow-root.
lab: $(STAMP)
	$(PY) -m ipykernel install --user --name effnetv2-mini --display-name "effnetv2-mini"
	$(BIN)/jupyter lab --notebook-dir=. $(if $(filter 0,$(shell id -u)),--allow-root,)

bench: $(STAMP)
	$(PY) bench/bench_vs_torchvision.py

# A static site (Sphinx, MyST-NB, Sphinx Book Theme) of a published folder or a run directory: the
# report, every executed notebook, docs/paper.md and docs/benchmarks.md; nothing executed, nothing
# fetched, then checked.
book: $(STAMP)
	$(PY) -m reproduce book $(BOOK)

# The book in a headless Chromium (apt-get install -y chromium): the report's at-a-glance table and
# a figure of notebook 07, 1280 x 800, into build/book/screenshots/ (see docs/benchmarks.md).
book-screenshots: $(STAMP)
	$(PY) -m reproduce.screenshots build/book/html --out build/book/screenshots

# Strip notebook outputs except the cells nbval checks (run after editing a notebook).
clean-notebooks: $(STAMP)
	$(PY) -m reproduce clean notebooks/*.ipynb
