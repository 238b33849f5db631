"""The configurations of ``train`` and ``fit`` (no torch import: the command line takes its defaults from here).

:class:`TrainConfig` is written to ``RUNDIR/config.yaml`` with the package version, the command line and the
dataset's geometry; :class:`FitConfig` (with its :class:`StrategyConfig`) to ``fit.json`` and the fit checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

from gaussianem import __version__
from gaussianem.errors import InputError
from gaussianem.io.writes import atomic_path
from gaussianem.model.runfiles import CONFIG
from gaussianem.model.spec import AMPLITUDE_CHANGE_DEFAULT, LEGACY_VALUES, ModelOptions, resolve_decoder

# training settings whose default changed: the value a saved configuration that predates the field ran with
# (l2 is the default since 2026-12-06, issue 17's GPU screen; the step counts are automatic since session 17, the KL
# warm-up since session 19, the wsd learning rate since session 21)
TRAIN_LEGACY_VALUES = {"render_loss": "l1", "amplitude_start_steps": 0, "split_release_steps": 0,
                       "kl_warmup_steps": 0, "lr_schedule": "constant"}

# fields a --resume may change (they do not change the numbers of the run)
RUNTIME_FIELDS = ("epochs", "num_workers", "device", "progress", "preload", "autotune", "step_graph")
# fields a --resume keeps whatever the command line says: the weights' shapes, the optimizer's groups and the
# particles
FIXED_ON_RESUME = ("dataset", "rundir", "gaussians", "ind", "load", "zdim", "encoder_hidden", "encoder_layers",
                   "gaussian_hidden", "gaussian_layers", "embedding_dim", "decoder_hidden", "decoder_layers",
                   "decoder_features", "predict_width", "decoder", "n_control_points", "control_neighbours",
                   "readout_rank", "train_base", "encoder_box", "encoder_centre", "encoder_input",
                   "encoder_fourier_radius", "decoder_combine", "displacement_dims",
                   "readout_control", "readout_zero", "encoder_split", "amplitude_encoder_hidden",
                   "readout_lr_scale", "amplitude_change", "amplitude_encoder_freeze_steps")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(ModelOptions):
    """All settings of a heterogeneity training run (defaults: docs/DESIGN.md "The model").

    The model's layer sizes and geometry (``zdim``, ``encoder_hidden``, ... ``projection_chunk``) are the fields
    of :class:`~gaussianem.model.spec.ModelOptions`, inherited with their defaults.
    """

    dataset: str
    rundir: str
    gaussians: str | None = None
    ind: str | None = None  # train on these dataset rows only (a cryoDRGN index .pkl, .npy or .txt)
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.01
    # constant | cosine | wsd (constant, then a half cosine to 0 over the last lr_decay_fraction). wsd is the default
    # since session 21 (issue 17): at 20 epochs it orders the motions and separates the states better on two seeds
    # (adk R² 0.883 / 0.878 against 0.862 / 0.854, tcr-compositional ARI 0.990 / 0.990 against 0.981 / 0.977), with
    # per-image FSC-AUC within ±0.001; its rate is constant until three quarters of the run, so a 20-epoch run's
    # first 15 epochs are the constant rate's (benchmarks/RESULTS.md, wsd-default-gpu-2026-12-07)
    lr_schedule: str = "wsd"
    lr_decay_fraction: float = 0.25
    # the amplitude read-out's parameters (the per-Gaussian vectors u and the map h(z)) learn at this multiple of
    # --lr (issue 17 candidate: a state's fade is a large pre-activation change that the zero-started u reaches
    # slowly at --lr)
    readout_lr_scale: float = 1.0
    # with --encoder-split: the amplitude part's image encoder stops learning (its learning rate 0) once this many
    # optimizer steps have run (0: never). Issue 17 candidate: with two encoders the states are in the latent by
    # epoch 5, but per-image FSC-AUC falls after it while the amplitude dimensions' KL keeps rising
    amplitude_encoder_freeze_steps: int = 0
    # with amplitude_encoder_freeze_steps: the amplitude part's encoder learns again (at the run's rate of that step)
    # from this optimizer step on (0: never). Issue 17 candidate: with the freeze the states' separation stays where
    # it was at the freeze (tcr-mixed ARI 0.994 at epochs 5 and 20, against the defaults' 0.9998 at 20, which they
    # reach while --lr-schedule wsd decays the rate); thawed for the decay, it may sharpen without fitting noise
    amplitude_encoder_thaw_steps: int = 0
    seed: int = 0
    device: str | None = None
    amp: bool = True
    num_workers: int = 2
    load: str | None = None
    train_base: bool = False
    compile: bool | None = None  # None: on with CUDA, off on the CPU
    cudagraphs: bool | None = None  # None: on with CUDA + compile in one process
    step_graph: bool | None = None  # None/True: with CUDA graphs, the whole step (AdamW too) as one CUDA graph
    tf32: bool = False  # float32 matrix products (the projection's) on TF32 tensor cores (CUDA)
    autotune: bool = False  # compile with max-autotune (Triton GEMMs with fused epilogues; minutes of compilation)
    preload: str = "auto"  # particles in device memory: auto (CUDA, stack <= 30 % of the GPU), on, off
    # loss weights (relative to the render L1)
    # KL: the method's 1/5e4. --kl-weight 4e-6 orders tcr-mixed's hinge better (0.870-0.890 at 20 epochs against
    # 0.773-0.851) but costs adk 0.017 per-image FSC-AUC, so it is an option, not the default (benchmarks/RESULTS.md,
    # kl-wsd-gpu-2026-12-06)
    kl_weight: float = 1 / 5e4
    # KL schedule (None: --kl-weight throughout): this weight for the first kl_ramp_start of the run, then linear to
    # --kl-weight at the end (issue 17 candidate)
    kl_start_weight: float | None = None
    kl_ramp_start: float = 0.5
    # KL warm-up: the KL weight's factor rises linearly from 0 at the first step to 1 at this step (0: none). None:
    # with the latent split, up to the amplitude start (with --encoder-split, two epochs), else 0 (resolve_auto).
    # Issue 17: without it the latent could collapse during the displacement-only epochs and miss the motion
    # (benchmarks/RESULTS.md, kl-warmup-gpu-2026-12-07)
    kl_warmup_steps: int | None = None
    # with the latent split: the KL weight of the displacement dimensions (the first N) is this multiple of the
    # amplitude dimensions' (1: one weight for all). Issue 17 candidate: with two encoders an unused displacement
    # dimension wakes after epoch 5 and per-image FSC-AUC falls
    kl_displacement_scale: float = 1.0
    # ... from this optimizer step on (1 before: the displacement dimensions weighed as the amplitude ones until
    # then). Issue 17 candidate: the motions enter the displacement dimensions by epoch 5 as with 1, and the larger
    # weight then keeps the unused ones from waking
    kl_displacement_scale_start_steps: int = 0
    knn_weight: float = 1 / 1e6
    knn_start_epoch: int = 2  # the kNN loss is active in epochs after this one (1-based)
    knn_sample: int = 6400
    knn_near: int = 128
    knn_far: int = 640
    smoothness_weight: float = 1 / 1e5
    distance_weight: float = 1 / 1e3
    alignment_weight: float = 1 / 1e5
    repulsion_weight: float = 1 / 1e3
    amplitude_weight: float = 0.0  # amplitude-change penalty (mean Δa²)
    amplitude_gain_weight: float = 1 / 1e2  # amplitude-gain penalty (mean relu(Δa)²): fading out stays free
    amplitude_start_epoch: int = 0  # decoded amplitude changes are on in epochs after this one (1-based)
    # ... and once this many optimizer steps have run (displacements alone before). None: with the latent split,
    # SPLIT_AMPLITUDE_EPOCHS epochs' steps (at most half the run), else 0 (resolve_auto)
    amplitude_start_steps: int | None = None
    amplitude_ramp_steps: int = 0  # ... then ramp in linearly over this many steps (0: at once)
    # with displacement_dims: the latent split holds for this many optimizer steps, then opens (0: the whole run).
    # None: with the latent split, 1.5 × the amplitude start (3 epochs), else 0
    split_release_steps: int | None = None
    # coarse to fine: the render residual low-passed by a Gaussian of this width (Å) at the start, the width falling
    # linearly to 0 over --blur-epochs (0: off). Issue 17 candidate: a wider basin for large displacements
    blur_start_angstrom: float = 0.0
    blur_epochs: float = 5.0
    render_loss: str = "l2"  # the render term: "l2" (mean squared residual, cryoDRGN's) or "l1" (mean absolute)
    graph_radius: float = 1.5  # × mean nearest-neighbour distance: smoothness and distance graph
    alignment_radius: float = 2.0  # × mean nearest-neighbour distance: alignment and repulsion graph
    repulsion_fraction: float = 0.5  # repel below this fraction of the mean nearest-neighbour distance
    # distance / alignment / repulsion on "gaussians", on the "control" points of --decoder control, or "auto"
    # (control points with that decoder): their cost then does not grow with the number of Gaussians
    regularise_on: str = "auto"
    eval_batch_size: int = 256
    progress: bool = True
    # filled in at the start of a run
    box_size: int | None = None
    pixel_size_angstrom: float | None = None
    # MRC origin (x, y, z) Å of the working grid in the consensus map's frame: dataset.json's
    # working_origin_angstrom (None: datasets made before it was recorded; analysis then uses (0, 0, 0))
    map_origin_angstrom: tuple[float, float, float] | None = None
    n_particles: int | None = None
    n_gaussians: int | None = None
    base_cloud_source: str | None = None
    version: str = __version__
    command_line: str | None = None
    # filled in by the run, not settings: never listed as kept or changed on --resume
    RECORDED = ("box_size", "pixel_size_angstrom", "map_origin_angstrom", "n_particles", "n_gaussians",
                "base_cloud_source", "version", "command_line", "dataset", "rundir")

    def validate(self, resume: bool = False) -> None:
        """InputError on the first bad setting. ``resume``: these are the settings typed for a --resume, before the
        run's saved ones are merged in, so the checks that need the saved model's fields wait for the merged
        config."""
        checks = [
            (self.epochs >= 1, "--epochs must be >= 1"),
            (self.batch_size >= 2, "--batch-size must be >= 2 (BatchNorm needs two images)"),
            (self.zdim >= 1, "--zdim must be >= 1"),
            (self.lr > 0, "--lr must be > 0"),
            (self.lr_schedule in ("constant", "cosine", "wsd"), "--lr-schedule must be constant, cosine or wsd"),
            ((self.kl_warmup_steps or 0) >= 0, "--kl-warmup-steps must be >= 0"),
            (0 < self.lr_decay_fraction <= 1, "--lr-decay-fraction must be in (0, 1]"),
            (math.isfinite(self.readout_lr_scale) and self.readout_lr_scale > 0, "--readout-lr-scale must be > 0"),
            (self.amplitude_encoder_freeze_steps >= 0, "--amplitude-encoder-freeze-steps must be >= 0"),
            (self.amplitude_encoder_thaw_steps >= 0, "--amplitude-encoder-thaw-steps must be >= 0"),
            (not self.amplitude_encoder_thaw_steps
             or 0 < self.amplitude_encoder_freeze_steps < self.amplitude_encoder_thaw_steps,
             "--amplitude-encoder-thaw-steps ends --amplitude-encoder-freeze-steps: give a freeze before it"),
            (self.kl_start_weight is None or (math.isfinite(self.kl_start_weight) and self.kl_start_weight >= 0
                                              and self.kl_weight > 0 and 0 <= self.kl_ramp_start < 1),
             "--kl-start-weight must be a finite number >= 0, with --kl-weight > 0 and --kl-ramp-start in [0, 1)"),
            (math.isfinite(self.kl_displacement_scale) and self.kl_displacement_scale >= 0,
             "--kl-displacement-scale must be a finite number >= 0"),
            (self.kl_displacement_scale_start_steps >= 0, "--kl-displacement-scale-start-steps must be >= 0"),
            (not self.kl_displacement_scale_start_steps or self.kl_displacement_scale != 1.0,
             "--kl-displacement-scale-start-steps delays --kl-displacement-scale: give it a scale other than 1"),
            (resume or self.kl_displacement_scale == 1.0 or self.displacement_dims != 0,
             "--kl-displacement-scale weighs the KL of the latent split's displacement dimensions: it needs "
             "--displacement-dims N (not 0)"),
            (self.num_workers >= 0, "--num-workers must be >= 0"),
            (self.preload in ("auto", "on", "off"), "--preload must be auto, on or off"),
            (self.device in (None, "cpu", "cuda") or str(self.device).startswith("cuda:"),
             f"--device must be cuda or cpu, got {self.device}"),
            (min(self.encoder_layers, self.gaussian_layers, self.decoder_layers) >= 1, "layer counts must be >= 1"),
            (min(self.amplitude_weight, self.amplitude_gain_weight, self.amplitude_start_epoch,
                 self.amplitude_start_steps or 0, self.amplitude_ramp_steps, self.split_release_steps or 0) >= 0,
             "--amplitude-weight, --amplitude-gain-weight, --amplitude-start-epoch, --amplitude-start-steps, "
             "--amplitude-ramp-steps and --split-release-steps must be >= 0"),
            (resume or not self.split_release_steps or self.displacement_dims != 0,
             "--split-release-steps opens a latent split: it needs --displacement-dims N (not 0)"),
            (self.render_loss in ("l1", "l2"), "--render-loss must be l1 or l2"),
            (math.isfinite(self.blur_start_angstrom) and self.blur_start_angstrom >= 0
             and math.isfinite(self.blur_epochs) and self.blur_epochs > 0,
             "--blur-start-angstrom must be a finite number >= 0 and --blur-epochs > 0"),
            (self.regularise_on in ("auto", "gaussians", "control")
             and not (self.regularise_on == "control" and self.decoder == "pair"),
             "--regularise-on must be auto, gaussians or control (control needs --decoder control)"),
            (self.knn_near >= 1 and self.knn_far >= 1 and self.knn_sample > self.knn_near,
             "kNN counts must satisfy sample > near >= 1, far >= 1"),
        ]
        checks += [(False, msg) for msg in self.option_errors()]
        for ok, msg in checks:
            if not ok:
                raise InputError(msg)
        for name in LOSS_WEIGHTS:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InputError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain YAML-safe values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def write(self, rundir: str | Path) -> None:
        with atomic_path(Path(rundir) / CONFIG) as tmp:
            tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """A saved configuration; fields it predates get the values that older versions used."""
        names = {f.name for f in fields(cls)}
        return cls(**{**LEGACY_VALUES, **TRAIN_LEGACY_VALUES, **{k: v for k, v in d.items() if k in names}})


# the latent split's displacement-only phase, in epochs (issue 17: 2 put tcr-mixed's hinge into the latent by epoch
# 5 in 6 runs of 7 at 20,000 particles and on the 4,000-particle toy; 1 lost it once the amplitudes came)
SPLIT_AMPLITUDE_EPOCHS = 2


def resolve_auto(cfg: TrainConfig, n_gaussians: int, steps_per_epoch: int) -> TrainConfig:
    """``cfg`` with its automatic settings (None) made concrete for a new run on a cloud of ``n_gaussians`` with
    ``steps_per_epoch`` optimizer steps per epoch: the latent split (:meth:`ModelOptions.resolved_split`)
    and, with the split, its schedule over a phase of ``SPLIT_AMPLITUDE_EPOCHS`` epochs (at most half the run): the
    KL warm-up over the phase, the split opened at 1.5 × it, amplitude changes from the start with the split
    encoders (``encoder_split``); with one encoder, amplitude changes from the phase's end (displacements alone
    before), the warm-up and the opening then counted from the amplitude start, typed or not; 0, 0 and 0 without a
    split. InputError where a typed ``--split-release-steps`` or ``--kl-displacement-scale`` meets no
    split."""
    dims, control, centre, encoders = cfg.resolved_split(n_gaussians)
    phase = min(SPLIT_AMPLITUDE_EPOCHS * steps_per_epoch, steps_per_epoch * cfg.epochs // 2) if dims else 0
    start, release = cfg.amplitude_start_steps, cfg.split_release_steps
    if start is None:
        start = 0 if encoders else phase
    anchor = (phase if encoders else start) if dims else 0  # one encoder: the displacement-only steps
    if release is None:
        release = anchor + anchor // 2
    warmup = anchor if cfg.kl_warmup_steps is None else cfg.kl_warmup_steps
    if not dims and (release or cfg.kl_displacement_scale != 1.0):
        what = "--split-release-steps opens" if release else "--kl-displacement-scale weighs"
        decoder = resolve_decoder(cfg.decoder, n_gaussians, cfg.n_control_points)
        raise InputError(f"{what} a latent split, and this run has none (--displacement-dims "
                         f"resolves to 0 with --decoder {decoder}, --zdim {cfg.zdim})")
    return cfg.replace(displacement_dims=dims, readout_control=control, encoder_centre=centre, encoder_split=encoders,
                       amplitude_start_steps=start, split_release_steps=release, kl_warmup_steps=warmup,
                       amplitude_change=cfg.amplitude_change or AMPLITUDE_CHANGE_DEFAULT)


LOSS_WEIGHTS = ("kl_weight", "knn_weight", "smoothness_weight", "distance_weight", "alignment_weight",
                "repulsion_weight", "amplitude_weight", "amplitude_gain_weight")


@dataclass(frozen=True)
class StrategyConfig:
    """Settings of :class:`~gaussianem.training.strategy.DensifyPruneStrategy` (steps are optimizer steps)."""

    densify: bool = False  # opt-in: on a cloud initialised from the consensus map it lowered the fit FSC
    prune: bool = True
    prune_every: int = 200
    densify_every: int = 200
    start_step: int = 100  # no change before this step (let the statistics settle)
    stop_fraction: float = 0.75  # no densification in the last quarter of the run (the cloud settles)
    prune_mass_fraction: float = 0.02  # prune when a·σ³ < fraction × median(a·σ³)
    grad_factor: float = 2.5  # densify when the mean |∂L/∂μ| > factor × its median over the cloud
    max_densify_fraction: float = 0.02  # at most this fraction of the cloud is densified per refinement
    split_shrink: float = 0.8  # children of a split take width × shrink (clamped to the bounds)
    max_gaussians: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FitConfig:
    """Settings of the homogeneous fit (written to ``fit.json`` and into the checkpoint)."""

    epochs: int = 3
    batch_size: int = 64
    lr: float = 5e-2  # Adam on raw amplitudes and widths, start (see "Learning rate" in training/fit.py)
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
