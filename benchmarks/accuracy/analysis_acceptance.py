"""Acceptance numbers of the analysis for a run trained on a simulated dataset.

    python benchmarks/accuracy/analysis_acceptance.py --run RUNDIR --sim SIMDIR [--epoch E] [--ksample 20] [--json OUT]
        [--analyze-dir RUNDIR/analyze.E]

Depending on the simulation (its ``simulation.json``):

* trajectory motion (``simulate --preset adk``): the two ends of the PC1 trajectory (5th / 95th percentile) are
  rendered on the simulation's grid and compared by FSC-AUC with the ground-truth volumes of both ends of the
  motion (each end must match its own end better than the other); then MDAnalysisTests ``adk_closed.pdb``,
  placed in the map frame on the closed frame of the simulated trajectory, is warped from the closed to the open
  end of PC1 and its Cα RMSD (after superposition) to ``adk_open.pdb`` is reported before (6.9 Å) and after
  (target ≤ 3 Å);
* discrete states (``--preset tcr-compositional``): k-means (K = ``--ksample``) on z; every ground-truth state
  must be the majority of at least one class; for states that remove chains, the class it dominates most is
  decoded and the amplitudes of the Gaussians lying on the removed chains are compared with the base (target:
  below 10 %);
* with ``--analyze-dir``: every ``.mrc`` opens with the right voxel size and has a low-resolution FSC > 0.8
  with the consensus; every ``.pdb`` parses with gemmi.

Prints a markdown summary and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import gemmi
import mrcfile
import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.stats import spearmanr

from gaussianem.analysis import atomic, latent, volumes
from gaussianem.analysis.inputs import load_run
from gaussianem.analysis.states import low_res_fsc
from gaussianem.io.mrc import read_volume
from gaussianem.physics.fsc import fsc, fsc_auc

log = logging.getLogger("analysis_acceptance")


def _auc(a: np.ndarray, b: np.ndarray) -> float:
    return fsc_auc(fsc(torch.from_numpy(a), torch.from_numpy(b)), a.shape[0])


def _superposed_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    sup = gemmi.superpose_positions([gemmi.Position(*x) for x in a], [gemmi.Position(*x) for x in b])
    return float(sup.rmsd)


def _kabsch(mobile: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R, t minimising |R·mobile + t - target| -> apply as x @ R.T + t."""
    mc, tc = mobile.mean(0), target.mean(0)
    h = (mobile - mc).T @ (target - tc)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    r = vt.T @ np.diag([1, 1, d]) @ u.T
    return r, tc - mc @ r.T


def _ca(st: gemmi.Structure) -> np.ndarray:
    return atomic.ca_positions(st)


def trajectory_acceptance(model, config, z, sim: Path, summary: dict, truth: dict, k: int = 20) -> dict:
    from MDAnalysisTests.datafiles import PDB_closed

    from gaussianem.simulate.ensemble import build_ensemble
    from gaussianem.simulate.spec import spec_from_dict

    res: dict = {}
    coord = truth["coordinate"]
    pca = latent.pca_fit(z)
    scores = pca.transform(z)[:, 0]
    rho = float(spearmanr(scores, coord).correlation)
    res["spearman_pc1_vs_coordinate"] = rho
    traj = latent.pc_trajectory(z, pca, 1, 10)
    lo_pt, hi_pt = (traj[0], traj[-1]) if rho >= 0 else (traj[-1], traj[0])  # lo = the closed end (coordinate 0)
    lo_s, hi_s = np.percentile(scores, [5, 95])
    near_lo = np.abs(scores - (lo_s if rho >= 0 else hi_s)) <= np.percentile(np.abs(scores - lo_s), 2.5) + 1e-9
    near_hi = np.abs(scores - (hi_s if rho >= 0 else lo_s)) <= np.percentile(np.abs(scores - hi_s), 2.5) + 1e-9
    c_lo, c_hi = float(np.median(coord[near_lo])), float(np.median(coord[near_hi]))
    res["coordinate_at_pc1_ends"] = [c_lo, c_hi]

    box, apix = int(summary["box"]), float(summary["apix"])
    grid = volumes.output_grid(volumes.working_grid(config), box, apix)
    pos, wid, amp = volumes.decode_points(model, np.stack([lo_pt, hi_pt]))
    ends = [volumes.render_volume(pos[i], wid[i], amp[i], grid) for i in range(2)]
    table = [r for r in summary["volumes"] if r["state"] == 0]
    gt_lo = min(table, key=lambda r: r["coordinate"])
    gt_hi = max(table, key=lambda r: r["coordinate"])
    gts = [read_volume(sim / r["file"])[0] for r in (gt_lo, gt_hi)]
    m = [[_auc(ends[i], gts[j]) for j in range(2)] for i in range(2)]
    res["fsc_auc_pc1_end_vs_gt_end"] = {"rows": ["pc1 closed end", "pc1 open end"],
                                        "cols": [f"gt coordinate {gt_lo['coordinate']:.2f}",
                                                 f"gt coordinate {gt_hi['coordinate']:.2f}"], "matrix": m}
    res["pc1_ends_match_own_gt_end"] = bool(m[0][0] > m[0][1] and m[1][1] > m[1][0])

    # the closed atomic model in the map frame: superposed on the simulated trajectory's closed frame
    spec = spec_from_dict(summary["spec"])
    ens = build_ensemble(spec)
    ca_idx = _trajectory_ca_indices(spec, ens.n_atoms)
    closed = gemmi.read_structure(PDB_closed)
    open_path = Path(os.path.dirname(PDB_closed)) / "adk_open.pdb"
    open_st = gemmi.read_structure(str(open_path))
    frame0 = ens.frames[0][ca_idx]
    r, t = _kabsch(_ca(closed), frame0)
    xyz = atomic.structure_positions(closed) @ r.T + t  # Gaussian frame
    res["closed_model_fit_to_frame0_ca_rmsd"] = float(np.sqrt(((_ca(closed) @ r.T + t - frame0) ** 2).sum(1).mean()))
    ca_mask = np.array([atomic.is_alpha_carbon(rr, a) for ch in closed[0] for rr in ch for a in rr])
    before = _superposed_rmsd(xyz[ca_mask], _ca(open_st))
    ref_i, fit = atomic.best_reference(xyz, [volumes.base_cloud_arrays(model)[0], pos[0]])
    reference = pos[0]  # the model is closed: carry it from the closed end of PC1 to the open end
    warped = atomic.warp_points(xyz, reference, pos[1])
    after = _superposed_rmsd(warped[ca_mask], _ca(open_st))
    truth_open = ens.frames[ens.frame_of(np.array([c_hi]))[0]][ca_idx]
    # what `analyze --atomic-model` does: displacements from the best-fitting of the consensus and the k-means class
    # centres (K = --ksample), carried to the trajectory's open end
    km = latent.kmeans(z, k)
    class_pos = volumes.decode_points(model, km.centers)[0]
    cands = [volumes.base_cloud_arrays(model)[0], *class_pos]
    pipe_i, pipe_fit = atomic.best_reference(xyz, cands)
    pipe = _superposed_rmsd(atomic.warp_points(xyz, cands[pipe_i], pos[1])[ca_mask], _ca(open_st))
    res["displacement"] = displacement_diagnostics(pos, amp, ens.frames[ens.frame_of(np.array([c_lo]))[0]],
                                                   ens.frames[ens.frame_of(np.array([c_hi]))[0]])
    res["warp"] = {
        "ca_rmsd_closed_vs_open_superposed": before,
        "ca_rmsd_warped_vs_open_superposed": after,
        "ca_rmsd_warped_vs_true_frame_at_open_end": float(np.sqrt(((warped[ca_mask] - truth_open) ** 2).sum(1).mean())),
        "ca_rmsd_closed_vs_true_frame_at_open_end": float(np.sqrt(((xyz[ca_mask] - truth_open) ** 2).sum(1).mean())),
        "model_fit_rms_to_consensus_and_closed_end": fit.tolist(), "best_reference": ["consensus", "closed end"][ref_i],
        "analyze_pipeline_reference": "consensus" if pipe_i == 0 else f"class {pipe_i - 1} of {k}",
        "analyze_pipeline_reference_fit_rms": float(pipe_fit[pipe_i]),
        "ca_rmsd_warped_by_analyze_pipeline_vs_open_superposed": pipe,
        "target_angstrom": 3.0, "pass": bool(after <= 3.0),
    }
    return res


def displacement_diagnostics(pos: np.ndarray, amp: np.ndarray, atoms_lo: np.ndarray, atoms_hi: np.ndarray,
                             k: int = 8, near_angstrom: float = 4.0) -> dict:
    """How the model expresses the motion between the PC1 ends: each Gaussian's displacement pos[1] - pos[0] vs the
    true displacement there (mean displacement of its k nearest atoms, frame at the closed end -> frame at the
    open end; Gaussians with an atom within ``near_angstrom``), and the relative amplitude change.

    pos (2, G, 3), amp (2, G), atoms_* (A, 3) in the Gaussian frame."""
    from scipy.spatial import cKDTree

    d_model = pos[1] - pos[0]
    dist, idx = cKDTree(atoms_lo).query(pos[0], k=k)
    d_true = (atoms_hi - atoms_lo)[idx].mean(1)
    keep = dist[:, 0] <= near_angstrom
    dm, dt = d_model[keep], d_true[keep]
    moving = np.linalg.norm(dt, axis=1) >= np.percentile(np.linalg.norm(dt, axis=1), 75)
    slope = float((dm * dt).sum() / max((dt * dt).sum(), 1e-12))
    cos = float((dm * dt).sum() / max(np.sqrt((dm * dm).sum() * (dt * dt).sum()), 1e-12))
    return {
        "gaussians_near_atoms": int(keep.sum()),
        "rms_model_displacement": float(np.sqrt((dm**2).sum(1).mean())),
        "rms_true_displacement": float(np.sqrt((dt**2).sum(1).mean())),
        "rms_model_displacement_top_quartile_movers": float(np.sqrt((dm[moving] ** 2).sum(1).mean())),
        "rms_true_displacement_top_quartile_movers": float(np.sqrt((dt[moving] ** 2).sum(1).mean())),
        "regression_slope_model_on_true": slope, "cosine_model_true": cos,
        "rms_residual": float(np.sqrt(((dm - dt) ** 2).sum(1).mean())),
        "mean_abs_amplitude_change_over_mean_amplitude": float(np.abs(amp[1] - amp[0]).mean() / max(amp.mean(), 1e-12)),
    }


def _trajectory_ca_indices(spec, n_atoms: int) -> np.ndarray:
    """Indices of the Cα atoms in the simulator's atom order (its selection, hydrogens removed)."""
    import MDAnalysis as mda

    from gaussianem.simulate.presets import resolve_data_path
    from gaussianem.simulate.structures import _elements_from_universe

    src = spec.source
    u = mda.Universe(resolve_data_path(src["topology"]), resolve_data_path(src["trajectory"]))
    atoms = u.select_atoms(src.get("selection", "all"))
    if not spec.hydrogens:
        atoms = atoms[np.array(_elements_from_universe(atoms)) != "H"]
    if len(atoms) != n_atoms:
        raise RuntimeError(f"atom order mismatch: {len(atoms)} selected vs {n_atoms} simulated")
    return np.flatnonzero(atoms.names == "CA")


def states_acceptance(model, z, sim: Path, summary: dict, truth: dict, k: int) -> dict:
    from sklearn.metrics import adjusted_rand_score

    from gaussianem.simulate.ensemble import _load_atoms, build_ensemble
    from gaussianem.simulate.spec import spec_from_dict

    state = truth["state"]
    names = summary["state_names"]
    km = latent.kmeans(z, k)
    res: dict = {"ari": float(adjusted_rand_score(state, km.labels)), "k": k}
    table = np.zeros((k, len(names)), int)
    np.add.at(table, (km.labels, state), 1)
    majority = table.argmax(1)
    res["states_with_a_majority_class"] = {names[s]: int((majority == s).sum()) for s in range(len(names))}
    res["every_state_is_a_majority"] = bool(all((majority == s).any() for s in range(len(names))))

    spec = spec_from_dict(summary["spec"])
    atoms = _load_atoms(spec)
    ens = build_ensemble(spec)
    centre = atoms.positions[0] - ens.base[0]
    base_pos, _, base_amp = volumes.base_cloud_arrays(model)
    _, nearest = cKDTree(atoms.positions - centre).query(base_pos, k=1)
    gauss_chain = atoms.chains[nearest]
    removed_res = {}
    for s, st in enumerate(spec.states):
        removed = list(st.get("remove_chains", []) or [])
        if not removed:
            continue
        frac = table[:, s] / np.maximum(table.sum(1), 1)
        j = int(np.argmax(frac))
        _, _, amp = volumes.decode_points(model, km.centers[j:j + 1])
        ratio = amp[0] / np.maximum(base_amp, 1e-12)
        on_removed = np.isin(gauss_chain, removed)
        kept = ~on_removed
        removed_res[names[s]] = {
            "class": j, "class_purity": float(frac[j]), "n_gaussians_on_removed_chains": int(on_removed.sum()),
            "median_amplitude_ratio_removed": float(np.median(ratio[on_removed])) if on_removed.any() else None,
            "fraction_below_10pct_removed": float((ratio[on_removed] < 0.1).mean()) if on_removed.any() else None,
            "median_amplitude_ratio_kept": float(np.median(ratio[kept])),
        }
    res["removed_chains"] = removed_res
    return res


def check_analyze_dir(adir: Path) -> dict:
    cons = mrcfile.read(adir / "consensus.mrc")
    with mrcfile.open(adir / "consensus.mrc") as m:
        voxel = float(m.voxel_size.x)
        origin = (float(m.header.origin.x), float(m.header.origin.y), float(m.header.origin.z))
    bad, worst = [], 1.0
    for p in sorted(adir.rglob("*.mrc")):
        if p.name.startswith("flexibility"):
            continue
        with mrcfile.open(p) as m:
            ok = abs(float(m.voxel_size.x) - voxel) < 1e-4 and \
                (float(m.header.origin.x), float(m.header.origin.y), float(m.header.origin.z)) == origin
            f = low_res_fsc(m.data.copy(), cons) if m.data.shape == cons.shape else float("nan")
        worst = min(worst, f)
        if not ok or not f > 0.8:
            bad.append(str(p.relative_to(adir)))
    pdb_bad = []
    for p in sorted(adir.rglob("*.pdb")):
        try:
            gemmi.read_structure(str(p))
        except Exception:  # noqa: BLE001 - report any parse failure
            pdb_bad.append(str(p.relative_to(adir)))
    return {"mrc_failing": bad, "worst_low_res_fsc": worst, "pdb_failing": pdb_bad}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--sim", type=Path, required=True)
    p.add_argument("--epoch", type=int, default=None)
    p.add_argument("--ksample", type=int, default=20)
    p.add_argument("--analyze-dir", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model, config, epoch, z = load_run(args.run, args.epoch)
    summary = json.loads((args.sim / "simulation.json").read_text())
    with np.load(args.sim / "truth.npz") as f:
        truth = {k: f[k] for k in f.files}
    if len(truth["state"]) != len(z):
        raise SystemExit(f"the run has {len(z)} latents but the simulation {len(truth['state'])} particles")
    out: dict = {"run": str(args.run), "epoch": epoch, "sim": str(args.sim), "preset": summary.get("preset")}
    if summary.get("motion") == "trajectory":
        out["trajectory"] = trajectory_acceptance(model, config, z, args.sim, summary, truth, args.ksample)
    if summary.get("n_states", 1) > 1:
        out["states"] = states_acceptance(model, z, args.sim, summary, truth, args.ksample)
    if args.analyze_dir:
        out["analyze_dir"] = check_analyze_dir(args.analyze_dir)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
