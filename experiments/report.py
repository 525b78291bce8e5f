"""Tables and plots of a sweep: RFT vs SFT (table 1), the thinking ablation (table 2), training curves.

    python experiments/report.py outputs                        # the shared outputs/results.csv
    python experiments/report.py outputs/multirun/2026-11-27/03-30-56   # one sweep, from results.json
    python experiments/report.py outputs/results.csv --out /tmp/report --wandb

Writes report.md, table1_rft_vs_sft.csv, table2_thinking.csv, cells.csv and PNG plots into --out (default
<input folder>/report/). The logic lives in the `rft.report` package; this is only the command line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rft import report  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", type=Path, help="an outputs folder, a sweep folder or a results.csv")
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default: <input folder>/report)"
    )
    parser.add_argument(
        "--wandb", action="store_true", help="also log the report as a W&B run (job_type report)"
    )
    args = parser.parse_args(argv)

    root = args.input if args.input.is_dir() else args.input.parent
    rows, source = report.load_rows(args.input)
    out_dir = args.out or root / "report"
    built = report.build_report(rows, source=str(source), root=root)
    files = report.write_report(built, out_dir)
    print(files["report"].read_text(encoding="utf-8"))
    print(f"report written to {out_dir}")
    if args.wandb:
        wandb_dir = report.log_to_wandb(built, out_dir)
        print(f"W&B run: {wandb_dir}")
    return files


if __name__ == "__main__":
    main()
