"""A fit run (``gaussianem fit``): load a dataset folder, fit its initial cloud, write the outputs.

Outputs: ``gaussians.ply`` (image units), ``consensus.mrc`` (the voxelised cloud placed on the input map), FSC
curves against the input map and an optional reference (``fsc*.txt/json/png``) and ``fit.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from gaussianem.errors import InputError
from gaussianem.gaussians import GaussianCloud
from gaussianem.io.dataset import ParticleDataset
from gaussianem.io.writes import atomic_path, write_json_atomic
from gaussianem.physics.fourier import soft_circular_mask
from gaussianem.training.config import FitConfig
from gaussianem.training.fit import fit_cloud

log = logging.getLogger(__name__)


def map_origin_for_box(map_origin_angstrom: tuple[float, float, float], map_box: int, map_apix: float,
                       box_size: int, pixel_size_angstrom: float) -> tuple[float, float, float]:
    """MRC origin (Å) for a volume of ``box_size`` × ``pixel_size_angstrom`` sharing the map's centre.

    Our frame puts voxel ``D//2`` at 0 for both grids, so the header origins differ by the centre offsets.
    """
    delta = (map_box // 2) * map_apix - (box_size // 2) * pixel_size_angstrom
    return tuple(float(o) + delta for o in map_origin_angstrom)


def write_fsc(prefix: str | Path, curve: np.ndarray, box_size: int, pixel_size_angstrom: float,
              label: str) -> dict:
    """Write ``prefix.txt``, ``prefix.json`` and ``prefix.png`` for an FSC curve (D//2,); returns the summary."""
    from gaussianem.physics.fsc import fsc_auc, fsc_crossing, fsc_frequencies, fsc_resolution

    prefix = Path(prefix)
    curve = np.asarray(curve, dtype=np.float64)
    freq = fsc_frequencies(box_size)[: len(curve)] / pixel_size_angstrom  # 1/Å
    summary = {
        "label": label,
        "fsc_auc": fsc_auc(curve, box_size),
        "resolution_0.5_angstrom": fsc_resolution(curve, box_size, pixel_size_angstrom, 0.5),
        "resolution_0.143_angstrom": fsc_resolution(curve, box_size, pixel_size_angstrom, 0.143),
        "box_size": box_size, "pixel_size_angstrom": pixel_size_angstrom,
        "frequency_per_angstrom": freq.tolist(), "fsc": curve.tolist(),
    }
    summary["resolution_0.5_pixels"] = summary["resolution_0.5_angstrom"] / pixel_size_angstrom
    crossings = [fsc_crossing(curve, box_size, pixel_size_angstrom, t)[1] for t in (0.5, 0.143)]
    summary["crossings"] = crossings  # said honestly: "stays above 0.5 up to Nyquist (8.0 Å)" when it never falls
    write_json_atomic(prefix.with_suffix(".json"), summary)
    with atomic_path(prefix.with_suffix(".txt")) as tmp:
        lines = [f"# {label}", f"# FSC-AUC {summary['fsc_auc']:.4f}; " + "; ".join(crossings).replace("Å", "A"),
                 "# shell  frequency_1/A  resolution_A  fsc"]
        for k, (f, c) in enumerate(zip(freq, curve, strict=True)):
            res = 1.0 / f if f > 0 else float("inf")
            lines.append(f"{k:5d}  {f:.5f}  {res:9.3f}  {c:.5f}")
        tmp.write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(freq, curve, "-", color="C0")
    for thr, style in ((0.5, "--"), (0.143, ":")):
        ax.axhline(thr, color="grey", linestyle=style, linewidth=0.8)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.05)
    ax.set_title(f"{label}: AUC {summary['fsc_auc']:.3f}\nFSC {crossings[0]}; {crossings[1]}", fontsize=9)
    fig.tight_layout()
    with atomic_path(prefix.with_suffix(".png")) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    return summary


def volume_fsc(cloud: GaussianCloud, reference: np.ndarray, reference_apix: float, box_size: int,
               pixel_size_angstrom: float, mask_radius_fraction: float = 0.9) -> tuple[np.ndarray, int, float]:
    """FSC of the cloud against a reference map (M, M, M), on a common grid, inside a soft spherical mask.

    When the reference has the dataset's physical box (M·a_ref = D·a) it is Fourier-cropped/padded to D;
    otherwise the cloud is voxelised on the reference's grid. Returns (curve, box, pixel size of that grid).
    """
    from gaussianem.physics.fourier import fourier_crop, fourier_pad
    from gaussianem.physics.fsc import fsc
    from gaussianem.physics.projection import voxelize_gaussians

    m = reference.shape[0]
    ref = torch.as_tensor(reference, dtype=torch.float64)
    pos, wid, amp = (t.detach().double().cpu() for t in cloud.physical())
    if abs(m * reference_apix - box_size * pixel_size_angstrom) < 1e-3 * box_size * pixel_size_angstrom:
        ref = fourier_crop(ref, box_size, ndim=3) if m >= box_size else fourier_pad(ref, box_size, ndim=3)
        d, apix = box_size, pixel_size_angstrom
    else:
        d, apix = m, reference_apix
    vol = voxelize_gaussians(pos, wid, amp, d, apix)
    mask = soft_circular_mask(d, mask_radius_fraction, 1.0 - mask_radius_fraction, ndim=3, dtype=torch.float64)
    return fsc(vol, ref, mask).numpy(), d, apix


def find_input_map(dataset: ParticleDataset, explicit: str | Path | None = None) -> Path | None:
    """The consensus map the dataset was made from: ``explicit``, else the manifest's ``map`` record (what
    ``preprocess`` writes: ``{"path": ..., "box_size": ..., ...}``), else None (no FSC against it)."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise InputError(f"map not found: {path}")
        return path
    record = dataset.manifest.get("map")
    value = record.get("path") if isinstance(record, dict) else None
    if not (isinstance(value, str) and value):
        return None
    path = Path(value)
    if not path.is_absolute():
        path = dataset.root / path
    if path.is_file():
        return path
    log.warning("the manifest's map (%s) does not exist: no FSC against the input map", path)
    return None


def run_fit(
    dataset_path: str | Path,
    out_dir: str | Path | None = None,
    config: FitConfig | None = None,
    device: str | torch.device = "cpu",
    map_path: str | Path | None = None,
    reference_path: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    command_line: str | None = None,
) -> dict:
    """Load a dataset folder, fit its initial cloud, write the outputs; returns the summary (also ``fit.json``).

    Outputs in ``out_dir`` (default: the dataset folder): ``gaussians.ply`` (image units), ``consensus.mrc``
    (the voxelised cloud at the dataset's box and pixel size, origin placing it on the input map),
    ``fsc.txt/json/png`` against the input map when known, ``fsc_reference.*`` against ``reference_path``
    (e.g. a ground-truth volume), ``fit.json`` and ``fit_checkpoint.pt``.
    """
    from gaussianem import __version__
    from gaussianem.io.dataset import load_dataset
    from gaussianem.io.mrc import read_volume, write_volume
    from gaussianem.physics.projection import voxelize_gaussians

    config = config or FitConfig()
    dataset = load_dataset(dataset_path)
    out = Path(out_dir) if out_dir is not None else dataset.root
    out.mkdir(parents=True, exist_ok=True)
    if not dataset.gaussians_init.is_file():
        raise InputError(f"{dataset.root}: no {dataset.gaussians_init.name}; run 'gaussianem preprocess'")
    try:
        init = GaussianCloud.from_ply(dataset.gaussians_init)
        the_map = find_input_map(dataset, map_path)
        log.info("fitting %d Gaussians to %d particles (box %d, %.3f Å/px) on %s", init.n,
                 dataset.n if config.max_particles is None else min(dataset.n, config.max_particles),
                 dataset.box_size, dataset.pixel_size_angstrom, device)
        result = fit_cloud(dataset, init, config, out, device=device, resume=resume, progress=progress)
    finally:
        dataset.close()
    d, apix = dataset.box_size, dataset.pixel_size_angstrom
    cloud = result.cloud.cpu()
    cloud.to_ply(out / "gaussians.ply")
    origin = (0.0, 0.0, 0.0)
    summary: dict = {
        "command_line": command_line, "version": __version__, "dataset": str(Path(dataset_path).resolve()),
        "config": config.to_dict(), "device": str(device), "n_gaussians_initial": init.n,
        "n_gaussians": cloud.n, "amplitude_scale": result.amplitude_scale, "seconds": result.seconds,
        "history": result.history, "input_map": str(the_map) if the_map else None,
    }
    ref_map = None
    if the_map is not None:
        ref_map, ref_apix, ref_origin = read_volume(the_map)
        origin = map_origin_for_box(ref_origin, ref_map.shape[0], ref_apix, d, apix)
    with torch.no_grad():
        vol = voxelize_gaussians(*(t.detach().double() for t in cloud.physical()), d, apix).float().numpy()
    write_volume(out / "consensus.mrc", vol, apix, origin)
    if ref_map is not None:
        curve, fd, fa = volume_fsc(cloud, ref_map, ref_apix, d, apix)
        summary["fsc_input_map"] = _short(write_fsc(out / "fsc", curve, fd, fa, "fitted cloud vs input map"))
    if reference_path is not None:
        ref, r_apix, _ = read_volume(reference_path)
        curve, fd, fa = volume_fsc(cloud, ref, r_apix, d, apix)
        summary["fsc_reference"] = _short(write_fsc(out / "fsc_reference", curve, fd, fa,
                                                    f"fitted cloud vs {Path(reference_path).name}"))
        summary["reference"] = str(reference_path)
    write_json_atomic(out / "fit.json", summary)
    return summary


def _short(fsc_summary: dict) -> dict:
    return {k: v for k, v in fsc_summary.items() if k not in ("fsc", "frequency_per_angstrom")}
