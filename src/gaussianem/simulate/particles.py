"""Particle images: poses, shifts, CTF, CTF-filtered analytic projections, white noise at a chosen SNR.

The clean image of a particle is the forward model of docs/DESIGN.md: ``project_gaussians`` of the atom Gaussians
(rotation A, origin = shift in Å; computed by its windowed fast path, equal to float precision) filtered by
the CTF (:func:`gaussianem.physics.forward.render_images`; positive at low frequency: white particles). Noise
is white and Gaussian with one variance for the whole dataset, ``σ_n² = mean_i var(clean_i) / SNR`` where
``var(clean_i)`` is the variance of particle i's clean image over the box. The stack is written in two streamed
passes over a memory-mapped file (clean images and their variances, then noise and contrast in place), so
memory stays bounded by one chunk.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from gaussianem.io.mrc import ImageStats, new_stack, set_stack_stats
from gaussianem.io.writes import atomic_path
from gaussianem.physics.ctf import CTFParams
from gaussianem.physics.forward import render_images
from gaussianem.physics.rotation import random_rotations
from gaussianem.progress import bar_disabled
from gaussianem.simulate.ensemble import Ensemble
from gaussianem.simulate.render import project_gaussians_windowed
from gaussianem.simulate.spec import SimulationSpec

log = logging.getLogger(__name__)

@dataclass
class ParticleTruth:
    """Per-particle ground truth and acquisition parameters, all (N, ...) numpy arrays."""

    state: np.ndarray  # (N,) int
    coordinate: np.ndarray  # (N,) float in [0, 1]
    volume_index: np.ndarray  # (N,) int
    rotation: np.ndarray  # (N, 3, 3) RELION matrices A
    shift_angstrom: np.ndarray  # (N, 2) RELION origins (x, y) in Å
    ctf: dict[str, np.ndarray]  # the ctf.npz fields (physics.ctf.CTF_FIELDS) -> (N,)

    @property
    def n(self) -> int:
        return int(self.state.shape[0])


def _streams(seed: int) -> dict[str, np.random.SeedSequence]:
    """Independent random streams, so e.g. the noise can change without changing poses."""
    names = ("state", "coordinate", "rotation", "shift", "ctf", "noise")
    return dict(zip(names, np.random.SeedSequence(int(seed)).spawn(len(names)), strict=True))


def sample_ctf(n: int, spec: SimulationSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """CTF parameters (N,) each: mean defocus uniform in ``defocus_um``, astigmatism ΔU−ΔV uniform in
    [0, astigmatism_angstrom], angle uniform in [0, 180) degrees; fixed voltage, Cs, amplitude contrast, phase."""
    lo, hi = spec.defocus_um
    mean = rng.uniform(lo * 1e4, hi * 1e4, size=n)
    astig = rng.uniform(0.0, spec.astigmatism_angstrom, size=n)
    return {
        "defocus_u_angstrom": mean + astig / 2,
        "defocus_v_angstrom": mean - astig / 2,
        "defocus_angle_deg": rng.uniform(0.0, 180.0, size=n),
        "voltage_kv": np.full(n, spec.voltage_kv),
        "cs_mm": np.full(n, spec.cs_mm),
        "amplitude_contrast": np.full(n, spec.amplitude_contrast),
        "phase_shift_deg": np.full(n, spec.phase_shift_deg),
    }


def sample_particles(ensemble: Ensemble, spec: SimulationSpec) -> ParticleTruth:
    """Draw states, coordinates, uniform SO(3) rotations, Gaussian shifts and CTF parameters for every particle."""
    n = spec.n_particles
    streams = _streams(spec.seed)
    state = np.random.default_rng(streams["state"]).choice(
        ensemble.n_states, size=n, p=ensemble.state_probabilities).astype(np.int64)
    coordinate = ensemble.sample_coordinates(n, np.random.default_rng(streams["coordinate"])).astype(np.float64)
    volume_index = state * ensemble.n_bins + ensemble.bin_of(coordinate)
    gen = torch.Generator().manual_seed(int(streams["rotation"].generate_state(1)[0]))
    rotation = random_rotations(n, generator=gen, dtype=torch.float64).numpy()
    shift = np.random.default_rng(streams["shift"]).normal(scale=spec.shift_std_px * spec.apix, size=(n, 2))
    ctf = sample_ctf(n, spec, np.random.default_rng(streams["ctf"]))
    return ParticleTruth(state, coordinate, volume_index.astype(np.int64), rotation, shift, ctf)


def render_clean(
    ensemble: Ensemble, truth: ParticleTruth, index: np.ndarray, box: int, apix: float, device=None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Noise-free CTF-filtered projections (B, D, D) ``[b, y, x]`` of the particles ``index`` (B,)."""
    pos = ensemble.positions(truth.coordinate[index], device, dtype)
    amp = ensemble.amplitudes(truth.state[index], device, dtype)
    rot = torch.as_tensor(truth.rotation[index], dtype=dtype, device=device)
    shift = torch.as_tensor(truth.shift_angstrom[index], dtype=dtype, device=device)
    ctf = CTFParams.from_mapping(truth.ctf, index, device=device, dtype=dtype)
    return render_images(pos, ensemble.sigma, amp, rot, shift, ctf, box, apix, projector=project_gaussians_windowed)


def write_particle_stack(
    path: str | Path, ensemble: Ensemble, truth: ParticleTruth, spec: SimulationSpec, device=None,
) -> dict:
    """Render every particle into an MRC stack (N, D, D) float32, streamed in chunks; atomic.

    Returns statistics: ``signal_variance`` (mean over particles of the clean image's variance over the box),
    ``noise_variance`` (0 when noise-free) and ``snr`` (requested).
    """
    n, box, apix, chunk = truth.n, spec.box, spec.apix, spec.chunk_size
    noise_gen = torch.Generator().manual_seed(int(_streams(spec.seed)["noise"].generate_state(1)[0]))
    sign = -1.0 if spec.contrast == "dark" else 1.0
    with atomic_path(path) as tmp, new_stack(tmp, n, box, apix) as mrc:
        var_sum = 0.0
        for start in tqdm(range(0, n, chunk), desc="render particles", unit="chunk", leave=False,
                          disable=bar_disabled()):
            idx = np.arange(start, min(start + chunk, n))
            with torch.no_grad():
                img = render_clean(ensemble, truth, idx, box, apix, device).cpu()
            var_sum += float(img.to(torch.float64).var(dim=(-2, -1), unbiased=False).sum())
            mrc.data[start:start + len(idx)] = img.numpy()
        signal_var = var_sum / n
        noise_var = 0.0 if spec.snr is None else signal_var / spec.snr
        stats = ImageStats()
        desc = "add noise" if noise_var > 0 else "finalise"
        for start in tqdm(range(0, n, chunk), desc=desc, unit="chunk", leave=False, disable=bar_disabled()):
            stop = min(start + chunk, n)
            img = torch.from_numpy(np.array(mrc.data[start:stop]))
            if noise_var > 0:
                img = img + torch.randn(img.shape, generator=noise_gen, dtype=img.dtype) * noise_var**0.5
            img = img * sign
            mrc.data[start:stop] = img.numpy()
            stats.add(img.numpy())
        set_stack_stats(mrc.header, stats.result())
    log.info("particles: signal variance %.4g, noise variance %.4g (SNR %s)", signal_var, noise_var,
             "inf" if spec.snr is None else f"{spec.snr:g}")
    return {"signal_variance": signal_var, "noise_variance": noise_var, "snr": spec.snr}
