"""Loading a trained model: a run folder (its last or a given epoch) or a ``weights.E.pt`` -> a GaussianVAE.

Used by training (resume, ``--load``), analysis and the benchmarks; writing checkpoints belongs to
:mod:`gaussianem.training.checkpoint`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from gaussianem.errors import InputError
from gaussianem.io.checkpoints import load_state
from gaussianem.model.runfiles import list_checkpoints, read_config, weights_path
from gaussianem.model.spec import ModelSpec
from gaussianem.model.vae import GaussianVAE

log = logging.getLogger(__name__)


def read_checkpoint(path: str | Path, device="cpu") -> dict:
    """Read a checkpoint without running code from it (``torch.load(weights_only=True)``); one InputError line for
    a missing, truncated, foreign or hostile file."""
    state = load_state(path, map_location=device)
    missing = [k for k in ("epoch", "spec", "model") if k not in state]
    if missing:
        raise InputError(f"{path}: not a GaussianEM training checkpoint (no {', '.join(missing)})")
    return state


def newest_loadable_checkpoint(rundir: str | Path, device="cpu") -> dict | None:
    """The newest checkpoint of ``rundir`` that loads (None when there is none at all); every newer one that does
    not load (truncated by a crash, damaged, hostile) is named in a warning and skipped."""
    root = Path(rundir)
    skipped = []
    for epoch in reversed(list_checkpoints(root)):
        path = weights_path(root, epoch)
        try:
            ckpt = read_checkpoint(path, device)
        except InputError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            log.warning("--resume: skipped %s, which does not load (%s)", path.name, reason)
            skipped.append(f"{path.name}: {reason}")
            continue
        if skipped:
            log.warning("--resume: continuing from %s; skipped %s", path.name,
                        ", ".join(s.split(":")[0] for s in skipped))
        return ckpt
    if skipped:
        raise InputError(f"{root}: no checkpoint loads ({'; '.join(skipped)})")
    return None


def model_from_checkpoint(ckpt: dict, device="cpu", path: str | Path = "checkpoint") -> GaussianVAE:
    try:
        model = GaussianVAE.from_spec(ModelSpec.from_dict(ckpt["spec"]))
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, KeyError, RuntimeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: the weights do not make a GaussianEM model ({first})") from None
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
    model = model_from_checkpoint(ckpt, device, path)
    model.eval()
    config = read_config(rundir) if Path(rundir).is_dir() else dict(ckpt.get("config", {}))
    return model, config, int(ckpt["epoch"])
