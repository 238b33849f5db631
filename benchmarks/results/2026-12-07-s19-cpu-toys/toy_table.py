"""Session 19's toy table: every `bench_RUN_eE/metrics.json` under a folder -> toy_summary.md's rows.

    python toy_table.py /tmp/t19 > toy_summary.md   (run names: a_*, c_*, m_* = adk, tcr-compositional, tcr-mixed)
"""

import glob
import json
import sys

PRESETS = {"a": "adk", "c": "tcr-compositional", "m": "tcr-mixed"}


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main(folder: str) -> None:
    rows = []
    for path in glob.glob(f"{folder}/bench_*_e*/metrics.json"):
        run, epoch = path.split("/")[-2][len("bench_"):].rsplit("_e", 1)
        result = json.load(open(path))["results"][0]
        latent, preset = result["latent"], PRESETS[run.split("_")[0]]
        states = preset != "adk"
        rows.append((preset, run, int(epoch), fmt(latent["kmeans"]["ari"] if states else None),
                     fmt(latent["state_probe"].get("accuracy") if states else None),
                     fmt(latent["spearman"]["best"]), fmt(latent["motion_probe"]["r2"]),
                     f"{result['per_image_fsc_auc']['mean']:.4f}"))
    print("| preset | run | epoch | ARI | state probe | abs(ρ) best | motion R² | per-image FSC-AUC |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in sorted(rows):
        print("| " + " | ".join(map(str, row)) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
