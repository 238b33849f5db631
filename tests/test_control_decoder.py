"""Control-point decoder: fast paths = dense references, gradients, zero at init, FLOPs, sharp amplitude read-out."""

import functools
import math

import pytest
import torch

from gaussianem.gaussians import amplitude_activation, amplitude_inverse
from gaussianem.model.control_decoder import (
    ControlPointDecoder,
    build_control_graph,
    control_decoder_flops_per_particle,
    farthest_point_sampling,
    flops_per_particle,
    interpolation_matrix,
    pair_decoder_flops_per_particle,
)
from gaussianem.model.decoder import Decoder


def blob_cloud(n, seed, radius=20.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    d = torch.randn(n, 3, generator=g, dtype=dtype)
    return d / d.norm(dim=1, keepdim=True) * torch.rand(n, 1, generator=g, dtype=dtype) ** (1 / 3) * radius


def make_decoder(n=300, n_control=24, k=6, rank=8, zdim=4, emb=8, seed=0, dtype=torch.float32, **kw):
    pos = blob_cloud(n, seed, dtype=dtype)
    graph = build_control_graph(pos, n_control, k, seed=seed)
    torch.manual_seed(seed)
    dec = ControlPointDecoder(zdim, graph, embedding_dim=emb, hidden=16, n_layers=2, features=12, rank=rank,
                              readout_hidden=10, **kw)
    return dec.to(dtype), pos


def randomise_heads(dec, seed=1):
    """Give the zero-initialised heads and read-out factors random values (otherwise forward is trivially zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (dec.pair.head.weight, dec.pair.head.bias):
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
        if dec.sharp_channels:
            for p in (dec.readout_net[-1].weight, dec.readout_net[-1].bias, dec.readout_vectors):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)


def assert_fast_equals_reference(dec, n_rows, device):
    """dec (zdim 4, embedding 8) on 6 latents and ``n_rows`` random embedding rows: forward and every gradient
    equal those of ``forward_reference``. Returns the output."""
    z = torch.randn(6, 4, device=device, requires_grad=True)
    e = torch.randn(n_rows, 8, device=device, requires_grad=True)
    out, ref = dec(z, e), dec.forward_reference(z, e)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    r = torch.randn(out.shape, device=device)
    params = [z, e] + list(dec.parameters())
    for a, b in zip(torch.autograd.grad((out * r).sum(), params), torch.autograd.grad((ref * r).sum(), params),
                    strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    return out


def test_control_graph_deterministic_and_normalised():
    pos = blob_cloud(500, 3)
    a = build_control_graph(pos, 40, 8, seed=5)
    b = build_control_graph(pos, 40, 8, seed=5)
    assert torch.equal(a.index, b.index) and torch.equal(a.weight, b.weight)
    assert torch.equal(a.control_positions, b.control_positions)
    assert a.index.shape == (500, 8) and a.weight.shape == (500, 8) and a.control_positions.shape == (40, 3)
    torch.testing.assert_close(a.weight.sum(1), torch.ones(500), atol=1e-6, rtol=0)
    assert (a.weight >= 0).all()
    # nearest control point first, and it is the nearest of all
    d = torch.cdist(pos, a.control_positions)
    assert torch.equal(a.index[:, 0], d.argmin(1))
    w = interpolation_matrix(a.index, a.weight, 40)
    assert w.shape == (500, 40)
    torch.testing.assert_close(w.sum(1), torch.ones(500), atol=1e-6, rtol=0)
    # every Gaussian's k neighbours are its k nearest control points, nearest first, as the full distance matrix
    # says (the graph's searches are a k-d tree's)
    d_k, i_k = torch.topk(d.double(), 8, dim=1, largest=False)
    torch.testing.assert_close(a.control_positions[a.index].sub(pos[:, None]).norm(dim=2).double(), d_k,
                               atol=1e-4, rtol=1e-4)  # (float32 positions)
    assert (a.index == i_k).float().mean() > 0.999  # (ties aside)
    # FPS: distinct points
    idx = farthest_point_sampling(pos, 40, seed=1)
    assert idx.unique().numel() == 40


def test_zero_at_init():
    dec, _ = make_decoder()
    z = torch.randn(5, 4)
    e = torch.randn(300, 8)
    out = dec(z, e)
    assert out.shape == (5, 300, 4)
    assert torch.count_nonzero(out) == 0
    assert torch.count_nonzero(dec.forward_reference(z, e)) == 0


@pytest.mark.parametrize("predict_width", [False, True])
def test_fast_equals_reference_forward_and_gradients(predict_width):
    dec, _ = make_decoder(predict_width=predict_width, sharp_channels=(0, 4) if predict_width else (0,))
    randomise_heads(dec)
    z = torch.randn(5, 4, requires_grad=True)
    e = torch.randn(300, 8, requires_grad=True)
    out = dec(z, e)
    ref = dec.forward_reference(z, e)
    assert out.shape == (5, 300, 5 if predict_width else 4)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    r = torch.randn(out.shape)
    params = [z, e] + [p for p in dec.parameters()]
    g_fast = torch.autograd.grad((out * r).sum(), params)
    g_ref = torch.autograd.grad((ref * r).sum(), params)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("interpolation", ["embedding_bag", "dense"])
def test_control_point_embeddings_fast_equals_reference(device, interpolation):
    """``embed_on="control"``: the embedding is one row per control point (K, E), used as it is; the read-out is
    the free vectors alone. Fast = reference, forward and gradients; pool_rows' two paths agree."""
    dec, _ = make_decoder(n=2000, n_control=64, k=8, rank=16, interpolation=interpolation, embed_on="control")
    assert dec.readout_embed is None
    randomise_heads(dec)
    dec = dec.to(device)
    assert assert_fast_equals_reference(dec, 64, device).shape == (6, 2000, 4)
    rows = torch.randn(2000, 5, device=device)
    torch.testing.assert_close(dec.pool_rows(rows, dense=True), dec.pool_rows(rows, dense=False))
    with pytest.raises(ValueError, match="embed_on"):
        make_decoder(embed_on="everywhere")


def test_vae_embeds_the_control_points_by_default():
    """A new control-decoder spec embeds the K control points (their pooled base features through the Gaussian
    encoder); a spec saved before the option existed keeps embedding every Gaussian."""
    from gaussianem.model.spec import ModelSpec

    vae, spec = _spec_vae()
    assert vae.embeds_control_points and vae.embed().shape == (20, 8)
    old = {k: v for k, v in spec.to_dict().items() if k != "control_embedding"}
    assert ModelSpec.from_dict(old).control_embedding == "gaussians"
    vae_g, _ = _spec_vae(control_embedding="gaussians")
    assert not vae_g.embeds_control_points and vae_g.embed().shape == (150, 8)
    with pytest.raises(ValueError, match="control-embedding"):
        _spec_vae(control_embedding="nowhere")


@pytest.mark.parametrize("interpolation", ["embedding_bag", "gather", "dense", "auto"])
def test_fast_equals_reference_on_device(device, interpolation):
    dec, _ = make_decoder(n=2000, n_control=64, k=8, rank=16, interpolation=interpolation)
    randomise_heads(dec)
    dec = dec.to(device)
    assert_fast_equals_reference(dec, 2000, device)


def test_runs_under_bf16_autocast(device):
    dec, _ = make_decoder()
    randomise_heads(dec)
    dec = dec.to(device)
    z = torch.randn(3, 4, device=device)
    e = torch.randn(300, 8, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        out = dec(z, e)
    assert out.shape == (3, 300, 4) and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), dec(z, e), atol=0.05, rtol=0.05)


@pytest.mark.parametrize("interpolation", ["auto", "dense"])
def test_gradcheck_float64(interpolation):
    dec, _ = make_decoder(n=16, n_control=5, k=3, rank=3, emb=4, dtype=torch.float64, interpolation=interpolation)
    randomise_heads(dec)
    z = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    e = torch.randn(16, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z_, e_: dec(z_, e_), (z, e), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda z_, e_: dec.forward_reference(z_, e_), (z, e), eps=1e-6, atol=1e-6)


def test_flops_one_tenth_at_60k():
    g = 60_000
    old = pair_decoder_flops_per_particle(g)
    # the per-pair count of the DESIGN sizes: 2·(128·128 + 128·256 + 256·4) + 128 FLOP
    assert old / g == pytest.approx(2 * (128 * 128 + 128 * 256 + 256 * 4) * 3 + 128 * 3, rel=0.01)
    for k_ctrl in (512, 1024, 2048):
        new = control_decoder_flops_per_particle(g, k_ctrl, k=8, rank=32)
        assert new <= old / 10, (k_ctrl, new / old)
    dec, _ = make_decoder()
    assert flops_per_particle(dec) == pytest.approx(dec.flops_per_particle())
    assert flops_per_particle(Decoder(10), 60_000) == pytest.approx(old)


def two_blobs(spacing=1.5, radius=7.0):
    """Two touching spherical blobs of grid points (chain A at x < 0, chain B at x > 0), boundary at x = 0."""
    r = torch.arange(-2 * radius, 2 * radius + 1e-9, spacing)
    grid = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    ca, cb = torch.tensor([-radius, 0.0, 0.0]), torch.tensor([radius, 0.0, 0.0])
    in_a = (grid - ca).norm(dim=1) <= radius
    in_b = ((grid - cb).norm(dim=1) <= radius) & ~in_a
    pos = torch.cat([grid[in_a], grid[in_b]])
    chain_a = torch.cat([torch.ones(int(in_a.sum()), dtype=torch.bool), torch.zeros(int(in_b.sum()), dtype=torch.bool)])
    return pos, chain_a


@functools.cache
def fit_fade(rank, steps=300, seed=0, readout_zero="vectors"):
    """Fit the decoder so that latent z1 fades chain A to 3 % of its base amplitude and z0 keeps the base cloud."""
    torch.manual_seed(seed)
    pos, chain_a = two_blobs()
    graph = build_control_graph(pos, n_control=12, k=8, bandwidth_scale=1.0, seed=seed)
    dec = ControlPointDecoder(2, graph, embedding_dim=8, hidden=32, n_layers=2, features=32, rank=rank,
                              readout_hidden=32, readout_zero=readout_zero)
    emb = torch.cat([pos / 10, torch.randn(pos.shape[0], 5) * 0.1], 1)  # fixed Gaussian embeddings
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    base_amp = torch.ones(pos.shape[0])
    base_raw = amplitude_inverse(base_amp)
    target = torch.stack([base_amp, torch.where(chain_a, 0.03, 1.0)])
    opt = torch.optim.Adam(dec.parameters(), lr=1e-2)
    for _ in range(steps):
        amp = amplitude_activation(base_raw + dec(z, emb)[..., 0])
        loss = (amp - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        amp = amplitude_activation(base_raw + dec(z, emb)[..., 0])
    faded = float(amp[1, chain_a].mean())  # chain A in the faded state (target 0.03)
    leak = float((amp[1, ~chain_a] - 1).abs().max())  # chain B in the faded state (target 1)
    base_err = float((amp[0] - 1).abs().max())
    return faded, leak, base_err


@pytest.mark.parametrize("readout_zero", ["vectors", "latent"])
def test_readout_fades_one_chain_sharply(readout_zero):
    faded, leak, base_err = fit_fade(rank=16, readout_zero=readout_zero)
    assert faded < 0.06, faded
    assert leak < 0.05, leak
    assert base_err < 0.05, base_err


def test_interpolation_alone_blurs_the_boundary():
    """The reason for the read-out: control points alone leak across touching chains."""
    faded, leak, _ = fit_fade(rank=0)
    faded_r, leak_r, _ = fit_fade(rank=16)
    assert leak > 0.05 or faded > 0.06
    assert leak_r < leak or faded_r < faded
    assert not math.isnan(leak)


def test_drops_into_gaussian_vae():
    """The integration path: a GaussianVAE whose decoder is replaced by a ControlPointDecoder decodes the base
    cloud at init, renders, and back-propagates into the control MLP and the read-out."""
    from gaussianem.gaussians import GaussianCloud
    from gaussianem.model.vae import GaussianVAE, ModelSpec
    from gaussianem.physics.rotation import random_rotations

    torch.manual_seed(0)
    g = 200
    pos = blob_cloud(g, 7, radius=12.0)
    cloud = GaussianCloud(pos, torch.full((g,), 1.5), 1 + torch.rand(g), 1.0, 2.0)
    spec = ModelSpec(box_size=16, pixel_size_angstrom=2.0, n_gaussians=g, width_min=1.0, width_max=2.0, zdim=3,
                     encoder_hidden=32, gaussian_hidden=16, embedding_dim=8, decoder_hidden=16, decoder_features=24)
    vae = GaussianVAE(cloud, spec)
    graph = build_control_graph(cloud.positions, n_control=16, k=4)
    vae.decoder = ControlPointDecoder(spec.zdim, graph, spec.embedding_dim, spec.decoder_hidden, spec.decoder_layers,
                                      spec.decoder_features, spec.predict_width, rank=4, readout_hidden=8)
    z = torch.randn(2, 3)
    positions, widths, amplitudes = vae.decode(z)
    torch.testing.assert_close(positions, cloud.positions.detach()[None].expand(2, -1, -1))
    torch.testing.assert_close(amplitudes, cloud.amplitudes.detach()[None].expand(2, -1))
    randomise_heads(vae.decoder)
    positions, widths, amplitudes = vae.decode(z)
    img = vae.render(positions, widths, amplitudes, random_rotations(2, torch.Generator().manual_seed(0)), None, None)
    img.square().mean().backward()
    assert vae.decoder.pair.head.weight.grad.abs().sum() > 0
    assert vae.decoder.readout_net[-1].weight.grad.abs().sum() > 0
    state = vae.state_dict()
    assert state["decoder.control_index"].shape == (g, 4) and state["decoder.readout_vectors"].shape == (g, 4)


def _spec_vae(decoder="control", **kw):
    from gaussianem.gaussians import GaussianCloud
    from gaussianem.model.vae import GaussianVAE, ModelSpec

    torch.manual_seed(0)
    g = 150
    cloud = GaussianCloud(blob_cloud(g, 8, radius=12.0), torch.full((g,), 1.5), 1 + torch.rand(g), 1.0, 2.0)
    spec = ModelSpec(box_size=16, pixel_size_angstrom=2.0, n_gaussians=g, width_min=1.0, width_max=2.0, zdim=3,
                     encoder_hidden=32, gaussian_hidden=16, embedding_dim=8, decoder_hidden=16, decoder_features=24,
                     decoder=decoder, n_control_points=20, control_neighbours=4, readout_rank=5, **kw)
    return GaussianVAE(cloud, spec), spec


def test_spec_builds_the_control_decoder_and_a_checkpoint_restores_it():
    """``decoder="control"`` in the spec builds the control-point decoder from the base cloud; ``from_spec`` makes
    placeholders of the saved graph's shapes, so a state dict (graph buffers, read-out vectors) loads into it and
    the reloaded model decodes the same clouds."""
    from gaussianem.model.vae import GaussianVAE, ModelSpec

    vae, spec = _spec_vae()
    assert isinstance(vae.decoder, ControlPointDecoder) and vae.decoder.n_control == 20
    randomise_heads(vae.decoder)
    state = vae.state_dict()
    assert state["decoder.control_index"].shape == (150, 4) and state["decoder.readout_vectors"].shape == (150, 5)
    again = GaussianVAE.from_spec(ModelSpec.from_dict(spec.to_dict()))
    again.load_state_dict(state)
    z = torch.randn(2, 3)
    for a, b in zip(vae.decode(z), again.decode(z), strict=True):
        torch.testing.assert_close(a, b)


def test_old_specs_mean_the_pair_decoder_and_dense_projector():
    from gaussianem.model.decoder import Decoder
    from gaussianem.model.vae import GaussianVAE, ModelSpec

    vae, spec = _spec_vae("pair")
    old = {k: v for k, v in spec.to_dict().items()
           if k not in ("decoder", "projector", "n_control_points", "control_neighbours", "readout_rank",
                        "splat_cutoff_sigmas")}
    loaded = ModelSpec.from_dict({**old, "a_future_field": 1})
    assert loaded.decoder == "pair" and loaded.projector == "dense"
    assert isinstance(GaussianVAE.from_spec(loaded).decoder, Decoder)
    with pytest.raises(ValueError, match="decoder"):
        _spec_vae("mlp")


def test_spec_projector_renders_as_the_dense_projector_on_cpu():
    """On the CPU every projector choice renders with the dense projector (the splat's fallback)."""
    from gaussianem.physics.rotation import random_rotations

    imgs = []
    for projector in ("dense", "splat", "auto"):
        vae, _ = _spec_vae(projector=projector)
        pos, wid, amp = vae.decode(torch.zeros(2, 3))
        imgs.append(vae.render(pos, wid, amp, random_rotations(2, torch.Generator().manual_seed(1)), None, None))
    torch.testing.assert_close(imgs[1], imgs[0], rtol=0, atol=0)
    torch.testing.assert_close(imgs[2], imgs[0], rtol=0, atol=0)


def test_gaussian_displacements_are_convex_combinations_of_the_control_points():
    """What makes the control-point regularisers valid: the decoded Gaussian displacements are the interpolation of
    the control points' (rows of non-negative weights summing to 1); the read-out touches the amplitude only."""
    vae, _ = _spec_vae()
    randomise_heads(vae.decoder)
    z = torch.randn(3, 3)
    deltas, control = vae.decode_deltas_and_control(z, vae.embed())
    assert control.shape == (3, 20, 4)
    torch.testing.assert_close(deltas, vae.decode_deltas(z))
    w = vae.decoder.dense_weights(torch.float32)
    torch.testing.assert_close(deltas[..., 1:4], torch.einsum("gk,bkc->bgc", w, control[..., 1:4]))
    assert not torch.allclose(deltas[..., 0], torch.einsum("gk,bk->bg", w, control[..., 0]))  # sharp amplitude


@pytest.mark.parametrize("strain", [0.05, -0.03])
def test_control_regularisers_measure_what_the_gaussian_ones_do(strain):
    """A uniform strain Δ = ε·(p - centre) costs the same in the distance term on the control points (scaled) as on
    the Gaussians; the interpolated field (a smoothed version of it) costs no more than that on the Gaussians; a
    rigid shift costs nothing; the control graphs are K-sized."""
    from gaussianem.model import losses as L
    from gaussianem.training.config import TrainConfig
    from gaussianem.training.objective import build_graphs

    vae, _ = _spec_vae()
    cfg = TrainConfig(dataset="-", rundir="-", decoder="control")
    on_g = build_graphs(vae, cfg.replace(regularise_on="gaussians"), "cpu")
    on_c = build_graphs(vae, cfg, "cpu")
    assert on_c.on_control and not on_g.on_control and on_c.scale < 1.0
    assert int(torch.cat([on_c.distance.src, on_c.distance.dst]).max()) < 20
    ctrl_pos = vae.decoder.control_positions[None]
    gauss_pos = vae.base_cloud.positions.detach()[None]
    centre = gauss_pos[0].mean(0)
    loss_c = L.distance_loss(ctrl_pos + strain * (ctrl_pos - centre), on_c.distance) * on_c.scale
    loss_g = L.distance_loss(gauss_pos + strain * (gauss_pos - centre), on_g.distance)
    torch.testing.assert_close(loss_c, loss_g, rtol=0.02, atol=0)
    w = vae.decoder.dense_weights(torch.float32)
    smoothed = torch.einsum("gk,bkc->bgc", w, strain * (ctrl_pos - centre))
    assert 0.0 < float(L.distance_loss(gauss_pos + smoothed, on_g.distance)) <= float(loss_g) * 1.01
    shift = torch.tensor([3.0, -1.0, 2.0])
    assert float(L.distance_loss(ctrl_pos + shift, on_c.distance)) < 1e-8
    with pytest.raises(ValueError, match="needs --decoder control"):
        build_graphs(_spec_vae("pair")[0], cfg.replace(decoder="pair", regularise_on="control"), "cpu")


def test_auto_decoder_picks_by_cloud_size_and_the_spec_keeps_the_choice():
    """``--decoder auto`` (the default): the control-point decoder when the cloud has more Gaussians than control
    points, the pair decoder otherwise; the model's spec (what a checkpoint saves) holds the concrete choice."""
    from gaussianem.model.decoder import Decoder
    from gaussianem.model.spec import ModelOptions, resolve_decoder
    from gaussianem.model.vae import GaussianVAE

    assert ModelOptions().decoder == "auto"
    assert resolve_decoder("auto", 60_000, 1024) == "control" and resolve_decoder("auto", 472, 1024) == "pair"
    assert resolve_decoder("pair", 60_000, 1024) == "pair" and resolve_decoder("control", 10, 1024) == "control"
    big, _ = _spec_vae("auto")  # 150 Gaussians, 20 control points
    assert isinstance(big.decoder, ControlPointDecoder) and big.spec.decoder == "control"
    small, spec = _spec_vae("auto")
    small = GaussianVAE(small.base_cloud, spec.__class__(**{**spec.to_dict(), "n_control_points": 500}))
    assert isinstance(small.decoder, Decoder) and small.spec.decoder == "pair"
    assert isinstance(GaussianVAE.from_spec(big.spec).decoder, ControlPointDecoder)


@pytest.mark.parametrize("interpolation", ["embedding_bag", "dense"])
def test_a_split_latent_gives_motions_and_amplitudes_their_own_dimensions(device, interpolation):
    """``displacement_dims=2`` of zdim 4: the control points' MLP reads z[:, :2] and draws no amplitude change, the
    read-out reads z[:, 2:]. Moving z along the last two dimensions changes amplitudes only, along the first two
    displacements only (both do change); fast = reference, forward and gradients; bad splits are refused."""
    dec, _ = make_decoder(n=2000, n_control=64, k=8, rank=16, interpolation=interpolation, embed_on="control",
                          displacement_dims=2)
    randomise_heads(dec)
    dec = dec.to(device)
    out = assert_fast_equals_reference(dec, 64, device)
    assert out.shape == (6, 2000, 4)
    torch.manual_seed(3)
    e = torch.randn(64, 8, device=device)
    z = torch.randn(5, 4, device=device)
    base = dec(z, e)
    for dims, moved, fixed in (((2, 3), [0], [1, 2, 3]), ((0, 1), [1, 2, 3], [0])):
        z2 = z.clone()
        z2[:, list(dims)] += torch.randn(5, 2, device=device)
        new = dec(z2, e)
        assert (new[..., moved] - base[..., moved]).abs().amax() > 1e-2
        torch.testing.assert_close(new[..., fixed], base[..., fixed], atol=1e-6, rtol=0)
    shared, _ = make_decoder(n=2000, n_control=64, k=8, rank=16, embed_on="control")
    randomise_heads(shared)
    z2 = z.cpu().clone()
    z2[:, 3] += 1.0
    assert (shared(z2, e.cpu())[..., 1:] - shared(z.cpu(), e.cpu())[..., 1:]).abs().amax() > 1e-2
    for bad in ({"displacement_dims": 4}, {"displacement_dims": 2, "rank": 0}):
        with pytest.raises(ValueError, match="displacement_dims"):
            make_decoder(**bad)


def test_the_split_is_saved_with_the_model_and_needs_the_control_decoder():
    """``displacement_dims`` is a spec field: a checkpoint's model rebuilt from its spec decodes the same clouds;
    a spec that predates the field means a shared latent; the pair decoder and an out-of-range split are refused,
    and ``train`` says which option to add when its cloud would get the pair decoder."""
    from gaussianem.errors import InputError
    from gaussianem.model.spec import ModelSpec
    from gaussianem.model.vae import GaussianVAE
    from gaussianem.training.config import TrainConfig
    from gaussianem.training.objective import model_spec

    vae, spec = _spec_vae(displacement_dims=1)
    assert vae.decoder.displacement_dims == 1
    randomise_heads(vae.decoder)
    again = GaussianVAE.from_spec(ModelSpec.from_dict(spec.to_dict()))
    again.load_state_dict(vae.state_dict())
    z = torch.randn(2, 3)
    for a, b in zip(vae.decode(z), again.decode(z), strict=True):
        torch.testing.assert_close(a, b)
    old = {k: v for k, v in spec.to_dict().items() if k != "displacement_dims"}
    assert ModelSpec.from_dict(old).displacement_dims == 0
    with pytest.raises(ValueError, match="control-point decoder"):
        _spec_vae("pair", displacement_dims=1)
    with pytest.raises(ValueError, match="displacement-dims"):
        _spec_vae(displacement_dims=3)
    cfg = TrainConfig(dataset="d", rundir="r", zdim=3, displacement_dims=1, n_control_points=500, box_size=16,
                      pixel_size_angstrom=2.0)
    with pytest.raises(InputError, match="--decoder control"):
        model_spec(cfg, vae.base_cloud, 1.0)
    assert model_spec(cfg.replace(decoder="control"), vae.base_cloud, 1.0).displacement_dims == 1


@pytest.mark.parametrize("interpolation", ["embedding_bag", "dense", "gather"])
def test_control_read_out_vectors_add_a_smooth_amplitude_basis(device, interpolation):
    """``readout_control``: the read-out's per-Gaussian vectors gain the control points' vectors (K, r) interpolated
    by the decoder's weights. Zero at the start (the decoder decodes what it did without them); once set, each
    Gaussian's amplitude change gains exactly W[g] @ V @ h(z) (W the (G, K) interpolation, h the read-out net), and
    only the amplitude channel changes; fast = reference, forward and gradients (V's included); saved in the spec,
    refused for the pair decoder."""
    kw = dict(n=2000, n_control=64, k=8, rank=16, interpolation=interpolation, embed_on="control")
    dec, _ = make_decoder(readout_control=True, **kw)
    plain, _ = make_decoder(**kw)
    randomise_heads(dec)
    randomise_heads(plain)
    dec, plain = dec.to(device), plain.to(device)
    torch.manual_seed(3)
    e = torch.randn(64, 8, device=device)
    z = torch.randn(5, 4, device=device)
    torch.testing.assert_close(dec(z, e), plain(z, e))
    assert dec.readout_control.shape == (64, 16)
    with torch.no_grad():
        dec.readout_control.copy_(torch.randn(64, 16, generator=torch.Generator().manual_seed(5)).to(device))
    extra = dec(z, e) - plain(z, e)
    w = interpolation_matrix(dec.control_index, dec.control_weight, dec.n_control)  # (G, K)
    h = dec.readout_net(z)  # (B, r): amplitude only, so one channel
    expected = torch.einsum("gk,kr,br->bg", w, dec.readout_control, h)
    torch.testing.assert_close(extra[..., 0], expected, atol=1e-5, rtol=1e-4)
    assert extra[..., 0].abs().amax() > 1e-2
    torch.testing.assert_close(extra[..., 1:], torch.zeros_like(extra[..., 1:]))
    assert_fast_equals_reference(dec, 64, device)
    vae, spec = _spec_vae(readout_control=True)
    assert vae.decoder.readout_control is not None and spec.to_dict()["readout_control"] is True
    old = {k: v for k, v in spec.to_dict().items() if k != "readout_control"}
    from gaussianem.model.spec import ModelSpec
    assert ModelSpec.from_dict(old).readout_control is False
    with pytest.raises(ValueError, match="control-point decoder"):
        _spec_vae("pair", readout_control=True)


@pytest.mark.parametrize("embed_on", ["control", "gaussians"])
def test_readout_zero_vectors_grows_only_the_vectors_whose_residual_follows_h(device, embed_on):
    """``readout_zero``: which factor of the read-out u_g · h(z) starts at zero. Either way the read-out starts at
    zero (same clouds, same pair MLP); with "latent" the first gradient reaches h's last layer and no u, with
    "vectors" it reaches u and only the rows of the Gaussians whose amplitudes the loss asks to change (the others
    keep no response to h(z)); saved in the spec (old specs: "latent"), a wrong name refused."""
    kw = dict(n=400, n_control=32, k=6, rank=8, embed_on=embed_on)
    old, _ = make_decoder(readout_zero="latent", **kw)
    new, _ = make_decoder(readout_zero="vectors", **kw)
    old, new = old.to(device), new.to(device)
    assert new.readout_vectors.abs().amax() == 0 and new.readout_net[-1].weight.abs().amax() > 0
    assert old.readout_net[-1].weight.abs().amax() == 0 and old.readout_vectors.abs().amax() > 0
    if embed_on == "gaussians":
        assert new.readout_embed.weight.abs().amax() == 0
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for dec in (old, new):  # the same random pair heads (otherwise both decode zero)
            for p in (dec.pair.head.weight, dec.pair.head.bias):
                p.copy_((torch.randn(p.shape, generator=g.manual_seed(4)) * 0.3).to(device))
    torch.manual_seed(3)
    n_e = 32 if embed_on == "control" else 400
    e = torch.randn(n_e, 8, device=device)
    z = torch.randn(6, 4, device=device)
    torch.testing.assert_close(old(z, e), new(z, e))
    changed = torch.zeros(400, dtype=torch.bool)
    changed[:50] = True  # the loss asks the amplitudes of these Gaussians (only) to follow z's first dimension
    for dec in (old, new):
        dec.zero_grad()
        amp = dec(z, e)[..., 0]
        ((amp[:, changed.to(device)] - z[:, :1]) ** 2).sum().backward()
    assert old.readout_vectors.grad.abs().amax() == 0 and old.readout_net[-1].weight.grad.abs().amax() > 0
    rows = new.readout_vectors.grad.abs().amax(dim=1).cpu()
    assert rows[changed].amin() > 0 and rows[~changed].amax() == 0
    vae, spec = _spec_vae(readout_zero="vectors")
    assert vae.decoder.readout_vectors.abs().amax() == 0 and spec.to_dict()["readout_zero"] == "vectors"
    from gaussianem.model.spec import ModelSpec
    saved_before = {k: v for k, v in spec.to_dict().items() if k != "readout_zero"}
    assert ModelSpec.from_dict(saved_before).readout_zero == "latent"  # what the weights saved then were made by
    with pytest.raises(ValueError, match="--readout-zero"):
        _spec_vae(readout_zero="both")


@pytest.mark.parametrize("combine", ["sum", "film"])
def test_an_opened_split_decodes_as_the_shared_decoder_and_loads_from_old_weights(device, combine):
    """``open_split``: the decoded clouds do not change at the opening (the never-trained first-layer weights on
    the other part's dimensions are zeroed), and from then on the split decoder decodes exactly as the shared
    decoder (``displacement_dims=0``) with the same weights, z's every dimension reaching both parts once trained
    (fast = reference, forward and gradients); its state is in the state dict, and weights saved before the buffer
    existed load as a closed split."""
    kw = dict(n=2000, n_control=64, k=8, rank=16, interpolation="dense", embed_on="control", combine=combine)
    split, _ = make_decoder(displacement_dims=2, **kw)
    shared, _ = make_decoder(**kw)
    randomise_heads(split)
    if combine == "film":
        with torch.no_grad():
            split.pair.z_gain.weight.normal_(0.0, 0.3)
    state = {k: v.clone() for k, v in split.state_dict().items()}
    assert float(state["split_open"]) == 0.0
    split = split.to(device)
    torch.manual_seed(3)
    z, e = torch.randn(5, 4, device=device), torch.randn(64, 8, device=device)
    before = split(z, e)
    split.open_split()
    torch.testing.assert_close(split(z, e), before)  # no jump at the opening
    shared.load_state_dict({k: v for k, v in split.state_dict().items() if k != "split_open"})
    shared = shared.to(device)
    with torch.no_grad():  # as training would: the MLP's weights on the states' dimensions, the read-out's on the
        for m in (split, shared):  # motion's, and the MLP's amplitude output become non-zero
            m.pair.z_proj.weight[:, 2:] = 0.5
            m.readout_net[0].weight[:, :2] = 0.5
            m.pair.head.weight[0] = 0.3
    torch.testing.assert_close(split(z, e), shared(z, e))
    moved = split(z + torch.tensor([0.0, 0.0, 1.0, 1.0], device=device), e) - split(z, e)
    assert moved[..., 1:].abs().amax() > 1e-2  # a state dimension now moves Gaussians
    assert_fast_equals_reference(split, 64, device)
    again, _ = make_decoder(displacement_dims=2, **kw)
    again.load_state_dict(split.state_dict())
    assert float(again.split_open) == 1.0
    again.load_state_dict({k: v for k, v in state.items() if k != "split_open"})  # old weights: a closed split
    assert float(again.split_open) == 0.0
    shared.open_split()  # no split: nothing to open
    assert not hasattr(shared, "split_open")
