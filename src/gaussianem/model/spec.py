"""The sizes and geometry of a :class:`~gaussianem.model.vae.GaussianVAE` (no torch import: the training
configuration takes its model fields and their defaults from here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelOptions:
    """The layer sizes and geometry a user chooses for the model (``gaussianem train`` options).

    The one definition of these fields: :class:`ModelSpec` and the training configuration inherit them.
    """

    zdim: int = 10
    encoder_hidden: int = 1024
    encoder_layers: int = 3
    gaussian_hidden: int = 128
    gaussian_layers: int = 3
    embedding_dim: int = 32
    decoder_hidden: int = 128
    decoder_layers: int = 2
    decoder_features: int = 256
    predict_width: bool = False
    position_scale_angstrom: float = 3.0
    window_radius: float = 0.85
    window_edge: float = 0.15
    projection_chunk: int | None = None


@dataclass(frozen=True, kw_only=True)
class ModelSpec(ModelOptions):
    """Everything needed to rebuild a :class:`GaussianVAE` (sizes, geometry); saved in every checkpoint.

    The user's :class:`ModelOptions` plus what the data fix: the working box and pixel size, the base cloud's
    size and width bounds, the images' standard deviation.
    """

    box_size: int
    pixel_size_angstrom: float
    n_gaussians: int
    width_min: float
    width_max: float
    image_std: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)
