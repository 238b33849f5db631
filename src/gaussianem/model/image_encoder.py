"""Image encoder: an MLP on the flattened, windowed, normalised particle image -> (mu, log sigma^2) of z."""

from __future__ import annotations

from torch import Tensor, nn


class ImageEncoder(nn.Module):
    """``n_layers`` × (Linear -> BatchNorm -> ReLU) of width ``hidden``, then Linear -> 2·zdim.

    Args:
        n_pixels: D·D, the length of a flattened image.
        zdim: latent dimension.
        hidden: width of the hidden layers (docs/DESIGN.md: 1024).
        n_layers: number of hidden layers (docs/DESIGN.md: 3).
    """

    def __init__(self, n_pixels: int, zdim: int, hidden: int = 1024, n_layers: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_pixels
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, 2 * zdim)
        self.zdim = zdim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, D·D) -> mu (B, zdim), logvar (B, zdim)."""
        h = self.out(self.body(x))
        return h[:, : self.zdim], h[:, self.zdim:]
