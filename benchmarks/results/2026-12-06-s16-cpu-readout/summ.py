"""toy_summary.md from the toy runs' `benchmark` folders (bench_NAME_eE/metrics.json in the working directory)."""

import glob
import json
import re


def cell(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


rows = []
for path in glob.glob("bench_*/metrics.json"):
    match = re.match(r"bench_(.*)_e(\d+)$", path.split("/")[0])
    run, epoch = match.group(1), int(match.group(2))
    result = json.load(open(path))["results"][0]
    lat = result["latent"]
    ari = (lat.get("kmeans") or {}).get("ari")
    probe = (lat.get("state_probe") or {}).get("accuracy")
    rho = (lat.get("spearman") or {}).get("best")
    r2 = (lat.get("motion_probe") or {}).get("r2")
    fsc = result["per_image_fsc_auc"]["mean"]
    preset = ("adk" if run.startswith(("adk_", "a_")) else "tcr-mixed" if run.startswith(("mx_", "m_"))
              else "tcr-compositional")
    rows.append((preset, run, epoch, ari, probe, rho, r2, fsc))
print("| preset | run | epoch | ARI | state probe | abs(ρ) best | motion R² | per-image FSC-AUC |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for preset, run, epoch, *values in sorted(rows):
    if run != "mz":
        print(f"| {preset} | {run} | {epoch} | " + " | ".join(cell(x) for x in values[:-1]) + f" | {values[-1]:.4f} |")
