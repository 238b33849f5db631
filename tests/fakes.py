"""Small stand-in models with known answers, for the analysis tests and benchmarks/report/analysis_report_demo.py.

:class:`HingeFadeModel` implements the model contract (``decode``, ``base_cloud``): two domains joined at a
hinge, the moving one rotating about the z axis by ``angle_per_unit · z[:, 0]`` radians, and a subunit whose
amplitudes scale by ``sigmoid(4 · z[:, 1])`` (0 → removed, 1 → present).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from gaussianem.gaussians import GaussianCloud


def hinge_fade_cloud(n_per_domain: int = 150, n_subunit: int = 60, seed: int = 0, scale: float = 1.0) -> dict:
    """Positions (G, 3) Å of a fixed domain (x < 0), a moving domain (x > 0) and a subunit (y > 0), with masks."""
    rng = np.random.default_rng(seed)

    def blob(centre, radii, n):
        return rng.normal(size=(n, 3)) * np.asarray(radii) + np.asarray(centre)

    fixed = blob([-10, 0, 0], [5, 4, 4], n_per_domain)
    moving = blob([10, 0, 0], [5, 4, 4], n_per_domain)
    sub = blob([-10, 10, 0], [3, 2.5, 3], n_subunit)
    pos = np.concatenate([fixed, moving, sub]) * scale
    g = len(pos)
    masks = {"fixed": np.arange(g) < n_per_domain,
             "moving": (np.arange(g) >= n_per_domain) & (np.arange(g) < 2 * n_per_domain),
             "subunit": np.arange(g) >= 2 * n_per_domain}
    return {"positions": pos, **masks}


class HingeFadeModel(nn.Module):
    """A known deformation model: decode(z (B, zdim>=2)) -> positions (B, G, 3), widths (B, G), amplitudes (B, G).

    The moving domain rotates about the z axis through ``pivot`` by ``angle_per_unit · z[:, 0]`` rad; the subunit's
    amplitudes are ``base · sigmoid(4 z[:, 1])``.
    """

    def __init__(self, n_per_domain: int = 150, n_subunit: int = 60, width: float = 2.0,
                 angle_per_unit: float = 0.4, seed: int = 0, scale: float = 1.0) -> None:
        super().__init__()
        c = hinge_fade_cloud(n_per_domain, n_subunit, seed, scale)
        pos = torch.as_tensor(c["positions"], dtype=torch.float32)
        g = len(pos)
        self.base_cloud = GaussianCloud(pos, torch.full((g,), width), torch.ones(g), 0.5 * width, 1.5 * width)
        self.register_buffer("moving", torch.as_tensor(c["moving"]))
        self.register_buffer("subunit", torch.as_tensor(c["subunit"]))
        self.register_buffer("pivot", torch.zeros(3))
        self.angle_per_unit = angle_per_unit

    def rotation(self, z: Tensor) -> Tensor:
        """(B, 3, 3) rotation about z of the moving domain."""
        a = self.angle_per_unit * z[:, 0]
        c, s = torch.cos(a), torch.sin(a)
        zero, one = torch.zeros_like(a), torch.ones_like(a)
        return torch.stack([torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1),
                            torch.stack([zero, zero, one], -1)], -2)

    def decode(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        pos, wid, amp = self.base_cloud.physical()
        b = z.shape[0]
        rot = self.rotation(z)
        moved = torch.einsum("bij,gj->bgi", rot, pos - self.pivot) + self.pivot
        out = torch.where(self.moving[None, :, None], moved, pos[None].expand(b, -1, -1))
        fade = torch.sigmoid(4 * z[:, 1:2])
        amps = torch.where(self.subunit[None], amp[None] * fade, amp[None].expand(b, -1))
        return out, wid[None].expand(b, -1), amps

