"""Run the tiny GRPO run of tests/test_faults.py, SIGKILLed at one stage: `python tests/fault_worker.py STAGE RUN_DIR`.

STAGE is `none` (run to the end) or the stage whose function is patched here, in this process only, to SIGKILL
the process at that moment (no test hook lives in library code):
    checkpoint  the step-2 checkpoint, after its weights are written, before meta.json
    csv         `rft.results.append_result_row`, with the new table written to its temporary file, before the replace
    eval        `rft.evaluate.evaluate`, the final evaluation
    final       the last step's checkpoint, as its weights are being saved
The run goes through the entrypoint's resume path (`experiments.run.run_checked`: the missing-row repair, then
`rft.pipeline.run`) with resume=auto, one CPU thread, a checkpoint after every step.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from omegaconf import OmegaConf  # noqa: E402

from experiments.run import run_checked  # noqa: E402
from rft import checkpoint, evaluate, files  # noqa: E402
from rft.config import CheckpointConfig, EvalConfig  # noqa: E402
from tests.conftest import tiny_run_config  # noqa: E402

STEPS = 3


def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def patch(stage: str, csv_path: Path) -> None:
    if stage == "checkpoint":
        write_json = checkpoint.atomic_write_json

        def write_meta(path, obj):
            if path.name == checkpoint.MARKER and obj.get("step") == 2:
                die()
            write_json(path, obj)

        checkpoint.atomic_write_json = write_meta
    elif stage == "csv":
        replace = os.replace

        def replace_table(src, dst, *args, **kwargs):
            if Path(dst) == csv_path:
                die()
            return replace(src, dst, *args, **kwargs)

        files.os.replace = replace_table  # rft.files' os is the os module: this process only
    elif stage == "eval":
        evaluate.evaluate = die
    elif stage == "final":
        save_weights = checkpoint.save_weights

        def save_last(module, path):
            if path.name.startswith(f"step_{STEPS:06d}"):
                die()
            save_weights(module, path)

        checkpoint.save_weights = save_last
    elif stage != "none":
        raise SystemExit(f"unknown stage {stage!r}")


def main(stage: str, run_dir: Path) -> None:
    cfg = tiny_run_config(
        run_dir.parent,
        "rft",
        checkpoint=CheckpointConfig(every=1, keep_last=100),
        resume="auto",
        threads=1,
        eval=EvalConfig(batch_size=4, limit=2),
    )
    cfg.method.steps = STEPS
    patch(stage, Path(cfg.results_csv))
    run_checked(cfg, OmegaConf.create({}), run_dir)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
