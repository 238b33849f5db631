"""Linear probes of the benchmark: they find a state or a motion that is in z but not z's largest structure, and
give chance when it is not in z at all."""

from __future__ import annotations

import numpy as np
import pytest

from gaussianem.evaluation import metrics, probes


def hidden_state_latents(n: int = 1200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """z (n, 3): a wide motion on z1 (uniform ±5), the state as ±0.4 on a low-variance z2, noise on z3."""
    rng = np.random.default_rng(seed)
    state = rng.integers(0, 2, n)
    coord = rng.uniform(-1.0, 1.0, n)
    z = np.stack([5.0 * coord, 0.4 * (2 * state - 1) + 0.06 * rng.normal(size=n), 0.3 * rng.normal(size=n)], 1)
    return z, state, coord


def test_state_hidden_in_a_low_variance_direction_is_found_by_the_probe_not_by_kmeans():
    z, state, _ = hidden_state_latents()
    assert metrics.kmeans_ari(z, state)["ari"] < 0.05  # k-means splits along the motion
    r = probes.state_probe(z, state)
    assert r["k"] == 2 and r["n"] == len(z)
    assert r["accuracy"] > 0.99
    assert r["chance"] == pytest.approx(np.bincount(state).max() / len(state))


def test_absent_state_gives_chance_accuracy():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(1500, 4))
    state = rng.integers(0, 3, 1500)
    r = probes.state_probe(z, state)
    assert abs(r["accuracy"] - 1 / 3) < 0.05
    assert probes.state_probe(z, np.zeros(1500, int))["accuracy"] is None  # one state: nothing to probe


def test_motion_probe_r2_present_hidden_and_absent():
    z, _, coord = hidden_state_latents()
    # the coordinate rides a low-variance axis, the large axis is unrelated
    rng = np.random.default_rng(1)
    zh = np.stack([5.0 * rng.uniform(-1, 1, len(z)), 0.2 * coord + 0.01 * rng.normal(size=len(z))], 1)
    assert probes.motion_probe(zh, coord)["r2"] > 0.99
    assert metrics.spearman_metrics(zh, coord)["pc1"] < 0.1
    absent = probes.motion_probe(rng.normal(size=(len(z), 4)), coord)
    assert -0.05 < absent["r2"] < 0.02 and absent["n"] == len(z)
    coord_nan = coord.copy()
    coord_nan[:100] = np.nan
    assert probes.motion_probe(zh, coord_nan)["n"] == len(z) - 100
    assert probes.motion_probe(zh, np.full(len(z), np.nan))["r2"] is None


def test_probes_subsample_large_sets_and_sit_in_latent_metrics():
    z, state, coord = hidden_state_latents(900)
    r = probes.state_probe(z, state, max_particles=400)
    assert r["n"] == 400 and r["accuracy"] > 0.98
    lat = metrics.latent_metrics(z, state, coord)
    assert lat["state_probe"]["accuracy"] > 0.99 and lat["motion_probe"]["r2"] > 0.99


def test_probes_by_group_find_the_motion_in_the_first_dimensions_and_the_state_in_the_others():
    """z with the motion on dimension 0 and the state on dimension 1 (the hidden-state latents): split 1 puts the
    motion in the first group (R² > 0.95, state at chance) and the state in the second (accuracy > 0.99, R² ≈ 0);
    all of z has both, and k-means finds the states only in the second group; no split gives the one group."""
    z, state, coord = hidden_state_latents()
    first, second, whole = probes.probes_by_group(z, state, coord, split=1)
    assert first["group"].startswith("0:1") and second["group"].startswith("1:3") and whole["group"] == "all"
    assert first["motion"] > 0.95 and first["within"] > 0.95 and first["state"] < 0.6
    assert second["state"] > 0.99 and abs(second["motion"]) < 0.05
    assert whole["state"] > 0.99 and whole["motion"] > 0.95
    # k-means finds the states in the second group alone; on all of z it splits along the wider motion
    assert second["kmeans"] > 0.95 and first["kmeans"] < 0.05 and whole["kmeans"] < 0.05
    np.testing.assert_allclose(first["sd"], z[:, :1].std(0))
    assert [g["group"] for g in probes.probes_by_group(z, state, coord)] == ["all"]
