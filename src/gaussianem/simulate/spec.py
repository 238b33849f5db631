"""The simulation spec: what to simulate (source, states, motion) and how (particles, optics, noise).

A spec is a YAML mapping (or a preset, see :mod:`gaussianem.simulate.presets`); every key is optional except the
source. Example::

    source: {kind: structure, path: 1bd2.cif}          # or {kind: trajectory, topology:, trajectory:,
                                                         #     selection:, align:}  or {kind: toy}
    states:                                              # compositional states (default: one, nothing removed)
      - {name: full, remove_chains: [], probability: 0.5}
      - {name: no-tcr, remove_chains: [D, E], probability: 0.5}
    hinge:                                               # optional continuous rigid-body rotation of a part
      parts:                                             # union of selections that move together
        - {chains: [A], residues: [[182, 276]]}          # inclusive residue ranges
        - {chains: [B]}
      angle_deg: [0, 30]
      axis: null                                         # direction (x, y, z); null = automatic
    coordinate_beta: [1, 1]                              # distribution of the hinge coordinate in [0, 1]
    frame_weights: null                                  # trajectory: weights over frames (null = uniform)
    n_particles: 5000
    box: 64
    apix: 2.0
    snr: 0.1                                             # null or .inf = noise-free
    ...

Relative paths in a YAML spec are resolved against the YAML file's folder; ``MDAnalysisTests:NAME`` values (as in
the presets, e.g. ``MDAnalysisTests:PSF`` or ``MDAnalysisTests:mmcif/1BD2.cif.gz``) name files shipped with the
MDAnalysisTests package and are resolved through it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from gaussianem.errors import InputError
from gaussianem.io.files import existing_file


@dataclass
class SimulationSpec:
    """Everything that defines a simulated dataset (written to ``simulation.json``)."""

    name: str = "custom"
    source: dict = field(default_factory=lambda: {"kind": "toy"})
    states: list[dict] = field(default_factory=lambda: [{"name": "full", "remove_chains": [], "probability": 1.0}])
    hinge: dict | None = None
    coordinate_beta: tuple[float, float] = (1.0, 1.0)
    frame_weights: list[float] | None = None
    n_particles: int = 5000
    box: int = 64
    apix: float = 2.0
    snr: float | None = 0.1
    seed: int = 0
    resolution_angstrom: float | None = None
    min_sigma_px: float = 1.0
    consensus_resolution_angstrom: float = 8.0
    shift_std_px: float = 2.0
    defocus_um: tuple[float, float] = (1.0, 3.0)
    astigmatism_angstrom: float = 400.0
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.1
    phase_shift_deg: float = 0.0
    contrast: str = "white"
    volume_bins: int = 20
    chunk_size: int = 256
    hydrogens: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> SimulationSpec:
        """Check values; raise :class:`InputError` with a one-line message on bad ones. Returns self."""
        if self.n_particles < 1:
            raise InputError(f"n_particles must be >= 1, got {self.n_particles}")
        if self.box < 8 or self.box % 2:
            raise InputError(f"box must be an even number >= 8, got {self.box}")
        if not self.apix > 0:
            raise InputError(f"apix must be > 0, got {self.apix}")
        if self.snr is not None and not (self.snr > 0):
            raise InputError(f"snr must be > 0 (or inf/none for noise-free), got {self.snr}")
        if self.contrast not in ("white", "dark"):
            raise InputError(f"contrast must be 'white' or 'dark', got {self.contrast!r}")
        if not self.states:
            raise InputError("states must list at least one state")
        probs = [float(s.get("probability", 1.0)) for s in self.states]
        if min(probs) < 0 or sum(probs) <= 0:
            raise InputError(f"state probabilities must be >= 0 with a positive sum, got {probs}")
        lo, hi = self.defocus_um
        if not 0 < lo <= hi:
            raise InputError(f"defocus_um must be [lo, hi] with 0 < lo <= hi, got {self.defocus_um}")
        if self.volume_bins < 1 or self.chunk_size < 1:
            raise InputError("volume_bins and chunk_size must be >= 1")
        if self.source.get("kind") not in ("toy", "structure", "trajectory"):
            raise InputError(f"source.kind must be toy, structure or trajectory, got {self.source.get('kind')!r}")
        if self.hinge is not None and self.source.get("kind") == "trajectory":
            raise InputError("a hinge and a trajectory cannot be combined: choose one continuous motion")
        a, b = self.coordinate_beta
        if not (a > 0 and b > 0):
            raise InputError(f"coordinate_beta must hold two positive numbers, got {self.coordinate_beta}")
        return self


_FIELDS = {f.name for f in dataclasses.fields(SimulationSpec)}

SOURCE_PATH_KEYS = ("path", "topology", "trajectory")


def resolve_source_path(value: str | Path, base_dir: Path) -> str:
    """A source file named in a YAML spec -> the string the spec keeps.

    ``MDAnalysisTests:NAME`` is a reference to a packaged data file, not a path: it is kept as it is and
    resolved when the structure is read (:func:`gaussianem.simulate.presets.resolve_data_path`), exactly as for
    the built-in presets. ``~`` is expanded; any other relative path is taken relative to ``base_dir`` (the
    YAML file's folder) and made absolute; an absolute path is kept.
    """
    from gaussianem.simulate.presets import DATA_PREFIX

    text = str(value)
    if text.startswith(DATA_PREFIX):
        return text
    path = Path(text).expanduser()
    if path.is_absolute():
        return str(path)
    return str((base_dir / path).resolve())


def spec_from_dict(data: dict, base_dir: Path | None = None) -> SimulationSpec:
    """Build a spec from a mapping; unknown keys are an error. Relative source paths resolve against base_dir."""
    unknown = sorted(set(data) - _FIELDS - {"preset"})
    if unknown:
        raise InputError(f"unknown spec keys {unknown}; known: {sorted(_FIELDS)}")
    data = dict(data)
    data.pop("preset", None)
    if "source" in data and base_dir is not None:
        src = dict(data["source"])
        for key in SOURCE_PATH_KEYS:
            if key in src:
                src[key] = resolve_source_path(src[key], base_dir)
        data["source"] = src
    if data.get("snr") is not None and math.isinf(float(data["snr"])):
        data["snr"] = None
    for key in ("coordinate_beta", "defocus_um"):
        if key in data:
            data[key] = tuple(float(v) for v in data[key])
    try:
        return SimulationSpec(**data)
    except TypeError as exc:
        raise InputError(f"bad simulation spec: {exc}") from exc


def load_spec(path: str | Path) -> SimulationSpec:
    """Read a YAML spec. A ``preset: NAME`` key starts from that preset and overrides its keys."""
    import yaml

    from gaussianem.simulate.presets import preset_dict

    path = existing_file(path, "spec file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: a spec must be a YAML mapping")
    if "preset" in data:
        merged = preset_dict(str(data["preset"]))
        merged.update({k: v for k, v in data.items() if k != "preset"})
        data = merged
    return spec_from_dict(data, base_dir=path.parent)
