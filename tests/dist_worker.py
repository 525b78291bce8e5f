"""A training job for the distributed tests, run under torchrun (or alone) by tests/test_distributed.py.

    torchrun --nproc_per_node 2 tests/dist_worker.py <out.json> <method> <dist> <micro> [--fixed-rollout]

It trains the tiny model with the suite's own loops and writes, from rank 0, the per-step metrics and a
fingerprint of the final (gathered) parameters. `--fixed-rollout` replaces sampling with completions that depend
only on the prompt, so 1-rank and 2-rank runs see identical rollouts.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from rft import distributed, grpo, models, pipeline, rewards, sampling, sft  # noqa: E402
from rft.config import DistConfig, RFTConfig, SFTConfig  # noqa: E402
from rft.data.budget import apply_budget  # noqa: E402
from rft.data.registry import build_task  # noqa: E402
from rft.sampling import completion_mask  # noqa: E402
from rft.tracking import Tracker  # noqa: E402
from tests.conftest import tiny_run_config  # noqa: E402


def fixed_generate(model, tokenizer, prompts, *, num_return_sequences, max_new_tokens, **_):
    """Completions seeded by each prompt's token ids: the same prompt always gets the same G completions."""
    rows = []
    for ids, keep in zip(prompts.input_ids, prompts.attention_mask, strict=True):
        g = torch.Generator().manual_seed(int(ids[keep.bool()].sum()))  # padding-independent seed
        block = torch.randint(0, 400, (num_return_sequences, max_new_tokens), generator=g)  # [G, T]
        ends = torch.randint(1, max_new_tokens, (num_return_sequences,), generator=g)  # [G]
        block[torch.arange(num_return_sequences), ends] = tokenizer.eos_token_id
        rows.append(block)
    completion_ids = torch.cat(rows)  # [B*G, T]
    return completion_ids, completion_mask(completion_ids, tokenizer)


REFERENCE: dict[str, float] = {}


def record_reference_placement() -> None:
    """Wrap the engines' `place_reference` to record how much of the reference this rank holds."""
    from rft import engine as engine_module

    for cls in (engine_module.TorchEngine, engine_module.DeepSpeedEngine):
        place = cls.place_reference

        def placed(self, ref, _place=place):
            out = _place(self, ref)
            params = list(out.parameters())
            total = sum(getattr(q, "ds_numel", q.numel()) for q in params)
            REFERENCE["local_fraction"] = sum(getattr(q, "ds_tensor", q).numel() for q in params) / total
            REFERENCE["requires_grad"] = float(any(q.requires_grad for q in params))
            return out

        cls.place_reference = placed


def main() -> None:
    out, method, dist_name, micro = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    flags = set(sys.argv[5:])
    run_dir = Path(out).parent / f"run-{Path(out).stem}"
    if method == "rft":
        m = RFTConfig(
            steps=2,
            rollout_batch_size=8,
            group_size=4,
            micro_batch_size=micro,
            lr=1e-3,
            beta=0.0,
            max_new_tokens=10,
            samples_every=100,
            sampler="hf",
        )
    else:
        m = SFTConfig(
            epochs=1, batch_size=8, micro_batch_size=micro, lr=1e-3, max_new_tokens=8, warmup_ratio=0.0
        )
    if "--beta" in flags:  # KL against the reference copy (made before ZeRO shards the policy)
        m.beta = 0.04
    stage = {"none": 2, "zero2": 2, "zero3": 3}[dist_name]
    dist = DistConfig(
        name=dist_name, backend="none" if dist_name == "none" else "deepspeed", zero_stage=stage
    )
    cfg = tiny_run_config(run_dir, "rft", method=m, dist=dist)
    cfg.task.train_size = 32
    cfg.budget.size = 24 if method == "sft" else 8  # SFT: 3 steps of 8
    distributed.init(cfg.dist.backend, distributed.resolve_device(cfg.device))
    if "--fixed-rollout" in flags:
        sampling.SAMPLERS["hf"] = fixed_generate
    record_reference_placement()
    task = build_task(cfg.task, seed=cfg.seed)
    train = apply_budget(task.split("train"), cfg.budget.kind, cfg.budget.size, cfg.budget.seed)
    pipeline.seed_everything(cfg.seed)
    model, processor = models.load_model(cfg.model)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    rank0 = distributed.rank() == 0
    tracker = Tracker(
        run_dir, enabled=rank0, backend="none", project="p", name="t", mode="disabled", config={}, axes={}
    )
    loop = grpo if method == "rft" else sft
    _, engine = loop.train(cfg, task, train, model, processor, tracker)
    with engine.generation():  # ZeRO-3: the full parameters, gathered
        after = {k: v.detach().clone() for k, v in models.unwrap(engine.module).state_dict().items()}
    if rank0:
        metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
        fingerprint = {k: float(after[k].double().sum()) for k in sorted(after)}
        Path(out).write_text(
            json.dumps(
                {
                    "metrics": metrics,
                    "changed": changed,
                    "fingerprint": fingerprint,
                    "world_size": distributed.world_size(),
                    "reference": REFERENCE,
                }
            )
        )


if __name__ == "__main__":
    assert rewards.REWARDS["test_letters"]  # registered by tests.conftest
    main()
