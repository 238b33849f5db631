import math

import numpy as np
import pytest
import torch

from gaussianem.physics.ctf import ctf_rfft2, ctf_values, electron_wavelength_angstrom


def hand_ctf(s, theta, du, dv, ang_deg, kv, cs_mm, w, phase_deg=0.0, b=0.0):
    # textbook: lambda = h / sqrt(2 m e V (1 + eV / 2mc^2)) in Angstrom
    h, m, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    v = kv * 1e3
    lam = h / math.sqrt(2 * m * e * v * (1 + e * v / (2 * m * c * c))) * 1e10
    df = 0.5 * (du + dv) + 0.5 * (du - dv) * math.cos(2 * (theta - math.radians(ang_deg)))
    chi = math.pi * lam * df * s**2 - 0.5 * math.pi * cs_mm * 1e7 * lam**3 * s**4
    chi += math.radians(phase_deg) + math.atan(w / math.sqrt(1 - w * w))
    return math.sin(chi) * math.exp(-b * s**2 / 4)


def test_wavelength_300kv():
    assert electron_wavelength_angstrom(300.0) == pytest.approx(0.019687, abs=2e-6)
    assert electron_wavelength_angstrom(200.0) == pytest.approx(0.025079, abs=2e-6)


@pytest.mark.parametrize(
    "s,theta,du,dv,ang,kv,cs,w,ph,b",
    [
        (0.05, 0.3, 15000, 14000, 30, 300, 2.7, 0.1, 0, 0),
        (0.12, 1.2, 20000, 18000, -45, 300, 2.7, 0.07, 0, 50),
        (0.2, -2.0, 8000, 9000, 80, 200, 2.0, 0.1, 0, 0),
        (0.01, 0.0, 25000, 25000, 0, 300, 0.01, 0.1, 90, 0),
        (0.3, 2.5, 12000, 11000, 10, 300, 2.7, 0.1, 20, 100),
        (0.07, -0.7, 30000, 26000, 170, 100, 1.4, 0.15, 0, 0),
    ],
)
def test_ctf_matches_hand_formula(s, theta, du, dv, ang, kv, cs, w, ph, b):
    fx = torch.tensor([s * math.cos(theta)], dtype=torch.float64)
    fy = torch.tensor([s * math.sin(theta)], dtype=torch.float64)
    t = lambda x: torch.tensor([x], dtype=torch.float64)  # noqa: E731
    val = ctf_values(fy, fx, t(du), t(dv), t(ang), t(kv), t(cs), t(w), t(ph), t(b))
    assert val.item() == pytest.approx(hand_ctf(s, theta, du, dv, ang, kv, cs, w, ph, b), abs=2e-5)


def params(**kw):
    base = dict(defocus_u_angstrom=15000.0, defocus_v_angstrom=15000.0, defocus_angle_deg=0.0, voltage_kv=300.0,
                cs_mm=2.7, amplitude_contrast=0.1)
    base.update(kw)
    return {k: torch.tensor([v], dtype=torch.float64) for k, v in base.items()}


def test_ctf_positive_at_low_frequency():
    c = ctf_rfft2(64, 2.0, params(), dtype=torch.float64)[0]
    assert c[0, 0] == pytest.approx(0.1, abs=1e-12)
    assert (c[:2, :2] > 0).all()


def first_zero_radius(c, direction_deg, box, apix):
    # walk outward from the origin along a direction of the rfft grid; radius (1/A) of the first sign change
    s = np.linspace(0, 1 / (2 * apix), 4000)
    th = math.radians(direction_deg)
    fx = torch.tensor(s * math.cos(th))
    fy = torch.tensor(s * math.sin(th))
    p = c
    v = ctf_values(fy, fx, p["defocus_u_angstrom"], p["defocus_v_angstrom"], p["defocus_angle_deg"],
                   p["voltage_kv"], p["cs_mm"], p["amplitude_contrast"])[0].numpy()
    return s[np.nonzero(np.sign(v) != np.sign(v[0]))[0][0]]


@pytest.mark.parametrize("angle", [0.0, 30.0, 75.0, 120.0])
def test_zeros_follow_astigmatism_angle(angle):
    # defocus U (larger, more underfocus) lies along the astigmatism angle: the first zero comes earliest there
    p = params(defocus_u_angstrom=20000.0, defocus_v_angstrom=12000.0, defocus_angle_deg=angle)
    along = first_zero_radius(p, angle, 128, 1.5)
    across = first_zero_radius(p, angle + 90, 128, 1.5)
    lam = electron_wavelength_angstrom(300.0)
    # without Cs the first zero is at pi lam df s^2 + atan(w/..) = pi  ->  s = sqrt((pi - phi0) / (pi lam df))
    phi0 = math.atan(0.1 / math.sqrt(1 - 0.01))
    assert along == pytest.approx(math.sqrt((math.pi - phi0) / (math.pi * lam * 20000)), rel=1e-2)
    assert across == pytest.approx(math.sqrt((math.pi - phi0) / (math.pi * lam * 12000)), rel=1e-2)


def test_ctf_batch_shape_and_grid():
    p = {k: v.repeat(5) for k, v in params().items()}
    c = ctf_rfft2(32, 1.0, p, dtype=torch.float32)
    assert c.shape == (5, 32, 17)
    assert c.dtype == torch.float32
