"""Run a simulation: structure ensemble -> ground-truth volumes, consensus map, particles, star, truth.

Output folder (a contract, docs/CONTRACTS.md "Simulator output")::

    particles.star     RELION 3.1 (data_optics + data_particles), rlnImageName ``i@particles.mrcs`` (1-based)
    particles.mrcs     (N, D, D) float32 images, white (or dark with contrast: dark)
    truth.npz          state (N,) int, coordinate (N,) float, volume_index (N,) int, rotation (N, 3, 3),
                       shift_angstrom (N, 2), plus the CTF parameters (N,) each
    volumes/vol_XXX.mrc  ground truth of every volume_index (= state · n_bins + coordinate bin)
    consensus.mrc      particle-weighted mean of the ground-truth volumes, low-passed with a cutoff at the resolution
    simulation.json    the spec, the volume table, noise statistics, FSC-AUC between extreme volumes
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gaussianem import __version__
from gaussianem.io.mrc import write_volume
from gaussianem.io.writes import save_npz_atomic, write_json_atomic
from gaussianem.physics.fourier import lowpass_volume
from gaussianem.physics.fsc import fsc, fsc_auc
from gaussianem.progress import bar_disabled
from gaussianem.simulate.ensemble import Ensemble, build_ensemble
from gaussianem.simulate.particles import ParticleTruth, sample_particles, write_particle_stack
from gaussianem.simulate.spec import SimulationSpec
from gaussianem.simulate.star import write_relion31_star

log = logging.getLogger(__name__)

STAR = "particles.star"
STACK = "particles.mrcs"
TRUTH = "truth.npz"
VOLUMES = "volumes"
CONSENSUS = "consensus.mrc"
SPEC_JSON = "simulation.json"
CONSENSUS_EDGE_SHELLS = 2.0  # raised-cosine edge of the consensus map's resolution cutoff (Fourier shells)


def volume_table(ensemble: Ensemble, truth: ParticleTruth) -> list[dict]:
    """One row per volume_index: state, state name, bin, representative coordinate, particle count, file."""
    counts = np.bincount(truth.volume_index, minlength=ensemble.n_volumes)
    coords = ensemble.bin_coordinates()
    rows = []
    for s in range(ensemble.n_states):
        for b in range(ensemble.n_bins):
            v = s * ensemble.n_bins + b
            row = {"volume_index": v, "state": s, "state_name": ensemble.state_names[s], "bin": b,
                   "coordinate": float(coords[b]), "n_particles": int(counts[v]), "file": f"{VOLUMES}/vol_{v:03d}.mrc"}
            if ensemble.motion == "hinge":
                row["hinge_angle_deg"] = float(ensemble.hinge_angle_deg(coords[b]))
            if ensemble.motion == "trajectory":
                row["frame"] = int(ensemble.frame_of(coords[b : b + 1])[0])
            rows.append(row)
    return rows


def extreme_fsc_auc(volumes: dict[int, torch.Tensor], labels: dict[int, str], box: int) -> dict:
    """FSC-AUC matrix between the given volumes (the extremes of each state / motion)."""
    keys = sorted(volumes)
    mat = np.zeros((len(keys), len(keys)))
    for i, a in enumerate(keys):
        for j, b in enumerate(keys):
            if j >= i:
                mat[i, j] = mat[j, i] = fsc_auc(fsc(volumes[a], volumes[b]), box)
    off = mat[~np.eye(len(keys), dtype=bool)]
    return {"labels": [labels[k] for k in keys], "volume_index": keys, "matrix": mat.round(4).tolist(),
            "self": float(np.diag(mat).min()), "min_between": float(off.min()) if off.size else None}


def simulate(spec: SimulationSpec, outdir: str | Path, device: torch.device | str | None = None) -> dict:
    """Simulate a dataset into ``outdir``; returns the summary that is also written to ``simulation.json``."""
    spec.validate()
    t0 = time.perf_counter()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device is not None else torch.device("cpu")
    ensemble = build_ensemble(spec)
    truth = sample_particles(ensemble, spec)
    table = volume_table(ensemble, truth)

    # ground-truth volumes and the particle-weighted consensus
    coords = ensemble.bin_coordinates()
    consensus = torch.zeros((spec.box,) * 3, dtype=torch.float64, device=device)
    extremes: dict[int, torch.Tensor] = {}
    labels: dict[int, str] = {}
    ends = {0, ensemble.n_bins - 1}
    for row in tqdm(table, desc="ground-truth volumes", unit="vol", leave=False, disable=bar_disabled()):
        vol = ensemble.volume(row["state"], coords[row["bin"]], spec.box, spec.apix, device)
        write_volume(out / row["file"], vol.cpu().numpy(), spec.apix)
        consensus += vol.to(torch.float64) * (row["n_particles"] / truth.n)
        if row["bin"] in ends:
            extremes[row["volume_index"]] = vol.cpu()
            labels[row["volume_index"]] = f"{row['state_name']}@{row['coordinate']:.2f}"
    expected = {Path(row["file"]).name for row in table}
    for stale in (out / VOLUMES).glob("vol_*.mrc"):  # left by an earlier run into the same folder
        if stale.name not in expected:
            stale.unlink()
    # a real consensus map at resolution d holds nothing finer than d: a Gaussian filter alone would keep every
    # phase to Nyquist (FSC 1 against the mean), an unbeatable and unrealistic baseline
    consensus = lowpass_volume(consensus, spec.consensus_resolution_angstrom, spec.apix,
                               cutoff_edge_shells=CONSENSUS_EDGE_SHELLS)
    write_volume(out / CONSENSUS, consensus.cpu().numpy(), spec.apix)
    auc = extreme_fsc_auc(extremes, labels, spec.box)
    log.info("FSC-AUC of a volume with itself %.3f; smallest between extreme volumes %s", auc["self"],
             "n/a" if auc["min_between"] is None else f"{auc['min_between']:.3f}")

    noise = write_particle_stack(out / STACK, ensemble, truth, spec, device)
    write_relion31_star(out / STAR, STACK, truth.rotation, truth.shift_angstrom, truth.ctf, spec.box, spec.apix)
    save_npz_atomic(
        out / TRUTH, state=truth.state, coordinate=truth.coordinate, volume_index=truth.volume_index,
        rotation=truth.rotation, shift_angstrom=truth.shift_angstrom, **truth.ctf,
    )
    summary = {
        "gaussianem_version": __version__,
        "spec": spec.to_dict(),
        "preset": spec.name,
        "n_particles": truth.n, "box": spec.box, "apix": spec.apix, "snr": spec.snr, "contrast": spec.contrast,
        "n_atoms": ensemble.n_atoms, "atom_sigma_angstrom": ensemble.sigma,
        "motion": ensemble.motion, "n_states": ensemble.n_states, "state_names": ensemble.state_names,
        "n_bins": ensemble.n_bins, "has_coordinate": ensemble.motion != "none",
        "volumes": table, "noise": noise, "fsc_auc_extremes": auc,
        "files": {"star": STAR, "stack": STACK, "truth": TRUTH, "volumes": VOLUMES, "consensus": CONSENSUS},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if ensemble.motion == "hinge":
        summary["hinge"] = {"pivot_angstrom": ensemble.hinge_pivot, "axis": ensemble.hinge_axis,
                            "angle_deg": list(ensemble.hinge_angles_deg),
                            "n_moving_atoms": int(ensemble.hinge_moving.sum())}
    write_json_atomic(out / SPEC_JSON, summary)
    return summary
