"""The heterogeneity training loop (``gaussianem train``): set up a run, train it epoch by epoch, save each epoch.

A step is :class:`~gaussianem.training.step.Stepper`'s, on the objective
:class:`~gaussianem.training.objective.TrainingObjective`; the run folder's files are
:mod:`gaussianem.training.rundir`'s. Every epoch ends with the latents of all particles (``z.E.npy``), a
checkpoint (``weights.E.pt``, resumable exactly) and the loss plot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gaussianem import runlog
from gaussianem.devices import resolve_device
from gaussianem.errors import InputError
from gaussianem.gaussians import GaussianCloud
from gaussianem.io.dataset import ParticleDataset, load_dataset
from gaussianem.io.indices import read_ind
from gaussianem.io.writes import save_npy_atomic, save_pickle_atomic
from gaussianem.model import losses as L
from gaussianem.model.load import (
    model_from_checkpoint,
    newest_loadable_checkpoint,
    read_checkpoint,
    resolve_weights,
)
from gaussianem.model.runfiles import read_config, weights_path
from gaussianem.model.spec import LEGACY_VALUES, SPLIT_FIELDS
from gaussianem.model.vae import GaussianVAE
from gaussianem.progress import bar_disabled
from gaussianem.training.checkpoint import rng_state, save_checkpoint, set_rng_state
from gaussianem.training.config import TrainConfig, resolve_auto
from gaussianem.training.data import (
    ParticleBatchDataset,
    ResidentParticles,
    ResumableBatchSampler,
    batch_source,
    sequential_batches,
    want_resident,
)
from gaussianem.training.objective import (
    LOSS_TERMS,
    LossWeights,
    TrainingError,
    TrainingObjective,
    build_graphs,
    model_spec,
)
from gaussianem.training.plot import plot_losses
from gaussianem.training.rundir import (
    BASE_PLY,
    LOG,
    log_record,
    prepare_rundir,
    resolve_base_cloud,
    resumed_config,
    trim_log,
)
from gaussianem.training.schedule import (
    group_lr_factors,
    kl_displacement_schedule,
    kl_schedule,
    lr_factor,
    param_groups,
)
from gaussianem.training.step import Stepper, StepResult, tf32_matmuls

log = logging.getLogger(__name__)

# loss.png is redrawn after the first and the last epoch and at most every this many seconds between (a plot takes
# 0.2-0.5 s, as long as a whole epoch of a small dataset on a GPU)
PLOT_EVERY_S = 30.0


def _oom_message(cfg: TrainConfig) -> str:
    return (f"CUDA out of memory (batch {cfg.batch_size}, {cfg.n_gaussians} Gaussians, box {cfg.box_size}, "
            f"amp {'on' if cfg.amp else 'off'}): lower --batch-size, set a smaller --projection-chunk, "
            f"use fewer Gaussians, or turn on --amp")


def _all_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False,
          stop_after_epoch: int | None = None, rank: int = 0, world_size: int = 1,
          on_epoch_end: Callable[[int], None] | None = None, given: frozenset[str] | None = None) -> Path:
    """Train (or resume) a run; returns the run folder. ``stop_after_epoch`` ends early (a test hook); ``given``:
    the settings typed on the command line (a resume keeps the saved others; :func:`rundir.resumed_config`)."""
    t_start = time.perf_counter()
    cfg.validate(resume=resume)
    main_rank = rank == 0
    root = Path(cfg.rundir)
    cfg = _agree_on_config(cfg, resume, overwrite, rank, world_size, given)
    if main_rank:
        runlog.attach(root)
    device = resolve_device(cfg.device)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    elif device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # streams and CUDA graphs of the step live on the current device
    marks = {"start": time.perf_counter() - t_start}  # where set-up's seconds go (the setup record)
    ds = load_dataset(cfg.dataset)
    if ds.box_size % 2:
        raise InputError(f"{cfg.dataset}: box size {ds.box_size} is odd; training needs an even box")
    rows = read_ind(cfg.ind, ds.n) if cfg.ind else None  # --ind: the dataset rows trained on
    n = ds.n if rows is None else len(rows)
    torch.manual_seed(cfg.seed)  # the weights' initialisation
    np.random.seed(cfg.seed % 2**32)
    ckpt = newest_loadable_checkpoint(root) if resume else None  # a damaged newest one is named and skipped
    if ckpt is not None:
        model = model_from_checkpoint(ckpt)
        if cfg.epochs <= ckpt["epoch"]:
            log.info("%s: already trained for %d epochs (asked for %d): nothing to do", root, ckpt["epoch"],
                     cfg.epochs)
            return root
    else:
        cfg, model = _new_model(cfg, ds, root, resume, main_rank, n, world_size)
    if main_rank:
        cfg.write(root)
    marks["model"] = time.perf_counter() - t_start
    model, stepper, sampler = _make_stepper(cfg, model, n, device, rank, world_size)
    first_epoch = 1 if ckpt is None else _restore(ckpt, stepper, root, main_rank)
    del ckpt
    marks["stepper"] = time.perf_counter() - t_start
    data, resident = _particles(cfg, ds, device, main_rank, rows)
    log.info("training on %s: %d particles, %d Gaussians, box %d, batch %d, %d epochs, lr %g",
             device, n, model.n_gaussians, ds.box_size, cfg.batch_size * world_size, cfg.epochs, cfg.lr)
    log_file = open(root / LOG, "a", buffering=1) if main_rank else None  # line-buffered: `tail -f` works
    t_setup = time.perf_counter() - t_start
    log_record(log_file, {"type": "setup", "epoch": first_epoch - 1, "seconds": round(t_setup, 3),
                          **setup_split(marks, t_setup)})
    # the projection's float32 products on TF32 tensor cores or not, as the run asks (restored after)
    with tf32_matmuls(cfg.tf32 and device.type == "cuda"):
        last_plot = None
        try:
            for epoch in range(first_epoch, cfg.epochs + 1):
                _train_epoch(cfg, epoch, stepper, sampler, data, device, log_file, main_rank, resident)
                t_eval = time.perf_counter()
                mu, lv = evaluate_latents(model, data, cfg.eval_batch_size, device, cfg.num_workers, cfg.amp,
                                          cfg.progress and main_rank, rank, world_size, resident)
                if not _all_finite(model):
                    raise TrainingError(f"the model holds non-finite weights after epoch {epoch}; "
                                        "no checkpoint written")
                stopping = stop_after_epoch is not None and epoch >= stop_after_epoch
                if main_rank:
                    plot = (epoch == cfg.epochs or stopping or last_plot is None
                            or time.perf_counter() - last_plot >= PLOT_EVERY_S)
                    _save_epoch(cfg, root, epoch, model, stepper, mu, lv, log_file, t_eval, plot)
                    last_plot = time.perf_counter() if plot else last_plot
                if on_epoch_end is not None:
                    on_epoch_end(epoch)
                if stopping:
                    break
        except torch.cuda.OutOfMemoryError as exc:
            raise TrainingError(_oom_message(cfg)) from exc
        finally:
            if log_file is not None:
                log_file.close()
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()
    return root


def _agree_on_config(cfg: TrainConfig, resume: bool, overwrite: bool, rank: int, world_size: int,
                     given: frozenset[str] | None = None) -> TrainConfig:
    """Rank 0 checks the run folder (:func:`prepare_rundir`); returns the config every rank runs with."""
    main_rank = rank == 0
    root = Path(cfg.rundir)
    error = None
    if main_rank:
        try:
            cfg = prepare_rundir(cfg, resume, overwrite, given)
        except InputError as exc:
            error = str(exc)
    if world_size > 1:  # every rank learns rank 0's verdict on the run folder, then reads the same settings
        import torch.distributed as dist

        box = [error]
        dist.broadcast_object_list(box, src=0)
        error = box[0]
    if error is not None:
        raise InputError(error)
    if not main_rank and resume:
        cfg = resumed_config(TrainConfig.from_dict(read_config(root)), cfg, given, say=False)
    cfg.validate()  # the settings the run goes on with (on --resume: the saved ones and those typed)
    return cfg


# with --load, besides the split's fields: the model settings taken from the loaded weights' spec when not typed
LOADED_WHEN_UNSET = ("amplitude_encoder_hidden", "amplitude_change")


def _new_model(cfg: TrainConfig, ds: ParticleDataset, root: Path, resume: bool,
               main_rank: bool, n_particles: int, world_size: int = 1) -> tuple[TrainConfig, GaussianVAE]:
    """A new model on the run's base cloud (weights from ``--load`` when given) and the config completed with
    the dataset's geometry and its automatic settings made concrete (:func:`resolve_auto`; with ``--load``, the
    latent split's model settings and ``LOADED_WHEN_UNSET`` left automatic are the loaded model's); rank 0 writes
    the base cloud into the run folder ``root``."""
    image_std = float(ds.manifest.get("image_std", 1.0) or 1.0)
    ply = resolve_base_cloud(cfg) if not resume or cfg.base_cloud_source is None \
        else Path(cfg.base_cloud_source)
    cloud = GaussianCloud.from_ply(ply)
    origin = ds.manifest.get("working_origin_angstrom")
    cfg = cfg.replace(box_size=ds.box_size, pixel_size_angstrom=ds.pixel_size_angstrom, n_particles=n_particles,
                      n_gaussians=cloud.n, base_cloud_source=str(ply),
                      map_origin_angstrom=cfg.map_origin_angstrom if origin is None
                      else tuple(float(v) for v in origin))
    src = read_checkpoint(resolve_weights(cfg.load)) if cfg.load else None
    if src is not None and isinstance(src.get("spec"), dict):  # the loaded weights' settings, unless typed
        split = {k: src["spec"].get(k, LEGACY_VALUES.get(k)) for k in SPLIT_FIELDS + LOADED_WHEN_UNSET
                 if getattr(cfg, k) is None}
        cfg = cfg.replace(**split)
    steps = ResumableBatchSampler(n_particles, cfg.batch_size, cfg.seed, world_size=world_size).batches_per_epoch()
    cfg = resolve_auto(cfg, cloud.n, steps)
    model = GaussianVAE(cloud, model_spec(cfg, cloud, image_std))
    if src is not None:
        try:
            model.load_state_dict(src["model"])
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise InputError(f"--load {cfg.load}: weights do not fit this model ({first})") from None
        log.info("initialised weights from %s", cfg.load)
    if main_rank:
        root.mkdir(parents=True, exist_ok=True)
        cloud.to_ply(root / BASE_PLY)
        if resume:
            trim_log(root / LOG, 0)
    return cfg, model


def _make_stepper(cfg: TrainConfig, model: GaussianVAE, n_particles: int, device: torch.device, rank: int,
                  world_size: int) -> tuple[GaussianVAE, Stepper, ResumableBatchSampler]:
    """The model on the device, its objective (DDP-wrapped with several processes), AdamW, the learning-rate
    schedule, the sampler and the :class:`Stepper` that runs the steps."""
    model.set_base_trainable(cfg.train_base)
    model.to(device)
    if world_size > 1:
        from gaussianem.training.distributed import convert_batchnorm

        model = convert_batchnorm(model, device)
    graphs = build_graphs(model, cfg, device)
    counts = L.knn_counts(n_particles, cfg.knn_sample, cfg.knn_near, cfg.knn_far)
    objective = TrainingObjective(model, LossWeights.from_config(cfg), graphs, cfg.amp, counts).to(device)
    wrapped: nn.Module = objective
    if world_size > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = DDP(objective, device_ids=[device.index] if device.type == "cuda" else None)
    groups = param_groups(model, cfg.lr, cfg.readout_lr_scale, cfg.amplitude_encoder_freeze_steps,
                          cfg.amplitude_encoder_thaw_steps)
    opt = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=device.type == "cuda" or None)
    sampler = ResumableBatchSampler(n_particles, cfg.batch_size, cfg.seed, rank=rank, world_size=world_size)
    steps_per_epoch = sampler.batches_per_epoch()
    total_steps = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, group_lr_factors(
        groups, lambda s: lr_factor(s, total_steps, cfg.lr_schedule, cfg.lr_decay_fraction)))
    stepper = Stepper(wrapped, opt, sched, n_particles, cfg.zdim, device, cfg.seed, cfg.batch_size, rank, world_size,
                      cfg.compile, cfg.cudagraphs, amplitude_start_epoch=cfg.amplitude_start_epoch,
                      amplitude_start_steps=cfg.amplitude_start_steps,
                      amplitude_ramp_steps=cfg.amplitude_ramp_steps,
                      blur_start_angstrom=cfg.blur_start_angstrom,
                      blur_steps=round(cfg.blur_epochs * steps_per_epoch),
                      kl_scale=kl_schedule(cfg, total_steps),
                      kl_displacement=kl_displacement_schedule(cfg),
                      autotune=cfg.autotune, step_graph=cfg.step_graph,
                      open_split=(cfg.split_release_steps, model.decoder.open_split)
                      if cfg.split_release_steps and cfg.displacement_dims else None)
    return model, stepper, sampler


def _restore(ckpt: dict, stepper: Stepper, root: Path, main_rank: bool) -> int:
    """Resume from a checkpoint: the stepper's and the RNGs' states; returns the first epoch to run."""
    stepper.load_state(ckpt["trainer"])
    set_rng_state(ckpt["rng"])
    first_epoch = int(ckpt["epoch"]) + 1
    if main_rank:
        trim_log(root / LOG, int(ckpt["epoch"]))
    log.info("resuming %s after epoch %d (step %d)", root, ckpt["epoch"], stepper.step_count)
    return first_epoch


def _particles(cfg: TrainConfig, ds: ParticleDataset, device: torch.device, main_rank: bool,
               rows: np.ndarray | None = None) -> tuple[ParticleBatchDataset, ResidentParticles | None]:
    """The particle batches, and the particles held in device memory when ``--preload`` asks for it."""
    data = ParticleBatchDataset(cfg.dataset, ds, rows)
    resident = None
    if want_resident(cfg.preload, data, device):
        resident = ResidentParticles(data, device, progress=cfg.progress and main_rank)
        log.info("particles held in %s memory (%.2f GiB): batches are gathered there", device.type,
                 ResidentParticles.nbytes(data) / 2**30)
    return data, resident


def _save_epoch(cfg: TrainConfig, root: Path, epoch: int, model: GaussianVAE, stepper: Stepper, mu: np.ndarray,
                lv: np.ndarray, log_file, t_eval: float, plot: bool = True) -> None:
    """Rank 0 at the end of an epoch in the run folder ``root``: the latents, the checkpoint, the base cloud when
    trained, the loss plot (when ``plot``)."""
    t_save = time.perf_counter()
    save_npy_atomic(root / f"z.{epoch}.npy", mu)
    save_npy_atomic(root / f"z_logvar.{epoch}.npy", lv)
    save_pickle_atomic(root / f"z.{epoch}.pkl", np.asarray(mu, np.float32))  # cryoDRGN's z.E.pkl
    save_checkpoint(weights_path(root, epoch), {
        "epoch": epoch, "spec": model.spec.to_dict(), "model": model.state_dict(),
        "trainer": stepper.state(), "sampler": {"epoch": epoch + 1, "position": 0},
        "rng": rng_state(), "config": cfg.to_dict()})
    if cfg.train_base:
        model.base_cloud.to_ply(root / BASE_PLY)
    log_file.flush()
    t_plot = time.perf_counter()
    if plot:
        plot_losses(root / LOG, root / "loss.png")
    # where an epoch's time outside its steps goes: latents, checkpoint, loss plot
    log_record(log_file, {"type": "epoch_outputs", "epoch": epoch,
                          "evaluate_s": round(t_save - t_eval, 3),
                          "save_s": round(t_plot - t_save, 3),
                          "plot_s": round(time.perf_counter() - t_plot, 3), "plotted": plot})


def _train_epoch(cfg: TrainConfig, epoch: int, stepper: Stepper, sampler: ResumableBatchSampler,
                 data: ParticleBatchDataset, device: torch.device, log_file, main_rank: bool,
                 resident: ResidentParticles | None = None) -> None:
    sampler.epoch, sampler.position = epoch, 0
    stepper.epoch = epoch
    knn_active = cfg.knn_weight > 0 and epoch > cfg.knn_start_epoch
    if knn_active:
        stepper.refresh_bank()
    stepper.objective.train()
    loader = batch_source(data, sampler, cfg.num_workers, device, resident)
    sums = np.zeros(1 + len(LOSS_TERMS))
    n_seen = 0
    wait0 = stepper.host_wait_s
    t0 = time.perf_counter()
    bar = tqdm(loader, total=len(sampler), desc=f"epoch {epoch}/{cfg.epochs}", unit="batch",
               disable=bar_disabled(cfg.progress and main_rank), dynamic_ncols=True)

    def record(results: list[StepResult]) -> None:
        nonlocal n_seen, sums
        for r in results:
            n_seen += r.batch
            sums += np.asarray(r.values) * r.batch
            log_record(log_file, {"type": "step", "epoch": r.epoch, "step": r.step, "batch": r.batch,
                                  **dict(zip(("loss",) + LOSS_TERMS, r.values, strict=True))})
        if results:
            v = results[-1].values
            rate = n_seen / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{v[0]:.4f}", render=f"{v[1]:.4f}", kl=f"{v[2]:.2f}", pps=f"{rate:.0f}",
                            refresh=False)

    n_warm, fed, fed_warm, t_warm = warmup_steps(stepper), 0, 0, None
    for batch in bar:
        record(stepper.step(batch, knn_active))
        fed += 1
        if fed == n_warm:  # compilation and graph capture happen in these steps
            t_warm, fed_warm = time.perf_counter(), fed * cfg.batch_size  # full batches (only the last may be short)
    record(stepper.flush())
    elapsed = time.perf_counter() - t0
    means = sums / max(n_seen, 1)
    rec = {"type": "epoch", "epoch": epoch, "step": stepper.step_count, "particles": n_seen,
           "seconds": round(elapsed, 3), "particles_per_s": round(n_seen / max(elapsed, 1e-9), 1),
           "host_wait_s": round(stepper.host_wait_s - wait0, 3),
           **warmup_split(t0, t_warm, time.perf_counter(), n_warm, fed_warm, n_seen),
           **dict(zip(("loss",) + LOSS_TERMS, means.tolist(), strict=True))}
    log_record(log_file, rec)
    if main_rank:
        log.info("epoch %d: loss %.5f render %.5f kl %.3f knn %.3f (%.0f particles/s; first %d steps %.1f s, then "
                 "%.0f particles/s)", epoch, means[0], means[1], means[2], means[3], rec["particles_per_s"],
                 n_warm, rec["warmup_s"], rec["steady_particles_per_s"])


def setup_split(marks: dict[str, float], total: float) -> dict[str, float]:
    """Set-up's seconds by part, from the seconds since the start at which each part ended (``marks``: "start"
    before the dataset is read, "model" once it and the model are ready, "stepper" once the model is on the device
    with its regulariser graphs, optimizer and step; the particles' loading ends at ``total``)."""
    ends = [("config_s", marks["start"]), ("model_s", marks["model"]), ("stepper_s", marks["stepper"]),
            ("particles_s", total)]
    out, before = {}, 0.0
    for name, end in ends:
        out[name] = round(end - before, 3)
        before = end
    return out


def warmup_steps(stepper: Stepper) -> int:
    """How many steps of an epoch hold the one-off work: torch.compile's compilation and the CUDA-graph capture
    (``GRAPH_WARMUP`` ordinary steps, the capture, one replay), or the first step when nothing is compiled."""
    return stepper.GRAPH_WARMUP + 2 if stepper.compiled else 1


def warmup_split(t0: float, t_warm: float | None, t_end: float, n_warm: int, fed_warm: int, n_seen: int) -> dict:
    """The epoch's time split at its first ``n_warm`` steps: ``warmup_s`` (compilation, capture: the first epoch's
    overhead; near one step's time later) and ``steady_particles_per_s`` over the rest (the whole epoch when it
    has no more steps than that)."""
    if t_warm is None or n_seen <= fed_warm:
        return {"warmup_steps": n_warm, "warmup_s": round(t_end - t0, 3),
                "steady_particles_per_s": round(n_seen / max(t_end - t0, 1e-9), 1)}
    return {"warmup_steps": n_warm, "warmup_s": round(t_warm - t0, 3),
            "steady_particles_per_s": round((n_seen - fed_warm) / max(t_end - t_warm, 1e-9), 1)}



@torch.no_grad()
def evaluate_latents(model: GaussianVAE, dataset: ParticleBatchDataset, batch_size: int, device: torch.device,
                     num_workers: int = 0, amp: bool = True, progress: bool = True, rank: int = 0,
                     world_size: int = 1, resident: ResidentParticles | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Encode every particle (eval mode) -> mu (N, zdim), logvar (N, zdim) float32 (rank 0 holds all rows)."""
    was_training = model.training
    model.eval()
    batches = sequential_batches(dataset.n, batch_size, rank, world_size)
    loader = batch_source(dataset, batches, num_workers, device, resident)
    mus, lvs = [], []
    use_amp = amp and device.type == "cuda"
    for batch in tqdm(loader, total=len(batches), desc="encode", unit="batch", disable=bar_disabled(progress),
                      leave=False):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            mu, lv = model.encode(batch["image"].to(device, non_blocking=True),
                                  batch["shift"].to(device, non_blocking=True))
        mus.append(mu.float())
        lvs.append(lv.float())
    mu = torch.cat(mus) if mus else torch.zeros(0, model.zdim, device=device)
    lv = torch.cat(lvs) if lvs else torch.zeros(0, model.zdim, device=device)
    if world_size > 1:
        import torch.distributed as dist

        sizes = [len(s) for s in np.array_split(np.arange(dataset.n), world_size)]
        pad = max(sizes) - mu.shape[0]
        both = torch.cat([mu, lv], 1)
        both = torch.cat([both, both.new_zeros(pad, both.shape[1])])
        parts = [torch.empty_like(both) for _ in range(world_size)]
        dist.all_gather(parts, both)
        both = torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])
        mu, lv = both[:, :model.zdim], both[:, model.zdim:]
    model.train(was_training)
    return mu.cpu().numpy(), lv.cpu().numpy()
