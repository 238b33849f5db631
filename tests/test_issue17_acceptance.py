"""The verdicts of ``benchmarks/accuracy/issue17_acceptance.py``, which decides issue 17's point 1 from the device
runs' ``gaussianem benchmark`` outputs: met on every seed, met on the means, short, the 0.95 ARI floor at 20 epochs,
the per-image FSC-AUC held against the defaults' lowest seed, and a missing run as an error (not a seed fewer)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    """benchmarks/accuracy/NAME.py as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "accuracy" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def acceptance():
    return _script("issue17_acceptance")


def _write(folder: Path, preset: str, variant: str, epoch: int, ours: dict, cryodrgn: dict | None = None) -> None:
    def entry(name: str, m: dict) -> dict:
        return {"name": name, "per_image_fsc_auc": {"mean": m.get("fsc")},
                "latent": {"kmeans": {"ari": m.get("ari")}, "spearman": {"best": m.get("rho")},
                           "state_probe": {"accuracy": m.get("state_acc")}, "motion_probe": {"r2": m.get("motion_r2")}}}

    results = [entry("gaussianem", ours)] + ([entry("cryodrgn", cryodrgn)] if cryodrgn else [])
    (folder / preset).mkdir(parents=True, exist_ok=True)
    (folder / preset / f"{variant}.e{epoch}.metrics.json").write_text(json.dumps({"results": results}))


def test_verdicts_over_seeds(acceptance, tmp_path):
    root = tmp_path / "results"
    # cryoDRGN: seed 0 from the scores file (5 and 20), seed 1 scored beside a variant (5 only)
    scores = tmp_path / "latent_scores.json"
    scores.write_text(json.dumps([
        {"tool": "cryodrgn", "preset": "tcr-compositional", "epoch": 5, "ari": 0.90, "state_acc": 0.97},
        {"tool": "cryodrgn", "preset": "tcr-compositional", "epoch": 20, "ari": 0.93, "state_acc": 0.99},
        {"tool": "cryodrgn", "preset": "adk", "epoch": 20, "rho_best": 0.93, "motion_r2": 0.88}]))
    _write(root / "c", "tcr-compositional", "any", 5, {"ari": 0.0}, cryodrgn={"ari": 0.92, "state_acc": 0.95})
    # the defaults (reference) on two seeds
    for seed, fsc in ((0, 0.380), (1, 0.385)):
        _write(root / "d", "tcr-compositional", f"def{seed}", 20, {"ari": 0.99, "state_acc": 0.99, "fsc": fsc})
    # a setting on two seeds: ARI at 5 above both cryoDRGN seeds on each seed (met); the probe at 5 above on the
    # mean only (0.965 >= 0.96) but seed 1 below 0.97 (met on means); ARI at 20 above cryoDRGN's 0.93 but one seed
    # under the 0.95 floor (short); FSC-AUC 0.381 / 0.383 against the defaults' lowest seed 0.380 (held)
    for seed, (ari5, acc5, ari20, fsc) in enumerate(((0.95, 0.975, 0.99, 0.381), (0.93, 0.955, 0.94, 0.383))):
        _write(root / "s", "tcr-compositional", f"v{seed}", 5, {"ari": ari5, "state_acc": acc5})
        _write(root / "s", "tcr-compositional", f"v{seed}", 20, {"ari": ari20, "state_acc": 0.995, "fsc": fsc})
    mine = acceptance.ours("s:v0,s:v1", root)
    assert [r["ari"] for r in mine[("tcr-compositional", 5)]] == [0.95, 0.93]
    ref = acceptance.ours("d:def0,d:def1", root)
    cryo = acceptance.cryodrgn(scores, [root / "c"])
    assert sorted(r["ari"] for r in cryo[("tcr-compositional", 5)]) == [0.90, 0.92]
    lines = acceptance.table("v", mine, ref, cryo)
    rows = {tuple(c.strip() for c in line.split("|")[1:4]): line.split("|")[-2].strip()
            for line in lines if line.startswith("| tcr-compositional")}
    assert rows[("tcr-compositional", "5", "k-means ARI")] == "met"
    assert rows[("tcr-compositional", "5", "state probe")] == "met on means"
    assert rows[("tcr-compositional", "20", "k-means ARI")] == "short (< 0.95)"
    assert rows[("tcr-compositional", "20", "state probe")] == "met"
    assert rows[("tcr-compositional", "20", "per-image FSC-AUC")] == "held"
    adk = [line for line in lines if line.startswith("| adk | 20 | best abs(ρ)")]
    assert adk and adk[0].rstrip().endswith("| not measured |")  # the setting has no adk run
    assert lines[-2] == "v: 3 of 19 points met on every seed, 1 more on the means."
    # a reference seed above the setting's lowest: the FSC-AUC is short
    ref_high = acceptance.ours("d:def1", root)
    held = [line for line in acceptance.table("v", mine, ref_high, cryo) if "per-image FSC-AUC" in line
            and line.startswith("| tcr-compositional")]
    assert held[0].rstrip().endswith("| short |")


def test_a_missing_run_is_an_error(acceptance, tmp_path):
    _write(tmp_path / "s", "adk", "v0", 5, {"rho": 0.9})
    with pytest.raises(SystemExit, match=r"no v1\.eE\.metrics\.json under .*s/PRESET/ \(s:v1\)"):
        acceptance.ours("s:v0,s:v1", tmp_path)


def _groups_md(r2_disp: float, r2_amp: float, epoch: int) -> str:
    """A table as benchmarks/accuracy/latent_groups.py prints it (adk: no states, so no probe or ARI)."""
    return ("| epoch | dimensions | state probe | motion R² | within-state motion R² | k-means ARI | sd of μ |\n"
            "| ---: | --- | ---: | ---: | ---: | ---: | --- |\n"
            f"| {epoch} | 0:3 (displacements) | – | {r2_disp:.3f} | {r2_disp:.3f} | – | 0.92 0.04 0.03 |\n"
            f"| {epoch} | 3:10 (amplitudes) | – | {r2_amp:.3f} | {r2_amp:.3f} | – | 1.71 1.33 1.21 |\n"
            f"| {epoch} | all | – | 0.882 | 0.882 | – | 0.92 0.04 0.03 1.71 1.33 1.21 |\n")


def test_motion_location_reads_where_the_motion_lies(tmp_path, capsys):
    ml = _script("motion_location")
    out = tmp_path / "s"
    # "held": the motion in the amplitude part, abs(ρ) flat; "moves": in the displacements, abs(ρ) rising
    for variant, rhos, parts in (("held", (0.912, 0.912, 0.913), ((0.02, 0.83), (0.11, 0.83))),
                                 ("moves", (0.896, 0.930, 0.930), ((0.80, 0.20), (0.87, 0.20)))):
        for epoch, rho in zip((5, 10, 20), rhos, strict=True):
            _write(out, "adk", variant, epoch, {"rho": rho})
            _write(out, "tcr-mixed", variant, epoch, {"ari": 0.99})
        for epoch, (d, a) in zip((5, 20), parts, strict=True):
            (out / "adk" / f"{variant}.e{epoch}.groups.md").write_text(_groups_md(d, a, epoch))
    assert ml.group_r2(out / "adk" / "held.e20.groups.md") == {"displacements": 0.11, "amplitudes": 0.83,
                                                                "all": 0.882}
    assert ml.main([f"{out}:held", f"{out}:moves"]) == 0
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(r[3].strip(), r[5].strip()) for r in rows] == [("+0.001", "amplitudes"), ("+0.034", "displacements")]
    assert rows[0][4].strip() == "0.02 / 0.83 → 0.11 / 0.83"
    assert ml.main([f"{out}:absent"]) == 2
