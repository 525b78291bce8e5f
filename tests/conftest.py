"""Shared test set-up: never touch the network, build the tiny model once per session, keep outputs in tmp.

Run everything with `make test`; a single tier with e.g. `python -m pytest -q -m "not slow"`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Set before anything imports transformers or wandb.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parents[1]))
_CACHE = Path(os.environ.setdefault("RFT_CACHE", tempfile.mkdtemp(prefix="rft-test-cache-")))
# W&B keeps staging files (table images) and logs in the home folder unless told otherwise.
for _var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
    os.environ.setdefault(_var, str(_CACHE / "wandb-home"))

import pytest  # noqa: E402

from rft import rewards  # noqa: E402
from rft.config import (  # noqa: E402
    BudgetConfig,
    EvalConfig,
    LoggerConfig,
    ModelConfig,
    RewardConfig,
    RewardTerm,
    RFTConfig,
    RunConfig,
    SFTConfig,
    TaskConfig,
)

# Test-only rewards. A random tiny model never earns accuracy or format, so every group would have zero
# variance and GRPO would (correctly) not move; these give every completion a distinct, verifiable score.
rewards.REWARDS["test_brevity"] = lambda x: [1.0 - n / x.length_target for n in x.completion_tokens]
rewards.REWARDS["test_letters"] = lambda x: [
    sum(c.isalpha() for c in t) / max(len(t), 1) for t in x.completions
]
DENSE_REWARD = RewardConfig(
    name="test_dense", terms=[RewardTerm("accuracy"), RewardTerm("format"), RewardTerm("test_letters")]
)

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = dict(cache_dir=str(_CACHE / "models"), min_pixels=784, max_pixels=12544)


def tiny_run_config(tmp_path: Path, kind: str = "rft", **overrides) -> RunConfig:
    """A RunConfig sized for seconds on CPU: tiny model, small synthetic task, no W&B unless asked."""
    methods = {
        "rft": RFTConfig(
            steps=2,
            rollout_batch_size=8,
            group_size=4,
            micro_batch_size=4,
            lr=1e-3,
            beta=0.0,
            max_new_tokens=12,
            samples_every=1,
        ),
        "sft": SFTConfig(epochs=1, batch_size=4, micro_batch_size=2, lr=1e-3, max_new_tokens=12),
    }
    fields = dict(
        task=TaskConfig(name="sat_synth", train_size=16, test_size=4, image_size=56),
        method=methods[kind],
        model=ModelConfig(**TINY_MODEL),
        reward=DENSE_REWARD,
        budget=BudgetConfig(kind="samples", size=8),
        eval=EvalConfig(batch_size=4),
        logger=LoggerConfig(backend="none"),
        results_csv=str(tmp_path / "results.csv"),
    )
    fields.update(overrides)
    return RunConfig(**fields)


@pytest.fixture
def tiny_cfg(tmp_path):
    return lambda kind="rft", **kw: tiny_run_config(tmp_path, kind, **kw)
