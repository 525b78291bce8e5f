"""Merge a LoRA adapter into its base model and save a standalone model folder.

    python experiments/merge_lora.py <adapter dir> <out dir> [--base <base model dir or hub id>]

The adapter dir is what a LoRA run saves (e.g. `outputs/runs/.../checkpoints/step_000200/`, holding
adapter_config.json and adapter_model.safetensors). The base defaults to the one recorded in adapter_config.json.
The output loads like any model: `model.path=<out dir>`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def merge(adapter_dir: Path, out_dir: Path, base: str | None = None) -> Path:
    """Load base + adapter, fold the adapter into the weights, save model and processor to `out_dir`."""
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from rft import models
    from rft.config import ModelConfig

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = base or config["base_model_name_or_path"]
    if not base or not Path(base, "config.json").is_file():
        raise SystemExit(
            f"base model {base!r} is not a local folder with config.json; pass --base <folder of the base model>"
        )
    model = AutoModelForImageTextToText.from_pretrained(base, use_safetensors=True)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir)
    spec = ModelConfig(id=base, path=base, builtin=False)
    models.load_processor(base, spec).save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter", type=Path, help="folder with adapter_config.json")
    parser.add_argument("out", type=Path, help="where to write the merged model")
    parser.add_argument("--base", default=None, help="base model folder (default: from adapter_config.json)")
    args = parser.parse_args(argv)
    print(merge(args.adapter, args.out, args.base))


if __name__ == "__main__":
    main()
