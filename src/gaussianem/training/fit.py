"""Homogeneous refinement of the Gaussian cloud against the particles (stage one of the method).

Loss: L1 between the CTF-filtered projections of the cloud and the particle images, both divided by the
dataset's ``image_std``, inside a soft circular window. Optimiser: Adam on the raw amplitude and width
parameters (positions frozen unless asked), learning rate decaying exponentially from ``lr`` to ``lr_final``
over the run. Densification and pruning come from :class:`~gaussianem.training.strategy.DensifyPruneStrategy`.

Amplitude units. The initial cloud comes from the consensus map, whose density is in the map's own arbitrary
units; the particles are in theirs. Before the first step the amplitudes are multiplied by the least-squares
scale ``s = Σ w²·p·y / Σ w²·p²`` (p: CTF-filtered projections of the initial cloud, y: images, w: window) over
a few batches, so the fitted cloud is in the particles' units (what the heterogeneity model needs). A negative
scale means the particles are dark relative to the CTF convention: the fit stops and says so. For Adam's sake
the optimiser works on amplitudes divided by their median after that scaling (``amplitude_unit``), so the
learning rate means "relative change per step" whatever the data's units; the written cloud is in image units.

Learning rate. DESIGN's 1e-3 → 1e-5 is too slow here: with amplitudes in working units a step changes an
amplitude by about ``lr`` relative, so a run of a few thousand steps at 1e-3 can change amplitudes by well under
a factor of two, and the fit barely leaves the low-passed start (measured on the synthetic test set: FSC-AUC
0.333 → 0.341 at 1e-3 but → 0.435 at 3e-2 for the same steps). The default is 5e-2 → 5e-4 (the schedule's
shape unchanged), which reached the issue-4 acceptance on 20,000 adenylate-kinase particles in one epoch.

Checkpoints: ``fit_checkpoint.pt`` in the output folder after every epoch (atomic); ``resume=True`` continues
from it and reproduces an uninterrupted run exactly (the particle order of each epoch derives from the seed and
the epoch number).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from gaussianem.errors import InputError
from gaussianem.gaussians import GaussianCloud
from gaussianem.io.checkpoints import load_state, save_state
from gaussianem.io.dataset import ParticleDataset, write_json_atomic
from gaussianem.io.writes import atomic_path
from gaussianem.physics.ctf import CTFParams
from gaussianem.physics.forward import render_images
from gaussianem.physics.fourier import soft_circular_mask
from gaussianem.training.strategy import DensifyPruneStrategy, RefineEvent, StrategyConfig

log = logging.getLogger(__name__)

CHECKPOINT = "fit_checkpoint.pt"


@dataclass(frozen=True)
class FitConfig:
    """Settings of the homogeneous fit (written to ``fit.json`` and into the checkpoint)."""

    epochs: int = 3
    batch_size: int = 64
    lr: float = 5e-2  # Adam on raw amplitudes and widths, start (see "Learning rate" in the module docstring)
    lr_final: float = 5e-4  # ... and end of the exponential decay
    position_lr_angstrom: float = 1e-2  # Adam on positions (Å per step scale) when train_positions
    train_positions: bool = True  # measured: + 0.03 FSC-AUC on the adk fit acceptance (benchmarks/RESULTS.md)
    train_widths: bool = True
    window_radius_fraction: float = 0.85  # soft circular window: 1 inside this fraction of D/2
    scale_batches: int = 4  # batches used for the least-squares amplitude scale
    max_particles: int | None = None  # use only the first N particles (quick runs)
    seed: int = 0
    strategy: StrategyConfig = field(default_factory=StrategyConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FitConfig:
        d = dict(d)
        d["strategy"] = StrategyConfig(**d.get("strategy", {}))
        return cls(**d)


@dataclass
class FitResult:
    cloud: GaussianCloud  # fitted cloud, amplitudes in image units
    history: list[dict]  # one record per epoch
    amplitude_scale: float  # least-squares factor applied to the initial amplitudes
    seconds: float


# --------------------------------------------------------------------------------------------------- rendering
def render_batch(
    positions: Tensor, widths: Tensor, amplitudes: Tensor, rotations: Tensor, shifts_angstrom: Tensor,
    ctf_params: CTFParams | None, box_size: int, pixel_size_angstrom: float,
) -> Tensor:
    """CTF-filtered projections (B, D, D) of one shared cloud: positions (G, 3) Å, widths (G,), amplitudes (G,),
    rotations (B, 3, 3), shifts_angstrom (B, 2), CTF parameters (B,) each or None."""
    return render_images(positions, widths, amplitudes, rotations, shifts_angstrom, ctf_params, box_size,
                         pixel_size_angstrom)


class _Batches:
    """Particle batches as tensors on a device; images read from the memory map in sorted order."""

    def __init__(self, dataset: ParticleDataset, n: int, device: torch.device, dtype: torch.dtype) -> None:
        self.ds, self.n, self.device, self.dtype = dataset, n, device, dtype

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor] | None]:
        index = np.sort(index)
        t = lambda a: torch.as_tensor(np.asarray(a), dtype=self.dtype).to(self.device)  # noqa: E731
        images = t(self.ds.images[index])
        return images, t(self.ds.rotations[index]), t(self.ds.shifts_angstrom[index]), \
            self.ds.ctf_batch(index, device=self.device, dtype=self.dtype)

    def order(self, seed: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([seed, epoch]).permutation(self.n)


def least_squares_scale(
    cloud: GaussianCloud, batches: _Batches, window: Tensor, box_size: int, pixel_size_angstrom: float,
    n_batches: int, batch_size: int, seed: int,
) -> float:
    """Scale s minimising Σ |w·(s·p − y)|² over a few batches (p: rendered projections, y: images)."""
    num = den = 0.0
    order = np.random.default_rng([seed, 10**6]).permutation(batches.n)
    with torch.no_grad():
        pos, wid, amp = cloud.physical()
        for b in range(max(1, n_batches)):
            idx = order[b * batch_size:(b + 1) * batch_size]
            if len(idx) == 0:
                break
            y, rot, shift, ctf = batches.get(idx)
            p = render_batch(pos, wid, amp, rot, shift, ctf, box_size, pixel_size_angstrom)
            w2 = window**2
            num += float((w2 * p * y).sum())
            den += float((w2 * p * p).sum())
    if den <= 0:
        raise InputError("the initial Gaussians render empty images: check the dataset's gaussians_init.ply")
    return num / den


# --------------------------------------------------------------------------------------------------- the loop
def _make_optimizer(cloud: GaussianCloud, config: FitConfig) -> torch.optim.Adam:
    groups = [{"params": [cloud.amplitude_raw], "name": "amplitude", "lr": config.lr}]
    if config.train_widths:
        groups.append({"params": [cloud.width_raw], "name": "width", "lr": config.lr})
    if config.train_positions:
        groups.append({"params": [cloud.positions], "name": "position", "lr": config.position_lr_angstrom})
    return torch.optim.Adam(groups)


def _set_lr(optimizer: torch.optim.Optimizer, config: FitConfig, step: int, total_steps: int) -> float:
    """Exponential decay: factor (lr_final / lr)^(step / total) applied to every group's initial lr."""
    factor = (config.lr_final / config.lr) ** (step / max(total_steps, 1))
    for group in optimizer.param_groups:
        base = config.position_lr_angstrom if group["name"] == "position" else config.lr
        group["lr"] = base * factor
    return config.lr * factor


def _save_checkpoint(path: Path, state: dict) -> None:
    save_state(path, state)  # tensors, plain containers and numbers only: it loads with weights_only=True


def fit_cloud(
    dataset: ParticleDataset,
    cloud: GaussianCloud,
    config: FitConfig,
    out_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
    resume: bool = False,
    progress: bool = True,
    epoch_callback: Callable[[dict], None] | None = None,
) -> FitResult:
    """Refine ``cloud`` (amplitudes in the map's units) against ``dataset``; returns the fitted cloud.

    With ``out_dir`` a checkpoint is written there after every epoch; ``resume`` continues from it (the
    ``cloud`` argument is then ignored). ``epoch_callback(record)`` runs after each epoch's checkpoint.
    """
    t0 = time.perf_counter()
    device = torch.device(device)
    dtype = torch.float32
    d, apix = dataset.box_size, dataset.pixel_size_angstrom
    image_std = float(dataset.manifest.get("image_std") or 0.0)
    n = dataset.n if config.max_particles is None else min(dataset.n, config.max_particles)
    if n == 0:
        raise InputError(f"{dataset.root}: the dataset holds no particles")
    if image_std <= 0:
        image_std = float(np.std(dataset.images[: min(n, 1000)]))
        log.warning("manifest has no image_std: using %.4g measured on the first particles", image_std)
    batches = _Batches(dataset, n, device, dtype)
    window = soft_circular_mask(d, config.window_radius_fraction, device=device, dtype=dtype)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    ckpt_path = Path(out_dir) / CHECKPOINT if out_dir is not None else None

    cloud = cloud.to(device=device, dtype=dtype)
    history: list[dict] = []
    start_epoch = 0
    if resume:
        if ckpt_path is None or not ckpt_path.is_file():
            raise InputError(f"nothing to resume: no {CHECKPOINT} in {out_dir}")
        state = load_state(ckpt_path, map_location=device, what="fit checkpoint")
        missing = [k for k in ("config", "n_particles", "cloud", "epoch", "history", "optimizer", "strategy")
                   if k not in state]
        if missing:
            raise InputError(f"{ckpt_path}: not a GaussianEM fit checkpoint (no {', '.join(missing)})")
        saved = FitConfig.from_dict(state["config"])
        if replace(saved, epochs=config.epochs) != config:
            log.warning("resuming with settings that differ from the checkpoint's; the checkpoint's are used")
            config = replace(saved, epochs=config.epochs)
            total_steps = steps_per_epoch * config.epochs
        if state["n_particles"] != n:
            raise InputError(f"the checkpoint was made with {state['n_particles']} particles, the dataset has {n}")
        g = state["cloud"]
        cloud = GaussianCloud(g["positions"], torch.ones(len(g["positions"])), torch.ones(len(g["positions"])),
                              g["width_min"], g["width_max"]).to(device=device, dtype=dtype)
        with torch.no_grad():
            cloud.width_raw.copy_(g["width_raw"])
            cloud.amplitude_raw.copy_(g["amplitude_raw"])
        scale, unit = state["amplitude_scale"], state["amplitude_unit"]
        start_epoch, history = state["epoch"], state["history"]
        log.info("resuming the fit after epoch %d of %d", start_epoch, config.epochs)
    else:
        scale = least_squares_scale(cloud, batches, window, d, apix, config.scale_batches, config.batch_size,
                                    config.seed)
        if scale <= 0:
            raise InputError(
                "the particles anti-correlate with the projections of the initial Gaussians (dark particles?): "
                "re-run 'gaussianem preprocess' with the other contrast choice")
        with torch.no_grad():
            amp = cloud.amplitudes * scale
            unit = float(amp.median())
        cloud = GaussianCloud(cloud.positions.detach(), cloud.widths.detach(), amp / unit, cloud.width_min,
                              cloud.width_max).to(device=device, dtype=dtype)
        log.info("amplitude scale %.4g (map units -> image units); working amplitude unit %.4g", scale, unit)

    cloud.positions.requires_grad_(config.train_positions or config.strategy.densify)
    cloud.width_raw.requires_grad_(config.train_widths)
    optimizer = _make_optimizer(cloud, config)
    strategy = DensifyPruneStrategy(config.strategy, cloud.n, device=device)
    if resume:
        optimizer.load_state_dict(state["optimizer"])
        strategy.load_state_dict(state["strategy"])
        torch.set_rng_state(state["torch_rng"])

    step = start_epoch * steps_per_epoch
    inv_std = 1.0 / image_std
    for epoch in range(start_epoch, config.epochs):
        te = time.perf_counter()
        order = batches.order(config.seed, epoch)
        loss_sum, events = 0.0, RefineEvent(step=step)
        bar = tqdm(range(steps_per_epoch), desc=f"fit epoch {epoch + 1}/{config.epochs}", disable=not progress,
                   unit="batch", leave=False)
        for b in bar:
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            images, rot, shift, ctf = batches.get(idx)
            lr = _set_lr(optimizer, config, step, total_steps)
            pos, wid, amp = cloud.physical()
            pred = render_batch(pos, wid, amp * unit, rot, shift, ctf, d, apix)
            loss = ((pred - images).abs() * window).mean() * inv_std
            optimizer.zero_grad(set_to_none=True)
            if cloud.positions.grad is not None:
                cloud.positions.grad = None
            loss.backward()
            optimizer.step()
            strategy.after_backward(cloud)
            step += 1
            ev = strategy.step(cloud, optimizer, step, total_steps)
            events.pruned += ev.pruned
            events.cloned += ev.cloned
            events.split += ev.split
            loss_sum += float(loss.detach()) * len(idx)
            if b % 10 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", G=cloud.n, lr=f"{lr:.1e}")
        bar.close()
        record = {
            "epoch": epoch + 1, "loss": loss_sum / n, "n_gaussians": cloud.n, "pruned": events.pruned,
            "cloned": events.cloned, "split": events.split, "lr": lr, "seconds": time.perf_counter() - te,
        }
        history.append(record)
        log.info("epoch %d/%d: loss %.5f, %d Gaussians (pruned %d, cloned %d, split %d), %.1f s", epoch + 1,
                 config.epochs, record["loss"], cloud.n, events.pruned, events.cloned, events.split,
                 record["seconds"])
        if ckpt_path is not None:
            _save_checkpoint(ckpt_path, {
                "epoch": epoch + 1, "config": config.to_dict(), "n_particles": n, "history": history,
                "amplitude_scale": scale, "amplitude_unit": unit,
                "cloud": {"positions": cloud.positions.detach().cpu(), "width_raw": cloud.width_raw.detach().cpu(),
                          "amplitude_raw": cloud.amplitude_raw.detach().cpu(), "width_min": cloud.width_min,
                          "width_max": cloud.width_max},
                "optimizer": optimizer.state_dict(), "strategy": strategy.state_dict(),
                "torch_rng": torch.get_rng_state(),
            })
        if epoch_callback is not None:
            epoch_callback(record)

    with torch.no_grad():
        pos, wid, amp = (t.detach() for t in cloud.physical())
        fitted = GaussianCloud(pos, wid, amp * unit, cloud.width_min, cloud.width_max)
    return FitResult(fitted, history, scale, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------- outputs
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
    from gaussianem.physics.fsc import fsc_auc, fsc_frequencies, fsc_resolution

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
    write_json_atomic(prefix.with_suffix(".json"), summary)
    with atomic_path(prefix.with_suffix(".txt")) as tmp:
        lines = [f"# {label}", f"# FSC-AUC {summary['fsc_auc']:.4f}; resolution at 0.5: "
                 f"{summary['resolution_0.5_angstrom']:.2f} A; at 0.143: {summary['resolution_0.143_angstrom']:.2f} A",
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
    ax.set_title(f"{label}: AUC {summary['fsc_auc']:.3f}, 0.5 @ {summary['resolution_0.5_angstrom']:.1f} Å",
                 fontsize=9)
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


MAP_KEYS = ("consensus_map", "consensus_map_path", "map_path", "input_map", "map")


def find_input_map(dataset: ParticleDataset, explicit: str | Path | None = None) -> Path | None:
    """The consensus map the dataset was made from: ``explicit``, else the manifest's record, else None."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise InputError(f"map not found: {path}")
        return path
    for key in MAP_KEYS:
        value = dataset.manifest.get(key)
        if isinstance(value, dict):  # preprocess records {"path": ..., "box_size": ..., ...}
            value = value.get("path")
        if isinstance(value, str) and value:
            path = Path(value)
            if not path.is_absolute():
                path = dataset.root / path
            if path.is_file():
                return path
            log.warning("the manifest's %s (%s) does not exist: no FSC against the input map", key, path)
            return None
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
