"""Homogeneous refinement of the Gaussian cloud against the particles (stage one of the method).

Loss: L1 between the CTF-filtered projections of the cloud and the particle images, both divided by the
dataset's ``image_std``, inside a soft circular window. Optimiser: Adam on the raw amplitude and width
parameters (positions frozen unless asked), learning rate decaying exponentially from ``lr`` to ``lr_final``
over the run (settings: :class:`~gaussianem.training.config.FitConfig`). Densification and pruning come from
:class:`~gaussianem.training.strategy.DensifyPruneStrategy`.

Amplitude units. The initial cloud comes from the consensus map, whose density is in the map's own arbitrary
units; the particles are in theirs. Before the first step the amplitudes are multiplied by the least-squares
scale ``s = Σ w²·p·y / Σ w²·p²`` (p: CTF-filtered projections of the initial cloud, y: images, w: window) over
a few batches, so the fitted cloud is in the particles' units (what the heterogeneity model needs). A negative
scale means the particles are dark relative to the CTF convention: the fit stops and says so. For Adam's sake
the optimiser works on amplitudes divided by their median after that scaling (``amplitude_unit``), so the
learning rate means "relative change per step" whatever the data's units; the written cloud is in image units.

Learning rate. docs/DESIGN.md's 1e-3 → 1e-5 is too slow here: with amplitudes in working units a step
changes an amplitude by about ``lr`` relative, so a run of a few thousand steps at 1e-3 can change amplitudes by
well under a factor of two, and the fit barely leaves the low-passed start (measured on the synthetic test set:
FSC-AUC 0.333 → 0.341 at 1e-3 but → 0.435 at 3e-2 for the same steps). The default is 5e-2 → 5e-4 (the schedule's
shape unchanged), which reaches the fit's acceptance FSC on 20,000 adenylate-kinase particles in one epoch
(benchmarks/RESULTS.md).

Checkpoints: ``fit_checkpoint.pt`` in the output folder after every epoch (atomic); ``resume=True`` continues
from it and reproduces an uninterrupted run exactly (the particle order of each epoch derives from the seed and
the epoch number).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from gaussianem.errors import InputError
from gaussianem.gaussians import GaussianCloud
from gaussianem.io.checkpoints import load_state
from gaussianem.io.dataset import ParticleDataset
from gaussianem.physics.ctf import CTFParams
from gaussianem.physics.forward import render_images
from gaussianem.physics.fourier import soft_circular_mask
from gaussianem.progress import bar_disabled
from gaussianem.training.checkpoint import save_checkpoint
from gaussianem.training.config import FitConfig
from gaussianem.training.strategy import DensifyPruneStrategy, RefineEvent

log = logging.getLogger(__name__)

CHECKPOINT = "fit_checkpoint.pt"


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

    def get(self, index: np.ndarray) -> tuple[Tensor, Tensor, Tensor, CTFParams | None]:
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
    n = dataset.n if config.max_particles is None else min(dataset.n, config.max_particles)
    if n == 0:
        raise InputError(f"{dataset.root}: the dataset holds no particles")
    image_std = _image_std(dataset, n)
    batches = _Batches(dataset, n, device, dtype)
    window = soft_circular_mask(dataset.box_size, config.window_radius_fraction, device=device, dtype=dtype)
    ckpt_path = Path(out_dir) / CHECKPOINT if out_dir is not None else None
    if resume:
        state = _read_fit_checkpoint(ckpt_path, out_dir, device)
        config, run = _resumed_run(state, config, n, device, dtype)
    else:
        state = None
        run = _scaled_start(cloud.to(device=device, dtype=dtype), batches, window, config, device, dtype)
    cloud = run.cloud
    cloud.positions.requires_grad_(config.train_positions or config.strategy.densify)
    cloud.width_raw.requires_grad_(config.train_widths)
    optimizer = _make_optimizer(cloud, config)
    strategy = DensifyPruneStrategy(config.strategy, cloud.n, device=device)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        strategy.load_state_dict(state["strategy"])
        torch.set_rng_state(state["torch_rng"])
    loop = _FitLoop(config, batches, window, optimizer, strategy, 1.0 / image_std, progress)
    for epoch in range(run.start_epoch, config.epochs):
        record = loop.epoch(cloud, epoch, run.unit)
        run.history.append(record)
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, _checkpoint_state(epoch, config, n, run, optimizer, strategy))
        if epoch_callback is not None:
            epoch_callback(record)
    with torch.no_grad():
        pos, wid, amp = (t.detach() for t in cloud.physical())
        fitted = GaussianCloud(pos, wid, amp * run.unit, cloud.width_min, cloud.width_max)
    return FitResult(fitted, run.history, run.scale, time.perf_counter() - t0)


def _image_std(dataset: ParticleDataset, n: int) -> float:
    """The manifest's ``image_std``, else the standard deviation of the first particles (with a warning)."""
    image_std = float(dataset.manifest.get("image_std") or 0.0)
    if image_std <= 0:
        image_std = float(np.std(dataset.images[: min(n, 1000)]))
        log.warning("manifest has no image_std: using %.4g measured on the first particles", image_std)
    return image_std


@dataclass
class _Run:
    """Where a fit stands: the working cloud (amplitudes in units of ``unit``), the least-squares amplitude
    scale, the first epoch to run (0-based) and the records of the epochs done."""

    cloud: GaussianCloud
    scale: float
    unit: float
    start_epoch: int = 0
    history: list[dict] = field(default_factory=list)


def _scaled_start(cloud: GaussianCloud, batches: _Batches, window: Tensor, config: FitConfig,
                  device: torch.device, dtype: torch.dtype) -> _Run:
    """A new fit: the cloud's amplitudes scaled into image units, then divided by their median (the unit)."""
    d, apix = batches.ds.box_size, batches.ds.pixel_size_angstrom
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
    return _Run(cloud, scale, unit)


def _read_fit_checkpoint(ckpt_path: Path | None, out_dir: str | Path | None, device: torch.device) -> dict:
    if ckpt_path is None or not ckpt_path.is_file():
        raise InputError(f"nothing to resume: no {CHECKPOINT} in {out_dir}")
    state = load_state(ckpt_path, map_location=device, what="fit checkpoint")  # no code runs from the file
    missing = [k for k in ("config", "n_particles", "cloud", "epoch", "history", "optimizer", "strategy")
               if k not in state]
    if missing:
        raise InputError(f"{ckpt_path}: not a GaussianEM fit checkpoint (no {', '.join(missing)})")
    return state


def _resumed_run(state: dict, config: FitConfig, n: int, device: torch.device,
                 dtype: torch.dtype) -> tuple[FitConfig, _Run]:
    """The config (the checkpoint's, with ``config.epochs``) and the run state saved in a fit checkpoint."""
    saved = FitConfig.from_dict(state["config"])
    if replace(saved, epochs=config.epochs) != config:
        log.warning("resuming with settings that differ from the checkpoint's; the checkpoint's are used")
        config = replace(saved, epochs=config.epochs)
    if state["n_particles"] != n:
        raise InputError(f"the checkpoint was made with {state['n_particles']} particles, the dataset has {n}")
    g = state["cloud"]
    cloud = GaussianCloud(g["positions"], torch.ones(len(g["positions"])), torch.ones(len(g["positions"])),
                          g["width_min"], g["width_max"]).to(device=device, dtype=dtype)
    with torch.no_grad():
        cloud.width_raw.copy_(g["width_raw"])
        cloud.amplitude_raw.copy_(g["amplitude_raw"])
    run = _Run(cloud, state["amplitude_scale"], state["amplitude_unit"], state["epoch"], state["history"])
    log.info("resuming the fit after epoch %d of %d", run.start_epoch, config.epochs)
    return config, run


def _checkpoint_state(epoch: int, config: FitConfig, n: int, run: _Run, optimizer: torch.optim.Optimizer,
                      strategy: DensifyPruneStrategy) -> dict:
    """What ``fit_checkpoint.pt`` holds after ``epoch`` (0-based): enough to continue the fit exactly."""
    cloud = run.cloud
    return {
        "epoch": epoch + 1, "config": config.to_dict(), "n_particles": n, "history": run.history,
        "amplitude_scale": run.scale, "amplitude_unit": run.unit,
        "cloud": {"positions": cloud.positions.detach().cpu(), "width_raw": cloud.width_raw.detach().cpu(),
                  "amplitude_raw": cloud.amplitude_raw.detach().cpu(), "width_min": cloud.width_min,
                  "width_max": cloud.width_max},
        "optimizer": optimizer.state_dict(), "strategy": strategy.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }


class _FitLoop:
    """The epochs of a fit: L1 steps with the decaying learning rate, densification and pruning in between."""

    def __init__(self, config: FitConfig, batches: _Batches, window: Tensor, optimizer: torch.optim.Adam,
                 strategy: DensifyPruneStrategy, inv_std: float, progress: bool) -> None:
        self.config, self.batches, self.window = config, batches, window
        self.optimizer, self.strategy = optimizer, strategy
        self.inv_std, self.progress = inv_std, progress
        self.steps_per_epoch = math.ceil(batches.n / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs

    def epoch(self, cloud: GaussianCloud, epoch: int, unit: float) -> dict:
        """Run epoch ``epoch`` (0-based) on ``cloud`` -> its record (mean loss, cloud size, changes, lr, time)."""
        config, optimizer, strategy, window = self.config, self.optimizer, self.strategy, self.window
        d, apix = self.batches.ds.box_size, self.batches.ds.pixel_size_angstrom
        te = time.perf_counter()
        step = epoch * self.steps_per_epoch
        order = self.batches.order(config.seed, epoch)
        loss_sum, events = 0.0, RefineEvent(step=step)
        bar = tqdm(range(self.steps_per_epoch), desc=f"fit epoch {epoch + 1}/{config.epochs}",
                   disable=bar_disabled(self.progress), unit="batch", leave=False)
        for b in bar:
            idx = order[b * config.batch_size:(b + 1) * config.batch_size]
            images, rot, shift, ctf = self.batches.get(idx)
            lr = _set_lr(optimizer, config, step, self.total_steps)
            pos, wid, amp = cloud.physical()
            pred = render_batch(pos, wid, amp * unit, rot, shift, ctf, d, apix)
            loss = ((pred - images).abs() * window).mean() * self.inv_std
            optimizer.zero_grad(set_to_none=True)
            if cloud.positions.grad is not None:
                cloud.positions.grad = None
            loss.backward()
            optimizer.step()
            strategy.after_backward(cloud)
            step += 1
            ev = strategy.step(cloud, optimizer, step, self.total_steps)
            events.pruned += ev.pruned
            events.cloned += ev.cloned
            events.split += ev.split
            loss_sum += float(loss.detach()) * len(idx)
            if b % 10 == 0:
                bar.set_postfix(loss=f"{float(loss.detach()):.4f}", G=cloud.n, lr=f"{lr:.1e}")
        bar.close()
        record = {
            "epoch": epoch + 1, "loss": loss_sum / self.batches.n, "n_gaussians": cloud.n, "pruned": events.pruned,
            "cloned": events.cloned, "split": events.split, "lr": lr, "seconds": time.perf_counter() - te,
        }
        log.info("epoch %d/%d: loss %.5f, %d Gaussians (pruned %d, cloned %d, split %d), %.1f s", epoch + 1,
                 config.epochs, record["loss"], cloud.n, events.pruned, events.cloned, events.split,
                 record["seconds"])
        return record
