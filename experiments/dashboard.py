"""A saved W&B report for one sweep group (`make dashboard`), built with the `wandb-workspaces` API.

    python experiments/dashboard.py --group study --dry-run                  # print the spec (no network)
    python experiments/dashboard.py --group study --entity <you> --project rft-vs-sft   # save it, print its URL

A report rather than a workspace: each of its panel grids has its own run sets, so a grid shows one task, and
RFT, SFT and zero-shot are separate run sets (colours) in it; a workspace filters all its panels alike. Sections:
accuracy vs budget per task (RFT vs SFT), the thinking curves per ablation task grouped by `reward`, training
health, and the `completions` tables. Keys: docs/outputs.md. Building needs no network; `save()` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import wandb_workspaces.reports.v2 as wr  # noqa: E402

# The tasks of table 1, and the budget of the thinking ablation per task (sweeps/study_thinking_*.yaml)
TASKS = ("fgvc", "sat", "banner")
ABLATION = {"fgvc": "shots:4", "sat": "samples:1024"}
# table 1's reward: rft rows of the other rewards belong to the ablation
MAIN_REWARD = "acc_format"
# the terms of the four reward levels, each logged as reward/<fn>
REWARD_TERMS = ("accuracy", "format", "length_norm", "length_norm_group")
ROLLOUT_CURVES = ("rollout/reward_mean", "rollout/think_tokens", "rollout/completion_tokens")
HEALTH_CURVES = (
    "train/loss",
    "policy/kl",
    "rollout/frac_zero_std_groups",
    "rollout/clipped_ratio",
    "train/grad_norm",
)
SUMMARY_METRICS = ("eval/accuracy", "eval/lenient_accuracy", "eval/format_rate")


def runs(entity: str, project: str, name: str, group: str, **config: str) -> wr.Runset:
    """The runs of one W&B group whose top-level config keys (the axes) equal `config`."""
    terms = [f"Group = '{group}'", *(f"Config('{k}') = '{v}'" for k, v in config.items())]
    return wr.Runset(entity=entity, project=project, name=name, filters=" and ".join(terms))


def by(key: str) -> dict[str, Any]:
    """Panel grouping by a config axis: mean over the group's runs (seeds), a band of one std."""
    return {"groupby": wr.Config(key), "groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"}


def accuracy_grid(entity: str, project: str, group: str, task: str) -> wr.PanelGrid:
    """Table 1 for one task: summary accuracy vs budget, one run set per method."""
    sets = [
        runs(entity, project, "rft", group, task=task, method="rft", reward=MAIN_REWARD),
        runs(entity, project, "sft", group, task=task, method="sft"),
        runs(entity, project, "zero-shot", group, task=task, method="zeroshot"),
    ]
    panels: list[Any] = [
        wr.ScatterPlot(
            title=f"{task}: eval/accuracy vs budget size",
            x=wr.Config("cfg.budget.size"),
            y=wr.SummaryMetric("eval/accuracy"),
            log_x=True,
        )
    ]
    panels += [
        wr.BarPlot(
            title=f"{task}: {m} by budget", metrics=[wr.SummaryMetric(m)], orientation="v", **by("budget")
        )
        for m in SUMMARY_METRICS
    ]
    return wr.PanelGrid(runsets=sets, panels=panels)


def thinking_grid(entity: str, project: str, group: str, task: str, budget: str) -> wr.PanelGrid:
    """Table 2 for one task: rft runs at the ablation budget, every curve grouped by reward level."""
    rs = runs(entity, project, "rft by reward", group, task=task, method="rft", budget=budget)
    rs.groupby = ["config.reward"]
    curves = [*ROLLOUT_CURVES, *(f"reward/{fn}" for fn in REWARD_TERMS)]
    panels: list[Any] = [
        wr.LinePlot(title=f"{task}: {key}", x="Step", y=[key], **by("reward")) for key in curves
    ]
    panels += [
        wr.BarPlot(
            title=f"{task}: {m} by reward", metrics=[wr.SummaryMetric(m)], orientation="v", **by("reward")
        )
        for m in ("eval/accuracy", "eval/think_tokens")
    ]
    return wr.PanelGrid(runsets=[rs], panels=panels)


def build(group: str, entity: str, project: str = "rft-vs-sft") -> wr.Report:
    """The report of one sweep group; only pydantic objects, nothing is sent until `.save()`."""
    blocks: list[Any] = [
        wr.P(
            f"W&B group {group!r}: the runs of `make study` (experiments/study.py). Keys and their meaning: "
            "docs/outputs.md. Tables with confidence intervals: `make report REPORT_IN=<study folder>`."
        )
    ]
    for task in TASKS:
        blocks += [
            wr.H2(f"{task}: accuracy vs budget, RFT vs SFT"),
            accuracy_grid(entity, project, group, task),
        ]
    for task, budget in ABLATION.items():
        blocks += [
            wr.H2(f"{task}: thinking ablation at {budget}"),
            thinking_grid(entity, project, group, task, budget),
        ]
    rft = runs(entity, project, "rft", group, method="rft")
    rft.groupby = ["config.reward"]
    health = [wr.LinePlot(title=key, x="Step", y=[key], **by("reward")) for key in HEALTH_CURVES]
    blocks += [wr.H2("Training health (rft)"), wr.PanelGrid(runsets=[rft], panels=health)]
    table = wr.WeavePanelSummaryTable(table_name="completions", layout=wr.Layout(w=24, h=12))
    blocks += [wr.H2("Completions (rft)"), wr.PanelGrid(runsets=[rft], panels=[table])]
    return wr.Report(
        entity=entity,
        project=project,
        title=f"RFT vs SFT: {group}",
        description=f"sweep group {group}",
        blocks=blocks,
    )


def _metric(value: Any) -> str | None:
    """A panel's metric as its key (`wr.SummaryMetric("eval/accuracy")` -> "summary:eval/accuracy")."""
    if value is None or isinstance(value, str):
        return value
    return f"{type(value).__name__.replace('SummaryMetric', 'summary').lower()}:{value.name}"


def describe(report: wr.Report) -> dict[str, Any]:
    """The report as plain data: its sections (an H2 and the grid after it), run sets and panels."""
    sections: list[dict[str, Any]] = []
    for block in report.blocks:
        if isinstance(block, wr.H2):
            sections.append({"name": "".join(map(str, block.text)), "runsets": [], "panels": []})
        elif isinstance(block, wr.PanelGrid):
            sections[-1]["runsets"] = [
                {"name": rs.name, "filters": rs.filters, "groupby": list(rs.groupby)} for rs in block.runsets
            ]
            sections[-1]["panels"] = [_panel(p) for p in block.panels]
    return {"entity": report.entity, "project": report.project, "title": report.title, "sections": sections}


def _panel(panel: Any) -> dict[str, Any]:
    kind = type(panel).__name__
    if isinstance(panel, wr.WeavePanelSummaryTable):
        return {"type": kind, "table": panel.table_name}
    if isinstance(panel, wr.LinePlot):
        metrics = [_metric(y) for y in panel.y]
    elif isinstance(panel, wr.BarPlot):
        metrics = [_metric(m) for m in panel.metrics]
    else:
        metrics = [_metric(panel.y)]
    groupby = getattr(panel, "groupby", None)
    return {
        "type": kind,
        "title": panel.title,
        "x": _metric(getattr(panel, "x", None)),
        "metrics": metrics,
        "groupby": _metric(groupby),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--group", default="study", help="the W&B group (logger.group of the sweeps)")
    parser.add_argument("--entity", default="", help="W&B entity (default: your default entity)")
    parser.add_argument("--project", default="rft-vs-sft")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the report's spec as JSON; send nothing"
    )
    args = parser.parse_args(argv)
    if args.dry_run:
        print(json.dumps(describe(build(args.group, args.entity or "<entity>", args.project)), indent=1))
        return 0
    entity = args.entity or wr.interface._get_api().default_entity  # needs a W&B login
    report = build(args.group, entity, args.project).save()
    print(f"report saved: {report.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
