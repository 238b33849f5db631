"""The training configuration: one frozen dataclass, written to ``RUNDIR/config.yaml`` with the package version,
the command line and the dataset's geometry."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from gaussianem import __version__
from gaussianem.errors import InputError
from gaussianem.io.writes import atomic_path
from gaussianem.model.spec import LAYER_DEFAULTS as _SPEC

CONFIG = "config.yaml"

# fields a --resume may change (they do not change the numbers of the run)
RUNTIME_FIELDS = ("epochs", "num_workers", "device", "progress", "preload", "autotune", "step_graph")


@dataclass(frozen=True)
class TrainConfig:
    """All settings of a heterogeneity training run (defaults: DESIGN.md "The model")."""

    dataset: str
    rundir: str
    gaussians: str | None = None
    epochs: int = 20
    batch_size: int = 32
    zdim: int = _SPEC["zdim"]
    lr: float = 1e-4
    weight_decay: float = 0.01
    lr_schedule: str = "constant"  # constant | cosine
    seed: int = 0
    device: str | None = None
    amp: bool = True
    num_workers: int = 2
    load: str | None = None
    train_base: bool = False
    predict_width: bool = _SPEC["predict_width"]
    compile: bool | None = None  # None: on with CUDA, off on the CPU
    cudagraphs: bool | None = None  # None: on with CUDA + compile in one process
    step_graph: bool | None = None  # None/True: with CUDA graphs, the whole step (AdamW too) as one CUDA graph
    tf32: bool = False  # float32 matrix products (the projection's) on TF32 tensor cores (CUDA)
    autotune: bool = False  # compile with max-autotune (Triton GEMMs with fused epilogues; minutes of compilation)
    preload: str = "auto"  # particles in device memory: auto (CUDA, stack <= 30 % of the GPU), on, off
    # layer sizes and geometry of the model: ModelSpec's defaults
    encoder_hidden: int = _SPEC["encoder_hidden"]
    encoder_layers: int = _SPEC["encoder_layers"]
    gaussian_hidden: int = _SPEC["gaussian_hidden"]
    gaussian_layers: int = _SPEC["gaussian_layers"]
    embedding_dim: int = _SPEC["embedding_dim"]
    decoder_hidden: int = _SPEC["decoder_hidden"]
    decoder_layers: int = _SPEC["decoder_layers"]
    decoder_features: int = _SPEC["decoder_features"]
    position_scale_angstrom: float = _SPEC["position_scale_angstrom"]
    window_radius: float = _SPEC["window_radius"]
    window_edge: float = _SPEC["window_edge"]
    projection_chunk: int | None = _SPEC["projection_chunk"]
    # loss weights (relative to the render L1)
    kl_weight: float = 1 / 5e4
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
    graph_radius: float = 1.5  # × mean nearest-neighbour distance: smoothness and distance graph
    alignment_radius: float = 2.0  # × mean nearest-neighbour distance: alignment and repulsion graph
    repulsion_fraction: float = 0.5  # repel below this fraction of the mean nearest-neighbour distance
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

    def validate(self) -> None:
        checks = [
            (self.epochs >= 1, "--epochs must be >= 1"),
            (self.batch_size >= 2, "--batch-size must be >= 2 (BatchNorm needs two images)"),
            (self.zdim >= 1, "--zdim must be >= 1"),
            (self.lr > 0, "--lr must be > 0"),
            (self.lr_schedule in ("constant", "cosine"), "--lr-schedule must be constant or cosine"),
            (self.num_workers >= 0, "--num-workers must be >= 0"),
            (self.preload in ("auto", "on", "off"), "--preload must be auto, on or off"),
            (self.device in (None, "cpu", "cuda") or str(self.device).startswith("cuda:"),
             f"--device must be cuda or cpu, got {self.device}"),
            (min(self.encoder_layers, self.gaussian_layers, self.decoder_layers) >= 1, "layer counts must be >= 1"),
            (min(self.amplitude_weight, self.amplitude_gain_weight, self.amplitude_start_epoch) >= 0,
             "--amplitude-weight, --amplitude-gain-weight and --amplitude-start-epoch must be >= 0"),
            (self.knn_near >= 1 and self.knn_far >= 1 and self.knn_sample > self.knn_near,
             "kNN counts must satisfy sample > near >= 1, far >= 1"),
        ]
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
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


LOSS_WEIGHTS = ("kl_weight", "knn_weight", "smoothness_weight", "distance_weight", "alignment_weight",
                "repulsion_weight", "amplitude_weight", "amplitude_gain_weight")


def read_config(rundir: str | Path) -> dict:
    path = Path(rundir) / CONFIG
    if not path.is_file():
        raise InputError(f"{rundir} is not a GaussianEM run folder (no {CONFIG})")
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable YAML file ({' '.join(str(exc).split())})") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: not a GaussianEM run configuration (holds a {type(config).__name__})")
    return config
