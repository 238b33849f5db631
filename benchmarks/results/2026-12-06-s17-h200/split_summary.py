"""The session-17 screen's runs grouped by variant (seeds together): per preset and epoch, the range of each
metric over the seeds (run in this folder: reads s17*/PRESET/VARIANT.eE.metrics.json)."""

import glob
import json
import re
from collections import defaultdict

METRICS = (("per-image FSC-AUC", ("per_image_fsc_auc", "mean")), ("ARI", ("latent", "kmeans", "ari")),
           ("abs(ρ) best", ("latent", "spearman", "best")), ("state probe", ("latent", "state_probe", "accuracy")),
           ("motion R²", ("latent", "motion_probe", "r2")))


def get(d: dict, keys: tuple[str, ...]) -> float | None:
    for k in keys:
        d = (d or {}).get(k)
    return d


groups = defaultdict(list)
for path in sorted(glob.glob("s17*/*/*.e*.metrics.json")):
    _, preset, name = path.split("/")
    run, epoch = re.match(r"(.*)\.e(\d+)\.metrics\.json$", name).groups()
    variant = re.sub(r"_s\d+$", "", run)
    groups[(preset, int(epoch), variant)].append(json.load(open(path))["results"][0])
print("| preset | epoch | variant | runs | " + " | ".join(m for m, _ in METRICS) + " |")
print("| --- | ---: | --- | ---: |" + " ---: |" * len(METRICS))
for (preset, epoch, variant), results in sorted(groups.items()):
    cells = []
    for _, keys in METRICS:
        values = [v for v in (get(r, keys) for r in results) if v is not None]
        cells.append("–" if not values else f"{values[0]:.3f}" if len(values) == 1
                     else f"{min(values):.3f}–{max(values):.3f}")
    print(f"| {preset} | {epoch} | {variant} | {len(results)} | " + " | ".join(cells) + " |")
