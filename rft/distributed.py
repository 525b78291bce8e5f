"""Process-group set-up for multi-rank runs (torchrun or the deepspeed launcher), and rank-aware logging.

One run has one output directory: rank 0 owns it and is the only writer of results, the CSV row, checkpoints
and W&B. Every rank's log lines carry `[rank k]`.
"""

from __future__ import annotations

import logging
import os


def world_size() -> int:
    """Ranks launched for this run, from the launcher's environment (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def init(backend: str) -> None:
    """Join the process group when launched with several ranks (gloo on CPU, nccl on GPUs, via DeepSpeed)."""
    if backend != "deepspeed":
        return
    import deepspeed
    import torch.distributed as dist

    if not dist.is_initialized():
        deepspeed.init_distributed()


def gather_rows(rows: list) -> list:
    """Concatenate every rank's list on all ranks, in rank order (identity with one rank)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return rows
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, rows)
    return [r for part in parts for r in part]


class RankFilter(logging.Filter):
    """Prefix every record with the rank, so interleaved multi-rank logs stay readable."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "rank_tagged", False):
            record.msg = f"[rank {rank()}] {record.msg}"
            record.rank_tagged = True
        return True


def install_rank_logging() -> None:
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, RankFilter) for f in handler.filters):
            handler.addFilter(RankFilter())
