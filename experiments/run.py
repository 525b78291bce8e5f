"""The suite's one entrypoint: compose the five axes with Hydra, validate, train (GRPO or SFT), evaluate.

    python experiments/run.py                                   # the embedded default: GRPO demo on the tiny VLM
    python experiments/run.py task=fgvc_synth method=sft_tiny budget=shots budget.size=4
    python experiments/run.py -m budget.size=1,2,4              # one result row per job
    python experiments/run.py -m --config-dir sweeps --config-name rft_vs_sft_tiny_fgvc   # a named sweep

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
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from experiments.schemas import to_run_config  # noqa: E402  (importing it registers the schemas)
from rft import distributed  # noqa: E402
from rft.checkpoint import Interrupted  # noqa: E402
from rft.config import ConfigError  # noqa: E402
from rft.files import atomic_write_json, atomic_write_text  # noqa: E402
from rft.pipeline import run  # noqa: E402
from rft.redaction import REDACTED, redact  # noqa: E402
from rft.results import ResultRow, append_result_row, axes  # noqa: E402

log = logging.getLogger("rft")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(dcfg: DictConfig) -> float:
    redact_hydra_outputs()
    try:
        cfg = to_run_config(dcfg)  # __post_init__ checks run here, before any data or model loads
    except ConfigError as err:
        raise SystemExit(f"config error: {err}") from None
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    resolved = OmegaConf.to_yaml(OmegaConf.create(redact(OmegaConf.to_container(dcfg, resolve=True))))
    try:
        row = run(cfg, run_dir, config_yaml=resolved)
    except ConfigError as err:
        raise SystemExit(f"config error: {err}") from None
    except Interrupted as err:  # SIGTERM/SIGINT: the checkpoint is saved and the row says interrupted
        print(f"interrupted: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except Exception as err:
        # Hydra's basic launcher aborts a multirun on the first exception, losing every later job; in a sweep
        # the failure is recorded as a row instead and the sweep goes on. A single run still raises.
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        record_failure(cfg, run_dir, err)
        log.exception("job %s failed; recorded with status=failed, the sweep goes on", run_dir.name)
        return float("nan")
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        distributed.shutdown()  # a multirun's next job in this process still needs the group
    if int(os.environ.get("RANK", "0")) == 0:
        print(results_table(row))
    return row.metrics.get("eval/accuracy", 0.0)


def record_failure(cfg, run_dir: Path, err: Exception) -> None:
    """Make sure a failed job has its row: rft.pipeline writes one once training started; before that (data,
    budget, model location), write results.json and the CSV row here with the axes and the error."""
    if (run_dir / "results.json").is_file() or int(os.environ.get("RANK", "0")) > 0:
        return
    row = ResultRow(
        run_id=run_dir.name,
        status="failed",
        **axes(cfg),
        error=f"{type(err).__name__}: {err}",
        run_dir=str(run_dir),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "results.json", row.to_record())
    append_result_row(Path(cfg.results_csv), row)


def results_table(row: ResultRow) -> str:
    """The end-of-run summary printed to the console: the axes, the eval metrics, the wall time, the folder."""
    metric_names = [
        "eval_before/accuracy",
        "eval/accuracy",
        "eval/lenient_accuracy",
        "eval/format_rate",
        "eval/completion_tokens",
        "eval/think_tokens",
    ]
    if "eval_before/accuracy" not in row.metrics:  # only with eval.before=true
        metric_names.remove("eval_before/accuracy")
    values: dict[str, object] = {
        "task": row.task,
        "method": row.method,
        "model": row.model,
        "reward": row.reward,
        "budget": row.budget,
        "seed": row.seed,
        "n_train": row.n_train,
        **{name: row.metrics.get(name) for name in metric_names},
        "wall_s": row.wall_s,
    }
    width = max(len(k) for k in values)
    lines = [f"{'':-<{width + 14}}", "result"]
    for k, v in values.items():
        v = "" if v is None else v
        lines.append(f"  {k:<{width}}  {v:.3f}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
    lines.append(f"  {'run_dir':<{width}}  {row.run_dir}")
    return "\n".join(lines)


def _secret_key(key: str) -> bool:
    return redact({key: "x"})[key] != "x"


def redact_override(item: object) -> object:
    """`key=value` with the value masked when the key looks secret (hf_token=..., api_key=...); known tokens too."""
    if isinstance(item, str) and "=" in item and _secret_key(item.split("=", 1)[0]):
        return f"{item.split('=', 1)[0]}={REDACTED}"
    return redact(item)


def _redact_tree(node: object) -> object:
    if isinstance(node, dict):
        return redact({k: _redact_tree(v) for k, v in node.items()})
    if isinstance(node, list):
        return [_redact_tree(x) for x in node]
    return redact_override(node)


def redact_hydra_outputs() -> None:
    """Mask secrets that command-line overrides put into Hydra's own files and into sys.argv.

    Hydra writes .hydra/{config,hydra,overrides}.yaml before `main` runs, verbatim; W&B records sys.argv in its
    run metadata. Both are rewritten here with the same rules as rft.redaction.redact (secret-looking key names, values
    equal to WANDB_API_KEY / HF_TOKEN / ...); the value of a secret-named override is also masked wherever Hydra
    copied it (hydra.job.override_dirname). Hydra has parsed the arguments already, so masking them is safe.
    """
    planted = [a.split("=", 1)[1] for a in sys.argv[1:] if "=" in a and _secret_key(a.split("=", 1)[0])]
    sys.argv[1:] = [str(redact_override(a)) for a in sys.argv[1:]]
    hydra_cfg = HydraConfig.get()
    if not hydra_cfg.output_subdir:
        return
    for path in (Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir).glob("*.yaml"):
        tree = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        text = OmegaConf.to_yaml(OmegaConf.create(tree))
        clean = OmegaConf.to_yaml(OmegaConf.create(_redact_tree(tree)))
        for value in filter(None, planted):
            clean = clean.replace(value, REDACTED)
        if clean != text:
            atomic_write_text(path, clean)


def keep_one_output_dir() -> None:
    """Under torchrun/deepspeed every rank runs this script; only rank 0 may create the run directory."""
    if int(os.environ.get("RANK", "0")) > 0:
        scratch = tempfile.mkdtemp(prefix=f"rft-rank{os.environ['RANK']}-")
        sys.argv += [f"hydra.run.dir={scratch}", "hydra.output_subdir=null"]


if __name__ == "__main__":
    keep_one_output_dir()
    main()
