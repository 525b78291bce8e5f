"""Bad-input tier: the cases of docs/bad_inputs.md not already covered by the config, data and model tests.

Each case fails with one message that names the problem and the fix, before the model loads where possible, and
leaves no partial result file or row (a failure after training started leaves one clean `failed` row).

    python -m pytest -q tests/test_bad_inputs.py
"""

from __future__ import annotations

import errno
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rft import checkpoint, grpo, models, pipeline, sft
from rft.config import BudgetConfig, CheckpointConfig, ConfigError, ModelConfig, RunConfig, validate
from rft.data.base import DataError
from rft.data.budget import BudgetError, PromptStream
from rft.engine import TorchEngine
from rft.results import read_results
from tests.conftest import TINY_MODEL, tiny_run_config

REPO = Path(__file__).resolve().parents[1]


def no_model_load(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the bad input was reported")

    monkeypatch.setattr(models, "load_model", refuse)


# ---------------------------------------------------------------------------------------------------------------
# Config rules that need the world size, and the new checkpoint / resume keys
# ---------------------------------------------------------------------------------------------------------------


def test_rollout_batch_not_divisible_by_group_times_world(tmp_path):
    cfg = tiny_run_config(tmp_path, "rft")  # 8 completions, G = 4
    cfg.dist.backend = "deepspeed"
    with pytest.raises(ConfigError, match=r"divisible by group_size x world_size \(4 x 4\)"):
        validate(cfg, world_size=4)


def test_sft_batch_not_divisible_by_world(tmp_path):
    cfg = tiny_run_config(tmp_path, "sft")  # batch 4, micro-batch 2
    cfg.dist.backend = "deepspeed"
    with pytest.raises(ConfigError, match="must split into 3 ranks x whole micro-batches of 2"):
        validate(cfg, world_size=3)


def test_dist_none_with_several_processes(tmp_path, monkeypatch):
    no_model_load(monkeypatch)
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = tiny_run_config(tmp_path, "rft")
    with pytest.raises(ConfigError, match="2 processes were launched but dist=none"):
        pipeline.run(cfg, tmp_path / "run")
    assert not Path(cfg.results_csv).exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "fields,needle",
    [
        (dict(every=-1), "checkpoint.every must be >= 0"),
        (dict(keep_last=0), "checkpoint.keep_last must be >= 1"),
    ],
)
def test_checkpoint_keys_are_checked(fields, needle):
    with pytest.raises(ConfigError, match=needle):
        CheckpointConfig(**fields)


def test_resume_path_without_a_checkpoint(tmp_path, monkeypatch):
    no_model_load(monkeypatch)
    cfg = tiny_run_config(tmp_path, "rft", resume=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="holds no complete checkpoint"):
        pipeline.run(cfg, tmp_path / "run")
    assert not Path(cfg.results_csv).exists()


def test_unfinished_checkpoint_folders_are_ignored(tmp_path):
    root = tmp_path / "checkpoints"
    for name in ("step_000001", "step_000002", "step_000003.tmp-123"):
        (root / name).mkdir(parents=True)
    (root / "step_000001" / checkpoint.MARKER).write_text("{}")
    (root / "step_000003.tmp-123" / checkpoint.MARKER).write_text("{}")
    assert checkpoint.latest(root).name == "step_000001"  # step 2 has no marker, step 3 is still a tmp folder


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------


def test_empty_budget():
    with pytest.raises(ConfigError, match="budget.size must be > 0, got 0"):
        BudgetConfig(kind="samples", size=0)
    with pytest.raises(BudgetError, match="the training set is empty"):
        PromptStream([], seed=0)


def test_corrupt_image_in_the_middle_of_a_split(tmp_path, monkeypatch):
    from tests.test_datasets import fgvc, image_bytes, smoke_config, write_fgvc

    no_model_load(monkeypatch)
    root = write_fgvc(tmp_path)
    ids = (root / "data" / "images_variant_test.txt").read_text().split("\n")
    victim = ids[len(ids) // 2].split()[0]
    full = image_bytes("JPEG", banner=True)
    (root / "data" / "images" / f"{victim}.jpg").write_bytes(full[: len(full) - 200])  # header intact
    cfg = smoke_config(fgvc(root), "sft", tmp_path)
    cfg.eval.limit = 0  # the whole split, so the image in the middle is reached
    with pytest.raises(DataError, match=f"image .*{victim}.jpg is corrupt .*re-download or replace it"):
        pipeline.run(cfg, tmp_path / "run")
    assert not (tmp_path / "results.csv").exists() and not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------------------------
# Model: trust_remote_code
# ---------------------------------------------------------------------------------------------------------------


def test_trust_remote_code_is_off_by_default_and_loud_when_on(caplog):

    assert ModelConfig().trust_remote_code is False
    spec = ModelConfig(trust_remote_code=True, **TINY_MODEL)
    with caplog.at_level(logging.WARNING, logger="rft.models"):
        models.load_model(spec)
    assert (
        "!!! model.trust_remote_code=true: code shipped with tiny will run on this machine !!!" in caplog.text
    )


# ---------------------------------------------------------------------------------------------------------------
# Environment: output locations, full disk
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["run_dir", "results_csv"])
def test_output_location_not_writable(tmp_path, monkeypatch, where):
    no_model_load(monkeypatch)
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder cannot be created under a file (chmod does not stop root)
    run_dir = blocker / "run" if where == "run_dir" else tmp_path / "run"
    csv = tmp_path / "results.csv" if where == "run_dir" else blocker / "results.csv"
    cfg = tiny_run_config(tmp_path, "rft", results_csv=str(csv))
    with pytest.raises(
        ConfigError, match=r"cannot write to .*a-file.*: (Not a directory|File exists)\. Choose a writable"
    ):
        pipeline.run(cfg, run_dir)
    assert not (tmp_path / "results.csv").exists()


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    cfg = tiny_run_config(tmp_path, "rft", checkpoint=CheckpointConfig(every=1, keep_last=1))
    cfg.method.steps = 3
    real_save, calls = checkpoint.save_weights, []

    def save_then_fill_disk(module, path):
        calls.append(path)
        if len(calls) == 2:  # step 2: half the files are written, then the disk is full
            (path / "model.safetensors").write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_save(module, path)

    monkeypatch.setattr(checkpoint, "save_weights", save_then_fill_disk)
    with pytest.raises(checkpoint.CheckpointError) as err:
        pipeline.run(cfg, tmp_path / "run")
    root = tmp_path / "run" / "checkpoints"
    assert (
        f"could not write the checkpoint for step 2 to {root}/step_000002: No space left on device. "
        f"the previous checkpoint {root}/step_000001 is intact" in str(err.value)
    )
    assert sorted(p.name for p in root.iterdir()) == ["step_000001"]  # no tmp folder left behind
    assert checkpoint.is_complete(root / "step_000001")
    (row,) = read_results(Path(cfg.results_csv))
    assert row["status"] == "failed" and row["last_checkpoint"].endswith("step_000001")


# ---------------------------------------------------------------------------------------------------------------
# Runtime: non-finite loss or gradient, zero-variance rewards
# ---------------------------------------------------------------------------------------------------------------


def poison(monkeypatch, module, name, at_call: int, make_nan):
    real, calls = getattr(module, name), []

    def wrapped(*a, **k):
        calls.append(1)
        out = real(*a, **k)
        return make_nan(out) if len(calls) == at_call else out

    monkeypatch.setattr(module, name, wrapped)


@pytest.mark.parametrize("method", ["rft", "sft"])
def test_nan_loss_names_the_step_and_the_term_and_keeps_the_last_good_checkpoint(
    tmp_path, monkeypatch, method
):
    cfg = tiny_run_config(tmp_path, method, checkpoint=CheckpointConfig(every=1, keep_last=5))
    if method == "rft":  # 2 micro-batches per step: the 5th loss call is in step 3
        cfg.method.steps = 4
        poison(
            monkeypatch,
            grpo,
            "grpo_loss",
            5,
            lambda out: (out[0] * math.nan, {**out[1], "policy/pg_loss": math.nan}),
        )
        needle = r"non-finite GRPO loss at step 3: pg_loss=nan, kl_loss=0\.0\. Lower method\.lr"
    else:  # 8 samples / batch 4 = 2 steps per epoch, 2 micro-batches per step: the 5th call is in step 3
        cfg.method.epochs = 2
        poison(monkeypatch, sft, "sft_loss", 5, lambda out: out * math.nan)
        needle = r"non-finite SFT loss at step 3; lower method\.lr"
    with pytest.raises(FloatingPointError, match=needle) as err:
        pipeline.run(cfg, tmp_path / "run")
    root = tmp_path / "run" / "checkpoints"
    assert f"The last good checkpoint is {root}/step_000002" in str(err.value)
    assert [p.name for p in checkpoint.complete_checkpoints(root)] == ["step_000001", "step_000002"]
    (row,) = read_results(Path(cfg.results_csv))
    assert row["status"] == "failed" and "step 3" in row["error"]


def test_nan_gradient_names_the_step(tmp_path, monkeypatch):
    cfg = tiny_run_config(tmp_path, "rft", checkpoint=CheckpointConfig(every=1))
    poison(monkeypatch, TorchEngine, "step", 2, lambda out: math.inf)
    with pytest.raises(
        FloatingPointError, match="non-finite gradient norm at step 2 although the loss terms"
    ):
        pipeline.run(cfg, tmp_path / "run")
    assert checkpoint.latest(tmp_path / "run" / "checkpoints").name == "step_000001"


def test_zero_variance_rewards_warn_once_with_the_cause(tmp_path, monkeypatch, caplog):
    from rft.config import RewardConfig

    monkeypatch.setattr(grpo, "ZERO_STD_PATIENCE", 2)
    # The tiny random model never writes the format, and 6 new tokens cannot close an answer: all rewards are 0.
    cfg = tiny_run_config(tmp_path, "rft", reward=RewardConfig())
    cfg.method.steps, cfg.method.max_new_tokens = 4, 6
    with caplog.at_level(logging.WARNING, logger="rft.grpo"):
        pipeline.run(cfg, tmp_path / "run")
    warnings = [r.getMessage() for r in caplog.records if "identical rewards" in r.getMessage()]
    assert len(warnings) == 1
    assert "completions are truncated at method.max_new_tokens=6" in warnings[0]


def test_zero_variance_cause_reads_the_reward_stats():
    base = {"rollout/clipped_ratio": 0.0, "reward/format": 0.0, "reward/accuracy": 0.0}
    assert "the format never matched" in grpo.zero_std_warning(base, ["accuracy", "format"], 64)
    assert "truncated" in grpo.zero_std_warning({**base, "rollout/clipped_ratio": 0.9}, ["format"], 64)
    assert "was ever correct" in grpo.zero_std_warning(
        {**base, "reward/format": 1.0}, ["accuracy", "format"], 64
    )


# ---------------------------------------------------------------------------------------------------------------
# Secrets
# ---------------------------------------------------------------------------------------------------------------

SECRET = "hf_PLANTEDsecret0123456789abcdef"
OVERRIDE_SECRET = "sk-PLANTEDoverride0123456789"


def leaks(run_dir: Path, secret: str) -> list[str]:
    needle = secret.encode()
    return [str(p) for p in run_dir.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow
def test_secrets_never_reach_the_run_directory(tmp_path):
    """Tokens in the environment, and one passed on the command line, appear in no file of the run."""
    env = {**os.environ, "WANDB_API_KEY": SECRET, "HF_TOKEN": SECRET, "WANDB_MODE": "offline"}
    run_dir = tmp_path / "run"
    common = [f"results_csv={tmp_path}/results.csv", "logger.mode=offline"]
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments/run.py"),
            "logger=wandb",
            f"logger.tags=[{SECRET}]",  # a config-ish value equal to a token
            "method.steps=1",
            "task.train_size=8",
            "task.test_size=2",
            "task.image_size=56",
            "budget.size=4",
            "method.rollout_batch_size=4",
            "method.group_size=2",
            "method.micro_batch_size=4",
            "method.max_new_tokens=4",
            "threads=1",
            *common,
            f"hydra.run.dir={run_dir}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
        and (run_dir / ".hydra/overrides.yaml").is_file()
    )
    assert not leaks(run_dir, SECRET) and SECRET not in proc.stdout + proc.stderr
    assert SECRET not in (tmp_path / "results.csv").read_text()

    # A secret-named override (rejected as an unknown key) is masked in the .hydra/ files Hydra already wrote.
    bad_dir = tmp_path / "bad"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments/run.py"),
            f"+logger.api_key={OVERRIDE_SECRET}",
            *common,
            f"hydra.run.dir={bad_dir}",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "unknown key logger.api_key" in proc.stderr
    assert (bad_dir / ".hydra/overrides.yaml").is_file() and not leaks(bad_dir, OVERRIDE_SECRET)


def test_redact_override_masks_secret_keys_and_known_tokens(monkeypatch):
    sys.path.insert(0, str(REPO))
    from experiments.run import redact_override

    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert redact_override("+logger.api_key=abc") == "+logger.api_key=***"
    assert redact_override(f"logger.tags=[{SECRET}]") == "logger.tags=[***]"
    assert redact_override("hf_token=short") == "hf_token=***"
    assert redact_override("method.lr=0.1") == "method.lr=0.1"


def test_run_config_has_no_secret_fields():
    """Nothing in the schema is meant to hold a secret: tokens come from the environment only."""
    import dataclasses

    from rft.redaction import redact

    tree = dataclasses.asdict(RunConfig(method="zeroshot"))
    assert redact(tree) == tree


def test_training_state_loads_with_weights_only(tmp_path):
    """RNG states are stored as tensors and plain containers, so torch.load(weights_only=True) accepts them."""
    import random

    torch.save(checkpoint.rng_state(), tmp_path / "rng.pt")
    expected = (random.random(), torch.rand(3))
    checkpoint.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), torch.rand(3))
    assert expected[0] == again[0] and torch.equal(expected[1], again[1])
    torch.save({"evil": Path("/")}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(tmp_path / "evil.pt", weights_only=True)
