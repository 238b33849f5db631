"""``--amplitude-change``: how a decoded amplitude change Δa sets a Gaussian's amplitude (issue 17).

"log" (softplus(raw + Δa)) is a factor exp(Δa) on a fitted cloud's small amplitudes, so a fading part's image stops
changing long before the part is gone; the linear modes fade it linearly to zero at Δa = -1. The gain penalty prices
the log of the gain in every mode, so a doubling costs the same.
"""

import math

import pytest
import torch

from gaussianem.gaussians import LINEAR_FLOOR_BETA, amplitude_log_gain, linear_amplitude_factor
from gaussianem.model.spec import AMPLITUDE_CHANGES, ModelSpec

LINEAR_MODES = [m for m in AMPLITUDE_CHANGES if m != "log"]


def test_linear_factors_fade_linearly_to_zero_at_minus_one():
    d = torch.linspace(-3.0, 3.0, 601, dtype=torch.float64)
    torch.testing.assert_close(linear_amplitude_factor(d, "signed"), 1.0 + d)
    torch.testing.assert_close(linear_amplitude_factor(d, "clamp"), (1.0 + d).clamp_min(0.0))
    smooth = linear_amplitude_factor(d, "linear")
    assert float(smooth.amin()) > 0  # floored smoothly: every amplitude stays positive
    gap = (smooth - (1.0 + d).clamp_min(0.0)).abs()
    assert float(gap.amax()) == pytest.approx(math.log(2) / LINEAR_FLOOR_BETA, rel=1e-6)  # largest at Δa = -1
    assert float(gap[d >= 0].amax()) < 1e-4  # no change and every gain as the unfloored factor
    with pytest.raises(ValueError, match="no linear amplitude factor"):
        linear_amplitude_factor(d, "log")


def test_the_gain_penalty_prices_the_log_of_the_gain_in_every_mode():
    d = torch.linspace(-2.0, 4.0, 121, dtype=torch.float64)
    torch.testing.assert_close(amplitude_log_gain(d, "log"), d.clamp_min(0.0))
    for mode in ("signed", "clamp"):
        gain = linear_amplitude_factor(d, mode).clamp_min(1.0)  # the factor where it is a gain, 1 elsewhere
        torch.testing.assert_close(amplitude_log_gain(d, mode), torch.log(gain))
    # a doubling costs the same in both kinds of mode: Δa = log 2 (log) and Δa = 1 (linear)
    two = torch.tensor([math.log(2.0), 1.0], dtype=torch.float64)
    assert float(amplitude_log_gain(two[:1], "log")) == pytest.approx(float(amplitude_log_gain(two[1:], "linear")))


def _vae(amplitude_change: str):
    from gaussianem.gaussians import GaussianCloud
    from gaussianem.model.vae import GaussianVAE

    torch.manual_seed(0)
    g = 60
    amplitudes = 0.005 + 0.03 * torch.rand(g)  # the small amplitudes of a fitted cloud (raw ≈ log(amplitude))
    cloud = GaussianCloud(torch.randn(g, 3) * 8.0, torch.full((g,), 1.5), amplitudes, 1.0, 2.0)
    spec = ModelSpec(box_size=16, pixel_size_angstrom=2.0, n_gaussians=g, width_min=1.0, width_max=2.0, zdim=3,
                     encoder_hidden=16, gaussian_hidden=8, embedding_dim=4, decoder_hidden=8, decoder_features=8,
                     decoder="pair", readout_rank=0, amplitude_change=amplitude_change)
    return GaussianVAE(cloud, spec), amplitudes


@pytest.mark.parametrize("mode", AMPLITUDE_CHANGES)
def test_every_mode_decodes_the_base_cloud_at_no_change_and_only_linear_ones_remove_a_part(mode):
    vae, base = _vae(mode)
    vae.requires_grad_(False)
    deltas = torch.zeros(2, base.numel(), 4)
    _, _, amplitudes = vae.apply_deltas(deltas)
    torch.testing.assert_close(amplitudes, base[None].expand(2, -1), rtol=1e-5, atol=1e-7)
    deltas[..., 0] = -1.0  # "remove": gone in the linear modes, × exp(-1) ≈ 0.37 of each small amplitude in log
    _, _, gone = vae.apply_deltas(deltas)
    ratio = gone / base[None]
    if mode == "log":
        assert float(ratio.amin()) > 0.35
    else:
        assert float(ratio.amax()) <= math.log(2) / LINEAR_FLOOR_BETA + 1e-6
    deltas[..., 0] = 1.0  # a gain: × 2 in the linear modes, × e in log (up to softplus's departure from exp)
    _, _, up = vae.apply_deltas(deltas)
    expected, rtol = (2.0, 1e-5) if mode != "log" else (math.e, 5e-2)
    torch.testing.assert_close(up / base[None], torch.full_like(up, expected), rtol=rtol, atol=0.0)


def test_the_mode_is_saved_with_the_spec_and_an_older_spec_reads_as_log():
    vae, _ = _vae("linear")
    saved = vae.spec.to_dict()
    assert ModelSpec.from_dict(saved).amplitude_change == "linear"
    before = {k: v for k, v in saved.items() if k != "amplitude_change"}
    assert ModelSpec.from_dict(before).amplitude_change == "log"  # what the weights saved then were made with
    with pytest.raises(ValueError, match="--amplitude-change"):
        _vae("exp")
