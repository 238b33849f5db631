"""``analyze`` and ``eval-vol`` as library calls: they take a model-like object (anything with ``decode`` and
``base_cloud``), the latents and the run config, and do not care where these came from.

Cost is bounded independently of the number of particles N: k-means and PCA work on z alone (MiniBatchKMeans for
large N); only the K class centres, the trajectory points and a sample of ``flex_sample`` particles are decoded,
and only the K + n_pcs·n_points states are voxelised.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from gaussianem import __version__
from gaussianem.analysis import atomic, latent, report, volumes
from gaussianem.analysis.volumes import VolumeGrid
from gaussianem.errors import InputError
from gaussianem.gaussians import automatic_threshold, write_gaussians_ply
from gaussianem.io.checks import check_finite, load_latents
from gaussianem.io.dataset import write_json_atomic
from gaussianem.io.mrc import write_volume
from gaussianem.io.pdb import CIF_SUFFIXES, read_structure, structure_positions, write_structure
from gaussianem.io.pickles import load_pickle
from gaussianem.physics.fsc import fsc

log = logging.getLogger(__name__)

FORMATS = ("mrc", "ply", "pdb")
CLASS_COLOURS = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#ee7733",
                 "#0077bb", "#33bbee", "#009988", "#cc3311", "#ee3377", "#999933", "#882255", "#44aa99"]


# ----------------------------------------------------------------------------------------------- run folders
def _load_model(rundir: Path, epoch: int | None, device: Any):
    """The training engineer's loader (imported lazily so analysis works against any model-like object)."""
    from gaussianem.training.checkpoint import load_model

    return load_model(rundir, epoch=epoch, device=device)


def load_run(rundir: str | Path, epoch: int | None = None, device: Any = "cpu") -> tuple[Any, dict, int, np.ndarray]:
    """A run folder -> (model, config, epoch, z (N, zdim)) with z from ``z.E.npy``."""
    rundir = Path(rundir)
    if not rundir.is_dir():
        raise InputError(f"run folder not found: {rundir}")
    if epoch is not None and epoch < 1:
        raise InputError(f"--epoch is 1-based, got {epoch}")
    model, config, epoch = _load_model(rundir, epoch, device)
    zpath = rundir / f"z.{epoch}.npy"
    if not zpath.is_file():
        raise InputError(f"{rundir}: epoch {epoch} has no latents ({zpath.name} missing)")
    n = config.get("n_particles") if isinstance(config, dict) else None
    z = load_latents(zpath, int(n) if isinstance(n, int) else None)
    if hasattr(model, "eval"):
        model.eval()
    return model, config, int(epoch), z


# -------------------------------------------------------------------------------------------------- options
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


@dataclass
class _StateSet:
    """Decoded states and what was written for them (for the report and the ChimeraX script)."""

    label: str
    folder: Path
    z: np.ndarray
    positions: np.ndarray
    widths: np.ndarray
    amplitudes: np.ndarray
    volume_files: list[Path]
    levels: list[float]
    thumbs: list[bytes]
    fsc_low: list[float]


def _low_res_fsc(vol: np.ndarray, ref: np.ndarray) -> float:
    """Mean FSC over shells 1 .. D/8 (the low-resolution band)."""
    with volumes.single_cpu_thread("cpu"):
        curve = fsc(torch.from_numpy(vol), torch.from_numpy(ref)).numpy()
    hi = max(2, len(curve) // 4)
    return float(np.mean(curve[1:hi]))


def _render_states(
    label: str, folder: Path, model: Any, z: np.ndarray, grid: VolumeGrid, opts: AnalysisOptions,
    consensus: np.ndarray | None, base_amp: np.ndarray, formats: tuple[str, ...] = FORMATS,
    pdb_trajectory: str | None = None, cell: float | None = None,
) -> _StateSet:
    """Decode the latent points z (T, zdim), write vol_XXX.mrc / gaussians_XXX.ply / model_XXX.pdb (per
    ``formats``) and optionally a multi-model PDB; keep thumbnails and levels."""
    folder.mkdir(parents=True, exist_ok=True)
    pos, wid, amp = volumes.decode_points(model, z, opts.batch_size, opts.device)
    n = len(z)
    vol_names = volumes.state_names(n, "vol", ".mrc")
    ply_names = volumes.state_names(n, "gaussians", ".ply")
    pdb_names = volumes.state_names(n, "model", ".pdb")
    files, levels, thumbs, fscs = [], [], [], []
    for i in tqdm(range(n), desc=label, unit="vol", leave=False):
        if "mrc" in formats or consensus is not None:
            vol = volumes.render_volume(pos[i], wid[i], amp[i], grid, opts.device)
            levels.append(automatic_threshold(vol, 0.85) if (vol > 0).any() else 0.0)
            thumbs.append(report.image_png(volumes.thumbnails(vol)))
            if consensus is not None:
                fscs.append(_low_res_fsc(vol, consensus))
            if "mrc" in formats:
                write_volume(folder / vol_names[i], vol, grid.pixel_size_angstrom, grid.origin_angstrom)
                files.append(folder / vol_names[i])
        if "ply" in formats:
            write_gaussians_ply(folder / ply_names[i], pos[i], wid[i], amp[i])
        if "pdb" in formats:
            st = atomic.pseudo_atomic_structure(pos[i], wid[i], amp[i], grid.centre_angstrom, base_amp,
                                                min_occupancy=opts.min_occupancy, cell_angstrom=cell)
            write_structure(folder / pdb_names[i], st)
    if pdb_trajectory:
        st = atomic.pseudo_atomic_trajectory(pos, wid, amp, grid.centre_angstrom, base_amp, cell)
        write_structure(folder / pdb_trajectory, st)
    return _StateSet(label, folder, z, pos, wid, amp, files, levels, thumbs, fscs)


def _atomic_suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    return ".cif" if any(s in CIF_SUFFIXES for s in suffixes) else ".pdb"


# ------------------------------------------------------------------------------------------------- analyze
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
    if opts.ksample < 1 or opts.ksample > n:
        raise InputError(f"--ksample must lie in 1..{n} (the number of particles), got {opts.ksample}")
    if opts.n_pcs < 0:
        raise InputError(f"--pc must be >= 0, got {opts.n_pcs}")
    working = volumes.working_grid(config)
    grid = volumes.output_grid(working, opts.box, opts.apix)
    cell = grid.extent_angstrom
    log.info("analysing %d particles, zdim %d; volumes on box %d at %.4g Å/voxel (origin %s)", n, zdim,
             grid.box_size, grid.pixel_size_angstrom, tuple(round(o, 3) for o in grid.origin_angstrom))
    timings: dict[str, float] = {}

    def lap(name: str, t: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - t, 2)
        log.info("%s done in %.1f s", name, now - t)
        return now

    t = time.perf_counter()
    base_pos, base_wid, base_amp = volumes.base_cloud_arrays(model)
    g = len(base_pos)
    consensus = volumes.render_volume(base_pos, base_wid, base_amp, grid, opts.device)
    write_volume(out / "consensus.mrc", consensus, grid.pixel_size_angstrom, grid.origin_angstrom)
    write_gaussians_ply(out / "gaussians_base.ply", base_pos, base_wid, base_amp)
    cons_level = automatic_threshold(consensus, 0.85)
    t = lap("consensus", t)

    # ---- latent: k-means, PCA, UMAP
    km = latent.kmeans(z, opts.ksample, opts.seed)
    kdir = out / f"kmeans{opts.ksample}"
    kdir.mkdir(exist_ok=True)
    _save_npy(kdir / "labels.npy", km.labels)
    _save_npy(kdir / "centers.npy", km.centers)
    _save_npy(kdir / "centers_ind.npy", km.centers_ind)
    _save_npy(kdir / "centers_kmeans.npy", km.raw_centers)
    counts = km.counts
    pca = latent.pca_fit(z)
    scores = pca.transform(z)
    t = lap("k-means + PCA", t)

    plots: dict[str, bytes] = {}
    if zdim >= 2:
        plots["pca"] = latent.plot_scatter_classes(scores[:, :2], km.labels, km.centers_ind,
                                                   "PCA of z, coloured by k-means class", "PC1", "PC2",
                                                   out / "z_pca.png", seed=opts.seed)
    plots["hist"] = latent.plot_latent_histograms(z, out / "z_hist.png")
    plots["variance"] = latent.plot_pca_variance(pca, out / "pca_variance.png")
    plots["counts"] = latent.plot_class_counts(counts, kdir / "counts.png")
    umap_note = ""
    if zdim > 2 and opts.umap:
        emb = latent.umap_embedding(z, opts.seed)
        if emb is not None:
            _save_npy(out / "umap.npy", emb)
            plots["umap"] = latent.plot_scatter_classes(emb, km.labels, km.centers_ind,
                                                        "UMAP of z, coloured by k-means class", "UMAP1", "UMAP2",
                                                        out / "umap.png", seed=opts.seed)
            t = lap("UMAP", t)
        else:
            umap_note = "umap-learn is not installed: UMAP skipped (PCA shown instead)."
    elif zdim > 2:
        umap_note = "UMAP not requested."
    elif zdim == 2:
        plots["z"] = latent.plot_scatter_classes(z, km.labels, km.centers_ind, "z, coloured by k-means class",
                                                 "z1", "z2", out / "z.png", seed=opts.seed)
    t = lap("plots", t)

    # ---- class volumes
    classes = _render_states(f"kmeans{opts.ksample}", kdir, model, km.centers, grid, opts, consensus, base_amp,
                             cell=cell)
    _write_counts(kdir / "counts.txt", counts, km.centers_ind, classes.fsc_low)
    t = lap(f"{opts.ksample} class volumes", t)

    # ---- PCA trajectories (never the k-means volumes)
    trajs: list[_StateSet] = []
    for dim in range(1, min(opts.n_pcs, pca.n_components_) + 1):
        zt = latent.pc_trajectory(z, pca, dim, opts.n_points)
        pdir = out / f"pc{dim}"
        pdir.mkdir(exist_ok=True)
        np.savetxt(pdir / "z_values.txt", zt, fmt="%.9g")
        trajs.append(_render_states(f"pc{dim}", pdir, model, zt, grid, opts, consensus, base_amp,
                                    formats=("mrc",), pdb_trajectory="traj.pdb", cell=cell))
    if opts.n_pcs > pca.n_components_:
        log.info("zdim %d: only %d PC trajectories", zdim, pca.n_components_)
    t = lap("PC trajectories", t)

    # ---- flexibility over a particle sample
    rng = np.random.default_rng(opts.seed)
    sample = np.sort(rng.choice(n, min(n, opts.flex_sample), replace=False))
    _save_npy(out / "flexibility_particles.npy", sample)
    flex = atomic.flexibility(model, z[sample], base_pos, opts.batch_size, opts.device)
    _save_npy(out / "flexibility_rmsf.npy", flex["rmsf"])
    st = atomic.pseudo_atomic_structure(base_pos, base_wid, base_amp, grid.centre_angstrom, None,
                                        b_factors=atomic.rmsf_to_bfactor(flex["rmsf"]), cell_angstrom=cell)
    write_structure(out / "flexibility.pdb", st)
    flex_map = atomic.flexibility_map(base_pos, base_wid, base_amp, flex["rmsf"], grid, device=opts.device)
    write_volume(out / "flexibility.mrc", flex_map, grid.pixel_size_angstrom, grid.origin_angstrom)
    plots["flex"] = _plot_flexibility(flex["rmsf"], out / "flexibility.png")
    t = lap(f"flexibility ({len(sample)} particles)", t)

    # ---- warping the user's atomic model
    warped_files: list[str] = []
    warp_reference = None
    warp_skipped = None
    if opts.atomic_model is not None:
        user = read_structure(opts.atomic_model)
        ext = _atomic_suffix(Path(opts.atomic_model))
        user_xyz = structure_positions(user) - np.asarray(grid.centre_angstrom)
        ref_i, fit = atomic.best_reference(user_xyz, [base_pos, *classes.positions])
        reference = base_pos if ref_i == 0 else classes.positions[ref_i - 1]
        log.info("%s fits the consensus cloud with an RMS atom-to-nearest-Gaussian distance of %.2f Å; the best "
                 "fit is %s (%.2f Å): displacements are taken from there", Path(opts.atomic_model).name, fit[0],
                 "the consensus" if ref_i == 0 else f"class {ref_i - 1}", fit[ref_i])
        unit = max(grid.pixel_size_angstrom, 1.0)
        if fit[ref_i] > 10 * unit:
            warp_skipped = (f"{Path(opts.atomic_model).name} lies {fit[ref_i]:.1f} Å (RMS) from the nearest Gaussians: "
                            "it is not in the consensus map's frame, so no warped models were written (fit it into "
                            "the consensus map first, e.g. ChimeraX 'fitmap', and save it relative to that map)")
            log.error("%s", warp_skipped)
        elif fit[ref_i] > 3 * unit:
            log.warning("the atomic model lies far from the Gaussians (%.1f Å RMS): is it fitted to the consensus "
                        "map (same origin and voxel size)?", fit[ref_i])
        warp_reference = "consensus" if ref_i == 0 else f"class {ref_i - 1}"
        for s in [] if warp_skipped else [classes, *trajs]:
            warped = atomic.warp_structure_states(user, reference, s.positions, grid.centre_angstrom)
            names = volumes.state_names(len(warped), "atomic", ext)
            traj_name = f"atomic_traj{ext}" if s is not classes else None
            paths = atomic.write_warped(s.folder, user, warped, names, traj_name)
            warped_files += [str(p.relative_to(out)) for p in paths]
            shift = [float(np.sqrt(((w - warped[0]) ** 2).sum(1).mean())) for w in warped]
            log.info("%s: warped %s, RMSD of each state from the first: %s", s.label, Path(opts.atomic_model).name,
                     ", ".join(f"{v:.2f}" for v in shift))
        t = lap("atomic-model warping", t)

    # ---- report and ChimeraX script
    summary = {
        "version": __version__, "command_line": opts.command_line, "epoch": epoch,
        "rundir": str(rundir) if rundir else None, "n_particles": n, "zdim": zdim, "n_gaussians": g,
        "grid": {"box_size": grid.box_size, "pixel_size_angstrom": grid.pixel_size_angstrom,
                 "origin_angstrom": list(grid.origin_angstrom)},
        "ksample": opts.ksample, "counts": counts.tolist(), "centers_ind": km.centers_ind.tolist(),
        "class_fsc_low_res_vs_consensus": [round(v, 4) for v in classes.fsc_low],
        "pc_explained_variance_ratio": [round(float(v), 5) for v in pca.explained_variance_ratio_],
        "trajectory_fsc_low_res_vs_consensus": {s.label: [round(v, 4) for v in s.fsc_low] for s in trajs},
        "flexibility": {"n_particles": len(sample), "rmsf_mean": float(flex["rmsf"].mean()),
                        "rmsf_max": float(flex["rmsf"].max())},
        "warped_files": warped_files, "warp_reference": warp_reference, "warp_skipped": warp_skipped,
        "options": {k: str(v) for k, v in asdict(opts).items()},
    }
    cxc = _write_cxc(out, cons_level, classes, trajs)
    _write_report(out, summary, plots, classes, trajs, cxc, umap_note, rundir, opts)
    timings["report"] = round(time.perf_counter() - t, 2)
    summary["timings_s"] = timings
    summary["total_s"] = round(time.perf_counter() - t0, 2)
    write_json_atomic(out / "summary.json", summary)
    log.info("analysis written to %s in %.1f s", out, summary["total_s"])
    return summary


def _save_npy(path: Path, arr: np.ndarray) -> None:
    from gaussianem.io.writes import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)


def _write_counts(path: Path, counts: np.ndarray, centers_ind: np.ndarray, fsc_low: list[float]) -> None:
    from gaussianem.io.writes import atomic_path

    total = counts.sum()
    lines = ["# class  particles  fraction  centre_particle_index  low_res_FSC_vs_consensus"]
    for j, c in enumerate(counts):
        f = f"{fsc_low[j]:.4f}" if j < len(fsc_low) else "nan"
        lines.append(f"{j:5d} {int(c):10d} {c / total:9.4f} {int(centers_ind[j]):22d} {f}")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _plot_flexibility(rmsf: np.ndarray, path: Path) -> bytes:
    plt = latent._plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(np.arange(len(rmsf)), rmsf, lw=0.6, color="#4477aa")
    ax.set_xlabel("Gaussian")
    ax.set_ylabel("RMSF (Å)")
    ax.set_title("per-Gaussian flexibility", fontsize=9)
    return latent._figure_to_png(fig, path)


def _write_cxc(out: Path, cons_level: float, classes: _StateSet, trajs: list[_StateSet]) -> str:
    vols = []
    for j, (p, lev) in enumerate(zip(classes.volume_files, classes.levels, strict=True)):
        vols.append(report.CxcVolume(str(p.relative_to(out)), lev, CLASS_COLOURS[j % len(CLASS_COLOURS)],
                                     shown=j == 0))
    for s in trajs:
        if s.volume_files:
            vols.append(report.CxcVolume(f"{s.folder.name}/vol_*.mrc", float(np.median(s.levels)), "#cc6677",
                                         series=True))
    models = ["flexibility.pdb"]
    return report.write_chimerax_script(out / "chimerax.cxc", report.CxcVolume("consensus.mrc", cons_level),
                                        vols, models)


def _write_report(
    out: Path, summary: dict, plots: dict[str, bytes], classes: _StateSet, trajs: list[_StateSet], cxc: str,
    umap_note: str, rundir: Path | None, opts: AnalysisOptions,
) -> None:
    r = report.Report("GaussianEM analysis", {
        "run": str(rundir) if rundir else "(in memory)", "epoch": str(summary["epoch"]),
        "particles": f"{summary['n_particles']:,}", "latent dimension": str(summary["zdim"]),
        "Gaussians": f"{summary['n_gaussians']:,}",
        "volumes": f"box {summary['grid']['box_size']}, {summary['grid']['pixel_size_angstrom']:.4g} Å/voxel",
        "gaussianem": summary["version"],
    })
    k = len(classes.z)
    r.heading(f"k-means classes (K = {k})")
    r.paragraph("Each class is represented by the real particle nearest to its centre. Thumbnails are sum-"
                "projections along z, y and x. Low-res FSC is the mean FSC with the consensus map over the lowest "
                "quarter of the shells (the volumes share its frame).")
    r.figures([(classes.thumbs[j], f"class {j}: {summary['counts'][j]:,}") for j in range(k)], thumb=True)
    r.figures([(plots["counts"], "particles per class")])
    total = max(1, sum(summary["counts"]))
    r.table(["class", "particles", "fraction", "centre particle", "low-res FSC", "volume"],
            [[j, summary["counts"][j], f"{summary['counts'][j] / total:.3f}", summary["centers_ind"][j],
              f"{classes.fsc_low[j]:.3f}", str(classes.volume_files[j].relative_to(out))] for j in range(k)])
    r.heading("Latent space")
    figs = [(plots[key], c) for key, c in (("umap", "UMAP"), ("pca", "PCA (PC1, PC2)"), ("z", "z"),
                                       ("variance", "PCA explained variance")) if key in plots]
    r.figures(figs)
    if umap_note:
        r.paragraph(umap_note)
    r.figures([(plots["hist"], "latent histograms")])
    for s in trajs:
        r.heading(f"Trajectory along {s.label.upper()} (5th → 95th percentile)")
        r.figures([(s.thumbs[i], f"{s.label} point {i}") for i in range(len(s.thumbs))], thumb=True)
    r.heading("Flexibility")
    f = summary["flexibility"]
    r.paragraph(f"RMS fluctuation of every Gaussian over {f['n_particles']:,} particles: mean {f['rmsf_mean']:.2f} Å, "
                f"max {f['rmsf_max']:.2f} Å. flexibility.pdb holds it as B-factors (8π²·RMSF²/3) of the consensus "
                "pseudo-atomic model; flexibility.mrc holds the local RMSF (Å) inside the consensus envelope.")
    r.figures([(plots["flex"], "RMSF per Gaussian")])
    if summary["warped_files"]:
        r.heading("Warped atomic model")
        r.paragraph(f"{opts.atomic_model} carried to every class centre and trajectory point: "
                    f"{len(summary['warped_files'])} files (atomic_XXX, atomic_traj in each folder).")
    elif summary.get("warp_skipped"):
        r.heading("Warped atomic model")
        r.paragraph(f"Not written: {summary['warp_skipped']}.")
    if rundir is not None and (rundir / "log.jsonl").is_file():
        png = report.plot_loss_curves(report.read_log(rundir / "log.jsonl"))
        if png:
            r.heading("Training")
            r.figures([(png, "training curves from log.jsonl")])
    r.heading("Open the results")
    r.code("chimerax chimerax.cxc        # consensus map (mesh) + class volumes + trajectories as volume series\n"
           "chimerax pc1/traj.pdb         # pseudo-atomic trajectory: play it with  coordset #1\n"
           "pymol pc1/traj.pdb            # the same in PyMOL (one state per model)\n"
           f"gaussianem eval-vol RUNDIR --particles {summary['centers_ind'][0]} -o OUT   # any particle's state\n"
           f"gaussianem select DATASET --labels kmeans{k}/labels.npy --classes 0,3 -o subset.star   # particles")
    r.paragraph("chimerax.cxc:")
    r.code(cxc)
    r.write(out / "report.html")


# ------------------------------------------------------------------------------------------------ eval-vol
def evaluate_points(
    model: Any, z_points: np.ndarray, config: dict, outdir: str | Path, formats: tuple[str, ...] = ("mrc",),
    box: int | None = None, apix: float | None = None, device: str = "cpu", batch_size: int = 32,
) -> list[Path]:
    """Volumes / Gaussian clouds / pseudo-atomic PDBs at latent points (T, zdim), named vol_000.mrc ... in the
    request order. Returns the written paths."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise InputError(f"--format takes a comma list of {', '.join(FORMATS)}, got {','.join(formats) or '(none)'}")
    grid = volumes.output_grid(volumes.working_grid(config), box, apix)
    out = Path(outdir)
    _, _, base_amp = volumes.base_cloud_arrays(model)
    opts = AnalysisOptions(batch_size=batch_size, device=device, min_occupancy=0.0)
    s = _render_states("eval-vol", out, model, np.atleast_2d(z_points), grid, opts, None, base_amp,
                       formats=tuple(formats), cell=grid.extent_angstrom)
    np.savetxt(out / "z_values.txt", np.atleast_2d(z_points), fmt="%.9g")
    n = len(s.z)
    names = {"mrc": ("vol", ".mrc"), "ply": ("gaussians", ".ply"), "pdb": ("model", ".pdb")}
    paths = [out / name for f in FORMATS if f in formats for name in volumes.state_names(n, *names[f])]
    log.info("%d points -> %d files in %s", len(s.z), len(paths), out)
    return paths


def parse_z_values(text: str, zdim: int) -> np.ndarray:
    """``--z``: numbers separated by commas/spaces, points by ';' (or a flat list of k·zdim numbers) -> (T, zdim)."""
    points = [p for p in text.replace("\n", ";").split(";") if p.strip()]
    rows = []
    for p in points:
        try:
            vals = [float(v) for v in p.replace(",", " ").split()]
        except ValueError as exc:
            raise InputError(f"--z: not a number in {p.strip()!r} ({exc})") from exc
        if len(vals) % zdim or not vals:
            raise InputError(f"--z: a point needs {zdim} values (zdim {zdim}), got {len(vals)} in {p.strip()!r}")
        rows += [vals[i:i + zdim] for i in range(0, len(vals), zdim)]
    if not rows:
        raise InputError("--z: no values given")
    return check_finite(np.asarray(rows, np.float64), "--z", "the latent values")


def read_z_file(path: str | Path, zdim: int) -> np.ndarray:
    """``--z-file``: .npy or text (one point per line) -> (T, zdim)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--z-file not found: {path}")
    try:
        z = np.load(path, allow_pickle=False) if path.suffix == ".npy" else np.loadtxt(path, delimiter=None, ndmin=2,
                                                                                       comments="#")
        z = np.atleast_2d(np.asarray(z, np.float64))
    except (ValueError, TypeError, EOFError, OSError) as exc:
        raise InputError(f"{path}: not a numeric table ({' '.join(str(exc).split())})") from None
    check_finite(z, path, "the latent values")
    if z.shape[1] != zdim:
        if z.size % zdim == 0 and z.shape[0] == 1:
            z = z.reshape(-1, zdim)
        else:
            raise InputError(f"{path}: expected rows of {zdim} values (zdim), got shape {z.shape}")
    return z


def parse_indices(text: str, n: int) -> np.ndarray:
    """``--particles``: a comma/space list of indices (any length) or a file (.npy, .pkl as cryoDRGN writes, or
    text)."""
    path = Path(text)
    try:
        is_file = path.is_file()
    except OSError:  # a long list of indices is no file name (ENAMETOOLONG)
        is_file = False
    if is_file:
        if path.suffix == ".npy":
            try:
                idx = np.load(path, allow_pickle=False)
            except Exception as exc:
                raise InputError(f"{path}: not a numeric .npy array ({type(exc).__name__}: {exc})") from None
        elif path.suffix == ".pkl":
            idx = load_pickle(path, "index")
        else:
            idx = path.read_text().replace(",", " ").split()
    else:
        if any(c in text for c in "/\\") or text.endswith((".npy", ".pkl", ".txt")):
            raise InputError(f"--particles: index file not found: {text}")
        idx = text.replace(",", " ").split()
    try:
        arr = np.asarray([int(v) for v in np.ravel(idx)], np.int64)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InputError(f"--particles: indices must be integers ({exc})") from exc
    if arr.size == 0:
        raise InputError("--particles: no indices given")
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise InputError(f"--particles: index {int(bad[0])} outside 0..{n - 1}")
    return arr

