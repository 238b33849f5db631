"""The default size of the initial cloud (issue 15): from the map's content and the working pixel size, capped;
and preprocess's warnings when a cloud makes training slow (issue 18)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from conftest import run, simulate, write_map, write_relion31

from gaussianem.gaussians import GaussianCloud, cloud_from_map
from gaussianem.preprocess import cloud_size
from gaussianem.preprocess.cloud_size import CEILING, plan_cloud, warn_training_cost


def _ball(box: int, radius_vox: float) -> np.ndarray:
    """A smooth ball (D, D, D): 1 inside ``radius_vox``, falling to 0 over two voxels."""
    g = np.arange(box) - box // 2
    r = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    return np.clip((radius_vox + 1 - r) / 2, 0, 1).astype(np.float32)


def test_a_map_beyond_the_ceiling_is_sampled_coarser(caplog):
    """A ball of ~100,000 voxels above the contour at 2 Å/px (content budget above the ceiling): at most CEILING
    Gaussians spread over the whole ball, and a log line that says why."""
    vol = _ball(72, 29.0)
    thr = 0.5
    n1 = int((vol > thr).sum())
    assert n1 > 1.25 * CEILING
    with caplog.at_level(logging.INFO, logger="gaussianem"):
        plan = plan_cloud(vol, 2.0, thr, None, None)
    assert plan.record["budget"] == CEILING and 1 < plan.interval < 2
    assert "ceiling 60,000" in caplog.text and "one every" in caplog.text
    cloud = cloud_from_map(vol, 2.0, thr, interval=plan.interval, max_gaussians=plan.max_gaussians)
    assert 0.8 * CEILING <= cloud.n <= CEILING
    radius = cloud.positions.detach().norm(dim=1) / 2.0
    assert radius.max() > 27.5 and radius.max() < 30.5  # the whole ball, not its densest core
    assert cloud.width_max == pytest.approx(plan.interval * 2.0)


def test_fine_pixels_get_the_content_budget():
    """At 1 Å/px the same content allows one Gaussian per ~(1.5 Å)³: ~5 per estimated heavy atom."""
    vol = _ball(56, 22.0)
    plan = plan_cloud(vol, 1.0, 0.5, None, None)
    rec = plan.record
    assert rec["content_budget"] < rec["n_voxels_above_contour"] and rec["budget"] == rec["content_budget"]
    assert rec["estimated_heavy_atoms"] == pytest.approx(rec["volume_above_contour_a3"] / (1.21 * 14), rel=1e-3)
    cloud = cloud_from_map(vol, 1.0, 0.5, interval=plan.interval, max_gaussians=plan.max_gaussians)
    assert 0.8 * rec["budget"] <= cloud.n <= rec["budget"]


def test_user_choices_are_kept_exactly():
    vol = _ball(72, 29.0)
    assert plan_cloud(vol, 2.0, 0.5, 1, None).interval == 1
    assert plan_cloud(vol, 2.0, 0.5, None, 100_000).max_gaussians == 100_000
    assert plan_cloud(np.zeros((300,) * 3, np.float32), 2.0, 0.5, None, 10).interval == 2  # box > 256


def test_a_tiny_map_at_fine_pixels_is_never_thinned():
    vol = _ball(32, 8.0)  # ~2,500 voxels at 0.8 Å/px: the content budget (~500) is below the floor
    plan = plan_cloud(vol, 0.8, 0.5, None, None)
    assert plan.interval == 1 and plan.max_gaussians is None and plan.record["budget"] == cloud_size.FLOOR


def test_a_small_map_keeps_todays_count(tmp_path):
    """The default on a small map is one Gaussian per voxel above the contour, as --gaussian-interval 1 gives."""
    sim = simulate(30, 32, 2.0, seed=1)
    star_path = write_relion31(tmp_path / "proj", sim)
    mp = write_map(tmp_path / "map.mrc", sim)
    default = run(tmp_path, star_path, mp, out="a", n_check=10)
    explicit = run(tmp_path, star_path, mp, out="b", n_check=10, gaussian_interval=1)
    n = [GaussianCloud.from_ply(p / "gaussians_init.ply").n for p in (default, explicit)]
    assert n[0] == n[1]
    rec = json.loads((default / "dataset.json").read_text())["map"]["cloud_size"]
    assert rec["rule"] == "content" and rec["interval"] == 1 and rec["n_voxels_above_contour"] == n[0]
    assert rec["reason"].startswith("one per voxel above the contour")


def test_ceiling_in_preprocess_logs_and_records_why(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(cloud_size, "CEILING", 300)
    monkeypatch.setattr(cloud_size, "FLOOR", 100)
    sim = simulate(30, 32, 2.0, seed=1)
    star_path = write_relion31(tmp_path / "proj", sim)
    with caplog.at_level(logging.INFO, logger="gaussianem"):
        out = run(tmp_path, star_path, write_map(tmp_path / "map.mrc", sim), n_check=10)
    rec = json.loads((out / "dataset.json").read_text())["map"]
    assert rec["n_gaussians"] <= 300 and rec["cloud_size"]["budget"] == 300
    assert rec["cloud_size"]["n_voxels_above_contour"] > 1.25 * 300 and rec["gaussian_interval"] > 1
    assert "initial cloud size: one every" in caplog.text and "ceiling 300" in caplog.text


def test_cost_warnings_name_the_numbers_and_the_knobs(tmp_path, monkeypatch, caplog):
    with caplog.at_level(logging.WARNING):
        big = warn_training_cost(120_000, 128, 200_000, "cuda")
    assert len(big) == 1 and "120,000 Gaussians" in big[0] and "--max-gaussians / --gaussian-interval" in big[0]
    assert "rough estimate" in big[0] and "120,000 Gaussians" in caplog.text
    slow = warn_training_cost(20_000, 128, 100_000, "cpu")
    assert len(slow) == 1 and "on the CPU" in slow[0] and "particles/s" in slow[0] and "rough estimate" in slow[0]
    assert warn_training_cost(500, 32, 1000, "cpu") == []
    # end to end: preprocess warns (thresholds lowered to meet a tiny dataset) and records the warnings
    monkeypatch.setattr(cloud_size, "LARGE_CLOUD", 100)
    monkeypatch.setattr(cloud_size, "CPU_SLOW_HOURS", 1e-6)
    sim = simulate(30, 32, 2.0, seed=1)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        out = run(tmp_path, write_relion31(tmp_path / "proj", sim), write_map(tmp_path / "map.mrc", sim),
                  n_check=10)
    warnings = json.loads((out / "dataset.json").read_text())["map"]["cloud_size"]["warnings"]
    assert len(warnings) == 2 and "training on the CPU" in caplog.text and "Gaussians: training 30" in caplog.text
