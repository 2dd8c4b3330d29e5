# The README's commands. `make demo` and `make test` install into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_VERSION ?= 2.13.0
FBGEMM_VERSION ?= 1.8.0
TORCHREC_VERSION ?= 1.8.0
DEMO_DIR ?= runs/demo

.PHONY: install install-gpu demo test bench clean

# CPU recipe (architecture.md): CPU torch, fbgemm-gpu-cpu, torchrec without its CUDA deps.
$(VENV)/.installed-cpu: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION) fbgemm-gpu-cpu==$(FBGEMM_VERSION)
	$(PIP) install -q --no-deps torchrec==$(TORCHREC_VERSION)
	$(PIP) install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed-cpu

# CUDA machines: the CUDA builds of torch and fbgemm-gpu (PyPI's Linux wheels), same versions.
install-gpu:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==$(TORCH_VERSION) fbgemm-gpu==$(FBGEMM_VERSION)
	$(PIP) install -q --no-deps torchrec==$(TORCHREC_VERSION)
	$(PIP) install -q -e '.[dev]'
	touch $(VENV)/.installed-gpu

# Synthetic 20k users x 20k items, 2 processes on CPU, model vs popularity baseline.
demo: install
	$(VENV)/bin/dsl-data synth --users 20000 --items 20000 --interactions 400000 --seed 0 \
		--name synthetic-20k --out $(DEMO_DIR)/data --overwrite
	$(VENV)/bin/dsl-train --nproc 2 --config configs/quickstart.yaml \
		data.path=$(DEMO_DIR)/data run.dir=$(DEMO_DIR)/run run.overwrite=true

test: install
	$(PY) -m pytest -q

bench: install
	$(PY) bench/loss_overhead.py --quick

clean:
	rm -rf runs .pytest_cache
