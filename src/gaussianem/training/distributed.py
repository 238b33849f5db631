"""Data-parallel training with ``torch.distributed`` (DDP): process-group setup from ``torchrun``'s environment,
the ``--gpus G`` launcher, and a batch norm whose statistics span all ranks on every backend.

Under ``torchrun`` every process runs the same ``gaussianem train`` command; ``--batch-size`` is per process, so
G processes train with a global batch of G × batch. Rank 0 writes checkpoints, logs and latents.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings

import torch
import torch.distributed as dist
from torch import Tensor, nn

log = logging.getLogger(__name__)


def world_from_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) outside torchrun."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init_process_group(device: str | None) -> tuple[int, int]:
    """Join the process group torchrun set up (NCCL on CUDA, gloo on CPU) -> (rank, world_size)."""
    rank, world, local = world_from_env()
    if world <= 1:
        return 0, 1
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    log.info("rank %d of %d (%s)", rank, world, f"cuda:{local}" if use_cuda else "cpu")
    return rank, world


def launch(n_processes: int, argv: list[str]) -> int:
    """Re-run this command under ``torchrun --standalone --nproc_per_node n`` (the ``--gpus`` option)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_processes}",
           "-m", "gaussianem", *argv]
    log.info("launching: %s", " ".join(cmd))
    env = dict(os.environ)
    env.setdefault("NCCL_NVLS_ENABLE", "0")
    return subprocess.call(cmd, env=env)


class DistributedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are those of the global batch (all ranks), by differentiable
    all-reduces of the per-feature count, sum and sum of squares; works on gloo (CPU), where SyncBatchNorm does
    not. Outside training or without a process group it is a plain BatchNorm1d (same state dict)."""

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        xf = x.float()
        with warnings.catch_warnings():  # deprecated in favour of a private module; it still differentiates
            warnings.simplefilter("ignore", FutureWarning)
            count = all_reduce(torch.full((1,), float(x.shape[0]), device=x.device))
            total = all_reduce(xf.sum(0))
            total_sq = all_reduce((xf * xf).sum(0))
        mean = total / count
        var = (total_sq / count - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                n = float(count)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / max(n - 1, 1), alpha=m)
                self.num_batches_tracked.add_(1)
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y.to(x.dtype)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm1d by a global-batch one: SyncBatchNorm on CUDA, :class:`DistributedBatchNorm1d`
    elsewhere. Weights and running statistics are kept; state-dict keys do not change."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            new = DistributedBatchNorm1d(child.num_features, child.eps, child.momentum, child.affine,
                                         child.track_running_stats).to(next(child.buffers()).device)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            convert_batchnorm(child, device)
    return module
