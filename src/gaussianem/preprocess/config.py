"""The arguments of ``gaussianem preprocess`` as one frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PreprocessConfig:
    """Arguments of ``gaussianem preprocess`` (see the command's help)."""

    particles: Path
    outdir: Path
    map_path: Path
    threshold: float | None = None
    gaussian_interval: int | None = None  # None (and no max_gaussians): the budget of preprocess/cloud_size.py
    max_gaussians: int | None = None
    box: int | None = None
    apix: float | None = None
    poses: Path | None = None
    ctf: Path | None = None
    datadir: Path | None = None
    passthrough: list[Path] | None = None  # cryoSPARC: other .cs files joined to the particles by uid
    invert: bool | None = None  # None: decided from the data
    chunk: int | None = None
    drop_bad: bool = False
    overwrite: bool = False
    input_apix: float | None = None  # pixel size of a bare .mrcs/.txt stack without CTF and header pixel size
    n_check: int = 1000
    seed: int = 0
    device: str = "cpu"
    ind: Path | None = None  # keep only these input rows (a cryoDRGN index .pkl, .npy or .txt)
    command_line: str = ""
