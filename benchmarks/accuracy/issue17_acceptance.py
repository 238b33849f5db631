"""Issue 17's acceptance, point 1, over every seed measured: each setting's latent metrics against every cryoDRGN
seed on the same particles, and its per-image FSC-AUC at 20 epochs against today's defaults.

  python benchmarks/accuracy/issue17_acceptance.py                     # the recorded settings (SETTINGS below)
  python benchmarks/accuracy/issue17_acceptance.py --setting "new=OUT_A:name,OUT_B:name1" [--setting ...]

A setting is ``NAME=DIR:VARIANT[,DIR:VARIANT...]``, one DIR:VARIANT per seed, where DIR is a
``gpu_issue17_screen.sh`` OUT folder (DIR/PRESET/VARIANT.eE.metrics.json, ``gaussianem benchmark``'s output).
cryoDRGN's figures: session 10's run (seed 0; ``latent_scores.json``) and every external latent scored beside a
variant in the folders given (``--cryodrgn-dir``; session 25's seed 1 at epoch 5).

For each preset, epoch (5, 20) and metric the acceptance names, it prints our value on each seed, cryoDRGN's on
each, and a verdict: ``met`` (every seed of ours >= every seed of cryoDRGN's), ``met on means`` (our mean >= its
mean, but not seed by seed), ``short`` (otherwise); at 20 epochs the k-means ARI must also be >= 0.95 on every seed.
The per-image FSC-AUC at 20 (200 images) is ``held`` when every seed of ours is >= the lowest seed of the
reference setting (``--reference``, the defaults: "stays where it is today", today's seed-to-seed spread allowed),
``short`` otherwise. Values are printed to 4 decimals, since near 1 the verdicts turn on the fourth.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
S10 = RESULTS / "2026-12-06-s10-h100" / "issue17-screen" / "latent_scores.json"
# the settings measured on the three presets with 20-epoch runs, seeds 0 / 1 (benchmarks/RESULTS.md, issue 17)
SETTINGS = {
    "default": "2026-12-07-s21-gpu/s21a:w20,2026-12-07-s21-gpu/s21b:w20s1",
    "ess": "2026-12-07-s23-gpu/s23b:ess,2026-12-07-s23-gpu/s23b:ess1",
    "essd": "2026-12-07-s24-gpu/s24a:essd,2026-12-07-s24-gpu/s24a:essd1",
    "essdf": "2026-12-07-s25-gpu/s25a:essdf,2026-12-07-s25-gpu/s25b:essdf1",
    "essdf625": "2026-12-07-s25-gpu/s25a:essdf625,2026-12-07-s25-gpu/s25b:essdf625_1",
    "essfkd10": "2026-12-07-s27-gpu/s27b:essfkd10,2026-12-08-s28-gpu/s28a:essfkd10_1",
}
CRYODRGN_DIRS = ["2026-12-07-s25-gpu/s25b"]
PRESETS = {"adk": ("rho", "motion_r2"), "tcr-compositional": ("ari", "state_acc"),
           "tcr-mixed": ("ari", "rho", "state_acc", "motion_r2")}
LABELS = {"ari": "k-means ARI", "rho": "best abs(ρ)", "state_acc": "state probe", "motion_r2": "motion probe R²"}


def _latent(result: dict) -> dict[str, float | None]:
    lat = result.get("latent", {})
    return {"ari": (lat.get("kmeans") or {}).get("ari"), "rho": (lat.get("spearman") or {}).get("best"),
            "state_acc": (lat.get("state_probe") or {}).get("accuracy"),
            "motion_r2": (lat.get("motion_probe") or {}).get("r2")}


def ours(spec: str, root: Path) -> dict[tuple[str, int], list[dict]]:
    """(preset, epoch) -> one dict per seed: the latent metrics and ``fsc`` (per-image FSC-AUC mean)."""
    out: dict[tuple[str, int], list[dict]] = {}
    for item in spec.split(","):
        folder, variant = item.rsplit(":", 1)
        base = Path(folder) if Path(folder).is_absolute() else root / folder
        if not any(base.glob(f"*/{variant}.e*.metrics.json")):
            raise SystemExit(f"issue17_acceptance: no {variant}.eE.metrics.json under {base}/PRESET/ ({item})")
        for preset in PRESETS:
            for epoch in (5, 20):
                path = base / preset / f"{variant}.e{epoch}.metrics.json"
                if not path.is_file():
                    continue
                for r in json.loads(path.read_text()).get("results", []):
                    if r.get("name") == "gaussianem":
                        row = _latent(r)
                        row["fsc"] = (r.get("per_image_fsc_auc") or {}).get("mean")
                        out.setdefault((preset, epoch), []).append(row)
    return out


def cryodrgn(scores: Path, dirs: list[Path]) -> dict[tuple[str, int], list[dict]]:
    """(preset, epoch) -> one dict of latent metrics per cryoDRGN seed found."""
    out: dict[tuple[str, int], list[dict]] = {}
    if scores.is_file():
        for r in json.loads(scores.read_text()):
            if r.get("tool") == "cryodrgn" and r.get("epoch") in (5, 20):
                out.setdefault((r["preset"], r["epoch"]), []).append(
                    {"ari": r.get("ari"), "rho": r.get("rho_best"), "state_acc": r.get("state_acc"),
                     "motion_r2": r.get("motion_r2")})
    for d in dirs:
        for preset in PRESETS:
            for epoch in (5, 20):
                for path in sorted((d / preset).glob(f"*.e{epoch}.metrics.json")):
                    ext = [r for r in json.loads(path.read_text()).get("results", []) if r.get("name") == "cryodrgn"]
                    if ext:  # the same z scored beside each variant: once per folder
                        out.setdefault((preset, epoch), []).append(_latent(ext[0]))
                        break
    return out


def _fmt(values: list) -> str:
    return " / ".join("–" if v is None else f"{v:.4f}" for v in values) or "–"


def verdict(mine: list[float], theirs: list[float], floor: float | None = None) -> str:
    if not mine or any(v is None for v in mine) or not theirs:
        return "not measured"
    if floor is not None and min(mine) < floor:
        return f"short (< {floor})"
    if min(mine) >= max(theirs):
        return "met"
    return "met on means" if statistics.mean(mine) >= statistics.mean(theirs) else "short"


def table(name: str, mine: dict, ref: dict, cryo: dict) -> list[str]:
    lines = [f"### {name}", "", "| preset | epochs | measure | ours (seeds) | cryoDRGN (seeds) | verdict |",
             "| --- | ---: | --- | ---: | ---: | --- |"]
    for preset, metrics in PRESETS.items():
        for epoch in (5, 20):
            rows = mine.get((preset, epoch), [])
            theirs = cryo.get((preset, epoch), [])
            for m in metrics:
                mv = [r[m] for r in rows]
                tv = [r[m] for r in theirs if r.get(m) is not None]
                floor = 0.95 if (m == "ari" and epoch == 20) else None
                lines.append(f"| {preset} | {epoch} | {LABELS[m]} | {_fmt(mv)} | {_fmt(tv)} | "
                             f"{verdict(mv, tv, floor)} |")
        mv = [r["fsc"] for r in mine.get((preset, 20), [])]
        rv = [r["fsc"] for r in ref.get((preset, 20), []) if r["fsc"] is not None]
        held = ("not measured" if not mv or not rv or None in mv
                else "held" if min(mv) >= min(rv) else "short")
        lines.append(f"| {preset} | 20 | per-image FSC-AUC | {_fmt(mv)} | today's defaults {_fmt(rv)} | {held} |")
    verdicts = [line.split("|")[-2].strip() for line in lines[4:]]
    met = sum(v in ("met", "held") for v in verdicts)
    means = sum(v == "met on means" for v in verdicts)
    return lines + ["", f"{name}: {met} of {len(verdicts)} points met on every seed, {means} more on the means.", ""]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--setting", action="append", default=[], metavar="NAME=DIR:VARIANT[,DIR:VARIANT]",
                    help="a setting, one DIR:VARIANT per seed (default: the recorded settings)")
    ap.add_argument("--reference", default=SETTINGS["default"], metavar="DIR:VARIANT[,...]",
                    help="today's defaults, for the per-image FSC-AUC (default: session 21's two seeds)")
    ap.add_argument("--cryodrgn-scores", type=Path, default=S10, help="session 10's latent_scores.json")
    ap.add_argument("--cryodrgn-dir", type=Path, action="append", default=None,
                    help="a screen OUT folder with cryoDRGN latents scored beside ours (default: session 25's)")
    ap.add_argument("--root", type=Path, default=RESULTS, help="relative DIRs are under this folder")
    args = ap.parse_args(argv)
    settings = dict(s.split("=", 1) for s in args.setting) if args.setting else SETTINGS
    dirs = args.cryodrgn_dir or [args.root / d for d in CRYODRGN_DIRS]
    cryo = cryodrgn(args.cryodrgn_scores, dirs)
    ref = ours(args.reference, args.root)
    for name, spec in settings.items():
        print("\n".join(table(name, ours(spec, args.root), ref, cryo)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
