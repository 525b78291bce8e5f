# Self-documenting: `make help` lists every target with its `## ` comment.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
# Offline-safe defaults for every target; override on the command line if you are online.
export HF_HUB_OFFLINE ?= 1
export TORCH_EXTENSIONS_DIR ?= $(HOME)/.cache/torch_extensions
export DS_BUILD_OPS ?= 0

.PHONY: help venv demo test test-fast lint format sweep-tiny report data-fgvc data-sat bench-dist tiny-base study-tiny bench bench-levers bench-grid bench-gpu clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

.venv/.installed: pyproject.toml requirements.lock constraints.txt
	python3 -m venv .venv
	$(PIP) install -q -U pip
	$(PIP) install -q -r requirements.lock -c constraints.txt
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

venv: .venv/.installed  ## create .venv and install the pinned dependencies (first use only)

demo: tiny-base  ## GRPO on the pretrained tiny VLM (tiny_base) + the synthetic fine-grained task, scored before and after
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

TINY_CACHE ?= $${RFT_CACHE:-$$HOME/.cache/rft-suite}/models
STUDY := outputs/study_tiny/$(shell date +%Y-%m-%d_%H-%M-%S)
# one sweep of the tiny study: $(1) = sweeps/<name>.yaml, $(2) = extra overrides
study_sweep = $(PY) experiments/run.py -m --config-dir sweeps --config-name $(1) threads=1 \
	results_csv=$(STUDY)/results.csv hydra.sweep.dir=$(STUDY)/$(1) $(2)
# the think level (acc_format) of the ablation is the rft_tiny job of the budget ladder, run once
OTHER_LEVELS := reward=nothink,length_norm,length_norm_group

tiny-base: venv  ## build (once) tiny_base: the tiny VLM after a short SFT pretraining on a synthetic corpus
	$(PY) -m rft.testbed --cache-dir $(TINY_CACHE)

study-tiny: tiny-base  ## the tiny study on tiny_base (RFT vs SFT ladder + thinking ablation, 2 tasks x 3 seeds) + report
	( $(call study_sweep,zeroshot_tiny) && $(call study_sweep,rft_vs_sft_tiny_fgvc) && \
	  $(call study_sweep,thinking_tiny_fgvc,$(OTHER_LEVELS)) ) & a=$$!; \
	( $(call study_sweep,rft_vs_sft_tiny_sat) && $(call study_sweep,thinking_tiny_sat,$(OTHER_LEVELS)) ) & b=$$!; \
	wait $$a && wait $$b
	$(PY) experiments/report.py $(STUDY)

report: venv  ## tables + plots from every run under outputs/ (REPORT_IN=<dir> to pick a sweep)
	$(PY) experiments/report.py $${REPORT_IN:-outputs}

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

bench-gpu:  ## one H100/H200: Qwen2-VL-2B dims, bf16, G=8 x 256 tokens, ours vs TRL (see docs/performance.md)
	$(PY) experiments/bench_gpu.py

clean:  ## remove run outputs (keeps .venv and the model cache)
	rm -rf outputs/runs outputs/multirun outputs/results.csv
