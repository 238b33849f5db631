import numpy as np
import pytest
import torch

from gaussianem.physics.fourier import (
    fft_centered,
    fourier_crop,
    fourier_pad,
    shift_images,
    soft_circular_mask,
)
from gaussianem.physics.fsc import fsc, fsc_auc, fsc_resolution
from gaussianem.physics.projection import voxelize_gaussians


def bandlimited(shape, cutoff, seed=0, ndim=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    f = fft_centered(x, ndim)
    d = shape[-1]
    c = torch.arange(d, dtype=torch.float64) - d // 2
    grids = torch.meshgrid(*([c] * ndim), indexing="ij")
    keep = torch.stack([g.abs() for g in grids]).amax(0) < cutoff
    from gaussianem.physics.fourier import ifft_centered

    return ifft_centered(f * keep, ndim).real


def test_crop_then_pad_returns_bandlimited_image():
    x = bandlimited((3, 64, 64), cutoff=15)
    y = fourier_pad(fourier_crop(x, 32), 64)
    assert torch.linalg.norm(y - x) / torch.linalg.norm(x) < 1e-6


def test_crop_then_pad_volume():
    x = bandlimited((32, 32, 32), cutoff=7, ndim=3)
    y = fourier_pad(fourier_crop(x, 16, ndim=3), 32, ndim=3)
    assert torch.linalg.norm(y - x) / torch.linalg.norm(x) < 1e-6


def test_crop_keeps_values_and_pixel_size_bookkeeping():
    # a smooth Gaussian blob sampled at 1 A/px, cropped 128 -> 64, equals the same blob sampled at 2 A/px
    pos = torch.tensor([[3.0, -5.0, 2.0]], dtype=torch.float64)
    sig = torch.tensor([6.0], dtype=torch.float64)
    amp = torch.tensor([1.0], dtype=torch.float64)
    fine = voxelize_gaussians(pos, sig, amp, 64, 1.0)
    coarse = voxelize_gaussians(pos, sig, amp, 32, 2.0)
    cropped = fourier_crop(fine, 32, ndim=3)
    assert torch.linalg.norm(cropped - coarse) / torch.linalg.norm(coarse) < 1e-5


def test_shift_images_moves_content():
    x = torch.zeros(1, 32, 32, dtype=torch.float64)
    x[0, 16, 16] = 1.0
    x = bandlimited((1, 32, 32), 14) * 0 + x  # delta
    y = shift_images(x, torch.tensor([[3.0, -2.0]], dtype=torch.float64), pixel_size_angstrom=1.0)
    assert y[0].argmax().item() == (16 - 2) * 32 + (16 + 3)


def test_fsc_self_is_one_and_auc_half():
    v = torch.randn(32, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    c = fsc(v, v)
    assert torch.allclose(c, torch.ones_like(c), atol=1e-12)
    auc = fsc_auc(c)
    assert auc == pytest.approx(np.trapezoid(np.ones(16), np.arange(16) / 32) if hasattr(np, "trapezoid")
                                else 15 / 32, abs=1e-12)
    assert 0.45 < auc <= 0.5


def test_fsc_of_independent_noise_near_zero():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(48, 48, 48, generator=g, dtype=torch.float64)
    b = torch.randn(48, 48, 48, generator=g, dtype=torch.float64)
    c = fsc(a, b)
    # shell k holds ~4 pi k^2 * 2 real numbers: std ~ 1/sqrt(n); far beyond the first shells it is small
    assert c[4:].abs().max() < 0.15
    assert c[10:].abs().mean() < 0.03


def test_fsc_resolution_and_mask():
    v = torch.randn(32, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mask = soft_circular_mask(32, 0.7, 0.2, ndim=3, dtype=torch.float64)
    assert torch.allclose(fsc(v, v, mask=mask), torch.ones(16, dtype=torch.float64))
    curve = np.linspace(1, 0, 16)
    res = fsc_resolution(curve, 32, 2.0, 0.5)
    # crossing halfway between shells 7 (0.533) and 8 (0.467): f = 7.5/32 per px
    assert res == pytest.approx(2.0 / (7.5 / 32), rel=1e-6)


def test_lowpass_cutoff_removes_information_beyond_the_resolution():
    """A Gaussian low-pass keeps every phase (FSC 1 at all shells); with the cutoff, nothing beyond 1/d survives."""
    from gaussianem.physics.fourier import lowpass_volume
    from gaussianem.physics.fsc import fsc

    gen = torch.Generator().manual_seed(0)
    vol = torch.randn(32, 32, 32, generator=gen, dtype=torch.float64)
    apix, res = 2.0, 8.0
    soft = lowpass_volume(vol, res, apix)
    hard = lowpass_volume(vol, res, apix, cutoff_edge_shells=2.0)
    shells = torch.arange(16, dtype=torch.float64) / (32 * apix)  # shell k at k/(D·apix)
    f_soft, f_hard = fsc(soft, vol), fsc(hard, vol)
    assert float(f_soft[1:].min()) > 0.99
    below = shells < 1 / res - 1e-9
    beyond = shells > 1 / res + 2.5 / (32 * apix)
    assert float(f_hard[below][1:].min()) > 0.99
    assert float(torch.nan_to_num(f_hard[beyond]).abs().max()) < 0.05  # round-off only: no correlation left
    # below the cutoff both filters are the same Gaussian
    spec_soft = torch.fft.rfftn(soft)
    spec_hard = torch.fft.rfftn(hard)
    assert torch.allclose(spec_soft[:2, :2, :2], spec_hard[:2, :2, :2])


def test_gaussian_lowpass_is_the_blur_by_a_sampled_gaussian_and_its_mean_square_is_parsevals():
    """--blur-start-angstrom's filter: a point blurred by exp(-2π²σ²k²) is the unit-mass 2D Gaussian of std σ
    sampled on the pixel grid; the filter's full-grid mean square is the energy share it keeps of white noise."""
    from gaussianem.physics.fourier import (
        apply_filter_rfft2,
        gaussian_lowpass_rfft2,
        rfft2_frequencies,
        rfft2_mean_square,
    )

    box, apix, sigma = 64, 2.0, 5.0  # σ = 2.5 px: the sampled Gaussian's spectrum has no aliasing to speak of
    fy, fx = rfft2_frequencies(box, apix, dtype=torch.float64)
    filt = gaussian_lowpass_rfft2(fy, fx, sigma**2)
    point = torch.zeros(box, box, dtype=torch.float64)
    point[box // 2, box // 2] = 1.0
    blurred = apply_filter_rfft2(point, filt)
    r = (torch.arange(box, dtype=torch.float64) - box // 2) * apix
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    expected = torch.exp(-(xx**2 + yy**2) / (2 * sigma**2)) * apix**2 / (2 * torch.pi * sigma**2)
    torch.testing.assert_close(blurred, expected, rtol=0, atol=1e-6 * float(expected.max()))
    assert torch.allclose(gaussian_lowpass_rfft2(fy, fx, 0.0), torch.ones_like(filt))
    noise = torch.randn(400, box, box, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    kept = apply_filter_rfft2(noise, filt).square().mean() / noise.square().mean()
    assert float(kept) == pytest.approx(float(rfft2_mean_square(filt, box)), rel=0.02)
    for odd in (31, 33):  # odd boxes have no Nyquist column
        f = gaussian_lowpass_rfft2(*rfft2_frequencies(odd, apix, dtype=torch.float64), 9.0)
        n = torch.randn(400, odd, odd, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        got = apply_filter_rfft2(n, f).square().mean() / n.square().mean()
        assert float(got) == pytest.approx(float(rfft2_mean_square(f, odd)), rel=0.02)
