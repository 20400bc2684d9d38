# balance-lab: the two commands of the README are `make demo` and `make test`.
# Both create the virtual environment on first use; torch is installed first, pinned,
# so that pip takes the local CPU wheel instead of pulling CUDA packages.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
STAMP  := $(VENV)/.installed
# Test processes at once (pytest-xdist). Most of a test's time is single-threaded: interpreter and
# torch/MLflow imports (~7 s per process on 2 slow cores), SQLite, waiting on servers and signals.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

.PHONY: install demo test test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet --no-compile -e ".[test]"
	@# pip would compile every module to bytecode one file at a time; compileall does it on every core.
	@# A few files never compile (other Pythons' syntax): pip skips them too, hence `|| true`; a module
	@# left uncompiled only imports slower.
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	touch $(STAMP)

# No balancing vs the auxiliary loss vs loss-free balancing on the tiny model and the built-in corpus,
# then the report comparing them (~3 min on 2 CPU cores; a second `make demo` reuses the finished runs).
demo: install
	$(BIN)/balance-lab sweep demo --jobs 3
	$(BIN)/balance-lab report demo

# The whole suite, slow tests included (what CI runs), and its 15 slowest tests: the 10-minute budget
# on 2 cores is watched where it is spent.
test: install
	$(PYTEST) --durations=15

# Style, checked rather than remembered: ruff's lint rules (pyproject.toml) and its formatter.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Everything but the tests marked slow.
test-fast: install
	$(PYTEST) -m "not slow"

# Speed measurements (tables of medians and ratios; not part of the tests; ~15 min on 2 cores).
bench: install
	$(BIN)/python benchmarks/moe_layer.py
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/sweep_jobs.py
	$(BIN)/python benchmarks/report_speed.py

clean:
	rm -rf $(VENV) outputs multirun mlflow.db mlruns .pytest_cache
