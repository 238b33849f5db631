import numpy as np
import torch
from scipy.spatial.transform import Rotation

from gaussianem.physics.rotation import (
    euler_relion_to_matrix,
    matrix_to_euler_relion,
    matrix_to_rotvec,
    random_rotations,
    rotvec_to_matrix,
)


def test_relion_matrix_is_zyz_passive():
    # RELION's A equals Rz(psi) Ry(tilt) Rz(rot) in the passive (frame) sense; scipy's intrinsic "ZYZ" with
    # angles (rot, tilt, psi) gives the active matrix, whose transpose is A.
    rng = np.random.default_rng(0)
    ang = np.stack([rng.uniform(-180, 180, 50), rng.uniform(0, 180, 50), rng.uniform(-180, 180, 50)], 1)
    a = euler_relion_to_matrix(torch.tensor(ang)).numpy()
    ref = Rotation.from_euler("ZYZ", ang, degrees=True).as_matrix().transpose(0, 2, 1)
    np.testing.assert_allclose(a, ref, atol=1e-12)


def test_relion_matrix_known_value():
    # tilt 90: the z axis of the map goes to -x of the image (A[0, 2] = -cos(psi) sin(tilt))
    a = euler_relion_to_matrix(torch.tensor([0.0, 90.0, 0.0], dtype=torch.float64))
    np.testing.assert_allclose(a.numpy(), [[0, 0, -1], [0, 1, 0], [1, 0, 0]], atol=1e-12)


def test_euler_round_trip():
    rng = np.random.default_rng(1)
    ang = np.stack([rng.uniform(-179, 179, 200), rng.uniform(1, 179, 200), rng.uniform(-179, 179, 200)], 1)
    t = torch.tensor(ang)
    back = matrix_to_euler_relion(euler_relion_to_matrix(t))
    np.testing.assert_allclose(back.numpy(), ang, atol=1e-6)


def test_euler_round_trip_any_matrix_including_gimbal_lock():
    mats = torch.cat([random_rotations(100, torch.Generator().manual_seed(2)),
                      euler_relion_to_matrix(torch.tensor([[30.0, 0.0, 40.0], [10.0, 180.0, -70.0]],
                                                          dtype=torch.float64))])
    back = euler_relion_to_matrix(matrix_to_euler_relion(mats))
    np.testing.assert_allclose(back.numpy(), mats.numpy(), atol=1e-9)


def test_rotvec_round_trip_and_scipy():
    rng = np.random.default_rng(3)
    axis = rng.normal(size=(100, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = rng.uniform(0, np.pi * 0.999, size=(100, 1))
    v = axis * angle
    v[0] = 0.0
    v[1] = [1e-7, 0, 0]
    m = rotvec_to_matrix(torch.tensor(v))
    np.testing.assert_allclose(m.numpy(), Rotation.from_rotvec(v).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(matrix_to_rotvec(m).numpy(), v, atol=1e-9)


def test_random_rotations_are_rotations_and_uniform():
    r = random_rotations(20000, torch.Generator().manual_seed(4))
    eye = torch.eye(3, dtype=r.dtype)
    assert torch.allclose(r @ r.transpose(1, 2), eye.expand_as(r), atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(len(r), dtype=r.dtype), atol=1e-12)
    # a uniform rotation sends z to a uniform direction: mean 0, E[z_i^2] = 1/3
    zdir = r[:, :, 2]
    assert zdir.mean(0).abs().max() < 0.02
    assert ((zdir**2).mean(0) - 1 / 3).abs().max() < 0.02
