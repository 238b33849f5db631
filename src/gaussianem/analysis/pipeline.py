"""``analyze`` as a library call: it takes a model-like object (anything with ``decode`` and ``base_cloud``), the
latents and the run config, and does not care where these came from.

Cost is bounded independently of the number of particles N: k-means and PCA work on z alone (MiniBatchKMeans for
large N); only the K class centres, the trajectory points and a sample of ``flex_sample`` particles are decoded,
and only the K + n_pcs·n_points states are voxelised.

The stages, in order: the consensus (the base cloud), the latent space (k-means, PCA, plots, UMAP), the class
volumes, the PC trajectories, the flexibility over a particle sample, the warping of the user's atomic model, then
the report (``outputs``). Loading a run lives in ``inputs``, decoding and writing states in ``states``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from gaussianem import __version__
from gaussianem.analysis import atomic, discovery, latent, outputs, volumes
from gaussianem.analysis.options import AnalysisOptions
from gaussianem.analysis.states import StateSet, render_states
from gaussianem.analysis.volumes import VolumeGrid
from gaussianem.errors import InputError
from gaussianem.gaussians import automatic_threshold
from gaussianem.io.mrc import write_volume
from gaussianem.io.pdb import CIF_SUFFIXES, read_structure, structure_positions, write_structure
from gaussianem.io.ply import write_gaussians_ply
from gaussianem.io.writes import write_json_atomic

log = logging.getLogger(__name__)


class _Laps:
    """Wall time of each stage, logged as it ends and kept for ``summary.json``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.t, 2)
        log.info("%s done in %.1f s", name, now - self.t)
        self.t = now


def run_analysis(
    model: Any, z: np.ndarray, config: dict, outdir: str | Path, opts: AnalysisOptions, epoch: int | None = None,
    rundir: Path | None = None,
) -> dict:
    """The whole ``analyze``: writes everything under ``outdir`` and returns a summary (also ``summary.json``).

    Args:
        model: has ``decode(z (B, zdim)) -> positions (B, G, 3), widths (B, G), amplitudes (B, G)`` and
            ``base_cloud``.
        z: (N, zdim) particle latents.
        config: the run config (``box_size``, ``pixel_size_angstrom``, optionally ``map_origin_angstrom``).
    """
    t0 = time.perf_counter()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    z = np.asarray(z, np.float64)
    n, zdim = z.shape
    _check_options(n, opts)
    grid = volumes.output_grid(volumes.working_grid(config), opts.box, opts.apix)
    cell = grid.extent_angstrom
    log.info("analysing %d particles, zdim %d; volumes on box %d at %.4g Å/voxel (origin %s)", n, zdim,
             grid.box_size, grid.pixel_size_angstrom, tuple(round(o, 3) for o in grid.origin_angstrom))
    laps = _Laps()
    base = volumes.base_cloud_arrays(model)
    consensus, cons_level = _write_consensus(out, base, grid, opts)
    laps.lap("consensus")

    km, pca, plots, umap_note = _latent_space(out, z, opts, laps)
    kdir = out / f"kmeans{opts.ksample}"
    classes = render_states(f"kmeans{opts.ksample}", kdir, model, km.centers, grid, opts, consensus, base[2],
                            cell=cell)
    class_stats = outputs.state_stats(classes, base, grid)
    outputs.write_counts(kdir / "counts.txt", km.counts, km.centers_ind, classes.fsc_low, class_stats)
    laps.lap(f"{opts.ksample} class volumes")

    trajs = _trajectories(out, model, z, pca, grid, opts, consensus, base[2])
    laps.lap("PC trajectories")

    found, found_states, motions, plots["states"] = discovery.find_and_render(out, model, z, grid, opts, consensus,
                                                                              base[2])
    trajs += motions
    laps.lap("states and motions")

    sample, rmsf = _flexibility(out, model, z, base, grid, opts)
    plots["flex"] = outputs.plot_flexibility(rmsf, out / "flexibility.png")
    laps.lap(f"flexibility ({len(sample)} particles)")

    warp = {"warped_files": [], "warp_reference": None, "warp_skipped": None}
    if opts.atomic_model is not None:
        warp = _warp_atomic_model(out, base[0], classes, trajs, grid, opts)
        laps.lap("atomic-model warping")

    summary = {
        "version": __version__, "command_line": opts.command_line, "epoch": epoch,
        "rundir": str(rundir) if rundir else None, "n_particles": n, "zdim": zdim, "n_gaussians": len(base[0]),
        "grid": {"box_size": grid.box_size, "pixel_size_angstrom": grid.pixel_size_angstrom,
                 "origin_angstrom": list(grid.origin_angstrom)},
        "ksample": opts.ksample, "counts": km.counts.tolist(), "centers_ind": km.centers_ind.tolist(),
        "class_fsc_low_res_vs_consensus": [round(v, 4) for v in classes.fsc_low],
        "pc_explained_variance_ratio": [round(float(v), 5) for v in pca.explained_variance_ratio_],
        "structure": found,
        "trajectory_fsc_low_res_vs_consensus": {s.label: [round(v, 4) for v in s.fsc_low] for s in trajs},
        "class_stats": class_stats,
        "trajectory_stats": {s.label: outputs.state_stats(s, base, grid) for s in trajs},
        "flexibility": {"n_particles": len(sample), "rmsf_mean": float(rmsf.mean()), "rmsf_max": float(rmsf.max())},
        **warp,
        "options": {k: str(v) for k, v in asdict(opts).items()},
    }
    cxc = outputs.write_cxc(out, cons_level, classes, trajs)
    outputs.write_report(out, summary, plots, classes, trajs, cxc, umap_note, rundir, opts, consensus, grid,
                         found_states)
    laps.timings["report"] = round(time.perf_counter() - laps.t, 2)
    summary["timings_s"] = laps.timings
    summary["total_s"] = round(time.perf_counter() - t0, 2)
    write_json_atomic(out / "summary.json", summary)
    log.info("analysis written to %s in %.1f s", out, summary["total_s"])
    return summary


def _check_options(n: int, opts: AnalysisOptions) -> None:
    if opts.ksample < 1 or opts.ksample > n:
        raise InputError(f"--ksample must lie in 1..{n} (the number of particles), got {opts.ksample}")
    if opts.n_pcs < 0:
        raise InputError(f"--pc must be >= 0, got {opts.n_pcs}")


def _write_consensus(out: Path, base: tuple, grid: VolumeGrid, opts: AnalysisOptions) -> tuple[np.ndarray, float]:
    """The base cloud as consensus.mrc and gaussians_base.ply -> (consensus volume, its display level)."""
    base_pos, base_wid, base_amp = base
    consensus = volumes.render_volume(base_pos, base_wid, base_amp, grid, opts.device)
    write_volume(out / "consensus.mrc", consensus, grid.pixel_size_angstrom, grid.origin_angstrom)
    write_gaussians_ply(out / "gaussians_base.ply", base_pos, base_wid, base_amp)
    return consensus, automatic_threshold(consensus, 0.85)


def _latent_space(out: Path, z: np.ndarray, opts: AnalysisOptions, laps: _Laps) -> tuple[Any, Any, dict, str]:
    """k-means (saved under kmeansK/), PCA and the latent plots (UMAP when asked and installed) ->
    (k-means result, PCA, plots as PNG bytes by name, a note on UMAP for the report)."""
    zdim = z.shape[1]
    km = latent.kmeans(z, opts.ksample, opts.seed)
    kdir = out / f"kmeans{opts.ksample}"
    kdir.mkdir(exist_ok=True)
    outputs.save_npy(kdir / "labels.npy", km.labels)
    outputs.save_npy(kdir / "centers.npy", km.centers)
    outputs.save_npy(kdir / "centers_ind.npy", km.centers_ind)
    outputs.save_npy(kdir / "centers_kmeans.npy", km.raw_centers)
    pca = latent.pca_fit(z)
    scores = pca.transform(z)
    laps.lap("k-means + PCA")

    plots: dict[str, bytes] = {}
    if zdim >= 2:
        plots["pca"] = latent.plot_scatter_classes(scores[:, :2], km.labels, km.centers_ind,
                                                   "PCA of z, coloured by k-means class", "PC1", "PC2",
                                                   out / "z_pca.png", seed=opts.seed)
    plots["hist"] = latent.plot_latent_histograms(z, out / "z_hist.png")
    plots["variance"] = latent.plot_pca_variance(pca, out / "pca_variance.png")
    plots["counts"] = latent.plot_class_counts(km.counts, kdir / "counts.png")
    umap_note = ""
    if zdim > 2 and opts.umap:
        emb = latent.umap_embedding(z, opts.seed)
        if emb is not None:
            outputs.save_npy(out / "umap.npy", emb)
            plots["umap"] = latent.plot_scatter_classes(emb, km.labels, km.centers_ind,
                                                        "UMAP of z, coloured by k-means class", "UMAP1", "UMAP2",
                                                        out / "umap.png", seed=opts.seed)
            laps.lap("UMAP")
        else:
            umap_note = "umap-learn is not installed: UMAP skipped (PCA shown instead)."
    elif zdim > 2:
        umap_note = "UMAP not requested."
    elif zdim == 2:
        plots["z"] = latent.plot_scatter_classes(z, km.labels, km.centers_ind, "z, coloured by k-means class",
                                                 "z1", "z2", out / "z.png", seed=opts.seed)
    laps.lap("plots")
    return km, pca, plots, umap_note


def _trajectories(
    out: Path, model: Any, z: np.ndarray, pca: Any, grid: VolumeGrid, opts: AnalysisOptions,
    consensus: np.ndarray, base_amp: np.ndarray,
) -> list[StateSet]:
    """Volume series and a multi-model PDB along PC1..PCn under pcN/ (decoded on the PC axes, never the k-means
    volumes)."""
    trajs: list[StateSet] = []
    for dim in range(1, min(opts.n_pcs, pca.n_components_) + 1):
        zt = latent.pc_trajectory(z, pca, dim, opts.n_points)
        pdir = out / f"pc{dim}"
        pdir.mkdir(exist_ok=True)
        np.savetxt(pdir / "z_values.txt", zt, fmt="%.9g")
        trajs.append(render_states(f"pc{dim}", pdir, model, zt, grid, opts, consensus, base_amp,
                                   formats=("mrc",), pdb_trajectory="traj.pdb", cell=grid.extent_angstrom))
    if opts.n_pcs > pca.n_components_:
        log.info("zdim %d: only %d PC trajectories", z.shape[1], pca.n_components_)
    return trajs


def _flexibility(
    out: Path, model: Any, z: np.ndarray, base: tuple, grid: VolumeGrid, opts: AnalysisOptions,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-Gaussian RMS displacement over a particle sample, written as .npy, B-factors of a PDB and a map ->
    (sampled particle indices, RMSF per Gaussian)."""
    base_pos, base_wid, base_amp = base
    rng = np.random.default_rng(opts.seed)
    n = len(z)
    sample = np.sort(rng.choice(n, min(n, opts.flex_sample), replace=False))
    outputs.save_npy(out / "flexibility_particles.npy", sample)
    flex = atomic.flexibility(model, z[sample], base_pos, opts.batch_size, opts.device)
    outputs.save_npy(out / "flexibility_rmsf.npy", flex["rmsf"])
    st = atomic.pseudo_atomic_structure(base_pos, base_wid, base_amp, grid.centre_angstrom, None,
                                        b_factors=atomic.rmsf_to_bfactor(flex["rmsf"]),
                                        cell_angstrom=grid.extent_angstrom)
    write_structure(out / "flexibility.pdb", st)
    flex_map = atomic.flexibility_map(base_pos, base_wid, base_amp, flex["rmsf"], grid, device=opts.device)
    write_volume(out / "flexibility.mrc", flex_map, grid.pixel_size_angstrom, grid.origin_angstrom)
    return sample, flex["rmsf"]


def _warp_atomic_model(
    out: Path, base_pos: np.ndarray, classes: StateSet, trajs: list[StateSet], grid: VolumeGrid,
    opts: AnalysisOptions,
) -> dict:
    """Carry the user's atomic model to every class centre and trajectory point by the learned displacements,
    starting from the state it fits best -> the summary's warped_files, warp_reference, warp_skipped."""
    name = Path(opts.atomic_model).name
    user = read_structure(opts.atomic_model)
    ext = _atomic_suffix(Path(opts.atomic_model))
    user_xyz = structure_positions(user) - np.asarray(grid.centre_angstrom)
    ref_i, fit = atomic.best_reference(user_xyz, [base_pos, *classes.positions])
    reference = base_pos if ref_i == 0 else classes.positions[ref_i - 1]
    log.info("%s fits the consensus cloud with an RMS atom-to-nearest-Gaussian distance of %.2f Å; the best "
             "fit is %s (%.2f Å): displacements are taken from there", name, fit[0],
             "the consensus" if ref_i == 0 else f"class {ref_i - 1}", fit[ref_i])
    unit = max(grid.pixel_size_angstrom, 1.0)
    warp_skipped = None
    if fit[ref_i] > 10 * unit:
        warp_skipped = (f"{name} lies {fit[ref_i]:.1f} Å (RMS) from the nearest Gaussians: "
                        "it is not in the consensus map's frame, so no warped models were written (fit it into "
                        "the consensus map first, e.g. ChimeraX 'fitmap', and save it relative to that map)")
        log.error("%s", warp_skipped)
    elif fit[ref_i] > 3 * unit:
        log.warning("the atomic model lies far from the Gaussians (%.1f Å RMS): is it fitted to the consensus "
                    "map (same origin and voxel size)?", fit[ref_i])
    warped_files: list[str] = []
    for s in [] if warp_skipped else [classes, *trajs]:
        warped = atomic.warp_structure_states(user, reference, s.positions, grid.centre_angstrom)
        names = volumes.state_names(len(warped), "atomic", ext)
        traj_name = f"atomic_traj{ext}" if s is not classes else None
        paths = atomic.write_warped(s.folder, user, warped, names, traj_name)
        warped_files += [str(p.relative_to(out)) for p in paths]
        shift = [float(np.sqrt(((w - warped[0]) ** 2).sum(1).mean())) for w in warped]
        log.info("%s: warped %s, RMSD of each state from the first: %s", s.label, name,
                 ", ".join(f"{v:.2f}" for v in shift))
    return {"warped_files": warped_files, "warp_reference": "consensus" if ref_i == 0 else f"class {ref_i - 1}",
            "warp_skipped": warp_skipped}


def _atomic_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    return ".cif" if any(s in CIF_SUFFIXES for s in suffixes) else ".pdb"
