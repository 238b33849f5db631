"""The options of one ``analyze`` run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class AnalysisOptions:
    ksample: int = 20
    n_pcs: int = 3
    n_points: int = 10
    box: int | None = None
    apix: float | None = None
    atomic_model: Path | None = None
    flex_sample: int = 1000
    umap: bool = True
    seed: int = 0
    batch_size: int = 32
    device: str = "cpu"
    min_occupancy: float = 0.1
    command_line: str = ""
    extra: dict = field(default_factory=dict)

