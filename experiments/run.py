"""The suite's one entrypoint: compose the five axes with Hydra, validate, train (GRPO or SFT), evaluate.

    python experiments/run.py                                   # the default: a one-minute GRPO run on tiny_base
    python experiments/run.py task=fgvc_synth method=sft_tiny budget=shots budget.size=4
    python experiments/run.py -m budget.size=1,2,4              # one result row per job
    python experiments/run.py -m --config-dir sweeps --config-name rft_vs_sft_tiny_fgvc   # a named sweep

Everything below `main` lives in the `rft` library, which never imports Hydra. A failure the user can fix (config,
data, model, checkpoint, results table, missing package, W&B login, Ctrl-C) prints one line, `error: <what>; <fix>`,
and exits non-zero; `HYDRA_FULL_ERROR=1` re-raises it for the full trace. In a multirun a failed job gets a
`failed` row and the sweep goes on (docs/bad_inputs.md).
"""

from __future__ import annotations

import importlib
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
from rft import distributed, tracking  # noqa: E402
from rft.checkpoint import CheckpointError, Interrupted  # noqa: E402
from rft.config import ConfigError, RunConfig  # noqa: E402
from rft.data.base import DataError  # noqa: E402
from rft.files import atomic_write_json, atomic_write_text  # noqa: E402
from rft.models import ModelLoadError  # noqa: E402
from rft.pipeline import run  # noqa: E402
from rft.redaction import REDACTED, redact  # noqa: E402
from rft.results import (  # noqa: E402
    ResultRow,
    ResultsTableError,
    append_missing_row,
    append_result_row,
    axes,
    check_results_table,
    mark_row_missing,
)

log = logging.getLogger("rft")


# Errors whose message already says what went wrong and how to fix it: printed as one line, never a trace.
USER_ERRORS = (ConfigError, DataError, ModelLoadError, CheckpointError, ResultsTableError, FloatingPointError)
# Optional packages a config can ask for, and how to get (or avoid) each.
OPTIONAL_PACKAGES = {
    "wandb": "pip install wandb, or pass logger=none",
    "peft": "pip install peft, or pass model.lora.enabled=false",
    "deepspeed": "pip install deepspeed (make install-gpu), or pass dist=none",
    "flash_attn": "pip install flash-attn on a CUDA machine, or pass model.attn_implementation=sdpa",
    "datasets": "pip install datasets, or point task.root at the official files",
    "pyarrow": "pip install pyarrow",
}


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(dcfg: DictConfig) -> float:
    redact_hydra_outputs()
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    cfg: RunConfig | None = None
    try:
        cfg = to_run_config(dcfg)  # __post_init__ checks run here, before any data or model loads
        row = run_checked(cfg, dcfg, run_dir)
    except BaseException as err:  # noqa: BLE001  (KeyboardInterrupt too: it must not print a trace)
        return fail(err, cfg, dcfg, run_dir, multirun)
    if not multirun:
        distributed.shutdown()  # a multirun's next job in this process still needs the group
    if int(os.environ.get("RANK", "0")) == 0:
        print(results_table(row))
    return row.metrics.get("eval/accuracy", 0.0)


def run_checked(cfg: RunConfig, dcfg: DictConfig, run_dir: Path) -> ResultRow:
    """`rft.pipeline.run` after the entrypoint's own checks: the results table, optional packages, W&B login.

    With `resume` set, a finished run whose row never reached the table (results.json `row_written: false`)
    gets its row now instead of being skipped for good.
    """
    preflight(cfg)
    if cfg.resume != "none" and int(os.environ.get("RANK", "0")) == 0:
        pending = append_missing_row(run_dir, Path(cfg.results_csv))
        if pending is not None:
            log.info("added the missing result row of %s to %s", run_dir, cfg.results_csv)
            if pending.status == "finished":
                return pending
    resolved = OmegaConf.to_yaml(OmegaConf.create(redact(OmegaConf.to_container(dcfg, resolve=True))))
    return run(cfg, run_dir, config_yaml=resolved)


def preflight(cfg: RunConfig) -> None:
    """Checks that would otherwise fail only after the model loaded (or at the very end, for the table).

    Raises:
        ResultsTableError: results_csv is a folder or not UTF-8 CSV.
        ModuleNotFoundError: an optional package the config needs is absent (`fail` words it).
        ConfigError: W&B must run online but has no credentials, or WANDB_MODE is unknown.
    """
    if int(os.environ.get("RANK", "0")) == 0:
        check_results_table(Path(cfg.results_csv))
    if cfg.model.lora.enabled:
        importlib.import_module("peft")
    if cfg.dist.backend == "deepspeed":
        importlib.import_module("deepspeed")
    if cfg.logger.backend != "wandb":
        return
    try:
        mode = tracking.resolve_wandb_mode(cfg.logger.mode)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    if mode == "disabled":
        return
    importlib.import_module("wandb")
    if mode == "online" and not tracking.wandb_credentials_configured():
        raise ConfigError(
            "W&B is set to log online (logger.mode=online or WANDB_MODE=online) but no API key is configured "
            "(WANDB_API_KEY is unset and ~/.netrc has no entry for the W&B host); run `wandb login` or set "
            "WANDB_API_KEY, or pass logger.mode=auto (offline without a key) or logger=none"
        )


def describe(err: BaseException, run_dir: Path) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug (which keeps its trace)."""
    if isinstance(err, ResultsTableError) and (run_dir / "results.json").is_file():
        before = err.__context__ if isinstance(err.__context__, Exception) else None
        ran = f" (the run itself failed first: {type(before).__name__}: {before})" if before else ""
        return (
            f"{err}{ran}. The row is kept in {run_dir}/results.json (row_written: false); once the table is "
            f"fixed, rerun with hydra.run.dir={run_dir} resume=auto to add it"
        )
    if isinstance(err, USER_ERRORS):
        return str(err)
    if isinstance(err, ModuleNotFoundError) and err.name:
        package = err.name.split(".")[0]
        if package in OPTIONAL_PACKAGES:
            return f"the optional package {package!r} is not installed; {OPTIONAL_PACKAGES[package]}"
    if type(err).__module__.startswith("wandb"):
        return f"W&B failed: {err}; pass logger.mode=offline (upload later with wandb sync) or logger=none"
    return None


def fail(err: BaseException, cfg: RunConfig | None, dcfg: DictConfig, run_dir: Path, multirun: bool) -> float:
    """Report `err` the way its kind asks for; return NaN to let a multirun go on, else exit or re-raise.

    Signals stop everything (exit 128 + signal). A user error prints `error: <message>` and exits 1; in a
    multirun it is recorded as a `failed` row and the sweep goes on, like a bug (whose trace goes to the log).
    `HYDRA_FULL_ERROR=1` re-raises the error in a single run, so Hydra prints the full trace.
    """
    if isinstance(err, SystemExit):
        raise err
    if isinstance(err, Interrupted):  # SIGTERM/SIGINT: the checkpoint is saved and the row says interrupted
        print(f"interrupted: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    if isinstance(err, KeyboardInterrupt):  # Ctrl-C outside the training loop: nothing to save
        print(
            "interrupted: stopped by SIGINT (Ctrl-C) outside the training loop; no checkpoint was written by this "
            "stop. Rerun the same command (with resume=auto to keep what a previous run saved)",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    if not isinstance(err, Exception):
        raise err
    message = describe(err, run_dir)
    if isinstance(err, ResultsTableError):
        mark_row_missing(run_dir)
    if multirun:
        record_failure(cfg, dcfg, run_dir, err)
        if message is None:
            log.exception("job %s failed; recorded with status=failed, the sweep goes on", run_dir.name)
        else:
            log.error("error: %s", message)
            log.error("job %s failed; recorded with status=failed, the sweep goes on", run_dir.name)
        return float("nan")
    if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
        raise err
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(1) from None


def record_failure(cfg: RunConfig | None, dcfg: DictConfig, run_dir: Path, err: Exception) -> None:
    """Make sure a failed job of a multirun has its row.

    rft.pipeline writes one once the model is loaded; before that (config, data, budget, model location,
    checkpoint), results.json and the CSV row are written here with the axes, the error and `stage=setup`:
    the row says the job never trained. The config's axes come from the composed config when the typed one
    could not be built. A table that cannot take the row is logged, not raised, so the sweep goes on.
    """
    if (run_dir / "results.json").is_file() or int(os.environ.get("RANK", "0")) > 0:
        return
    try:
        job_axes = axes(cfg if cfg is not None else dcfg)
    except Exception:  # noqa: BLE001  (a config too broken to name its axes still gets a row)
        job_axes = {}
    row = ResultRow(
        run_id=run_dir.name,
        status="failed",
        **job_axes,
        error=f"{type(err).__name__}: {err}",
        stage="setup",
        run_dir=str(run_dir),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "results.json", {**row.to_record(), "row_written": False})
    try:
        append_result_row(Path(cfg.results_csv if cfg is not None else dcfg.results_csv), row)
    except (ResultsTableError, OSError, ValueError) as table_err:
        log.error("error: the failed row of %s could not be added: %s", run_dir.name, table_err)
        return
    atomic_write_json(run_dir / "results.json", {**row.to_record(), "row_written": True})


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

    Hydra writes .hydra/{config,hydra,overrides}.yaml (and a multirun's multirun.yaml) before `main` runs, verbatim; W&B records sys.argv in its
    run metadata. Both are rewritten here with the same rules as rft.redaction.redact (secret-looking key names, values
    equal to WANDB_API_KEY / HF_TOKEN / ...); the value of a secret-named override is also masked wherever Hydra
    copied it (hydra.job.override_dirname). Hydra has parsed the arguments already, so masking them is safe.
    """
    hydra_cfg = HydraConfig.get()
    overrides = [*sys.argv[1:], *hydra_cfg.overrides.task]  # a multirun's later jobs see argv masked already
    planted = [a.split("=", 1)[1] for a in overrides if "=" in a and _secret_key(a.split("=", 1)[0])]
    sys.argv[1:] = [str(redact_override(a)) for a in sys.argv[1:]]
    paths = []
    if hydra_cfg.output_subdir:
        paths += (Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir).glob("*.yaml")
    if hydra_cfg.mode == RunMode.MULTIRUN:  # the sweep's own record of every override
        paths += [p for p in [Path(hydra_cfg.sweep.dir) / "multirun.yaml"] if p.is_file()]
    for path in paths:
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
