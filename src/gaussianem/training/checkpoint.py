"""Checkpoints of a training run (``weights.E.pt``, E 1-based) written atomically, and the RNG states they hold.

A checkpoint holds the model spec and weights, the optimiser and scheduler, the sampler position, the latent
memory bank and every RNG state, so ``--resume`` continues exactly. It holds tensors, plain containers, numbers and
strings only (RNG states as tensors), so it loads with ``torch.load(weights_only=True)``
(:mod:`gaussianem.io.checkpoints`). Reading them back: :mod:`gaussianem.model.load`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from gaussianem.io.checkpoints import capture_rng, restore_rng, save_state


def rng_state(generator: torch.Generator | None = None) -> dict:
    """Every RNG state, as tensors and numbers."""
    return capture_rng(generator)


def set_rng_state(state: dict, generator: torch.Generator | None = None) -> None:
    restore_rng(state, generator)


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write a checkpoint atomically (it appears complete under its final name or not at all); tensors, plain
    containers, numbers and strings only."""
    save_state(path, state)
