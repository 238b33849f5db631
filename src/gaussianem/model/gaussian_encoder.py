"""Gaussian encoder: an MLP on each Gaussian's own base attributes -> an embedding, independent of the image.

It runs once per training step for all Gaussians (never per image).
"""

from __future__ import annotations

from torch import Tensor, nn

N_FEATURES = 5  # amplitude, width, x, y, z (normalised)


class GaussianEncoder(nn.Module):
    """``n_layers`` × (Linear -> LayerNorm -> ReLU) of width ``hidden``, then Linear -> ``embedding_dim``.

    Args:
        hidden: width; n_layers: hidden layers; embedding_dim: output size (docs/DESIGN.md: 128, 3, 32).
    """

    def __init__(self, hidden: int = 128, n_layers: int = 3, embedding_dim: int = 32,
                 in_features: int = N_FEATURES) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, embedding_dim))
        self.net = nn.Sequential(*layers)
        self.embedding_dim = embedding_dim

    def forward(self, features: Tensor) -> Tensor:
        """features (G, 5) -> embedding (G, embedding_dim)."""
        return self.net(features)
