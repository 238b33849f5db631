"""``gaussianem benchmark`` end to end: score a GaussianEM run (or another tool) and write metrics.md + metrics.json."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from gaussianem.errors import InputError
from gaussianem.evaluation.metrics import ScoreConfig, Truth, VolumeGenerator, load_truth, score
from gaussianem.io.checks import load_latents
from gaussianem.io.dataset import SOURCE_INDEX
from gaussianem.io.mrc import read_volume
from gaussianem.io.writes import atomic_path, write_json_atomic
from gaussianem.physics.projection import voxelize_gaussians

log = logging.getLogger(__name__)


def truth_rows_for_run(config: dict, rundir: Path, n_latents: int, truth: Truth) -> np.ndarray:
    """Truth row of each latent row (M,): the dataset's ``source_index.npy`` when present, else the identity.

    preprocess keeps the star file's row of each particle in ``source_index.npy``; the simulator's truth rows are
    the star file's rows.
    """
    dataset = config.get("dataset")
    candidates = []
    if dataset:
        p = Path(dataset)
        # a relative path was relative to where 'train' ran: try here, the run folder and its parent
        candidates = [p, rundir / p, rundir.parent / p] if not p.is_absolute() else [p]
    for root in candidates:
        if (root / SOURCE_INDEX).is_file():
            rows = np.load(root / SOURCE_INDEX).astype(np.int64).ravel()
            if len(rows) != n_latents:
                raise InputError(f"{root / SOURCE_INDEX} has {len(rows)} rows but the run has {n_latents} latents")
            return rows
    if n_latents != truth.n:
        raise InputError(f"the run has {n_latents} latents, the ground truth {truth.n} particles, and no "
                         f"{SOURCE_INDEX} maps one to the other (dataset folder: {dataset})")
    log.warning("no %s found beside the run's dataset; assuming latent row i is truth row i", SOURCE_INDEX)
    return np.arange(n_latents)


def gaussian_volume_generator(model, box_size: int, pixel_size_angstrom: float, device: torch.device,
                              batch_size: int = 16) -> VolumeGenerator:
    """Volumes of the model's decoded Gaussian clouds on the ground truth's grid (D, D, D), one per latent."""

    def generate(rows: np.ndarray, z: np.ndarray) -> Iterator[Tensor]:
        for start in range(0, len(z), batch_size):
            zb = torch.as_tensor(np.asarray(z[start:start + batch_size]), dtype=torch.float32, device=device)
            with torch.no_grad():
                positions, widths, amplitudes = model.decode(zb)
            for b in range(zb.shape[0]):
                yield voxelize_gaussians(positions[b], widths[b], amplitudes[b], box_size, pixel_size_angstrom)

    return generate


def score_gaussianem_run(rundir: str | Path, truth: Truth, epoch: int | None, config: ScoreConfig,
                         device: torch.device) -> dict:
    """Score a GaussianEM run folder at ``epoch`` (None = the last complete one)."""
    from gaussianem.model.load import load_model

    rundir = Path(rundir)
    if not rundir.is_dir():
        raise InputError(f"run folder not found: {rundir}")
    model, run_config, epoch = load_model(rundir, epoch=epoch, device=device)
    model.eval()
    zpath = rundir / f"z.{epoch}.npy"
    if not zpath.is_file():
        raise InputError(f"{rundir}: no latents {zpath.name} for epoch {epoch}")
    z = load_latents(zpath)
    rows = truth_rows_for_run(run_config, rundir, len(z), truth)
    box, apix = truth.grid()
    gen = gaussian_volume_generator(model, box, apix, device)
    consensus = {}
    base = getattr(model, "base_cloud", None)
    if base is not None:
        with torch.no_grad():
            pos, wid, amp = (t.detach().to(device) for t in base.physical())
            consensus["base cloud"] = voxelize_gaussians(pos, wid, amp, box, apix)
    consensus.update(truth_consensus(truth))
    result = score(z, rows, truth, gen, consensus=consensus, config=config, device=device)
    result["tool"] = "gaussianem"
    result["run"] = str(rundir)
    result["epoch"] = int(epoch)
    return result


def truth_consensus(truth: Truth) -> dict[str, Tensor]:
    """The simulator's consensus map, when it wrote one, as a baseline entry."""
    path = truth.consensus_path()
    if path is None:
        return {}
    vol, _, _ = read_volume(path)
    return {"simulator consensus": torch.as_tensor(vol, dtype=torch.float64)}


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def metric_rows(result: dict) -> list[tuple[str, str]]:
    """(metric, value) pairs for the markdown table."""
    lat = result["latent"]
    sp, km, nb = lat["spearman"], lat["kmeans"], lat["neighbourhood"]
    pi, ps = result["per_image_fsc_auc"], result["per_state_fsc_auc"]
    rows = [
        (f"per-image FSC-AUC (mean ± sd, n={pi['n']})",
         f"{_fmt(pi['mean'])} ± {_fmt(pi['std'])}" if pi["n"] else "–"),
        ("per-image FSC-AUC (median)", _fmt(pi["median"])),
        (f"per-state FSC-AUC (mean, {ps['n']} states)", _fmt(ps["mean"])),
        ("Spearman abs(ρ) PC1", _fmt(sp["pc1"])),
        ("Spearman abs(ρ) best PC / axis", _fmt(sp["best"])),
        ("Spearman abs(ρ) linear (5-fold CV)", _fmt(sp["linear_cv"])),
        (f"ARI k-means (K={km['k']})", _fmt(km["ari"])),
        (f"neighbourhood similarity (k={nb['k']}; chance {_fmt(nb['chance'])})", _fmt(nb["similarity"])),
    ]
    for label, s in result.get("consensus_fsc_auc", {}).items():
        rows.append((f"baseline: {label} FSC-AUC (mean)", _fmt(s["mean"])))
    for key, label in (("train_seconds", "training wall time (s)"), ("particles_per_second", "particles/s")):
        if result.get(key) is not None:
            rows.append((label, _fmt(float(result[key]), 1)))
    return rows


def markdown_table(results: list[dict]) -> str:
    """One column per scored tool, one row per metric."""
    names = [r.get("name") or r.get("tool", "?") for r in results]
    per = [dict(metric_rows(r)) for r in results]
    keys: list[str] = []
    for r in results:
        for k, _ in metric_rows(r):
            if k not in keys:
                keys.append(k)
    lines = ["| metric | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(p.get(k, "–") for p in per) + " |")
    return "\n".join(lines) + "\n"


def write_outputs(outdir: str | Path, results: list[dict], header: str = "") -> tuple[Path, Path]:
    """Write ``metrics.json`` (everything, incl. per-particle values) and ``metrics.md`` (the table)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = outdir / "metrics.json", outdir / "metrics.md"
    write_json_atomic(json_path, {"results": results})
    text = "# GaussianEM benchmark\n\n" + (header + "\n\n" if header else "") + markdown_table(results)
    with atomic_path(md_path) as tmp:
        tmp.write_text(text)
    return md_path, json_path


def load_truth_checked(simdir: str | Path) -> Truth:
    truth = load_truth(simdir)
    truth.grid()  # fails early, with a clear message, when the volumes are missing
    return truth
