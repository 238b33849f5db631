"""The table of gpu_issue17_screen.sh: per preset, epoch count and variant, GaussianEM's latent metrics beside
cryoDRGN's on the same particles (its z at the same epoch, scored by the same code).

  python benchmarks/accuracy/issue17_table.py OUT

Reads OUT/PRESET/VARIANT.eE.metrics.json (``gaussianem benchmark``) and OUT/PRESET/VARIANT.log.jsonl or
VARIANT.epochs.jsonl (the KL of the scored epoch); prints one markdown row per (preset, epochs, tool).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HEAD = ("| preset | epochs | tool | per-image FSC-AUC | ARI | abs(ρ) best | state probe acc. | motion probe R² | "
        "KL | KL amp. |\n| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")


def _f(v) -> str:
    return "–" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def _kl(log: Path, epoch: int, key: str = "kl") -> float | None:
    """The mean KL term of ``epoch`` in a GaussianEM log.jsonl (None when absent); ``key="kl_amplitude"``: its
    part on the latent split's amplitude dimensions (logged since session 25)."""
    if not log.is_file():  # a packed screen keeps only the epoch records
        log = log.with_name(log.name.replace(".log.jsonl", ".epochs.jsonl"))
    if not log.is_file():
        return None
    for line in log.read_text().splitlines():
        row = json.loads(line)
        if row.get("type") == "epoch" and row.get("epoch") == epoch:
            return row.get(key)
    return None


def rows(out: Path) -> list[str]:
    lines, seen_external = [], set()
    for path in sorted(out.glob("*/*.e*.metrics.json")):
        m = re.fullmatch(r"(.+)\.e(\d+)\.metrics\.json", path.name)
        if m is None:
            continue
        variant, epoch, preset = m.group(1), int(m.group(2)), path.parent.name
        for r in json.loads(path.read_text()).get("results", []):
            name = r.get("name") or r.get("tool") or "?"
            external = name != "gaussianem"
            if external and (preset, epoch) in seen_external:
                continue  # the same cryoDRGN z scored beside each variant: one row
            seen_external.add((preset, epoch)) if external else None
            lat = r.get("latent", {})
            tool = name if external else f"gaussianem {variant}"
            log = path.parent / f"{variant}.log.jsonl"
            kl, kl_amp = (None, None) if external else (_kl(log, epoch), _kl(log, epoch, "kl_amplitude"))
            lines.append("| " + " | ".join([
                preset, str(epoch), tool, _f((r.get("per_image_fsc_auc") or {}).get("mean")),
                _f((lat.get("kmeans") or {}).get("ari")), _f((lat.get("spearman") or {}).get("best")),
                _f((lat.get("state_probe") or {}).get("accuracy")), _f((lat.get("motion_probe") or {}).get("r2")),
                _f(kl), _f(kl_amp)]) + " |")
    return lines


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else Path("out")
    print(HEAD)
    print("\n".join(sorted(rows(out), key=lambda s: s.split(" | ")[:2])))
    for steps in sorted(out.glob("*/p.steps")):
        print(f"\n{steps.parent.name}:\n" + steps.read_text().strip())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
