"""`experiments/gpu_check.py --dry-run`: every stage of the GPU check, on CPU at tiny size, gives one clean JSON.

The dry run builds a 2-layer stand-in of Qwen2-VL-2B (real tokenizer, text width 128) and runs GRPO (dist=none),
GRPO under `torchrun --nproc_per_node 1` with ZeRO-3 on gloo, SFT, a zero-shot evaluation and a SIGTERM-and-resume,
each through `rft.pipeline.run`. It takes about 1.5 minutes on 2 busy cores.

    python -m pytest -q tests/test_gpu_check.py
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("grpo", "grpo_zero3", "sft", "eval", "resume")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "report.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "experiments/gpu_check.py"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = json.loads(proc.stdout)
    assert printed == json.loads(out.read_text())  # the printed JSON is the written one
    return printed


def _positive(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_every_stage_finishes_on_the_expected_device(report):
    assert report["ok"] is True and report["failures"] == []
    assert (report["mode"], report["expected_device"]) == ("dry-run", "cpu")
    assert list(report["stages"]) == list(STAGES)
    for name, stage in report["stages"].items():
        assert stage["status"] == "passed", (name, stage["problems"])
        assert stage["run_status"] == "finished", name
        assert stage["param_devices"] == ["cpu"] and stage["input_devices"] == ["cpu"], name
        assert stage["forward_calls"] > 0, name
        assert _positive(stage["peak_mem_gb"]) and _positive(stage["eval_s"]), name
        assert all(math.isfinite(x) for x in stage["losses"]), name
    assert report["stages"]["grpo_zero3"]["launcher"].startswith("torchrun")


@pytest.mark.slow
def test_training_stages_report_finite_positive_speeds(report):
    steps = report["settings"]["steps"]
    for name in ("grpo", "grpo_zero3", "sft", "resume"):
        stage = report["stages"][name]
        assert stage["steps_logged"] == list(range(1, steps + 1)), name
        assert _positive(stage["step_s_median"]), name
        assert len(stage["losses"]) == steps, name
    for name in ("grpo", "grpo_zero3", "resume"):
        stage = report["stages"][name]
        assert _positive(stage["tokens_per_s_median"]) and _positive(stage["rollout_s_median"]), name
    for name in ("grpo", "grpo_zero3"):
        bandwidth = report["stages"][name]["decode_bandwidth"]
        assert _positive(bandwidth["bytes_per_step"])
        assert bandwidth["fraction_of_ceiling"] is None  # no HBM bandwidth figure for a CPU
    settings = report["settings"]
    assert settings["image_tokens"] == settings["image_pixels"] // (28 * 28)
    assert _positive(settings["prompt_tokens"]) and settings["prompt_tokens"] > settings["image_tokens"]


@pytest.mark.slow
def test_resume_stage_was_interrupted_then_continued(report):
    stage = report["stages"]["resume"]
    run_dir = Path(stage["run_dir"])
    result = json.loads((run_dir / "results.json").read_text())
    steps = report["settings"]["steps"]
    assert result["status"] == "finished" and result["train/steps"] == float(steps)
    assert Path(result["resumed_from"]).name == f"step_{steps - 1:06d}"
    assert "SIGTERM received" in (run_dir / "run.log").read_text()
