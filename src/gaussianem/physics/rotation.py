"""Rotations: RELION ZYZ Euler angles, cryoSPARC rotation vectors, uniform random rotations.

RELION's matrix ``A`` (``Euler_angles2matrix``) maps a map point ``r`` (x, y, z; Å, origin at the box centre)
to the image frame: the point projects to image coordinates ``(A r)_{x,y}``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def euler_relion_to_matrix(angles_deg: Tensor) -> Tensor:
    """RELION (rot, tilt, psi) in degrees, shape (..., 3) -> rotation matrices A, shape (..., 3, 3)."""
    a = torch.deg2rad(angles_deg)
    ca, cb, cg = torch.cos(a[..., 0]), torch.cos(a[..., 1]), torch.cos(a[..., 2])
    sa, sb, sg = torch.sin(a[..., 0]), torch.sin(a[..., 1]), torch.sin(a[..., 2])
    cc, cs = cb * ca, cb * sa
    sc, ss = sb * ca, sb * sa
    rows = [
        torch.stack([cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb], dim=-1),
        torch.stack([-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb], dim=-1),
        torch.stack([sc, ss, cb], dim=-1),
    ]
    return torch.stack(rows, dim=-2)


def matrix_to_euler_relion(matrix: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) -> RELION (rot, tilt, psi) in degrees, (..., 3), tilt in [0, 180].

    At tilt 0 or 180 (gimbal lock) rot is set to 0 and the whole in-plane angle goes to psi, as RELION does.
    """
    m = matrix
    abs_sb = torch.sqrt(m[..., 0, 2] ** 2 + m[..., 1, 2] ** 2)
    regular = abs_sb > 16 * torch.finfo(m.dtype).eps
    tilt = torch.atan2(abs_sb, m[..., 2, 2])
    psi = torch.where(regular, torch.atan2(m[..., 1, 2], -m[..., 0, 2]), torch.zeros_like(tilt))
    rot = torch.where(regular, torch.atan2(m[..., 2, 1], m[..., 2, 0]), torch.zeros_like(tilt))
    # gimbal lock: A = Rz(psi) Ry(0 or pi) Rz(rot) with rot := 0
    up = m[..., 2, 2] > 0
    psi_lock = torch.where(up, torch.atan2(-m[..., 1, 0], m[..., 0, 0]), torch.atan2(m[..., 1, 0], -m[..., 0, 0]))
    tilt_lock = torch.where(up, torch.zeros_like(tilt), torch.full_like(tilt, math.pi))
    psi = torch.where(regular, psi, psi_lock)
    tilt = torch.where(regular, tilt, tilt_lock)
    return torch.rad2deg(torch.stack([rot, tilt, psi], dim=-1))


def _skew(v: Tensor) -> Tensor:
    """(..., 3) -> skew-symmetric cross-product matrices (..., 3, 3)."""
    z = torch.zeros_like(v[..., 0])
    return torch.stack(
        [
            torch.stack([z, -v[..., 2], v[..., 1]], dim=-1),
            torch.stack([v[..., 2], z, -v[..., 0]], dim=-1),
            torch.stack([-v[..., 1], v[..., 0], z], dim=-1),
        ],
        dim=-2,
    )


def rotvec_to_matrix(rotvec: Tensor) -> Tensor:
    """Rotation vectors (axis × angle in radians), (..., 3) -> matrices (..., 3, 3) by Rodrigues' formula.

    The matrix rotates vectors actively about the axis by the angle (right hand).
    """
    theta = torch.linalg.vector_norm(rotvec, dim=-1)[..., None, None]
    k = _skew(rotvec)
    small = theta < 1e-4
    safe = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1 - theta**2 / 6, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - theta**2 / 24, (1 - torch.cos(safe)) / safe**2)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand(k.shape)
    return eye + a * k + b * (k @ k)


def matrix_to_rotvec(matrix: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) -> rotation vectors (..., 3) with angle in [0, π]."""
    # go through unit quaternions, which are stable at every angle
    q = matrix_to_quaternion(matrix)
    q = torch.where(q[..., :1] < 0, -q, q)
    vec = q[..., 1:]
    s = torch.linalg.vector_norm(vec, dim=-1, keepdim=True)
    angle = 2 * torch.atan2(s, q[..., :1])
    small = s < 1e-8
    scale = torch.where(small, 2.0 / q[..., :1].clamp_min(1e-8), angle / torch.where(small, torch.ones_like(s), s))
    return vec * scale


def matrix_to_quaternion(matrix: Tensor) -> Tensor:
    """Rotation matrices (..., 3, 3) -> unit quaternions (w, x, y, z), (..., 4)."""
    m = matrix
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    cands = torch.stack(
        [
            torch.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                         m[..., 1, 0] - m[..., 0, 1]], dim=-1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0],
                         m[..., 0, 2] + m[..., 2, 0]], dim=-1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m00 + m11 - m22,
                         m[..., 1, 2] + m[..., 2, 1]], dim=-1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                         1 - m00 - m11 + m22], dim=-1),
        ],
        dim=-2,
    )  # (..., 4 candidates, 4)
    diag = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = diag.argmax(dim=-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    return q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Unit quaternions (w, x, y, z), (..., 4) -> rotation matrices (..., 3, 3)."""
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        dim=-2,
    )


def random_rotations(
    n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
) -> Tensor:
    """n rotation matrices drawn uniformly from SO(3) (normalised Gaussian quaternions), (n, 3, 3)."""
    q = torch.randn(n, 4, generator=generator, dtype=dtype)
    return quaternion_to_matrix(q)
