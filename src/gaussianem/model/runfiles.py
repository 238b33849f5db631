"""The names of a run folder's files and its ``config.yaml`` reader (no torch import: the command line reads the
training configuration without loading torch)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gaussianem.errors import InputError

CONFIG = "config.yaml"

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


def read_config(rundir: str | Path) -> dict:
    path = Path(rundir) / CONFIG
    if not path.is_file():
        raise InputError(f"{rundir} is not a GaussianEM run folder (no {CONFIG})")
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable YAML file ({' '.join(str(exc).split())})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: not a GaussianEM run configuration (holds a {type(config).__name__})")
    return config
