"""Built-in simulation presets and the procedural ``toy`` structure.

- ``toy``: no external data. ~330 pseudo-atoms (one per residue, weight 50 ≈ the electrons of a residue's heavy
  atoms) in three parts: a large domain (chain A), a second domain (chain B) that hinges 0–45° about an axis
  through the junction, and a small subunit (chain C) present in half of the particles. Continuous
  ``coordinate`` (hinge angle / 45°) and discrete ``state`` (0 = with subunit, 1 = without).
- ``adk``: adenylate kinase closed → open (MDAnalysisTests ``adk.psf`` + ``adk_dims.dcd``, 98 frames, heavy
  atoms), frames superimposed on the CORE domain; coordinate = frame / 97, frames drawn uniformly.
- ``tcr-compositional``: TCR–pMHC (MDAnalysisTests ``mmcif/1BD2.cif.gz``; A = HLA-A2 heavy chain, B = β2m,
  C = peptide, D = TCR α, E = TCR β), four equally likely states: full complex, without TCR β, without the TCR,
  without the TCR and β2m.
- ``tcr-mixed``: the same complex with or without the TCR (1:1) and, in both, a continuous rigid-body hinge of
  the MHC α3 domain with β2m (A 182–276 + B) against the peptide-binding platform, 0–30°.
"""

from __future__ import annotations

import copy

import numpy as np

from gaussianem.errors import InputError
from gaussianem.simulate.structures import AtomSet

ADK_CORE = "name CA and (resid 1-29 or resid 60-121 or resid 160-214)"

_PRESETS: dict[str, dict] = {
    "toy": {
        "name": "toy",
        "source": {"kind": "toy"},
        "states": [
            {"name": "with-subunit", "remove_chains": [], "probability": 0.5},
            {"name": "without-subunit", "remove_chains": ["C"], "probability": 0.5},
        ],
        "hinge": {"parts": [{"chains": ["B"]}], "angle_deg": [0.0, 45.0], "axis": [0.0, 0.0, 1.0],
                  "pivot": [3.0, 0.0, 0.0]},
        "n_particles": 5000, "box": 64, "apix": 2.0, "snr": 0.1, "volume_bins": 10,
    },
    "adk": {
        "name": "adk",
        "source": {"kind": "trajectory", "topology": "MDAnalysisTests:PSF", "trajectory": "MDAnalysisTests:DCD",
                   "selection": "protein", "align": ADK_CORE},
        "n_particles": 20000, "box": 64, "apix": 2.0, "snr": 0.1, "volume_bins": 20,
    },
    "tcr-compositional": {
        "name": "tcr-compositional",
        "source": {"kind": "structure", "path": "MDAnalysisTests:mmcif/1BD2.cif.gz"},
        "states": [
            {"name": "full", "remove_chains": [], "probability": 0.25},
            {"name": "no-tcr-beta", "remove_chains": ["E"], "probability": 0.25},
            {"name": "pmhc", "remove_chains": ["D", "E"], "probability": 0.25},
            {"name": "heavy-chain-peptide", "remove_chains": ["B", "D", "E"], "probability": 0.25},
        ],
        "n_particles": 20000, "box": 64, "apix": 3.0, "snr": 0.1,
    },
    "tcr-mixed": {
        "name": "tcr-mixed",
        "source": {"kind": "structure", "path": "MDAnalysisTests:mmcif/1BD2.cif.gz"},
        "states": [
            {"name": "full", "remove_chains": [], "probability": 0.5},
            {"name": "pmhc", "remove_chains": ["D", "E"], "probability": 0.5},
        ],
        "hinge": {"parts": [{"chains": ["A"], "residues": [[182, 276]]}, {"chains": ["B"]}],
                  "angle_deg": [0.0, 30.0]},
        "n_particles": 20000, "box": 64, "apix": 3.0, "snr": 0.1, "volume_bins": 10,
    },
}

PRESETS = tuple(_PRESETS)

DATA_PREFIX = "MDAnalysisTests:"  # a source value with this prefix names a file shipped with MDAnalysisTests


def preset_dict(name: str) -> dict:
    """A deep copy of the preset's spec mapping (keys of :class:`SimulationSpec`)."""
    if name not in _PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return copy.deepcopy(_PRESETS[name])


def resolve_data_path(value: str) -> str:
    """``MDAnalysisTests:NAME`` -> the file shipped with MDAnalysisTests (a ``datafiles`` attribute such as
    ``PSF``, or a path under its ``data`` folder); any other value is returned unchanged."""
    if not str(value).startswith(DATA_PREFIX):
        return str(value)
    key = str(value).split(":", 1)[1]
    try:
        import MDAnalysisTests.datafiles as datafiles
    except ImportError as exc:
        raise InputError(
            "this preset needs the MDAnalysisTests data: pip install 'gaussianem[bench]'"
        ) from exc
    if hasattr(datafiles, key):
        return str(getattr(datafiles, key))
    from pathlib import Path

    path = Path(datafiles.__file__).parent / "data" / key
    if not path.is_file():
        raise InputError(f"MDAnalysisTests has no data file {key!r}")
    return str(path)


def toy_atoms() -> AtomSet:
    """The procedural toy structure (deterministic): chains A (domain 1), B (hinging domain), C (subunit)."""
    rng = np.random.default_rng(20240601)
    spacing = 3.8  # Å, one pseudo-atom per residue

    def blob(centre, radii):
        r = np.asarray(radii, dtype=np.float64)
        axes = [np.arange(-ri, ri + 1e-9, spacing) for ri in r]
        g = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        g = g[((g / r) ** 2).sum(1) <= 1.0]
        g = g + rng.normal(scale=0.6, size=g.shape)
        return g + np.asarray(centre, dtype=np.float64)

    parts = [
        ("A", blob((-16.0, 0.0, 0.0), (17.0, 13.0, 12.0))),
        ("B", blob((19.0, -4.0, 0.0), (15.0, 8.0, 10.0))),
        ("C", blob((-14.0, 19.0, 0.0), (8.0, 7.0, 7.0))),
    ]
    pos = np.concatenate([p for _, p in parts])
    chains = np.concatenate([np.full(len(p), c) for c, p in parts])
    residues = np.concatenate([np.arange(1, len(p) + 1) for _, p in parts])
    weights = np.full(len(pos), 50.0)
    return AtomSet(pos, weights, chains, residues.astype(np.int64))
