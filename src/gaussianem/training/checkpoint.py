"""Checkpoints of a training run (``weights.E.pt``, E 1-based) written atomically, and :func:`load_model`.

A checkpoint holds the model spec and weights, the optimiser and scheduler, the sampler position, the latent
memory bank and every RNG state, so ``--resume`` continues exactly.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import numpy as np
import torch

from gaussianem.errors import InputError
from gaussianem.io.writes import atomic_path
from gaussianem.model.vae import GaussianVAE, ModelSpec
from gaussianem.training.config import read_config

log = logging.getLogger(__name__)

_WEIGHTS = re.compile(r"^weights\.(\d+)\.pt$")


def weights_path(rundir: str | Path, epoch: int) -> Path:
    return Path(rundir) / f"weights.{epoch}.pt"


def list_checkpoints(rundir: str | Path) -> list[int]:
    """Epochs (sorted) that have a complete checkpoint in ``rundir``."""
    root = Path(rundir)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _WEIGHTS.match(p.name)
        if m:
            out.append(int(m.group(1)))
    return sorted(out)


def rng_state(generator: torch.Generator | None = None) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write a checkpoint atomically (it appears complete under its final name or not at all)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


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
