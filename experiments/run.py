"""The suite's one entrypoint: compose the five axes with Hydra, validate, train (GRPO or SFT), evaluate.

    python experiments/run.py                                   # the embedded default: GRPO demo on the tiny VLM
    python experiments/run.py task=fgvc_synth method=sft_tiny budget=shots budget.size=4
    python experiments/run.py -m budget.size=1,2,4              # one result row per job
    python experiments/run.py -m --config-dir sweeps --config-name rft_vs_sft_tiny   # a named sweep

Everything below `main` lives in the `rft` library, which never imports Hydra.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from experiments.schemas import to_run_config  # noqa: E402  (importing it registers the schemas)
from rft.config import ConfigError  # noqa: E402
from rft.pipeline import run  # noqa: E402
from rft.tracking import redact  # noqa: E402

log = logging.getLogger("rft")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(dcfg: DictConfig) -> float:
    try:
        cfg = to_run_config(dcfg)  # __post_init__ checks run here, before any data or model loads
    except ConfigError as err:
        raise SystemExit(f"config error: {err}") from None
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    resolved = OmegaConf.to_yaml(OmegaConf.create(redact(OmegaConf.to_container(dcfg, resolve=True))))
    try:
        record = run(cfg, run_dir, config_yaml=resolved)
    except ConfigError as err:
        raise SystemExit(f"config error: {err}") from None
    if int(os.environ.get("RANK", "0")) == 0:
        print(results_table(record))
    return float(record.get("eval/accuracy", 0.0))


def results_table(record: dict) -> str:
    keys = [
        "task",
        "method",
        "model",
        "reward",
        "budget",
        "seed",
        "n_train",
        "eval/accuracy",
        "eval/lenient_accuracy",
        "eval/format_rate",
        "eval/completion_tokens",
        "eval/think_tokens",
        "wall_s",
    ]
    width = max(len(k) for k in keys)
    lines = [f"{'':-<{width + 14}}", "result"]
    for k in keys:
        v = record.get(k, "")
        lines.append(f"  {k:<{width}}  {v:.3f}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
    lines.append(f"  {'run_dir':<{width}}  {record.get('run_dir')}")
    return "\n".join(lines)


def keep_one_output_dir() -> None:
    """Under torchrun/deepspeed every rank runs this script; only rank 0 may create the run directory."""
    if int(os.environ.get("RANK", "0")) > 0:
        scratch = tempfile.mkdtemp(prefix=f"rft-rank{os.environ['RANK']}-")
        sys.argv += [f"hydra.run.dir={scratch}", "hydra.output_subdir=null"]


if __name__ == "__main__":
    keep_one_output_dir()
    main()
