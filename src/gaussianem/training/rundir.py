"""The run folder of ``gaussianem train``: checks before a run, the base cloud it starts from, its log records.

A run folder holds ``config.yaml``, ``weights.E.pt``, ``z.E.npy`` (and ``z.E.pkl``, cryoDRGN's format),
``z_logvar.E.npy``, ``log.jsonl`` (one JSON record a line), ``loss.png``, the base cloud ``gaussians_base.ply`` and
the commands' text log ``gaussianem.log``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from gaussianem.errors import InputError
from gaussianem.io.writes import atomic_path
from gaussianem.model.runfiles import CONFIG, list_checkpoints, read_config
from gaussianem.training.config import FIXED_ON_RESUME, RUNTIME_FIELDS, TrainConfig

log = logging.getLogger(__name__)

LOG = "log.jsonl"
BASE_PLY = "gaussians_base.ply"


def resolve_base_cloud(cfg: TrainConfig) -> Path:
    """--gaussians PLY, else DATASET/gaussians.ply (after ``fit``), else DATASET/gaussians_init.ply."""
    if cfg.gaussians:
        p = Path(cfg.gaussians)
        if not p.is_file():
            raise InputError(f"--gaussians: file not found: {p}")
        return p
    root = Path(cfg.dataset)
    for name in ("gaussians.ply", "gaussians_init.ply"):
        if (root / name).is_file():
            return root / name
    raise InputError(f"{root}: no gaussians.ply or gaussians_init.ply; run 'gaussianem fit' or give --gaussians")


def _run_outputs(rundir: Path) -> list[Path]:
    pats = ["weights.*.pt", "z.*.npy", "z.*.pkl", "z_logvar.*.npy", LOG, "loss.png", CONFIG, BASE_PLY]
    return [p for pat in pats for p in rundir.glob(pat)]


def resumed_config(saved: TrainConfig, given: TrainConfig, typed: frozenset[str] | None,
                   say: bool = True) -> TrainConfig:
    """The settings of a resumed run: the saved ones, except those ``typed`` on the command line (None: the
    runtime fields, for a config made in Python). A typed change of the model's shape or of the particles is an
    InputError. With ``say``, one log line lists the settings changed and the saved ones kept."""
    names = RUNTIME_FIELDS if typed is None else tuple(n for n in typed if hasattr(saved, n))
    changed = {n: getattr(given, n) for n in names if getattr(given, n) != getattr(saved, n)}
    fixed = sorted(n for n in changed if n in FIXED_ON_RESUME and n not in ("dataset", "rundir"))
    if fixed:
        n = fixed[0]
        raise InputError(f"--resume: --{n.replace('_', '-')} {getattr(given, n)} differs from the run's "
                         f"{getattr(saved, n)}; a resumed run keeps its model and particles (start a new run to "
                         "change them)")
    changed = {n: v for n, v in changed.items() if n not in ("dataset", "rundir")}
    if say:
        defaults = TrainConfig(dataset=saved.dataset, rundir=saved.rundir)
        kept = [f"{n}={getattr(saved, n)}" for n in ("epochs", "batch_size", "lr", "zdim", "seed", "device")
                if n not in changed]
        kept += [f"{n}={v}" for n, v in saved.to_dict().items()
                 if n not in changed and n not in TrainConfig.RECORDED and f"{n}={v}" not in kept
                 and v != defaults.to_dict().get(n)]
        told = ", ".join(f"{n} {getattr(saved, n)} -> {v}" for n, v in sorted(changed.items())) or "none"
        log.info("--resume: the run's saved settings (%s) are kept unless given again; changed: %s; kept: %s",
                 CONFIG, told, ", ".join(kept))
    return saved.replace(**changed, command_line=given.command_line)


def prepare_rundir(cfg: TrainConfig, resume: bool, overwrite: bool,
                   typed: frozenset[str] | None = None) -> TrainConfig:
    """Check the run folder; returns the config to use (on --resume: :func:`resumed_config`)."""
    root = Path(cfg.rundir)
    epochs = list_checkpoints(root)
    has_config = (root / CONFIG).is_file()
    if resume:
        if not has_config:
            raise InputError(f"--resume: {root} holds no run to resume (no {CONFIG})")
        return resumed_config(TrainConfig.from_dict(read_config(root)), cfg, typed)
    if epochs or has_config:
        if not overwrite:
            saved = read_config(root) if has_config else {}
            total = saved.get("epochs")
            if epochs and total is not None and epochs[-1] >= int(total):
                what = f"a finished run ({epochs[-1]} epochs)"
            elif epochs:
                what = f"an interrupted run (last complete epoch {epochs[-1]})"
            else:
                what = "a run that has no complete epoch yet"
            raise InputError(f"{root} holds {what}; use --resume to continue it or --overwrite to replace it")
        for p in _run_outputs(root):
            p.unlink()
        log.info("--overwrite: removed the previous run's outputs in %s", root)
    return cfg


def trim_log(path: Path, last_epoch: int) -> None:
    """On resume: keep only the log records of complete epochs (<= last_epoch)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if rec.get("epoch", 0) <= last_epoch:
            keep.append(line)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(k + "\n" for k in keep))


def log_record(log_file, record: dict) -> None:
    """One JSON line in the run's log.jsonl (nothing on ranks that do not write it)."""
    if log_file is not None:
        log_file.write(json.dumps(record) + "\n")
