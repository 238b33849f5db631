"""Where a split run keeps adk's motion, and whether what it keeps still learns (issue 17).

  python benchmarks/accuracy/motion_location.py DIR:VARIANT [DIR:VARIANT ...] [--root benchmarks/results]

DIR is a ``gpu_issue17_screen.sh`` / ``gpu_issue17_call.sh`` OUT folder (relative DIRs are under ``--root``), with
``PRESET/VARIANT.eE.metrics.json`` (``gaussianem benchmark``) and ``PRESET/VARIANT.eE.groups.md``
(``benchmarks/accuracy/latent_groups.py``) at the scored epochs. One Markdown row per run:

- adk's best abs(ρ) at 5 / 10 / 20 and its rise from 5 to 20;
- adk's motion probe R² on the displacement part / the amplitude part of z at 5 and at 20, and the part that holds
  the motion at 5 (the larger R²);
- tcr-mixed's 2-class k-means ARI on all of z at 5 / 10 / 20.

Why (benchmarks/RESULTS.md, freeze-caps-2026-12-08): under ``--amplitude-encoder-freeze-steps`` whatever the
amplitude part holds at the freeze stays where it was; a run that keeps adk's motion there has abs(ρ) at 20 within
0.01 of its epoch-5 value, one that keeps it in the displacements rises like the defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"
EPOCHS = (5, 10, 20)


def latent(path: Path) -> dict:
    """``gaussianem benchmark``'s latent block for our run, or {} when the file is absent."""
    if not path.is_file():
        return {}
    for r in json.loads(path.read_text()).get("results", []):
        if r.get("name") == "gaussianem":
            return r.get("latent", {})
    return {}


def group_r2(path: Path) -> dict[str, float]:
    """latent_groups.py's table -> {"displacements": R², "amplitudes": R², "all": R²} (motion probe)."""
    out: dict[str, float] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].isdigit():
            continue
        key = next((k for k in ("displacements", "amplitudes", "all") if k in cells[1]), None)
        if key is not None and cells[3] not in ("–", ""):
            out[key] = float(cells[3])
    return out


def _f(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def row(base: Path, variant: str, label: str) -> str:
    rho = {e: (latent(base / "adk" / f"{variant}.e{e}.metrics.json").get("spearman") or {}).get("best")
           for e in EPOCHS}
    ari = {e: (latent(base / "tcr-mixed" / f"{variant}.e{e}.metrics.json").get("kmeans") or {}).get("ari")
           for e in EPOCHS}
    parts = {e: group_r2(base / "adk" / f"{variant}.e{e}.groups.md") for e in (5, 20)}
    rise = None if rho[5] is None or rho[20] is None else rho[20] - rho[5]
    split = " → ".join(f"{_f(parts[e].get('displacements'), 2)} / {_f(parts[e].get('amplitudes'), 2)}"
                       for e in (5, 20))
    at5 = parts[5]
    holder = ("–" if "displacements" not in at5 or "amplitudes" not in at5
              else "displacements" if at5["displacements"] >= at5["amplitudes"] else "amplitudes")
    return (f"| `{label}` | {' / '.join(_f(rho[e]) for e in EPOCHS)} | "
            f"{'–' if rise is None else f'{rise:+.3f}'} | {split} | {holder} | "
            f"{' / '.join(_f(ari[e]) for e in EPOCHS)} |")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", metavar="DIR:VARIANT")
    ap.add_argument("--root", type=Path, default=RESULTS, help="relative DIRs are under this folder")
    args = ap.parse_args(argv)
    lines = ["| run | adk abs(ρ) 5 / 10 / 20 | rise 5 → 20 | adk motion R², displacements / amplitudes, 5 → 20 | "
             "motion at 5 in | tcr-mixed ARI 5 / 10 / 20 |", "| --- | --- | ---: | --- | --- | --- |"]
    for item in args.runs:
        folder, variant = item.rsplit(":", 1)
        base = Path(folder) if Path(folder).is_absolute() else args.root / folder
        if not any(base.glob(f"*/{variant}.e*.metrics.json")):
            print(f"motion_location: no {variant}.eE.metrics.json under {base}/PRESET/ ({item})", file=sys.stderr)
            return 2
        lines.append(row(base, variant, item))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
