"""Config tier: every config, experiment and sweep composes into a typed RunConfig; bad input fails clearly.

python -m pytest -q tests/test_config.py
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from experiments.schemas import to_run_config
from rft.config import ConfigError, RFTConfig, RunConfig, SFTConfig, ZeroShotConfig, validate
from rft.pipeline import run

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
GROUPS = ["task", "method", "model", "reward", "budget", "logger", "dist", "experiment"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def typed(overrides: list[str], config_dir: Path = CONF, config_name: str = "config") -> RunConfig:
    with initialize_config_dir(version_base="1.3", config_dir=str(config_dir)):
        cfg = compose(config_name=config_name, overrides=overrides)
    return to_run_config(cfg)


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes(group, option):
    cfg = typed([f"{group}={option}"])
    assert isinstance(cfg, RunConfig)


def test_default_is_the_one_minute_grpo_run():
    # `python experiments/run.py`: rft_quick (60 steps of rft_tiny) on the shipped tiny_base and fgvc_synth at one
    # shot per class, scored before and after (docs/tiny_study.md measured its reward rise and time).
    cfg = typed([])
    assert cfg.model.id == "tiny_base" and cfg.task.name == "fgvc_synth" and cfg.eval.before
    assert (cfg.budget.kind, cfg.budget.size, cfg.reward.name) == ("shots", 1, "acc_format")
    m, tiny = cfg.method, typed(["method=rft_tiny"]).method
    assert isinstance(m, RFTConfig) and m.steps == 60 and cfg.logger.backend == "wandb"
    assert dataclasses.replace(m, steps=tiny.steps, samples_every=tiny.samples_every) == tiny


def test_demo_experiment_is_what_make_demo_runs():
    # `make demo` runs `experiment=demo`: rft_tiny (200 steps of 8 prompts x G=8, lr 3e-4, the size
    # docs/tiny_study.md measured a gain at) on tiny_base + fgvc_synth at 4 shots, scored before and after.
    assert "experiments/run.py experiment=demo" in (REPO / "Makefile").read_text()
    cfg = typed(["experiment=demo"])
    assert cfg.model.id == "tiny_base" and cfg.task.name == "fgvc_synth" and cfg.eval.before
    assert (cfg.budget.kind, cfg.budget.size) == ("shots", 4)
    m = cfg.method
    assert isinstance(m, RFTConfig) and m.lr == 3e-4 and m.beta == 0.0
    assert (m.steps, m.rollout_batch_size, m.group_size, m.micro_batch_size) == (200, 64, 8, 64)


def test_sft_tiny_is_matched_to_rft_tiny():
    # the tiny study's two methods: as many optimizer steps, examples per step = GRPO's prompts per step, same lr
    rft, sft = typed(["method=rft_tiny"]).method, typed(["method=sft_tiny"]).method
    assert isinstance(sft, SFTConfig) and sft.steps == rft.steps and sft.lr == rft.lr
    assert sft.batch_size == rft.prompts_per_step and sft.max_new_tokens == rft.max_new_tokens


@pytest.mark.parametrize(
    "method,cls",
    [("rft", RFTConfig), ("sft", SFTConfig), ("zeroshot", ZeroShotConfig), ("rft_tiny", RFTConfig)],
)
def test_method_option_picks_its_schema(method, cls):
    assert type(typed([f"method={method}"]).method) is cls


def test_paper_defaults_follow_study_md():
    m = typed(["method=rft"]).method
    assert (m.group_size, m.lr, m.beta, m.mu, m.temperature, m.max_new_tokens) == (8, 1e-6, 0.04, 1, 1.0, 256)
    assert m.loss_agg == "seq-mean-token-mean" and m.scale_adv_by_std and m.adv_eps == 1e-4
    qwen = typed(["model=qwen2vl_2b"]).model
    assert (qwen.min_pixels, qwen.max_pixels, qwen.trust_remote_code) == (3136, 401408, False)


@pytest.mark.parametrize("world_size", [1, 2, 4, 8, 16])
def test_paper_lineage_grpo_validates_on_up_to_sixteen_ranks(world_size):
    """Visual-RFT's step: 8 GPUs x 1 prompt x 2 accumulation steps = 16 prompts x G=8, whole groups per rank."""
    cfg = typed(["method=rft", "model=qwen2vl_2b", "dist=zero3"])
    assert cfg.method.rollout_batch_size == 128 and cfg.method.prompts_per_step == 16
    validate(cfg, world_size=world_size)


# The study's sweeps (sweeps/study_*.yaml, 117 jobs) are composed and validated job by job in tests/test_study.py.
@pytest.mark.parametrize(
    "sweep", sorted(p.stem for p in (REPO / "sweeps").glob("*.yaml") if not p.stem.startswith("study_"))
)
def test_every_sweep_composes(sweep):
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "sweeps")):
        cfg = compose(
            config_name=sweep, overrides=[f"hydra.searchpath=[file://{CONF}]"], return_hydra_config=True
        )
    params = cfg.hydra.sweeper.params
    assert params, "a sweep must vary at least one axis"
    # Every point of the sweep is a valid config too.
    grid = [[f"{k}={v}" for v in str(vals).split(",")] for k, vals in params.items()]
    import itertools

    for point in itertools.product(*grid):
        with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "sweeps")):
            c = compose(config_name=sweep, overrides=[f"hydra.searchpath=[file://{CONF}]", *point])
        validate(to_run_config(c))


@pytest.mark.parametrize(
    "override,exc,needle",
    [
        ("method.lrr=1", ConfigCompositionException, "lrr"),
        ("+method.lrr=1", ConfigError, "unknown key method.lrr"),
        ("method.lr=fast", ConfigCompositionException, "lr"),
        ("task=nosuchtask", ConfigCompositionException, "nosuchtask"),
        ("model=nosuchmodel", ConfigCompositionException, "nosuchmodel"),
        ("reward=nosuchreward", ConfigCompositionException, "nosuchreward"),
        ("method=nosuchmethod", ConfigCompositionException, "nosuchmethod"),
    ],
)
def test_typos_fail_at_compose_time_naming_the_key(override, exc, needle):
    with pytest.raises(exc) as err:
        typed([override])
    text = str(err.value) + str(err.value.__cause__ or "")
    assert needle in text


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (
            ["method.group_size=1", "method.rollout_batch_size=4", "method.micro_batch_size=4"],
            "group_size (G) must be >= 2",
        ),
        (["method.rollout_batch_size=10", "method.group_size=4"], "divisible by method.group_size"),
        (["method.micro_batch_size=3"], "must divide method.rollout_batch_size"),
        (["method.mu=0"], "mu (updates per rollout) must be >= 1"),
        (["method.lr=0"], "method.lr must be > 0"),
        (["method.beta=-0.1"], "beta (KL coefficient) must be >= 0"),
        (["method.max_new_tokens=0"], "max_new_tokens must be > 0"),
        (["method.loss_agg=mean"], "loss_agg='mean' is not one of"),
        (["reward.terms=[]"], "empty terms list"),
        (["reward.terms=[{fn: accuracyy, weight: 1}]"], "unknown reward function 'accuracyy'"),
        (["reward=nothink", "reward.terms=[{fn: length_norm, weight: 1}]"], "set think=true"),
        (["budget.kind=some"], "budget.kind='some'"),
        (["model.dtype=float8"], "model.dtype='float8'"),
    ],
)
def test_cross_field_rules_fail_with_a_fix(overrides, needle):
    with pytest.raises((ConfigError, ValidationError, ConfigCompositionException)) as err:
        validate(typed(overrides))
    text = str(err.value) + str(err.value.__cause__ or "")
    assert needle in text


def test_shot_budget_on_a_multiple_choice_task_is_rejected(tmp_path):
    """One home for the rule (rft.data.budget), checked before any model loads or any file is written."""
    cfg = typed(["task=sat_synth", "budget=shots", "logger=none", f"results_csv={tmp_path}/results.csv"])
    with pytest.raises(ConfigError, match="use budget=samples"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "results.csv").exists()


def test_length_target_beyond_completion_budget_is_rejected():
    with pytest.raises(ConfigError, match="exceeds method.max_new_tokens"):
        validate(typed(["reward=length_norm", "reward.length_target=1000", "method.max_new_tokens=24"]))


def test_entrypoint_reports_config_errors_before_loading_anything(tmp_path):
    """The CLI exits non-zero with the message, and writes no results row."""
    csv = tmp_path / "results.csv"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments/run.py"),
            "method.group_size=1",
            "method.micro_batch_size=4",
            "method.rollout_batch_size=4",
            f"results_csv={csv}",
            f"hydra.run.dir={tmp_path}/run",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "group_size (G) must be >= 2" in proc.stderr + proc.stdout
    assert not csv.exists()


def test_unknown_key_error_names_the_key():
    with pytest.raises(ConfigCompositionException) as err:
        typed(["task.trian_size=3"])
    assert "trian_size" in str(err.value) + str(err.value.__cause__)
    assert isinstance(err.value.__cause__, ConfigKeyError | Exception)
