"""Image encoder: an MLP on the flattened, windowed, normalised particle image -> (mu, log sigma^2) of z."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _mlp(n_inputs: int, hidden: int, n_layers: int) -> nn.Sequential:
    """``n_layers`` × (Linear -> BatchNorm -> ReLU) of width ``hidden``."""
    layers: list[nn.Module] = []
    width = n_inputs
    for _ in range(n_layers):
        layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
        width = hidden
    return nn.Sequential(*layers)


class ImageEncoder(nn.Module):
    """``n_layers`` × (Linear -> BatchNorm -> ReLU) of width ``hidden``, then Linear -> 2·zdim.

    Args:
        n_pixels: D·D, the length of a flattened image.
        zdim: latent dimension.
        hidden: width of the hidden layers (docs/DESIGN.md: 1024).
        n_layers: number of hidden layers (docs/DESIGN.md: 3).
        split_dims: 0, or N (0 < N < zdim): two such MLPs side by side on the same image, one for the first N
            dimensions of z (the latent split's displacement dimensions) and one (``amplitude_body``,
            ``amplitude_out``) for the other zdim - N, so that the states' larger gradients do not share the
            trunk's weights, nor their optimiser statistics, with the motions' (issue 17).
        amplitude_hidden: the width of the second MLP's hidden layers (None: ``hidden``).
    """

    def __init__(self, n_pixels: int, zdim: int, hidden: int = 1024, n_layers: int = 3, split_dims: int = 0,
                 amplitude_hidden: int | None = None) -> None:
        super().__init__()
        if not 0 <= split_dims < zdim:
            raise ValueError(f"split_dims={split_dims} needs 0 <= it < zdim={zdim}")
        self.zdim, self.split_dims = zdim, split_dims
        self.body = _mlp(n_pixels, hidden, n_layers)
        self.out = nn.Linear(hidden, 2 * (split_dims or zdim))
        if split_dims:
            width = amplitude_hidden or hidden
            self.amplitude_body = _mlp(n_pixels, width, n_layers)
            self.amplitude_out = nn.Linear(width, 2 * (zdim - split_dims))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, D·D) -> mu (B, zdim), logvar (B, zdim)."""
        h = self.out(self.body(x))
        if not self.split_dims:
            return h[:, : self.zdim], h[:, self.zdim:]
        n, m = self.split_dims, self.zdim - self.split_dims
        a = self.amplitude_out(self.amplitude_body(x))
        return torch.cat([h[:, :n], a[:, :m]], dim=1), torch.cat([h[:, n:], a[:, m:]], dim=1)
