"""The forward model (project, then CTF) and the CTF parameter object that carries the CTF to it."""

import numpy as np
import pytest
import torch

from gaussianem.physics.ctf import CTF_FIELDS, CTFParams, ctf_rfft2
from gaussianem.physics.forward import render_images, render_in_batches
from gaussianem.physics.fourier import apply_filter_rfft2
from gaussianem.physics.projection import project_gaussians
from gaussianem.physics.rotation import random_rotations


def _ctf(n: int, seed: int = 0, bfactor: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"defocus_u_angstrom": rng.uniform(8e3, 2.5e4, n), "defocus_v_angstrom": rng.uniform(8e3, 2.5e4, n),
           "defocus_angle_deg": rng.uniform(0, 180, n), "voltage_kv": np.full(n, 300.0), "cs_mm": np.full(n, 2.7),
           "amplitude_contrast": np.full(n, 0.1), "phase_shift_deg": np.zeros(n)}
    if bfactor:
        out["bfactor"] = rng.uniform(0, 200, n)
    return out


@pytest.mark.parametrize("bfactor", [False, True])
def test_packed_round_trip_keeps_every_field(bfactor):
    ctf = CTFParams.from_mapping(_ctf(5, bfactor=bfactor), dtype=torch.float64)
    packed = ctf.packed()
    assert packed.shape == (5, len(CTF_FIELDS) + int(bfactor))
    back = CTFParams.from_packed(packed)
    for a, b in zip(ctf, back, strict=True):
        assert (a is None and b is None) or torch.equal(a, b)
    sub = ctf.select(torch.tensor([4, 1]))
    assert torch.equal(sub.defocus_u_angstrom, ctf.defocus_u_angstrom[[4, 1]])


def test_missing_required_field_is_refused():
    fields = _ctf(3)
    del fields["cs_mm"]
    with pytest.raises(ValueError, match="cs_mm"):
        CTFParams.from_mapping(fields)


def test_render_images_is_projection_then_ctf():
    gen = torch.Generator().manual_seed(3)
    g, b, box, apix = 40, 6, 32, 2.0
    pos = (torch.rand(g, 3, generator=gen, dtype=torch.float64) - 0.5) * 30
    sig = 1.5 + torch.rand(g, generator=gen, dtype=torch.float64)
    amp = torch.rand(g, generator=gen, dtype=torch.float64)
    rot = random_rotations(b, generator=gen, dtype=torch.float64)
    shift = torch.randn(b, 2, generator=gen, dtype=torch.float64)
    ctf = CTFParams.from_mapping(_ctf(b, bfactor=True), dtype=torch.float64)
    ref = apply_filter_rfft2(project_gaussians(pos, sig, amp, rot, shift, box, apix),
                             ctf_rfft2(box, apix, ctf, dtype=torch.float64))
    out = render_images(pos, sig, amp, rot, shift, ctf, box, apix)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    batched = render_in_batches(pos, sig, amp, rot, shift, ctf, box, apix, batch=4)
    torch.testing.assert_close(batched, ref, rtol=0, atol=1e-12)
    # the CTF changes the image (the test would pass for a no-op otherwise)
    plain = render_images(pos, sig, amp, rot, shift, None, box, apix)
    assert (plain - out).abs().max() > 0.05 * plain.abs().max()
