"""Decoder: for every (particle, Gaussian) pair, an MLP on concat(z, embedding) -> that Gaussian's changes.

The first layer is split, ``W [z; e] + b = (W_z z + b) + W_e e``: the z part is computed once per particle
(B, H), the embedding part once per Gaussian (G, H), and the pair activations are their broadcast sum
(B, G, H). This is exactly the concatenation MLP (:meth:`Decoder.forward_concat` is the plain reference) at a
fraction of the cost of the first layer.

``combine="film"`` adds a z-dependent gain on the embedding part, ``(W_z z + b) + (1 + W_g z) ⊙ W_e e`` (W_g
zero-initialised, so training starts from the sum): z can turn a group of Gaussians' features up or down
directly, rather than only through the sum and the ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gaussianem.model.spec import DECODER_COMBINES


class Decoder(nn.Module):
    """Pair MLP: split first layer (H), ``n_layers - 1`` more Linear(H, H), Linear(H, F) features, heads.

    With the docs/DESIGN.md sizes (H = 128, two hidden layers, F = 256) a pair costs H·H + H·F + F·n_out
    multiply-adds after the broadcast sum. Heads: Δamplitude (1, pre-activation), Δposition (3, in units of the
    caller's scale) and optionally Δwidth (1, pre-activation). Heads are zero-initialised: training starts at the
    base cloud.

    Args:
        zdim: latent size; embedding_dim: Gaussian embedding size; hidden: H; n_layers: hidden layers including the
        split first one (>= 1); features: F; predict_width: add the Δwidth head; combine: "sum" or "film" (see
        the module).
    """

    def __init__(self, zdim: int, embedding_dim: int = 32, hidden: int = 128, n_layers: int = 2,
                 features: int = 256, predict_width: bool = False, combine: str = "sum") -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError("the decoder needs at least one hidden layer")
        if combine not in DECODER_COMBINES:
            raise ValueError(f"combine must be one of {DECODER_COMBINES}, not {combine!r}")
        self.z_proj = nn.Linear(zdim, hidden)
        self.e_proj = nn.Linear(embedding_dim, hidden, bias=False)
        self.z_gain = nn.Linear(zdim, hidden) if combine == "film" else None
        if self.z_gain is not None:
            nn.init.zeros_(self.z_gain.weight)
            nn.init.zeros_(self.z_gain.bias)
        layers: list[nn.Module] = [nn.ReLU()]
        for _ in range(n_layers - 1):
            layers += [nn.Linear(hidden, hidden), nn.ReLU()]
        layers += [nn.Linear(hidden, features), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)
        self.n_out = 5 if predict_width else 4
        self.head = nn.Linear(features, self.n_out)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.predict_width = predict_width

    def first_layer(self, z: Tensor, embedding: Tensor) -> Tensor:
        """z (B, zdim), embedding (G, E) -> pre-activation of the first layer (B, G, H) by the split form."""
        e = self.e_proj(embedding)[None, :, :]
        out = self.z_proj(z)[:, None, :] + e
        if self.z_gain is not None:
            out = out + self.z_gain(z)[:, None, :] * e
        return out

    def forward(self, z: Tensor, embedding: Tensor) -> Tensor:
        """z (B, zdim), embedding (G, E) -> raw head outputs (B, G, n_out): [Δamp, Δx, Δy, Δz(, Δwidth)]."""
        return self.head(self.mlp(self.first_layer(z, embedding)))

    def forward_concat(self, z: Tensor, embedding: Tensor) -> Tensor:
        """Plain reference of :meth:`forward`: a Linear on the explicit concatenation [z, e] of every pair."""
        b, g = z.shape[0], embedding.shape[0]
        pairs = torch.cat([z[:, None, :].expand(b, g, -1), embedding[None].expand(b, g, -1)], dim=-1)
        weight = torch.cat([self.z_proj.weight, self.e_proj.weight], dim=1)
        first = F.linear(pairs, weight, self.z_proj.bias)
        if self.z_gain is not None:  # the gain of each pair, from its own z, on its own embedding's part
            first = first + F.linear(pairs[..., : z.shape[1]], self.z_gain.weight, self.z_gain.bias) * F.linear(
                pairs[..., z.shape[1]:], self.e_proj.weight)
        return self.head(self.mlp(first))
