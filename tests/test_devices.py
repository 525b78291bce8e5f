"""Device tier: one device decision per run, and no tensor created without saying where it lives.

A CPU-only machine cannot run a batch on the wrong GPU, but it can catch the cause: a tensor created without a
device. Under `torch.set_default_device("meta")` such a tensor lands on the meta device, and the first op that
mixes it with the model's CPU tensors fails (or `.item()` on it does), while code that places every tensor
explicitly runs unchanged. The loops, evaluation and the pipeline run here in that mode.

    python -m pytest -q tests/test_devices.py
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from rft import distributed, evaluate, grpo, models, sft
from rft.config import ConfigError, EvalConfig, RFTConfig, RunConfig
from rft.data.budget import apply_budget
from rft.data.registry import build_task


@contextlib.contextmanager
def implicit_tensors_on_meta():
    """Every tensor created without a device lands on `meta` for the duration."""
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


class Log:
    def __init__(self):
        self.rows = []

    def log(self, step, metrics):
        self.rows.append(dict(metrics))

    def log_samples(self, *a, **kw):
        pass


def setup(cfg):
    task = build_task(cfg.task, seed=cfg.seed)
    train = apply_budget(task.split("train"), cfg.budget.kind, cfg.budget.size, cfg.budget.seed)
    model, processor = models.load_model(cfg.model)
    return task, train, model, processor


@pytest.mark.parametrize("sampler", ["lean", "hf"])
def test_every_grpo_phase_places_its_tensors(tiny_cfg, sampler):
    """Rollout, rewards, advantages, reference and old log-probs (beta > 0, mu = 2), loss, backward, step."""
    cfg = tiny_cfg("rft")
    cfg.method.beta, cfg.method.mu, cfg.method.sampler, cfg.device = 0.04, 2, sampler, "cpu"
    task, train, model, processor = setup(cfg)
    log = Log()
    with implicit_tensors_on_meta():
        grpo.train(cfg, task, train, model, processor, log, device=torch.device("cpu"))
    assert len(log.rows) == cfg.method.steps and math.isfinite(log.rows[-1]["train/loss"])


def test_every_sft_phase_places_its_tensors(tiny_cfg):
    cfg = tiny_cfg("sft")
    task, train, model, processor = setup(cfg)
    log = Log()
    with implicit_tensors_on_meta():
        sft.train(cfg, task, train, model, processor, log, device=torch.device("cpu"))
    assert log.rows and math.isfinite(log.rows[-1]["train/loss"])


def test_evaluation_places_its_tensors(tiny_cfg):
    cfg = tiny_cfg("rft", eval=EvalConfig(batch_size=2))
    task, _, model, processor = setup(cfg)
    with implicit_tensors_on_meta():
        metrics, rows = evaluate.evaluate(
            model,
            processor,
            task,
            task.split("test"),
            think=True,
            max_new_tokens=6,
            batch_size=2,
            device="cpu",
        )
    assert len(rows) == len(task.split("test")) and 0 <= metrics["eval/accuracy"] <= 1


def test_the_checker_catches_an_unplaced_tensor():
    """The mode itself: a tensor made without a device cannot meet a CPU tensor."""
    x = torch.ones(3, device="cpu")
    with implicit_tensors_on_meta(), pytest.raises((RuntimeError, NotImplementedError)):
        (x + torch.tensor([1.0, 2.0, 3.0])).sum().item()


def test_device_auto_is_the_cpu_without_cuda_and_cuda_fails_with_the_reason(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.resolve_device("auto") == torch.device("cpu")
    assert distributed.resolve_device("cpu") == torch.device("cpu")
    for setting in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match="CUDA is not available.*or pass device=cpu"):
            distributed.resolve_device(setting)


def test_a_bad_device_setting_fails_at_compose_time():
    with pytest.raises(ConfigError, match="device='gpu' is not one of auto, cpu, cuda, cuda:N"):
        RunConfig(method=RFTConfig(), device="gpu")


def test_the_pipeline_fails_before_loading_when_cuda_is_asked_for_and_missing(
    tiny_cfg, tmp_path, monkeypatch
):
    from rft import pipeline

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(
        models, "load_model", lambda *a, **k: pytest.fail("must fail before loading the model")
    )
    with pytest.raises(ConfigError, match="device=cuda but CUDA is not available"):
        pipeline.run(tiny_cfg("rft", device="cuda"), tmp_path / "run")
    assert not (tmp_path / "run").exists()
