# exemplars: `make activations` (phase one) and `make test` lead; see README.md.
VENV    ?= .venv
PY      := $(VENV)/bin/python
DATA    ?= data/sample
LAYER   ?= mixed4a
WEIGHTS ?= pretrained
STORE   ?= activations.zarr
ARGS    ?=

.PHONY: venv activations test bench bench-gpu sample clean

# The venv is rebuilt when the project's requirements change.
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

venv: $(VENV)/.installed

NPROC   ?= 1
# NPROC=2 (or more) runs phase one in that many processes through torchrun.
RUN     := $(if $(filter-out 1,$(NPROC)),$(VENV)/bin/torchrun --nproc-per-node $(NPROC) -m pipeline,$(VENV)/bin/exemplars)

activations: venv
	$(RUN) activations $(DATA) --store $(STORE) $(foreach l,$(LAYER),--layer $(l)) --weights $(WEIGHTS) $(ARGS)

test: venv
	$(VENV)/bin/pytest -q

bench: venv
	$(PY) tests/benchmarks/run.py

bench-gpu: venv
	$(PY) tests/benchmarks/gpu.py

sample: venv
	$(PY) data/make_sample.py

clean:
	rm -rf $(VENV) activations.zarr .pytest_cache
