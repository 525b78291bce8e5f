"""The entrypoint's failure contract: one line `error: <what>; <fix>`, a non-zero exit, never a traceback.

Most cases call `experiments/run.py`'s pieces in-process (`describe`, `fail`, `preflight`, `to_run_config`); the
subprocess tests cover what only the real command line shows: Hydra's own handling of the exit, the full trace
under `HYDRA_FULL_ERROR=1`, and a multirun that records a config error as a row and goes on.

    python -m pytest -q tests/test_entrypoint_errors.py
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from rft.checkpoint import CheckpointError, Interrupted
from rft.config import ConfigError, RFTConfig, SFTConfig
from rft.data.base import DataError
from rft.models import ModelLoadError
from rft.results import ResultsTableError, read_results

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from experiments import run as entry  # noqa: E402
from experiments.schemas import to_run_config  # noqa: E402

SECRET = "hf_PLANTEDsweep0123456789abcdef"


def cli(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "experiments/run.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
    )


def composed(overrides: list[str]):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


# ---------------------------------------------------------------------------------------------------------------
# In-process: which errors are the user's, and how each is worded
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "err",
    [
        ConfigError("method.lr must be > 0, got 0.0"),
        DataError("FGVC-Aircraft not found at /x; run `make data-fgvc`"),
        ModelLoadError("model.path='/x' has no config.json. Point model.path at ..."),
        CheckpointError("could not restore the checkpoint /x: ..."),
        ResultsTableError("results_csv=/x is a folder, not a table; pass results_csv=/x/results.csv"),
        FloatingPointError("non-finite GRPO loss at step 3: ...; Lower method.lr"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_user_errors_print_one_line_and_exit_1(tmp_path, capsys, monkeypatch, err):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as stop:
        entry.fail(err, None, None, tmp_path / "run", multirun=False)
    assert stop.value.code == 1
    assert capsys.readouterr().err == f"error: {err}\n"


def test_budget_error_is_a_config_error():
    from rft.data.budget import BudgetError

    assert issubclass(BudgetError, ConfigError) and entry.describe(BudgetError("b"), Path("/x")) == "b"


def test_full_error_reraises_for_the_trace(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    err = DataError("no data")
    with pytest.raises(DataError):
        entry.fail(err, None, None, tmp_path / "run", multirun=False)


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    assert entry.describe(ZeroDivisionError("x"), tmp_path) is None
    with pytest.raises(ZeroDivisionError):
        entry.fail(ZeroDivisionError("x"), None, None, tmp_path / "run", multirun=False)


def test_missing_optional_package_names_the_install_and_the_way_around(tmp_path):
    err = ModuleNotFoundError("No module named 'wandb'", name="wandb")
    assert entry.describe(err, tmp_path) == (
        "the optional package 'wandb' is not installed; pip install wandb, or pass logger=none"
    )
    assert "dist=none" in entry.describe(ModuleNotFoundError("x", name="deepspeed.ops"), tmp_path)
    assert entry.describe(ModuleNotFoundError("x", name="rft.nothing"), tmp_path) is None  # a bug


@pytest.mark.parametrize(
    "err,code",
    [(KeyboardInterrupt(), 130), (Interrupted(15, "stopped by SIGTERM after step 1 of 2; ..."), 143)],
    ids=["ctrl-c-while-loading", "sigterm-in-training"],
)
def test_signals_exit_128_plus_n_without_a_trace(tmp_path, capsys, err, code):
    for multirun in (False, True):  # a signal stops the whole sweep too
        with pytest.raises(SystemExit) as stop:
            entry.fail(err, None, None, tmp_path / "run", multirun=multirun)
        assert stop.value.code == code
        assert capsys.readouterr().err.startswith("interrupted: stopped by SIG")


def test_wandb_online_without_credentials_fails_before_the_model_loads(tmp_path, monkeypatch, tiny_cfg):
    from rft.config import LoggerConfig

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    (tmp_path / "netrc").write_text("")
    cfg = tiny_cfg(logger=LoggerConfig(backend="wandb", mode="online"))
    with pytest.raises(ConfigError, match="no API key is configured .* run `wandb login`"):
        entry.preflight(cfg)
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    cfg.logger.mode = "auto"
    with pytest.raises(ConfigError, match="WANDB_MODE='sometimes' is unknown"):
        entry.preflight(cfg)


def test_results_table_in_the_way_fails_before_training(tmp_path, tiny_cfg):
    (tmp_path / "table.csv").mkdir()
    with pytest.raises(ResultsTableError, match=r"is a folder, not a table; pass results_csv="):
        entry.preflight(tiny_cfg(results_csv=str(tmp_path / "table.csv")))


@pytest.mark.parametrize("override", ["method.lr=inf", "method.max_grad_norm=nan", "method.beta=-inf"])
def test_non_finite_hyper_parameters_are_rejected_at_compose(override):
    with pytest.raises(ConfigError, match=rf"{override.split('=')[0]}=-?(inf|nan) is not a finite number"):
        to_run_config(composed([override]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: RFTConfig(lr=math.inf),
        lambda: RFTConfig(max_grad_norm=math.nan),
        lambda: SFTConfig(lr=math.inf),
        lambda: SFTConfig(max_grad_norm=math.nan),
    ],
    ids=["rft-lr-inf", "rft-max_grad_norm-nan", "sft-lr-inf", "sft-max_grad_norm-nan"],
)
def test_non_finite_hyper_parameters_are_rejected_by_the_schema(make):
    """The library's own rule (rft/config.py), for callers that build a RunConfig without Hydra."""
    with pytest.raises(ConfigError, match="must be finite"):
        make()


def test_multirun_config_error_of_one_job_is_a_row(tmp_path):
    """In-process: a config error in a multirun becomes a `failed` row with stage=setup, and no exit."""
    dcfg = composed(["method.group_size=3", f"results_csv={tmp_path}/results.csv"])
    try:
        to_run_config(dcfg)
    except ConfigError as err:
        result = entry.fail(err, None, dcfg, tmp_path / "job", multirun=True)
    assert math.isnan(result)
    (row,) = read_results(tmp_path / "results.csv")
    assert row["status"] == "failed" and row["stage"] == "setup" and "group_size" in row["error"]
    assert row["task"] == "fgvc_synth" and row["method"] == "rft"


# ---------------------------------------------------------------------------------------------------------------
# The real command line
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_readme_command_without_the_data_prints_one_line(tmp_path):
    args = [
        "task=fgvc",
        "method=rft",
        "reward=length_norm",
        f"task.root={tmp_path}/no-data",
        f"results_csv={tmp_path}/results.csv",
        f"hydra.run.dir={tmp_path}/run",
    ]
    proc = cli(*args, env={"HYDRA_FULL_ERROR": ""})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert (
        last.startswith(f"error: FGVC-Aircraft not found at {tmp_path}/no-data") and "make data-fgvc" in last
    )
    assert not (tmp_path / "results.csv").exists()
    full = cli(*args, env={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode == 1 and "Traceback" in full.stderr and "DataError" in full.stderr


@pytest.mark.slow
def test_sweep_records_a_config_error_and_goes_on_and_masks_the_secret(tmp_path):
    tiny = [
        "logger=none",
        "method.steps=1",
        "method.rollout_batch_size=8",
        "method.micro_batch_size=4",
        "task.train_size=8",
        "task.test_size=2",
        "task.image_size=56",
        "budget.size=4",
        "method.max_new_tokens=4",
        "eval.limit=2",
        "threads=1",
    ]
    proc = cli(
        "-m",
        *tiny,
        "method.group_size=3,4",
        f"logger.tags=[{SECRET}]",
        f"results_csv={tmp_path}/results.csv",
        f"hydra.sweep.dir={tmp_path}/sweep",
        env={"HF_TOKEN": SECRET},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    rows = read_results(tmp_path / "results.csv")
    assert [(r["group_size"], r["status"]) for r in rows] == [("", "failed"), ("4", "finished")]
    assert rows[0]["stage"] == "setup" and "must be divisible by method.group_size (3)" in rows[0]["error"]
    multirun_yaml = tmp_path / "sweep" / "multirun.yaml"
    assert multirun_yaml.is_file() and SECRET not in multirun_yaml.read_text()
    leaks = [p for p in (tmp_path / "sweep").rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaks
