# Self-documenting: `make help` lists every target with its `## ` comment.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
# Offline-safe defaults for every target; override on the command line if you are online.
export HF_HUB_OFFLINE ?= 1
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/torch_extensions
export DS_BUILD_OPS ?= 0

.PHONY: help venv install-gpu demo test test-fast lint format sweep-tiny report data-fgvc data-sat bench-dist tiny-base study-tiny bench bench-levers bench-grid bench-gpu gpu-check gpu-wheels clean study dashboard

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

# The torch wheel index. Empty: PyPI, whose Linux torch 2.13.0 is a CUDA 13.0 build (CPU-only machines and GPU
# nodes with an R580+ driver). On a GPU node with an older driver pick the CUDA build it runs, e.g.
# `make venv TORCH_INDEX=https://download.pytorch.org/whl/cu126` (docs/training.md, "Installing on a GPU node").
TORCH_INDEX ?=

.venv/.installed: pyproject.toml requirements.lock constraints.txt
	python3 -m venv .venv
	$(PIP) install -q -U pip
	@if [ -z "$(TORCH_INDEX)" ] && command -v nvidia-smi >/dev/null; then \
	  cuda=$$(nvidia-smi | grep -o 'CUDA Version: [0-9.]*' | grep -o '[0-9][0-9.]*'); \
	  if [ -n "$$cuda" ] && [ "$${cuda%%.*}" -lt 13 ]; then \
	    echo "!!! this node's driver runs CUDA $$cuda; PyPI's torch 2.13.0 needs CUDA 13 and would run on the CPU."; \
	    echo "!!! rerun with TORCH_INDEX=https://download.pytorch.org/whl/cu$${cuda%%.*}$$(echo $$cuda | cut -d. -f2) (docs/training.md)"; \
	    exit 1; fi; fi
	$(if $(TORCH_INDEX),$(PIP) install -q torch==2.13.0 --index-url $(TORCH_INDEX),)
	$(PIP) install -q -r requirements.lock -c constraints.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

venv: .venv/.installed  ## create .venv and install the pinned dependencies (first use only)

install-gpu:  ## install the suite into the current Python env, keeping its own (CUDA) torch: pip install -e .
	python3 -m pip install -e . "torch==$$(python3 -c 'import torch; print(torch.__version__)')"

demo: venv  ## GRPO on the pretrained tiny VLM (tiny_base) + the synthetic fine-grained task, scored before and after
	$(PY) experiments/run.py experiment=demo

test: venv  ## the whole test suite (unit, config, smoke, learning); what CI runs
	WANDB_MODE=offline $(PY) -m pytest -q

test-fast: venv  ## unit and config tests only
	WANDB_MODE=offline $(PY) -m pytest -q -m "not slow"

lint: venv  ## ruff lint + format check
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format: venv  ## ruff autofix + format
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .

sweep-tiny: venv  ## one sweep: SFT vs RFT over 1/4/16 shots x 3 seeds on the tiny FGVC stand-in
	$(PY) experiments/run.py -m --config-dir sweeps --config-name rft_vs_sft_tiny_fgvc

STUDY := outputs/study_tiny/$(shell date +%Y-%m-%d_%H-%M-%S)
# lanes of the tiny study: sweeps run side by side, one torch thread each (a 2-core machine: 2)
TINY_LANES ?= 2

tiny-base: venv  ## rebuild tiny_base from scratch (~10 min, 2 cores) and check it matches the shipped weights bit for bit
	$(PY) -m rft.testbed --cache-dir $$(mktemp -d) --rebuild

study-tiny: venv  ## the tiny study on tiny_base (RFT vs SFT ladders + thinking ablation, 3 seeds) with progress, then the report
	$(PY) experiments/study.py --study tiny --parallel $(TINY_LANES) --yes --out $(STUDY) threads=1
	$(PY) experiments/report.py $(STUDY)

report: venv  ## tables + plots from every run under outputs/ (REPORT_IN=<dir> to pick a sweep)
	$(PY) experiments/report.py $${REPORT_IN:-outputs}

# The study at the paper's scale (sweeps/study_*.yaml): `make study DRY_RUN=1` prints the plan only,
# `make study LAUNCHER=local` runs the sweeps here one after another, YES=1 skips the question, STUDY_ARGS adds
# overrides for every sweep (e.g. STUDY_ARGS=hydra.launcher.partition=gpu).
LAUNCHER ?= slurm
STUDY_ARGS ?=
study: venv  ## the real study: prints its jobs and estimated GPU-hours, asks, then submits it (LAUNCHER=local, DRY_RUN=1, YES=1)
	$(PY) experiments/study.py --launcher $(LAUNCHER) $(if $(DRY_RUN),--dry-run) $(if $(YES),--yes) $(STUDY_ARGS)

GROUP ?= study
ENTITY ?=
PROJECT ?= rft-vs-sft
dashboard: venv  ## save a W&B report for a sweep group: make dashboard GROUP=study ENTITY=<you> (DRY_RUN=1 prints it)
	$(PY) experiments/dashboard.py --group $(GROUP) --project $(PROJECT) $(if $(ENTITY),--entity $(ENTITY)) $(if $(DRY_RUN),--dry-run)

data-fgvc: venv  ## download, verify and unpack FGVC-Aircraft 2013b (2.75 GB) into data/fgvc-aircraft-2013b/
	$(PY) experiments/data.py fgvc --dest data/

data-sat: venv  ## download the array/SAT parquet files (train, val, test) into data/SAT/ (needs network)
	HF_HUB_OFFLINE=0 $(PY) experiments/data.py sat --dest data/

bench-dist: venv  ## per-rank peak RSS and GRPO step time, tiny_20m, none vs ZeRO-2 vs ZeRO-3 (2 CPU ranks)
	$(PY) experiments/bench_dist.py

.venv/.bench: .venv/.installed
	$(PIP) install -q -c constraints.txt trl==1.16.0
	touch $@

bench: .venv/.bench  ## our GRPO step vs TRL GRPOTrainer side by side (tiny_20m, G=8 x 64 tokens, 56x56)
	$(PY) experiments/bench.py

bench-levers: .venv/.bench  ## the worth of each fast path, measured in isolation
	$(PY) experiments/bench.py --levers

bench-grid: .venv/.bench  ## ours vs TRL over G x T x pixels, 7-point cross (--grid for all 18)
	$(PY) experiments/bench.py --cross --warmup 1 --rounds 2 --k 1

# The GPU targets also run on a bare, offline GPU machine: `make gpu-check PY=python3` uses that python (with the
# wheels of `make gpu-wheels` on its PYTHONPATH) and never tries to create .venv.
VENV_IF_OURS = $(if $(filter .venv/bin/python,$(PY)),venv)

bench-gpu: $(VENV_IF_OURS)  ## one H100/H200: rft.grpo.train vs TRL GRPOTrainer, 2B stand-in, bf16, G=8 x 256 tokens
	$(PY) experiments/bench_gpu.py --out outputs/bench_gpu/report.json

gpu-check: $(VENV_IF_OURS)  ## one H100/H200, offline, < 8 min: the real GPU path end to end, one JSON (DRY_RUN=1: CPU, tiny)
	$(PY) experiments/gpu_check.py $(if $(DRY_RUN),--dry-run)

# What the GPU machine's image (torch, transformers, peft, accelerate, numpy, pillow, pyarrow) lacks for gpu-check
# and bench-gpu, at the versions of requirements.lock (trl at the bench extra's pin). wandb and scipy stay out:
# logger=none never imports wandb and nothing imports scipy, and wandb's wheel alone would fill the 64 MiB carry.
GPU_WHEELS := hydra-core omegaconf quicktok-v1 hjson ninja py-cpuinfo msgpack einops pydantic pydantic_core \
	annotated-types typing-inspection datasets dill multiprocess xxhash fsspec pandas python-dateutil tzdata
GPU_SDISTS := antlr4-python3-runtime deepspeed
lock_pin = $(shell grep -i -m1 '^$(1)==' requirements.lock)
PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
	manylinux1_x86_64 any,--platform $(p))

gpu-wheels:  ## download cp312 wheels of what the offline GPU image lacks into .whl/ (carry it; docs/performance.md)
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		$(PLATFORMS) -d .whl $(foreach n,$(GPU_WHEELS),$(call lock_pin,$(n))) trl==1.16.0
	python3 -m pip wheel -q --no-deps -w .whl $(foreach n,$(GPU_SDISTS),$(call lock_pin,$(n)))
	@du -ch .whl/*.whl | tail -1

clean:  ## remove run outputs (keeps .venv and the model cache)
	rm -rf outputs/runs outputs/multirun outputs/results.csv
