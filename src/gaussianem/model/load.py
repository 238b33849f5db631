"""Loading a trained model: a run folder (its last or a given epoch) or a ``weights.E.pt`` -> a GaussianVAE.

Used by training (resume, ``--load``), analysis and the benchmarks; writing checkpoints belongs to
:mod:`gaussianem.training.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gaussianem.errors import InputError
from gaussianem.model.runfiles import list_checkpoints, read_config, weights_path
from gaussianem.model.spec import ModelSpec
from gaussianem.model.vae import GaussianVAE


def read_checkpoint(path: str | Path, device="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=device, weights_only=False)


def model_from_checkpoint(ckpt: dict, device="cpu") -> GaussianVAE:
    model = GaussianVAE.from_spec(ModelSpec(**ckpt["spec"]))
    model.load_state_dict(ckpt["model"])
    return model.to(device)


def resolve_weights(path: str | Path, epoch: int | None = None) -> Path:
    """A run folder (its last or given epoch) or a weights file -> the weights file."""
    p = Path(path)
    if p.is_file():
        return p
    epochs = list_checkpoints(p)
    if not epochs:
        raise InputError(f"{p}: no checkpoint (weights.E.pt) found")
    e = epochs[-1] if epoch is None else epoch
    if e not in epochs:
        raise InputError(f"{p}: no checkpoint for epoch {e} (have {', '.join(map(str, epochs))})")
    return weights_path(p, e)


def load_model(rundir: str | Path, epoch: int | None = None, device="cpu") -> tuple[GaussianVAE, dict, int]:
    """Load a trained model -> (model in eval mode, config dict from config.yaml, epoch).

    ``epoch`` None = the last complete checkpoint.
    """
    path = resolve_weights(rundir, epoch)
    ckpt = read_checkpoint(path, device="cpu")
    model = model_from_checkpoint(ckpt, device)
    model.eval()
    config = read_config(rundir) if Path(rundir).is_dir() else dict(ckpt.get("config", {}))
    return model, config, int(ckpt["epoch"])
