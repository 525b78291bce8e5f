"""Config tier: the W&B report of `make dashboard` (`experiments/dashboard.py`), built and checked offline.

The report is only pydantic objects until `.save()`; these tests read its sections, run sets, filters, panels,
metric keys and grouping, with every network path blocked.

python -m pytest -q tests/test_dashboard.py
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import yaml
from wandb_workspaces import expr

from experiments import dashboard
from rft.rewards import REWARDS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def offline(monkeypatch):
    """Any connection attempt or W&B API client fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("building the dashboard touched the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(dashboard.wr.interface, "_get_api", refuse)


@pytest.fixture
def spec(offline) -> dict:
    return dashboard.describe(dashboard.build("study", "my-team", "rft-vs-sft"))


def section(spec: dict, prefix: str) -> dict:
    return next(s for s in spec["sections"] if s["name"].startswith(prefix))


def test_sections(spec):
    names = [s["name"] for s in spec["sections"]]
    assert names == [
        "fgvc: accuracy vs budget, RFT vs SFT",
        "sat: accuracy vs budget, RFT vs SFT",
        "banner: accuracy vs budget, RFT vs SFT",
        "fgvc: thinking ablation at shots:4",
        "sat: thinking ablation at samples:1024",
        "Training health (rft)",
        "Completions (rft)",
    ]
    assert (spec["entity"], spec["project"]) == ("my-team", "rft-vs-sft")


def test_every_run_set_is_the_group_and_its_filter_parses(spec):
    for s in spec["sections"]:
        assert s["runsets"] and s["panels"], s["name"]
        for rs in s["runsets"]:
            tree = expr.expr_to_filters(rs["filters"])
            leaves = {(f.key.section, f.key.name): f.value for f in tree.filters}
            assert leaves[("run", "group")] == "study", rs


def test_accuracy_vs_budget_by_method_per_task(spec):
    for task in dashboard.TASKS:
        s = section(spec, f"{task}: accuracy")
        methods = {}
        for rs in s["runsets"]:
            leaves = {f.key.name: f.value for f in expr.expr_to_filters(rs["filters"]).filters}
            assert leaves["task"] == task
            methods[leaves["method"]] = leaves.get("reward")
        assert methods == {"rft": "acc_format", "sft": None, "zeroshot": None}
        scatter = s["panels"][0]
        assert (scatter["x"], scatter["metrics"]) == ("config:cfg.budget.size", ["summary:eval/accuracy"])
        bars = [p for p in s["panels"] if p["type"] == "BarPlot"]
        assert {m for p in bars for m in p["metrics"]} >= {
            "summary:eval/accuracy",
            "summary:eval/lenient_accuracy",
        }
        assert all(p["groupby"] == "config:budget" for p in bars)


def test_thinking_curves_grouped_by_reward_at_the_ablation_budget(spec):
    for task, budget in dashboard.ABLATION.items():
        s = section(spec, f"{task}: thinking")
        (rs,) = s["runsets"]
        leaves = {f.key.name: f.value for f in expr.expr_to_filters(rs["filters"]).filters}
        assert (leaves["task"], leaves["method"], leaves["budget"]) == (task, "rft", budget)
        assert rs["groupby"] == ["config.reward"]
        lines = {p["metrics"][0]: p for p in s["panels"] if p["type"] == "LinePlot"}
        want = {"rollout/reward_mean", "rollout/think_tokens", "rollout/completion_tokens"}
        want |= {f"reward/{fn}" for fn in ("accuracy", "format", "length_norm", "length_norm_group")}
        assert set(lines) == want
        assert all(p["groupby"] == "config:reward" and p["x"] == "Step" for p in lines.values())
        bars = [p["metrics"][0] for p in s["panels"] if p["type"] == "BarPlot"]
        assert bars == ["summary:eval/accuracy", "summary:eval/think_tokens"]


def test_completions_table(spec):
    s = section(spec, "Completions")
    assert s["panels"] == [{"type": "WeavePanelSummaryTable", "table": "completions"}]


def test_ablation_budgets_are_the_study_sweeps():
    for task, budget in dashboard.ABLATION.items():
        sweep = yaml.safe_load((REPO / f"sweeps/study_thinking_{task}.yaml").read_text())
        kind = next(
            d["override budget"] for d in sweep["defaults"] if isinstance(d, dict) and "override budget" in d
        )
        assert budget == f"{kind}:{sweep['budget']['size']}"
        levels = sweep["hydra"]["sweeper"]["params"]["reward"].split(",")
        terms = {"accuracy", "format"} | {t["fn"] for lv in levels for t in _terms(lv)}
        assert terms == set(dashboard.REWARD_TERMS) and terms <= set(REWARDS)


def _terms(level: str) -> list[dict]:
    return yaml.safe_load((REPO / f"conf/reward/{level}.yaml").read_text()).get("terms", [])


def test_metric_keys_are_documented(spec):
    docs = (REPO / "docs/outputs.md").read_text()
    keys = {m.split(":")[-1] for s in spec["sections"] for p in s["panels"] for m in p.get("metrics", [])}
    for key in keys:
        prefix, name = key.split("/", 1)
        if prefix == "reward":
            continue  # `reward/<fn>`, one key per reward term
        row = next(line for line in docs.splitlines() if line.startswith(f"| `{prefix}/`"))
        assert f"`{name}`" in row, key
    assert "`completions` table" in docs


def test_dry_run_prints_the_spec_as_json(offline, capsys):
    assert dashboard.main(["--dry-run", "--group", "tiny_study", "--entity", "me"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["title"] == "RFT vs SFT: tiny_study" and len(printed["sections"]) == 7
    assert all("Group = 'tiny_study'" in rs["filters"] for s in printed["sections"] for rs in s["runsets"])


def test_make_dashboard_target():
    make = (REPO / "Makefile").read_text()
    assert "dashboard: venv  ## " in make and "experiments/dashboard.py --group $(GROUP)" in make
