"""The ``analyze`` stage that says which structure the particles hold: discrete states (``states/``) and continuous
motions (``motionK/`` trajectories, or the ``pcK/`` ones when there is a single state), decided by
:mod:`gaussianem.analysis.structure`, with the statement that summary.json and report.html carry."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from gaussianem.analysis import latent, report, state_views, structure, volumes
from gaussianem.analysis.options import AnalysisOptions
from gaussianem.analysis.states import StateSet, render_states
from gaussianem.analysis.volumes import VolumeGrid
from gaussianem.io.writes import atomic_path

log = logging.getLogger(__name__)


def end_change(model: Any, ends: np.ndarray, opts: AnalysisOptions, min_amplitude: float = 0.1) -> tuple[float, float]:
    """How the clouds decoded at the two latent points ends (2, zdim) differ -> (shift, amplitude change):
    the 95th percentile over Gaussians of their displacement (Å), Gaussians fainter than ``min_amplitude`` × the
    median amplitude at either end left out; and the share of the base cloud's total amplitude that changes,
    sum_g |a1_g - a0_g| / sum_g base_g (a trajectory drawn by fading rather than moving shows a small shift and a
    large share)."""
    pos, _, amp = volumes.decode_points(model, ends, opts.batch_size, opts.device)
    shown = np.minimum(amp[0], amp[1]) >= min_amplitude * max(float(np.median(amp)), 1e-30)
    d = np.linalg.norm(pos[1] - pos[0], axis=1)[shown]
    base_total = float(np.abs(volumes.base_cloud_arrays(model)[2]).sum())
    share = float(np.abs(amp[1] - amp[0]).sum()) / max(base_total, 1e-30)
    return (float(np.percentile(d, 95)) if len(d) else 0.0), share


def amplitude_channel(model: Any, z: np.ndarray, state_labels: np.ndarray, opts: AnalysisOptions,
                      max_sample: int = 500) -> dict:
    """Group a sample of particles by their decoded amplitudes (:func:`structure.amplitude_groups`) and compare
    with the mixture states of z -> the ``amplitude`` entry of the summary (with ``ari_vs_states``)."""
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(opts.seed)
    sample = np.sort(rng.choice(len(z), min(len(z), max_sample, max(opts.flex_sample, 1)), replace=False))
    base_amp = volumes.base_cloud_arrays(model)[2]
    rel = np.concatenate([amp / np.maximum(base_amp, 1e-12)[None] for _, _, _, amp in
                          volumes.decode_batches(model, z[sample], opts.batch_size, opts.device)])
    groups = structure.amplitude_groups(rel, seed=opts.seed)
    summary = groups["summary"]
    summary["ari_vs_states"] = round(float(adjusted_rand_score(state_labels[sample], groups["labels"])), 4)
    return summary


def find_and_render(
    out: Path, model: Any, z: np.ndarray, grid: VolumeGrid, opts: AnalysisOptions, consensus: np.ndarray,
    base_amp: np.ndarray,
) -> tuple[dict, StateSet | None, list[StateSet], bytes]:
    """Find the states and motions of z (N, zdim), write the state volumes and motion trajectories ->
    (the ``structure`` entry of summary.json, the states' StateSet or None for one state, the motion
    trajectories written here, the latent plot coloured by state as PNG bytes)."""
    n_pcs = max(1, opts.n_pcs)
    found = structure.find_structure(z, n_pcs=n_pcs, n_points=opts.n_points, seed=opts.seed)
    st = found.states

    def shifts(candidates: list[structure.MotionCandidate]) -> dict[int, float]:
        out = {}
        for c in candidates:  # the amplitude share stays on the candidate: each state's trial has its own PC1..
            if c.stands_out and c.modes == 1:
                out[c.index], c.amplitude_change = end_change(model, c.trajectory[[0, -1]], opts)
        return out

    found, decision = structure.find_motions(z, found, shifts, grid.pixel_size_angstrom, n_pcs, opts.n_points,
                                             opts.seed)
    for c, entry in zip(found.candidates, decision["motions"], strict=True):
        entry["end_amplitude_change"] = None if c.amplitude_change is None else round(c.amplitude_change, 4)
    sdir = out / "states"
    sdir.mkdir(exist_ok=True)
    _save_npy(sdir / "labels.npy", st.labels)
    _save_npy(sdir / "centers_ind.npy", st.centers_ind)
    decision["classes"]["labels"] = "states/labels.npy"
    states_set = None
    if st.n > 1:
        states_set = render_states("states", sdir, model, z[st.centers_ind], grid, opts, consensus, base_amp,
                                   cell=grid.extent_angstrom)
    motions: list[StateSet] = []
    for c, entry in zip(found.candidates, decision["motions"], strict=True):
        if not c.is_motion:
            continue
        if st.n == 1 and c.index <= opts.n_pcs:  # one state: the within-state PC is the PC, already written
            entry["folder"] = f"pc{c.index}"
            continue
        folder = out / f"motion{c.index}"
        folder.mkdir(exist_ok=True)
        np.savetxt(folder / "z_values.txt", c.trajectory, fmt="%.9g")
        motions.append(render_states(f"motion{c.index}", folder, model, c.trajectory, grid, opts, consensus,
                                     base_amp, formats=("mrc",), pdb_trajectory="traj.pdb",
                                     cell=grid.extent_angstrom))
        entry["folder"] = folder.name
    decision["amplitude"] = amplitude_channel(model, z, st.labels, opts)
    log.info("structure: %s", decision["statement"])
    return decision, states_set, motions, _plot(out, z, st, found)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, arr)


def _plot(out: Path, z: np.ndarray, st: structure.States, found: structure.Structure) -> bytes:
    """PC1/PC2 of z coloured by state, numbered at each state's centre particle."""
    pca = latent.pca_fit(z)
    scores = pca.transform(z)
    if scores.shape[1] < 2:
        scores = np.concatenate([scores, np.zeros((len(z), 1))], 1)
    title = f"PCA of z, coloured by mixture state ({st.n} state{'s' if st.n > 1 else ''})"
    return latent.plot_scatter_classes(scores[:, :2], st.labels, st.centers_ind, title, "PC1", "PC2",
                                       out / "states" / "z_pca_states.png")


def report_section(
    r: report.Report, decision: dict, states_set: StateSet | None, png: bytes | None,
    consensus: np.ndarray | None = None, grid: VolumeGrid | None = None,
) -> None:
    """The 'Structure found' section of report.html: the statement, the evidence, the state volumes (as labelled
    projections with the consensus (D, D, D) outline when it and its grid are given)."""
    r.heading("Structure found")
    r.paragraph(f"Found: {decision['statement']}.")
    c = decision["classes"]
    r.paragraph(f"Discrete states: a Gaussian mixture on z (BIC chose {c['mixture_components']} components; "
                "components with no density valley between them are one state; agreement between restarts "
                f"{c['stability']:.2f}). Labels: {c['labels']} (usable with 'gaussianem select --labels').")
    rows = [[m["pc"], f"{m['variance_ratio']:.3f}", f"{m['width_ratio']:.2f}", f"{m['separation']:.2f}", m["modes"],
             "–" if m["end_shift_angstrom"] is None else f"{m['end_shift_angstrom']:.2f}",
             "–" if m.get("end_amplitude_change") is None else f"{100 * m['end_amplitude_change']:.1f}",
             "yes" if m["is_motion"] else "no", m.get("folder", "–")] for m in decision["motions"]]
    r.paragraph(f"Continuous motions: principal directions of z after removing each state's mean "
                f"({decision['motion_axis']}); a motion is unimodal, at least twice as wide as the later "
                "directions, 1.25 times wider than the next and narrower than the previous, and its trajectory's end "
                "states differ by at least one voxel (95th percentile of the Gaussians' shifts). The amplitude "
                "changed between the ends, as a share of the cloud's, tells a motion drawn by moving Gaussians "
                "(a few %) from one drawn by fading some and brightening others.")
    r.table([decision["motion_axis"], "variance share", "width ratio", "separation", "modes", "end shift (Å)",
             "amplitude changed (%)", "motion", "trajectory"], rows)
    a = decision.get("amplitude")
    if a:
        text = (f"Amplitude channel: over {a['n_particles']:,} sampled particles, {a['variable_gaussians']:,} "
                f"Gaussians change their amplitude by 10 % or more; the particles fall into {a['n_groups']} "
                "group(s) by these amplitudes")
        if a["n_groups"] > 1:
            groups = ", ".join(f"{n:,} at {m:.2f}" for n, m in zip(a["counts"], a["mean_relative_amplitude"],
                                                                    strict=True))
            text += (f" (particles at mean relative amplitude: {groups}; agreement with the states above, "
                     f"ARI {a['ari_vs_states']:.2f})")
        r.paragraph(text + ".")
    if states_set is not None and consensus is not None and grid is not None and states_set.projections:
        cons_proj = state_views.projections(consensus)
        vmax = cons_proj.reshape(3, -1).max(1)
        r.views([(state_views.projection_figure(p, cons_proj, grid, f"state {j}: {c['counts'][j]:,} particles",
                                                vmax), f"state {j}: {c['counts'][j]:,} particles")
                 for j, p in enumerate(states_set.projections)])
    if any(m.get("folder", "").startswith("motion") for m in decision["motions"]):
        own = next((m["state"] for m in decision["motions"] if m.get("state") is not None), None)
        if own is None:
            r.paragraph("motionK/: the trajectory along within-state PCk, from the most populous state's mean (5th "
                        "→ 95th percentile of the within-state scores); shown with the PC trajectories below.")
        else:
            r.paragraph(f"motionK/: the trajectory along PCk of state {own}'s particles alone (no direction of the "
                        "pooled within-state PCA stood out: the states move along different latent directions), "
                        "from that state's mean (5th → 95th percentile of its scores); shown with the PC "
                        "trajectories below.")
    if png:
        r.figures([(png, "PCA of z coloured by state")])
