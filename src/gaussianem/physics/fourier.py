"""The one place that owns FFT conventions.

Real-space arrays are ``[..., y, x]`` (images) or ``[..., z, y, x]`` (volumes); index ``i`` sits at coordinate
``(i - D//2) * pixel_size``. Fourier cropping keeps the centred low-frequency block and rescales so that pixel
values (samples of the same continuous function) are preserved; the pixel size scales by ``D / D'``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def fft_centered(x: Tensor, ndim: int = 2) -> Tensor:
    """Centred FFT over the last ``ndim`` axes: zero frequency and the real-space centre both at index D//2."""
    dims = tuple(range(-ndim, 0))
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=dims), dim=dims), dim=dims)


def ifft_centered(f: Tensor, ndim: int = 2) -> Tensor:
    """Inverse of :func:`fft_centered` (complex output)."""
    dims = tuple(range(-ndim, 0))
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(f, dim=dims), dim=dims), dim=dims)


def _centre_slices(big: int, small: int) -> slice:
    start = big // 2 - small // 2
    return slice(start, start + small)


def fourier_crop(x: Tensor, new_size: int, ndim: int = 2) -> Tensor:
    """Fourier-crop the last ``ndim`` axes (square/cubic, size D) to ``new_size`` (D' <= D, even).

    Shapes: (..., D, D) -> (..., D', D') for ndim=2. Values keep their scale (a band-limited image is sampled
    from the same continuous function at the coarser pixel size D/D' times larger).
    """
    size = x.shape[-1]
    if new_size == size:
        return x
    if new_size > size:
        raise ValueError(f"fourier_crop: new size {new_size} is larger than {size}")
    f = fft_centered(x, ndim)
    sl = (Ellipsis,) + (_centre_slices(size, new_size),) * ndim
    f = f[sl]
    out = ifft_centered(f, ndim).real
    return out * (new_size / size) ** ndim


def fourier_pad(x: Tensor, new_size: int, ndim: int = 2) -> Tensor:
    """Zero-pad the centred spectrum of the last ``ndim`` axes from D to ``new_size`` >= D (the inverse of
    :func:`fourier_crop` for band-limited input)."""
    size = x.shape[-1]
    if new_size == size:
        return x
    if new_size < size:
        raise ValueError(f"fourier_pad: new size {new_size} is smaller than {size}")
    f = fft_centered(x, ndim)
    out_shape = x.shape[:-ndim] + (new_size,) * ndim
    g = torch.zeros(out_shape, dtype=f.dtype, device=f.device)
    sl = (Ellipsis,) + (_centre_slices(new_size, size),) * ndim
    g[sl] = f
    return ifft_centered(g, ndim).real * (new_size / size) ** ndim


def rfft2_frequencies(
    box_size: int, pixel_size_angstrom: float, device=None, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """Spatial frequencies (1/Å) on the rfft2 grid: (fy, fx), each (D, D//2+1)."""
    fy = torch.fft.fftfreq(box_size, d=pixel_size_angstrom, device=device, dtype=dtype)
    fx = torch.fft.rfftfreq(box_size, d=pixel_size_angstrom, device=device, dtype=dtype)
    return torch.meshgrid(fy, fx, indexing="ij")


def gaussian_lowpass_rfft2(fy: Tensor, fx: Tensor, sigma_sq_angstrom: Tensor | float) -> Tensor:
    """The transfer function of a unit-mass 2D Gaussian blur of variance ``sigma_sq_angstrom`` (Å²) on an rfft2
    grid (fy, fx) in 1/Å: exp(-2π² σ² |k|²), each (D, D//2+1). σ² = 0 gives ones (no blur)."""
    return torch.exp(-2.0 * torch.pi**2 * sigma_sq_angstrom * (fy.square() + fx.square()))


def rfft2_mean_square(filt: Tensor, box_size: int) -> Tensor:
    """The mean of |filt|² over the full D × D Fourier grid, from its rfft2 half (..., D, D//2+1) -> (...).

    The fraction of white noise's energy that the filter keeps (Parseval): the half-plane's inner columns stand for
    two full-grid columns each, column 0 (and D/2 for even D) for one."""
    weights = torch.full((filt.shape[-1],), 2.0, dtype=filt.dtype, device=filt.device)
    weights[0] = 1.0
    if box_size % 2 == 0:
        weights[-1] = 1.0
    return (filt.square() * weights).sum(dim=(-2, -1)) / box_size**2


def apply_filter_rfft2(images: Tensor, filt: Tensor) -> Tensor:
    """Multiply images (..., D, D) by a real filter on the rfft2 grid (..., D, D//2+1).

    The filter is a centro-symmetric convolution kernel, so the real-space centre convention does not matter.
    """
    size = images.shape[-1]
    return torch.fft.irfft2(torch.fft.rfft2(images) * filt, s=(size, size))


def shift_images(images: Tensor, shift_angstrom: Tensor, pixel_size_angstrom: float) -> Tensor:
    """Translate images (B, D, D) by ``shift_angstrom`` (B, 2) as (dx, dy) in Å: content at q moves to q + shift.

    Sub-pixel, by a Fourier phase ramp (periodic boundary).
    """
    size = images.shape[-1]
    fy, fx = rfft2_frequencies(size, pixel_size_angstrom, images.device, images.dtype)
    phase = -2 * torch.pi * (fx * shift_angstrom[..., 0, None, None] + fy * shift_angstrom[..., 1, None, None])
    f = torch.fft.rfft2(images) * torch.polar(torch.ones_like(phase), phase)
    return torch.fft.irfft2(f, s=(size, size))


def rfft2_disc_index(box_size: int, radius_fraction: float = 1.0, device=None) -> Tensor:
    """Flat indices (n,) long into a (D, D//2+1) rfft2 grid of the coefficients within ``radius_fraction`` × D/2
    cycles per box of the origin (1.0: the disc inscribed in the box, up to Nyquist along the axes), each
    conjugate pair once (on the kx = 0 column only ky >= 0 is kept)."""
    ky = torch.fft.fftfreq(box_size, device=device, dtype=torch.float64) * box_size
    kx = torch.fft.rfftfreq(box_size, device=device, dtype=torch.float64) * box_size
    inside = ky[:, None] ** 2 + kx[None, :] ** 2 <= (radius_fraction * box_size / 2) ** 2
    duplicate = (kx[None, :] == 0) & (ky[:, None] < 0)
    return torch.nonzero((inside & ~duplicate).flatten()).flatten()


def fourier_coefficients(images: Tensor, index: Tensor) -> Tensor:
    """Images (B, D, D) -> (B, 2n) float32: the real then the imaginary parts of their orthonormal rfft2 at the n
    flat coefficient indices ``index`` (:func:`rfft2_disc_index`). Orthonormal: white pixel noise of variance σ²
    gives coefficients of variance σ²/2 in each part (σ² in the real part of the self-conjugate ones: the origin
    and the Nyquist points, whose imaginary part is 0)."""
    f = torch.fft.rfft2(images.float(), norm="ortho").reshape(images.shape[0], -1)[:, index]
    return torch.cat([f.real, f.imag], dim=1)


def grid_coordinates(box_size: int, pixel_size_angstrom: float, device=None, dtype=torch.float32) -> Tensor:
    """1-D coordinates of pixel centres in Å, ``(i - D//2) * pixel_size``, shape (D,)."""
    return (torch.arange(box_size, device=device, dtype=dtype) - box_size // 2) * pixel_size_angstrom


def radial_grid(box_size: int, ndim: int = 2, device=None, dtype=torch.float32) -> Tensor:
    """Distance in pixels of every pixel/voxel from the centre (D//2, ...), shape (D,)*ndim."""
    c = torch.arange(box_size, device=device, dtype=dtype) - box_size // 2
    grids = torch.meshgrid(*([c] * ndim), indexing="ij")
    return torch.sqrt(sum(g**2 for g in grids))


def soft_circular_mask(
    box_size: int, radius_fraction: float = 0.85, edge_fraction: float = 0.15, ndim: int = 2, device=None,
    dtype=torch.float32,
) -> Tensor:
    """Soft circular (ndim=2) or spherical (ndim=3) mask with a cosine edge, shape (D,)*ndim.

    1 inside ``radius_fraction * D/2``, falls to 0 at ``(radius_fraction + edge_fraction) * D/2``.
    """
    r = radial_grid(box_size, ndim, device, dtype) / (box_size / 2)
    inner, outer = radius_fraction, radius_fraction + edge_fraction
    t = ((r - inner) / max(outer - inner, 1e-12)).clamp(0, 1)
    return 0.5 * (1 + torch.cos(torch.pi * t))


def lowpass_volume(volume: Tensor, resolution_angstrom: float, pixel_size_angstrom: float,
                   cutoff_edge_shells: float | None = None) -> Tensor:
    """Gaussian low-pass of a volume (..., D, D, D) whose amplitude falls to 1/2 at 1/resolution (1/Å).

    A Gaussian filter is positive at every frequency, so it leaves the phases up to Nyquist intact: the FSC of the
    filtered map against the original is 1 everywhere. With ``cutoff_edge_shells`` the filter also goes to zero
    beyond 1/resolution, through a raised-cosine edge that many Fourier shells (1/(D·apix)) wide, so the map really
    holds no information finer than the resolution (what a consensus map "at 8 Å" means to its user).
    """
    size = volume.shape[-1]
    f = torch.fft.fftfreq(size, d=pixel_size_angstrom, device=volume.device, dtype=volume.dtype)
    fr = torch.fft.rfftfreq(size, d=pixel_size_angstrom, device=volume.device, dtype=volume.dtype)
    fz, fy, fx = torch.meshgrid(f, f, fr, indexing="ij")
    s2 = fz**2 + fy**2 + fx**2
    k = torch.log(torch.tensor(2.0, dtype=volume.dtype)) * resolution_angstrom**2
    filt = torch.exp(-k * s2)
    if cutoff_edge_shells is not None:
        shell = 1.0 / (size * pixel_size_angstrom)
        t = ((s2.sqrt() - 1.0 / resolution_angstrom) / max(cutoff_edge_shells * shell, 1e-12)).clamp(0, 1)
        filt = filt * 0.5 * (1 + torch.cos(torch.pi * t))
    return torch.fft.irfftn(torch.fft.rfftn(volume, dim=(-3, -2, -1)) * filt, s=(size,) * 3, dim=(-3, -2, -1))
