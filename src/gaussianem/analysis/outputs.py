"""The files ``analyze`` writes around the states: numpy arrays and class counts, the flexibility plot, the
ChimeraX script and report.html."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaussianem.analysis import discovery, latent, report, state_views
from gaussianem.analysis.options import AnalysisOptions
from gaussianem.analysis.states import StateSet
from gaussianem.analysis.volumes import VolumeGrid
from gaussianem.io.writes import atomic_path

CLASS_COLOURS = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#ee7733",
                 "#0077bb", "#33bbee", "#009988", "#cc3311", "#ee3377", "#999933", "#882255", "#44aa99"]


def save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)


def state_stats(states: StateSet, base: tuple, grid: VolumeGrid) -> list[dict]:
    """:func:`state_views.state_statistics` of every state of a set against the base cloud (positions (G, 3),
    widths (G,), amplitudes (G,)) and, when computed, the consensus volume."""
    return [state_views.state_statistics(states.positions[i], states.amplitudes[i], base[0], base[2],
                                         states.fsc_curves[i] if i < len(states.fsc_curves) else None, grid)
            for i in range(len(states.z))]


def write_counts(path: Path, counts: np.ndarray, centers_ind: np.ndarray, fsc_low: list[float],
                 stats: list[dict] | None = None) -> None:
    total = counts.sum()
    lines = ["# class  particles  fraction  centre_particle_index  low_res_FSC_vs_consensus  rms_displacement_A  "
             "p99_displacement_A  amplitude_change_percent  FSC_vs_consensus_at_half_Nyquist"]
    for j, c in enumerate(counts):
        f = f"{fsc_low[j]:.4f}" if j < len(fsc_low) else "nan"
        st = stats[j] if stats and j < len(stats) else {}
        extra = " ".join(f"{st.get(k, float('nan')):.4f}" for k in ("rms_displacement_angstrom",
                         "p99_displacement_angstrom", "amplitude_change_percent", "fsc_at_frequency"))
        lines.append(f"{j:5d} {int(c):10d} {c / total:9.4f} {int(centers_ind[j]):22d} {f} {extra}")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def plot_flexibility(rmsf: np.ndarray, path: Path) -> bytes:
    plt = latent._plt()
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(np.arange(len(rmsf)), rmsf, lw=0.6, color="#4477aa")
    ax.set_xlabel("Gaussian")
    ax.set_ylabel("RMSF (Å)")
    ax.set_title("per-Gaussian flexibility", fontsize=9)
    return latent._figure_to_png(fig, path)


def write_cxc(out: Path, cons_level: float, classes: StateSet, trajs: list[StateSet]) -> str:
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


def write_report(
    out: Path, summary: dict, plots: dict[str, bytes], classes: StateSet, trajs: list[StateSet], cxc: str,
    umap_note: str, rundir: Path | None, opts: AnalysisOptions, consensus: np.ndarray | None = None,
    grid: VolumeGrid | None = None, found_states: StateSet | None = None,
) -> None:
    """report.html: the view command first, then classes and trajectories as labelled projections with their
    statistics against the consensus, the latent space, flexibility, training curves and how to open the files."""
    r = report.Report("GaussianEM analysis", {
        "run": str(rundir) if rundir else "(in memory)", "epoch": str(summary["epoch"]),
        "particles": f"{summary['n_particles']:,}", "latent dimension": str(summary["zdim"]),
        "Gaussians": f"{summary['n_gaussians']:,}",
        "volumes": f"box {summary['grid']['box_size']}, {summary['grid']['pixel_size_angstrom']:.4g} Å/voxel",
        "gaussianem": summary["version"],
    })
    epoch = f" --epoch {summary['epoch']}" if summary.get("epoch") else ""
    r.lead("Explore this run live in the browser (latent map, any state's Gaussian cloud in 3D, trajectories, "
           "particle subsets):", f"gaussianem view {rundir if rundir else 'RUNDIR'}{epoch}")
    if "structure" in summary:
        discovery.report_section(r, summary["structure"], found_states, plots.get("states"), consensus, grid)
    fsc_head, vmax, cons_proj = _classes_section(r, out, summary, plots, classes, consensus, grid)
    _latent_section(r, plots, umap_note)
    _trajectory_sections(r, summary, trajs, fsc_head, cons_proj, vmax, grid)
    _flexibility_and_models(r, summary, plots, opts, rundir)
    r.heading("Open the results")
    r.code(f"gaussianem view {rundir if rundir else 'RUNDIR'}   # the latent space live in the browser\n"
           "chimerax chimerax.cxc        # consensus map (mesh) + class volumes + trajectories as volume series\n"
           "chimerax pc1/traj.pdb         # pseudo-atomic trajectory: play it with  coordset #1\n"
           "pymol pc1/traj.pdb            # the same in PyMOL (one state per model)\n"
           f"gaussianem eval-vol RUNDIR --particles {summary['centers_ind'][0]} -o OUT   # any particle's state\n"
           f"gaussianem select DATASET --labels kmeans{len(classes.z)}/labels.npy --classes 0,3 -o subset.star"
           "   # particles")
    r.paragraph("chimerax.cxc:")
    r.code(cxc)
    r.write(out / "report.html")


def _classes_section(
    r: report.Report, out: Path, summary: dict, plots: dict[str, bytes], classes: StateSet,
    consensus: np.ndarray | None, grid: VolumeGrid | None,
) -> tuple[str, np.ndarray | None, np.ndarray | None]:
    """The k-means classes: labelled projections, the statistics table, the counts plot; returns the FSC column's
    heading, the projections' grey-scale maximum and the consensus projections (shared with the trajectories)."""
    k = len(classes.z)
    counts = summary["counts"]
    total = max(1, sum(counts))
    stats = summary.get("class_stats") or [{} for _ in range(k)]
    freq = next((st["frequency_per_angstrom"] for st in stats if "frequency_per_angstrom" in st), None)
    fsc_head = f"FSC at {1 / freq:.1f} Å" if freq else "FSC at half Nyquist"
    r.heading(f"k-means classes (K = {k})")
    r.paragraph("Each class is represented by the real particle nearest to its centre. Pictures: sum projections "
                "of its volume along z, y and x (grey, one scale for all states), with the consensus map's outline "
                "in orange (30 % of its projected peak): a domain that moves leaves the outline, one that fades "
                "turns pale. Against the consensus: RMS and 99th-percentile displacement of the Gaussians, the "
                f"change of their total amplitude, the {fsc_head.replace('FSC at', 'FSC of the volumes at')} "
                "(half of Nyquist) and where that FSC falls below 0.5.")
    vmax = None
    cons_proj = None
    if consensus is not None and grid is not None:
        cons_proj = state_views.projections(consensus)
        vmax = cons_proj.reshape(3, -1).max(1)
    if cons_proj is not None and classes.projections:
        r.views([(state_views.projection_figure(classes.projections[j], cons_proj, grid,
                                                _state_title(f"class {j}", stats[j], counts[j], total), vmax),
                  f"class {j}: {counts[j]:,} particles") for j in range(k)])
    r.table(["class", "particles", "fraction", "centre particle", "RMS displacement (Å)",
             "99th pct displacement (Å)", "amplitude change", "faded Gaussians", fsc_head, "FSC = 0.5", "volume"],
            [[j, f"{counts[j]:,}", f"{counts[j] / total:.3f}", summary["centers_ind"][j], *_stat_cells(stats[j]),
              str(classes.volume_files[j].relative_to(out)) if j < len(classes.volume_files) else ""]
             for j in range(k)])
    r.figures([(plots["counts"], "particles per class")])
    return fsc_head, vmax, cons_proj


def _latent_section(r: report.Report, plots: dict[str, bytes], umap_note: str) -> None:
    """The latent space: UMAP/PCA/z scatter plots, explained variance, histograms."""
    r.heading("Latent space")
    figs = [(plots[key], c) for key, c in (("umap", "UMAP"), ("pca", "PCA (PC1, PC2)"), ("z", "z"),
                                       ("variance", "PCA explained variance")) if key in plots]
    r.figures(figs)
    if umap_note:
        r.paragraph(umap_note)
    r.figures([(plots["hist"], "latent histograms")])


def _trajectory_sections(r: report.Report, summary: dict, trajs: list[StateSet], fsc_head: str,
                         cons_proj: np.ndarray | None, vmax: np.ndarray | None, grid: VolumeGrid | None) -> None:
    """One section per trajectory: labelled projections of its points and their statistics."""
    for s in trajs:
        n = len(s.z)
        tstats = summary.get("trajectory_stats", {}).get(s.label) or [{} for _ in range(n)]
        r.heading(f"Trajectory along {s.label.upper()} (5th → 95th percentile)")
        r.paragraph(f"{n} points evenly along {s.label.upper()}, the other PCs at the mean; same pictures and "
                    "numbers as the classes.")
        if cons_proj is not None and s.projections:
            r.views([(state_views.projection_figure(s.projections[i], cons_proj, grid,
                                                    _state_title(f"{s.label.upper()} point {i + 1}/{n}", tstats[i]),
                                                    vmax), f"{s.label} point {i}") for i in range(n)])
        r.table(["point", "RMS displacement (Å)", "99th pct displacement (Å)", "amplitude change",
                 "faded Gaussians", fsc_head, "FSC = 0.5"],
                [[i + 1, *_stat_cells(tstats[i])] for i in range(n)])


def _flexibility_and_models(r: report.Report, summary: dict, plots: dict[str, bytes], opts: AnalysisOptions,
                            rundir: Path | None) -> None:
    """Flexibility, the warped atomic model (when asked for) and the training curves."""
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

def _state_title(name: str, st: dict, count: int | None = None, total: int | None = None) -> str:
    """'class 3 · 812 particles (16.2 %) · RMS displacement 2.10 Å · amplitude +3.1 % · FSC 0.5 @ 12.0 Å'."""
    parts = [name]
    if count is not None and total:
        parts.append(f"{count:,} particles ({100 * count / total:.1f} %)")
    if st:
        parts.append(f"RMS displacement {st['rms_displacement_angstrom']:.2f} Å")
        parts.append(f"amplitude {st['amplitude_change_percent']:+.1f} %")
        if "fsc_0.5_text" in st:
            parts.append(f"FSC vs consensus {st['fsc_0.5_text']}")
    return " · ".join(parts)


def _stat_cells(st: dict) -> list[str]:
    """Table cells: RMS and p99 displacement, amplitude change, faded fraction, FSC at the stated frequency, the
    0.5 crossing (text)."""
    if not st:
        return [""] * 6
    return [f"{st['rms_displacement_angstrom']:.2f}", f"{st['p99_displacement_angstrom']:.2f}",
            f"{st['amplitude_change_percent']:+.1f} %", f"{100 * st['faded_fraction']:.1f} %",
            f"{st['fsc_at_frequency']:.3f}" if "fsc_at_frequency" in st else "",
            st.get("fsc_0.5_text", "")]
