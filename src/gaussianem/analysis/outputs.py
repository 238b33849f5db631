"""The files ``analyze`` writes around the states: numpy arrays and class counts, the flexibility plot, the
ChimeraX script and report.html."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gaussianem.analysis import latent, report
from gaussianem.analysis.options import AnalysisOptions
from gaussianem.analysis.states import StateSet
from gaussianem.io.writes import atomic_path

CLASS_COLOURS = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#ee7733",
                 "#0077bb", "#33bbee", "#009988", "#cc3311", "#ee3377", "#999933", "#882255", "#44aa99"]


def save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)


def write_counts(path: Path, counts: np.ndarray, centers_ind: np.ndarray, fsc_low: list[float]) -> None:
    total = counts.sum()
    lines = ["# class  particles  fraction  centre_particle_index  low_res_FSC_vs_consensus"]
    for j, c in enumerate(counts):
        f = f"{fsc_low[j]:.4f}" if j < len(fsc_low) else "nan"
        lines.append(f"{j:5d} {int(c):10d} {c / total:9.4f} {int(centers_ind[j]):22d} {f}")
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

