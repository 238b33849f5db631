"""The VAE modules and losses: shapes, the split first layer, the base cloud at zero heads, loss values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gaussianem.gaussians import GaussianCloud
from gaussianem.model import losses as L
from gaussianem.model.decoder import Decoder
from gaussianem.model.gaussian_encoder import GaussianEncoder
from gaussianem.model.image_encoder import ImageEncoder
from gaussianem.model.vae import GaussianVAE, ModelSpec
from gaussianem.physics.ctf import ctf_rfft2
from gaussianem.physics.fourier import apply_filter_rfft2
from gaussianem.physics.projection import project_gaussians


def _cloud(g: int = 20, seed: int = 0) -> GaussianCloud:
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(g, 3, generator=gen) * 5
    return GaussianCloud(pos, torch.full((g,), 1.5), 1 + torch.rand(g, generator=gen), 1.0, 2.0)


def _model(g: int = 20, box: int = 16, zdim: int = 3, predict_width: bool = False,
           decoder: str = "pair") -> GaussianVAE:
    """A small VAE; the pair decoder by default (these tests are about its split first layer and heads; the
    control-point decoder has its own, tests/test_control_decoder.py)."""
    torch.manual_seed(0)
    cloud = _cloud(g)
    spec = ModelSpec(box_size=box, pixel_size_angstrom=2.0, n_gaussians=g, width_min=1.0, width_max=2.0,
                     image_std=0.7, zdim=zdim, encoder_hidden=32, gaussian_hidden=16, embedding_dim=8,
                     decoder_hidden=16, decoder_features=24, predict_width=predict_width, decoder=decoder)
    return GaussianVAE(cloud, spec)


def _ctf(b: int) -> dict[str, torch.Tensor]:
    return {"defocus_u_angstrom": torch.full((b,), 1.2e4), "defocus_v_angstrom": torch.full((b,), 1.1e4),
            "defocus_angle_deg": torch.full((b,), 30.0), "voltage_kv": torch.full((b,), 300.0),
            "cs_mm": torch.full((b,), 2.7), "amplitude_contrast": torch.full((b,), 0.1)}


def test_module_shapes(device):
    enc = ImageEncoder(16 * 16, zdim=4, hidden=32, n_layers=3).to(device)
    mu, lv = enc(torch.randn(5, 256, device=device))
    assert mu.shape == (5, 4) and lv.shape == (5, 4)
    genc = GaussianEncoder(hidden=16, n_layers=3, embedding_dim=8).to(device)
    assert genc(torch.randn(11, 5, device=device)).shape == (11, 8)
    dec = Decoder(4, 8, 16, 2, 24, predict_width=True).to(device)
    assert dec(torch.randn(5, 4, device=device), torch.randn(11, 8, device=device)).shape == (5, 11, 5)
    assert Decoder(4, 8, 16, 2, 24).n_out == 4
    model = _model(box=16).to(device)
    mu, lv = model.encode(torch.randn(5, 16, 16, device=device))
    assert mu.shape == (5, 3) and lv.shape == (5, 3) and mu.dtype == torch.float32
    pos, wid, amp = model.decode(torch.randn(5, 3, device=device))
    assert pos.shape == (5, 20, 3) and wid.shape == (5, 20) and amp.shape == (5, 20)
    assert model.embed().shape == (20, 8)
    assert model.gaussian_features().shape == (20, 5)


def test_split_image_encoder_gives_each_part_of_z_its_own_mlp(device):
    """``split_dims`` N: z's first N dimensions (mean and log-variance) are those of one MLP, the other zdim - N those
    of a second one, each the plain encoder's computation on the same image; a loss on one part sends no gradient
    into the other part's weights (the states' gradients cannot crowd the motion's trunk)."""
    torch.manual_seed(3)
    enc = ImageEncoder(64, zdim=5, hidden=16, n_layers=2, split_dims=2).to(device).double().eval()
    x = torch.randn(7, 64, dtype=torch.float64, device=device)
    mu, lv = enc(x)
    d = enc.out(enc.body(x))
    a = enc.amplitude_out(enc.amplitude_body(x))
    torch.testing.assert_close(mu, torch.cat([d[:, :2], a[:, :3]], 1))
    torch.testing.assert_close(lv, torch.cat([d[:, 2:], a[:, 3:]], 1))
    enc.train()
    mu, lv = enc(x)
    (mu[:, :2].square().sum() + lv[:, :2].sum()).backward()
    assert all(p.grad is None or not p.grad.any() for p in enc.amplitude_body.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.body.parameters())
    with pytest.raises(ValueError, match="split_dims"):
        ImageEncoder(64, zdim=5, split_dims=5)
    assert not hasattr(ImageEncoder(64, zdim=5, hidden=16), "amplitude_body")
    narrow = ImageEncoder(64, zdim=5, hidden=16, n_layers=2, split_dims=2, amplitude_hidden=4)
    assert narrow.amplitude_body[0].weight.shape == (4, 64) and narrow.amplitude_out.weight.shape == (6, 4)
    assert narrow.body[0].weight.shape == (16, 64)


def test_split_first_layer_equals_concat_mlp():
    torch.manual_seed(1)
    dec = Decoder(4, 8, 16, 3, 24, predict_width=True).double()
    for p in dec.head.parameters():  # non-zero heads so the comparison sees the whole network
        torch.nn.init.normal_(p)
    z = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    e = torch.randn(9, 8, dtype=torch.float64, requires_grad=True)
    a = dec(z, e)
    b = dec.forward_concat(z, e)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    ga = torch.autograd.grad(a.square().sum(), [z, e, dec.z_proj.weight, dec.e_proj.weight])
    gb = torch.autograd.grad(b.square().sum(), [z, e, dec.z_proj.weight, dec.e_proj.weight])
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-10)


def test_film_first_layer_equals_its_pairwise_reference_and_starts_as_the_sum():
    # --decoder-combine film: (W_z z + b) + (1 + W_g z) * W_e e for every pair; W_g starts at zero, so a fresh
    # film decoder computes what the sum decoder with the same weights does, and W_g gets a gradient
    torch.manual_seed(2)
    film = Decoder(4, 8, 16, 2, 24, combine="film").double()
    plain = Decoder(4, 8, 16, 2, 24).double()
    plain.load_state_dict({k: v for k, v in film.state_dict().items() if not k.startswith("z_gain")})
    for p in [*film.head.parameters(), *plain.head.parameters()]:
        torch.nn.init.ones_(p)
    z = torch.randn(5, 4, dtype=torch.float64)
    e = torch.randn(7, 8, dtype=torch.float64)
    torch.testing.assert_close(film(z, e), plain(z, e), rtol=1e-12, atol=1e-12)
    assert torch.autograd.grad(film(z, e).square().sum(), film.z_gain.weight)[0].abs().sum() > 0
    torch.nn.init.normal_(film.z_gain.weight)
    torch.nn.init.normal_(film.z_gain.bias)
    a, b = film(z, e), film.forward_concat(z, e)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    want = film.z_proj(z)[:, None] + (1 + film.z_gain(z))[:, None] * film.e_proj(e)[None]
    torch.testing.assert_close(film.first_layer(z, e), want, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(a, plain(z, e))
    with pytest.raises(ValueError, match="combine"):
        Decoder(4, 8, 16, 2, 24, combine="product")


@pytest.mark.parametrize("decoder", ["pair", "control"])
def test_the_spec_chooses_how_the_decoder_combines_z_and_the_embedding(decoder):
    from dataclasses import replace

    base = _model(decoder=decoder)
    model = GaussianVAE(_cloud(), replace(base.spec, decoder_combine="film", n_control_points=8))
    pair = model.decoder if decoder == "pair" else model.decoder.pair
    assert pair.z_gain is not None and pair.z_gain.in_features == 3
    assert model.decode(torch.randn(2, 3))[0].shape == (2, 20, 3)
    legacy = {k: v for k, v in base.spec.to_dict().items() if k != "decoder_combine"}
    assert ModelSpec.from_dict(legacy).decoder_combine == "sum"
    with pytest.raises(ValueError, match="decoder-combine"):
        GaussianVAE(_cloud(), replace(base.spec, decoder_combine="concat"))


@pytest.mark.parametrize("predict_width", [False, True])
def test_zero_heads_decode_the_base_cloud(predict_width):
    model = _model(predict_width=predict_width)
    pos, wid, amp = model.decode(torch.randn(4, 3) * 3)
    bp, bw, ba = model.base_cloud.physical()
    torch.testing.assert_close(pos, bp[None].expand(4, -1, -1).detach())
    torch.testing.assert_close(wid, bw[None].expand(4, -1).detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(amp, ba[None].expand(4, -1).detach(), rtol=1e-5, atol=1e-6)


def test_position_head_scale():
    model = _model()
    with torch.no_grad():
        model.decoder.head.bias[:] = torch.tensor([0.0, 1.0, -2.0, 0.5])
    pos, _, amp = model.decode(torch.zeros(2, 3))
    s = model.spec.position_scale_angstrom
    shift = pos - model.base_cloud.positions[None].detach()
    torch.testing.assert_close(shift[0, 0], torch.tensor([s, -2 * s, 0.5 * s]))
    torch.testing.assert_close(amp[0], model.base_cloud.amplitudes.detach())


def test_render_is_projection_then_ctf_over_std():
    model = _model(box=16)
    b = 3
    gen = torch.Generator().manual_seed(3)
    from gaussianem.physics.rotation import random_rotations

    rot = random_rotations(b, generator=gen, dtype=torch.float32)
    shifts = torch.randn(b, 2, generator=gen)
    pos, wid, amp = model.decode(torch.zeros(b, 3))
    got = model.render(pos, wid, amp, rot, shifts, _ctf(b))
    ref = project_gaussians(pos[0].detach(), wid[0].detach(), amp[0].detach(), rot, shifts, 16, 2.0)
    ref = apply_filter_rfft2(ref, ctf_rfft2(16, 2.0, _ctf(b))) / 0.7
    torch.testing.assert_close(got.detach(), ref, rtol=1e-4, atol=1e-5)


def test_encode_windows_and_normalises():
    model = _model(box=16).eval()
    img = torch.randn(4, 16, 16)
    x = model.preprocess(img)
    torch.testing.assert_close(x, img * model.window / 0.7)
    assert float(model.window[0, 0]) == 0.0 and float(model.window[8, 8]) == 1.0


def test_kl_and_render_l1_values():
    assert float(L.kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4))) == 0.0
    mu = torch.tensor([[1.0, 0.0]])
    lv = torch.tensor([[0.0, math.log(2.0)]])
    expected = 0.5 * (1.0) + 0.5 * (2.0 - 1 - math.log(2.0))
    assert abs(float(L.kl_divergence(mu, lv)) - expected) < 1e-6
    w = torch.zeros(4, 4)
    w[1:3, 1:3] = 1.0
    a, b = torch.zeros(2, 4, 4), torch.full((2, 4, 4), 3.0)
    b[:, 0, 0] = 100.0  # outside the window: ignored
    assert abs(float(L.render_l1(a, b, w)) - 3.0) < 1e-6
    assert abs(float(L.render_l2(a, b, w)) - 9.0) < 1e-6  # --render-loss l2: the mean squared residual


def test_render_lowpass_scores_noise_as_the_plain_term_and_no_blur_as_it():
    """--blur-start-angstrom's render term: with no blur it is render_l2 / render_l1; with a blur it scores a
    white-noise residual as the plain term does (its normalisation by the kept energy), while a smooth residual
    (far below the filter's cut-off) keeps its energy and so weighs more: the coarse start favours the low
    frequencies without changing the term's scale against the KL."""
    from gaussianem.physics.fourier import gaussian_lowpass_rfft2, rfft2_frequencies

    box = 32
    fy, fx = rfft2_frequencies(box, 3.0)
    w = torch.ones(box, box)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, box, box, generator=g), torch.randn(64, box, box, generator=g)
    ones = gaussian_lowpass_rfft2(fy, fx, 0.0)
    torch.testing.assert_close(L.render_lowpass(a, b, w, ones, "l2"), L.render_l2(a, b, w))
    torch.testing.assert_close(L.render_lowpass(a, b, w, ones, "l1"), L.render_l1(a, b, w))
    blur = gaussian_lowpass_rfft2(fy, fx, 6.0**2)
    assert float(L.render_lowpass(a, b, w, blur, "l2")) == pytest.approx(float(L.render_l2(a, b, w)), rel=0.05)
    assert float(L.render_lowpass(a, b, w, blur, "l1")) == pytest.approx(float(L.render_l1(a, b, w)), rel=0.05)
    r = (torch.arange(box) - box // 2).float()
    smooth = torch.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * 8.0**2)).expand(2, box, box)  # σ 24 Å
    kept = float(L.render_lowpass(smooth, torch.zeros_like(smooth), w, blur, "l2"))
    plain = float(L.render_l2(smooth, torch.zeros_like(smooth), w))
    assert kept > 5 * plain  # the smooth residual keeps its energy, so the normalised term weighs it more


def _grid(n: int = 4, spacing: float = 2.0) -> np.ndarray:
    return np.stack(np.meshgrid(*[np.arange(n)] * 3, indexing="ij"), -1).reshape(-1, 3) * spacing


def test_radius_graph_on_a_grid():
    pos = _grid(4)
    assert abs(L.mean_nearest_neighbour_distance(pos) - 2.0) < 1e-12
    g = L.radius_graph(pos, 1.5)  # r = 3 Å: face (2 Å) and edge (2.83 Å) neighbours
    faces = 3 * 4 * 4 * 3
    edges = 6 * 4 * 3 * 3  # pairs at distance 2√2: 3 planes orientations × 4 layers × 3×3 × 2 diagonals
    assert g.n_edges == faces + edges
    d = g.rest_length.numpy()
    torch.testing.assert_close(g.weight, torch.as_tensor(np.exp(1 - d / 2.0), dtype=torch.float32))


def test_geometric_losses():
    pos = torch.as_tensor(_grid(3), dtype=torch.float32)
    g = L.radius_graph(pos.numpy(), 1.5)
    base = pos[None].expand(2, -1, -1)
    assert float(L.distance_loss(base, g)) < 1e-10
    assert float(L.distance_loss(base + torch.tensor([5.0, -1.0, 2.0]), g)) < 1e-8  # rigid translation
    assert float(L.repulsion_loss(base, g, min_distance=1.0)) == 0.0
    w, d = g.weight, g.rest_length
    squeezed = base * 0.25  # neighbours at 0.5 and 0.71 Å < 1 Å
    expected = float((w * torch.relu(1 - 0.25 * d) ** 2).sum() / w.sum())
    assert float(L.repulsion_loss(squeezed, g, 1.0)) == pytest.approx(expected, rel=1e-5)
    assert expected > 0.08
    scaled = base * 1.5  # every edge grows by half its length
    expected = float((w * (0.5 * d) ** 2).sum() / w.sum())
    assert float(L.distance_loss(scaled, g)) == pytest.approx(expected, rel=1e-5)
    same = torch.tensor([1.0, 2.0, 0.5]).expand(2, pos.shape[0], 3)
    assert abs(float(L.alignment_loss(same, g))) < 1e-5
    flip = torch.ones(pos.shape[0])
    flip[::2] = -1
    alt = same * flip[None, :, None]
    na2 = float((same[0, 0] ** 2).sum())  # |Δi||Δj|(1 - cos) = 2|Δ|² on edges joining flipped and unflipped
    crossing = flip[g.src] != flip[g.dst]
    expected = float((w * crossing * 2 * na2).sum() / w.sum())
    assert float(L.alignment_loss(alt, g)) == pytest.approx(expected, rel=1e-4)
    assert float(L.smoothness_loss(torch.ones(pos.shape[0], 4), g)) == 0.0
    e = torch.zeros(pos.shape[0], 1)
    e[0] = 1.0
    m = g.src.eq(0) | g.dst.eq(0)
    assert float(L.smoothness_loss(e, g)) == pytest.approx(float(g.weight[m].sum() / g.weight.sum()), rel=1e-5)


def test_knn_counts_and_loss():
    assert L.knn_counts(100_000) == (6400, 128, 640)
    assert L.knn_counts(640) == (640, 13, 64)
    gen = torch.Generator().manual_seed(0)
    bank = torch.randn(500, 2, generator=gen)
    mu = bank[:8].clone().requires_grad_(True)
    loss = L.knn_latent_loss(mu, bank, n_near=5, n_far=20, n_sample=400, generator=gen)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(mu.grad).all() and mu.grad.abs().sum() > 0
    # a tight cluster far from the bank: pulling dominates and its loss is larger than for points inside the bank
    gen2 = torch.Generator().manual_seed(0)
    far = L.knn_latent_loss(torch.full((8, 2), 30.0), bank, 5, 20, 400, gen2)
    gen3 = torch.Generator().manual_seed(0)
    near = L.knn_latent_loss(bank[:8], bank, 5, 20, 400, gen3)
    assert float(far) > float(near)


def test_from_spec_roundtrip():
    model = _model()
    with torch.no_grad():
        model.decoder.head.bias.normal_()
    clone = GaussianVAE.from_spec(model.spec)
    clone.load_state_dict(model.state_dict())
    z = torch.randn(3, 3)
    for a, b in zip(model.decode(z), clone.decode(z), strict=True):
        torch.testing.assert_close(a, b)


def test_encoder_box_area_averages_the_windowed_image():
    # automatic: boxes up to 64 go in whole, larger ones are averaged to 64 (the encoder's first layer 4× smaller
    # at box 128); 0 keeps the full box; a spec saved before the field existed meant the full box
    from dataclasses import replace

    from gaussianem.model.spec import ENCODER_BOX_AUTO, resolve_encoder_box

    assert resolve_encoder_box(None, 64) == 64 and resolve_encoder_box(None, 128) == ENCODER_BOX_AUTO == 64
    assert resolve_encoder_box(0, 128) == 128 and resolve_encoder_box(32, 128) == 32
    assert resolve_encoder_box(256, 128) == 128
    torch.manual_seed(0)
    small = _model(box=16)
    spec = replace(small.spec, encoder_box=8)
    model = GaussianVAE(_cloud(), spec).eval()
    assert model.image_encoder.body[0].in_features == 64 and model.spec.encoder_box == 8
    x = torch.randn(3, 16, 16)
    pooled = x.reshape(3, 8, 2, 8, 2).mean((2, 4)).reshape(3, -1)
    torch.testing.assert_close(model.encode_preprocessed(x)[0], model.image_encoder(pooled)[0])
    legacy = {k: v for k, v in replace(small.spec, box_size=128).to_dict().items() if k != "encoder_box"}
    assert ModelSpec.from_dict(legacy).encoder_box == 0
    assert GaussianVAE.from_spec(ModelSpec.from_dict(legacy)).image_encoder.body[0].in_features == 128 * 128
    auto = GaussianVAE.from_spec(replace(small.spec, box_size=128, encoder_box=None))
    assert auto.spec.encoder_box == 64 and auto.image_encoder.body[0].in_features == 64 * 64
    with pytest.raises(ValueError, match="encoder-box"):
        GaussianVAE(_cloud(), replace(small.spec, encoder_box=-1))


def test_encoder_centre_translates_each_image_by_its_shift():
    # --encoder-centre: a particle recorded off-centre (its projection at -shift) is encoded as the centred one;
    # without it the encoder sees the image as recorded; a spec saved before the field existed did not centre
    from dataclasses import replace

    torch.manual_seed(0)
    base = _model(box=16)
    model = GaussianVAE(_cloud(), replace(base.spec, encoder_centre=True)).eval()
    model.load_state_dict(base.state_dict())
    base.eval()
    apix = model.spec.pixel_size_angstrom
    centred = torch.zeros(2, 16, 16)
    centred[:, 6:10, 7:9] = torch.randn(2, 4, 2)
    px = torch.tensor([[2, -3], [-1, 1]])  # (dx, dy) pixels of each particle's origin
    recorded = torch.stack([torch.roll(c, (-int(d[1]), -int(d[0])), (0, 1)) for c, d in zip(centred, px, strict=True)])
    shifts = px.float() * apix  # the RELION origins in Å: the particle's centre is projected at -origin
    mu_c, lv_c = model.encode(recorded, shifts)
    mu_0, lv_0 = base.encode(centred)
    torch.testing.assert_close(mu_c, mu_0, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(lv_c, lv_0, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(base.encode(recorded)[0], mu_0, atol=1e-3)  # uncentred, the input differs
    with pytest.raises(ValueError, match="shifts"):
        model.encode(recorded)
    # the renderer's convention: a cloud rendered with an origin, centred by it, is the cloud rendered without one
    from gaussianem.physics.forward import render_images

    gen = torch.Generator().manual_seed(3)
    pos, wid, amp = torch.randn(20, 3, generator=gen), torch.full((20,), 2.5), torch.ones(20)  # sampled, compact
    rot = torch.eye(3).expand(2, 3, 3)
    origin = torch.tensor([[2 * apix, -3 * apix], [-apix, 0.3 * apix]])  # whole and sub-pixel shifts
    shifted = render_images(pos, wid, amp, rot, origin, None, 16, apix)
    plain = render_images(pos, wid, amp, rot, None, None, 16, apix)
    got, want = model.encoder_input(shifted, origin), base.preprocess(plain)
    assert float((got - want).abs().max()) < 2e-3 * float(want.abs().max())
    assert float((base.preprocess(shifted) - want).abs().max()) > 0.3 * float(want.abs().max())
    legacy = {k: v for k, v in base.spec.to_dict().items() if k != "encoder_centre"}
    assert ModelSpec.from_dict(legacy).encoder_centre is False


def test_fourier_encoder_input_reads_the_disc_coefficients_of_the_windowed_image():
    # --encoder-input fourier: the encoder's first layer reads the real and imaginary parts of the orthonormal rfft2
    # inside the disc (each conjugate pair once), i.e. numpy's FFT of the same windowed image; a smaller radius
    # reads fewer, lower frequencies; a spec saved before the field existed read pixels
    from dataclasses import replace

    from gaussianem.physics.fourier import rfft2_disc_index

    base = _model(box=16)
    model = GaussianVAE(_cloud(), replace(base.spec, encoder_input="fourier")).eval()
    idx = rfft2_disc_index(16)
    ky, kx = np.divmod(idx.numpy(), 9)
    ky = np.where(ky >= 8, ky - 16, ky)
    assert np.all(ky**2 + kx**2 <= 64) and not np.any((kx == 0) & (ky < 0))
    # the half disc: kx = 1..8 with ky = -8..7, plus ky = 0..7 on kx = 0
    assert len(idx) == sum(y * y + x * x <= 64 for y in range(-8, 8) for x in range(1, 9)) + 8
    assert model.image_encoder.body[0].in_features == 2 * len(idx)
    seen = {}
    model.image_encoder.body[0].register_forward_hook(lambda m, a, out: seen.update(x=a[0]))
    images = torch.randn(3, 16, 16, dtype=torch.float64).float()
    model.encode(images)
    x = (images * model.window / model.spec.image_std).double().numpy()
    f = np.fft.rfft2(x, norm="ortho").reshape(3, -1)[:, idx.numpy()]
    np.testing.assert_allclose(seen["x"].double().numpy(), np.concatenate([f.real, f.imag], 1), atol=1e-5)
    # Parseval on the kept half-plane: the disc to Nyquist holds most of a white image's energy
    low = GaussianVAE(_cloud(), replace(base.spec, encoder_input="fourier", encoder_fourier_radius=0.5))
    assert low.image_encoder.body[0].in_features < 0.3 * model.image_encoder.body[0].in_features
    with pytest.raises(ValueError, match="encoder-input"):
        GaussianVAE(_cloud(), replace(base.spec, encoder_input="hartley"))
    new_fields = ("encoder_input", "encoder_fourier_radius")
    legacy = {k: v for k, v in base.spec.to_dict().items() if k not in new_fields}
    assert ModelSpec.from_dict(legacy).encoder_input == "real"


def test_a_saved_run_configuration_keeps_the_model_it_trained():
    # a config.yaml written before --decoder / --control-embedding / --encoder-box existed resumes with the model its
    # weights belong to (the pair decoder, a full-box encoder), not with today's defaults
    from dataclasses import asdict

    from gaussianem.training.config import TrainConfig

    new = TrainConfig(dataset="d", rundir="r")
    old = {k: v for k, v in asdict(new).items()
           if k not in ("decoder", "control_embedding", "encoder_box", "render_loss")}
    cfg = TrainConfig.from_dict(old)
    assert (cfg.decoder, cfg.control_embedding, cfg.encoder_box) == ("pair", "gaussians", 0)
    # ... and with the render term it trained with (L1 before --render-loss existed; L2 is today's default)
    assert cfg.render_loss == "l1" and new.render_loss == "l2"
    assert TrainConfig.from_dict(asdict(new)) == new  # a current configuration reads back as it was written
