"""The run's one device decision, process-group set-up for multi-rank runs, and rank-aware logging.

`resolve_device` turns the `device` setting into this rank's `torch.device` once per run (`cuda:LOCAL_RANK`
under a launcher) and makes it the current CUDA device. `init` joins the process group (NCCL on GPUs, gloo on
CPUs, via DeepSpeed); every collective here runs on a tensor of the backend's device. One run has one output
directory: rank 0 owns it and is the only writer of results, the CSV row, checkpoints and W&B. Every rank's log
lines carry `[rank k]`.
"""

from __future__ import annotations

import contextlib
import logging
import os

import torch

from rft.config import ConfigError


def world_size() -> int:
    """Ranks launched for this run, from the launcher's environment (1 without a launcher)."""
    adopt_slurm_environment()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This rank's index on its node (the GPU it drives)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def cuda_unavailable_reason() -> str:
    """Why `torch.cuda.is_available()` is False, in words a user can act on."""
    if torch.version.cuda is None:
        return (
            f"this torch ({torch.__version__}) is a CPU-only build; install a CUDA build that matches the node's "
            "driver (see docs/training.md, 'Installing on a GPU node')"
        )
    return (
        f"torch {torch.__version__} is built for CUDA {torch.version.cuda}, but no usable GPU was found: no device "
        "is visible (CUDA_VISIBLE_DEVICES) or the NVIDIA driver is older than this CUDA needs (`nvidia-smi` shows "
        "the driver's CUDA version); install a torch build for the driver's CUDA version"
    )


def resolve_device(setting: str) -> torch.device:
    """The device of this rank, decided once per run from the `device` setting.

    "auto" is `cuda:LOCAL_RANK` when CUDA is available, else the CPU; "cuda" is `cuda:LOCAL_RANK`; "cuda:N" is
    that GPU. A CUDA device becomes the current device, so NCCL and `torch.cuda` calls use it.

    Raises:
        ConfigError: CUDA was asked for and is not available (with the reason), or cuda:N does not exist.
    """
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device={setting} but CUDA is not available: {cuda_unavailable_reason()}; or pass device=cpu"
        )
    device = torch.device(setting if ":" in setting else f"cuda:{local_rank()}")
    if device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device={device} does not exist: {torch.cuda.device_count()} GPU(s) are visible; pass device=auto "
            "(each rank takes cuda:LOCAL_RANK) or a smaller index"
        )
    torch.cuda.set_device(device)
    return device


def _collective_device():
    """Tensors of collectives live where the backend needs them: on this rank's GPU for NCCL, else the CPU."""
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def adopt_slurm_environment() -> None:
    """Under SLURM (e.g. hydra/launcher=slurm) each task is a rank: expose it the way torchrun would."""
    if "RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return
    import submitit

    env = submitit.JobEnvironment()
    os.environ.update(
        RANK=str(env.global_rank),
        LOCAL_RANK=str(env.local_rank),
        WORLD_SIZE=str(env.num_tasks),
        MASTER_ADDR=env.hostnames[0],
        MASTER_PORT=os.environ.get("MASTER_PORT", str(29500 + int(env.job_id) % 1000)),
    )


def init(backend: str, device: torch.device) -> None:
    """Join the process group for `dist.backend=deepspeed`: NCCL when this rank trains on a GPU, else gloo."""
    if backend != "deepspeed":
        return
    import deepspeed
    import torch.distributed as dist

    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")


def shutdown() -> None:
    """Leave the process group at the end of a run: all ranks meet, then tear down the communicators.

    Without it the communicator threads are still running when the interpreter exits, and a rank can abort with
    "terminate called without an active exception" after its work is done (seen under torchrun with gloo).
    """
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def mean_over_ranks(value: float) -> float:
    """The mean of a per-rank scalar over all ranks (the value itself with one rank)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def from_rank0(obj):
    """Rank 0's value of `obj` on every rank (e.g. the run directory all ranks checkpoint into)."""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def rank0_first():
    """Rank 0 runs the block first; the other ranks wait for it, then run it too (one build of a cold cache)."""
    import torch.distributed as dist

    many = dist.is_initialized() and dist.get_world_size() > 1
    first = not many or dist.get_rank() == 0
    if not first:
        dist.barrier()
    try:
        yield
    finally:  # a failure on rank 0 still releases the others, which then fail with their own message
        if many and first:
            dist.barrier()


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


def full_numel(p: torch.Tensor) -> int:
    """A parameter's full size, also when ZeRO-3 holds only a shard of it on this rank (`ds_numel`)."""
    return getattr(p, "ds_numel", p.numel())


def held_numel(p: torch.Tensor) -> int:
    """The elements of a parameter this rank holds: all of them, or its ZeRO-3 shard (`ds_tensor`)."""
    return getattr(p, "ds_tensor", p).numel()


def held_parameters(module: torch.nn.Module) -> str:
    """`"<held> of <total> parameters on this rank"`: all of them, or a ZeRO-3 shard."""
    params = list(module.parameters())
    return f"{sum(held_numel(p) for p in params)} of {sum(full_numel(p) for p in params)} parameters on this rank"
