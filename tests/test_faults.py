"""Fault tier: a run SIGKILLed at each stage and rerun with resume=auto ends exactly like one never killed.

Stages (tests/fault_worker.py patches the stage's function, in the worker process only, to SIGKILL it): the
checkpoint write (weights written, no meta.json yet), the CSV append (before the atomic replace), the final
evaluation, and the final save. After the rerun: exactly one `finished` row for the run in the results table,
and the last checkpoint's weights, the eval predictions and results.json's metrics equal an uninterrupted run's.

    python -m pytest -q tests/test_faults.py
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rft import checkpoint
from rft.results import read_results
from tests.fault_worker import STEPS

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "fault_worker.py"
FINAL = f"checkpoints/step_{STEPS:06d}"
pytestmark = pytest.mark.slow


def worker(stage: str, run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(WORKER), stage, str(run_dir)], capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    done = worker("none", run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir


def killed_state(stage: str, run_dir: Path) -> None:
    """What the kill left behind: proof that it landed in the stage under test."""
    ckpts, result = run_dir / "checkpoints", run_dir / "results.json"
    if stage == "checkpoint":
        assert checkpoint.latest(ckpts).name == "step_000001"
        assert list(ckpts.glob("step_000002.tmp-*/model.safetensors"))
    elif stage == "csv":
        assert json.loads(result.read_text())["row_written"] is False
        assert read_results(run_dir.parent / "results.csv") == []
    elif stage == "eval":
        assert checkpoint.latest(ckpts).name == f"step_{STEPS:06d}" and not result.exists()
    elif stage == "final":
        assert checkpoint.latest(ckpts).name == f"step_{STEPS - 1:06d}" and not result.exists()


@pytest.mark.parametrize("stage", ["checkpoint", "csv", "eval", "final"])
def test_killed_at_a_stage_and_rerun_ends_like_an_uninterrupted_run(tmp_path, reference, stage):
    run_dir = tmp_path / "run"
    killed = worker(stage, run_dir)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    killed_state(stage, run_dir)

    rerun = worker("none", run_dir)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rows = [r for r in read_results(tmp_path / "results.csv") if r["run_dir"] == str(run_dir)]
    assert [r["status"] for r in rows] == ["finished"]

    a, b = (
        load_file(reference / FINAL / "model.safetensors"),
        load_file(run_dir / FINAL / "model.safetensors"),
    )
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    predictions = "eval_predictions.jsonl"
    assert (reference / predictions).read_text() == (run_dir / predictions).read_text()
    want, got = (json.loads((d / "results.json").read_text()) for d in (reference, run_dir))
    for key in [k for k in want if k.startswith(("eval/", "train/"))]:
        assert want[key] == got[key], key
    assert got["row_written"] is True and not list((run_dir / "checkpoints").glob("*.tmp-*"))
