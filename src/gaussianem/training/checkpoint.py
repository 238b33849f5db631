"""Checkpoints of a training run (``weights.E.pt``, E 1-based) written atomically, and the RNG states they hold.

A checkpoint holds the model spec and weights, the optimiser and scheduler, the sampler position, the latent
memory bank and every RNG state, so ``--resume`` continues exactly. Reading them back:
:mod:`gaussianem.model.load`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from gaussianem.io.writes import atomic_path


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
