"""Turn ``gaussianem benchmark`` outputs into result rows, and result rows into the RESULTS.md table.

  python benchmarks/accuracy/collect_results.py OUT/metrics.json --preset adk --device H100 --tsv results.tsv \
      --jsonl results.jsonl [--setting k=v ...] [--timing k=v ...]
  python benchmarks/accuracy/collect_results.py --markdown RESULTS_TABLE.md results.jsonl [more.jsonl ...]

One row per (preset, tool). The jsonl rows keep every summary number (not the per-particle lists).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from pathlib import Path

COLUMNS = [
    ("preset", "preset"),
    ("tool", "tool"),
    ("per_image_fsc_auc", "per-image FSC-AUC"),
    ("per_image_fsc_auc_sd", "sd"),
    ("per_state_fsc_auc", "per-state FSC-AUC"),
    ("consensus_fsc_auc", "consensus FSC-AUC"),
    ("spearman_pc1", "abs(ρ) PC1"),
    ("spearman_best", "abs(ρ) best"),
    ("spearman_linear_cv", "abs(ρ) linear CV"),
    ("ari", "ARI"),
    ("neighbourhood", "kNN sim."),
    ("train_seconds", "train s"),
    ("particles_per_second", "particles/s"),
    ("loop_particles_per_second", "in-loop particles/s"),
    ("steady_particles_per_second", "steady-state particles/s"),
    ("device", "device"),
    ("date", "date"),
]


def epoch_seconds(tool: str, path: str | None) -> list[float] | None:
    """Seconds of each training epoch, as the tool itself logs them (None: no log or no epoch in it).

    GaussianEM: ``{"type": "epoch", "seconds": ...}`` rows of log.jsonl; cryoDRGN: the ``Epoch: N ... Finished in
    H:MM:SS`` lines of train_vae's log.
    """
    if not path or not Path(path).is_file():
        return None
    out = []
    for line in Path(path).read_text(errors="replace").splitlines():
        if tool == "gaussianem":
            if line.startswith("{") and '"epoch"' in line:
                row = json.loads(line)
                if row.get("type") == "epoch" and "seconds" in row:
                    out.append(float(row["seconds"]))
        else:
            m = re.search(r"Epoch: \d+ .*Finished in (\d+):(\d+):([\d.]+)", line)
            if m:
                h, mi, se = m.groups()
                out.append(3600 * int(h) + 60 * int(mi) + float(se))
    return out or None


def loop_rates(epochs: list[float] | None, particle_epochs: float | None) -> dict:
    """In-loop seconds and particles/s from per-epoch seconds: over all epochs, and in steady state (the epochs
    after the first, which holds GaussianEM's compilation and CUDA-graph capture and cryoDRGN's warm-up)."""
    if not epochs or not particle_epochs:
        return {}
    per_epoch = particle_epochs / len(epochs)
    out = {"loop_seconds": sum(epochs), "loop_particles_per_second": particle_epochs / sum(epochs)}
    if len(epochs) > 1:
        out["steady_particles_per_second"] = per_epoch * (len(epochs) - 1) / sum(epochs[1:])
    return out


def overhead_seconds(path: str | None) -> dict:
    """GaussianEM's time outside its training steps, from log.jsonl's ``setup`` and ``epoch_outputs`` records:
    {"setup_s", "evaluate_s", "save_s", "plot_s"} summed over the run ({} for logs without them)."""
    if not path or not Path(path).is_file():
        return {}
    out: dict[str, float] = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        row = json.loads(line)
        if row.get("type") == "setup":
            out["setup_s"] = out.get("setup_s", 0.0) + float(row["seconds"])
        elif row.get("type") == "epoch_outputs":
            for k in ("evaluate_s", "save_s", "plot_s"):
                out[k] = out.get(k, 0.0) + float(row.get(k, 0.0))
    return {k: round(v, 3) for k, v in out.items()}


def _kv(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def row_of(result: dict, preset: str, device: str) -> dict:
    lat = result["latent"]
    cons = result.get("consensus_fsc_auc", {})
    baseline = cons.get("simulator consensus") or cons.get("base cloud") or {}
    return {
        "preset": preset,
        "tool": result.get("name") or result.get("tool"),
        "per_image_fsc_auc": result["per_image_fsc_auc"]["mean"],
        "per_image_fsc_auc_sd": result["per_image_fsc_auc"]["std"],
        "per_image_n": result["per_image_fsc_auc"]["n"],
        "per_state_fsc_auc": result["per_state_fsc_auc"]["mean"],
        "per_state_n": result["per_state_fsc_auc"]["n"],
        "consensus_fsc_auc": baseline.get("mean"),
        "spearman_pc1": lat["spearman"]["pc1"],
        "spearman_best": lat["spearman"]["best"],
        "spearman_linear_cv": lat["spearman"]["linear_cv"],
        "ari": lat["kmeans"]["ari"],
        "ari_k": lat["kmeans"]["k"],
        "neighbourhood": lat["neighbourhood"]["similarity"],
        "neighbourhood_chance": lat["neighbourhood"]["chance"],
        "train_seconds": result.get("train_seconds"),
        "particle_epochs": result.get("particle_epochs"),
        "particles_per_second": result.get("particles_per_second"),
        "volume_transform": (result.get("volume_transform") or {}).get("transform"),
        "device": device,
        "date": datetime.date.today().isoformat(),
    }


def _cell(v) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}"
    return str(v)


def append(args: argparse.Namespace) -> None:
    results = json.loads(Path(args.metrics).read_text())["results"]
    settings, timing = _kv(args.setting), _kv(args.timing)
    tsv, jsonl = Path(args.tsv), Path(args.jsonl)
    new = not tsv.is_file()
    with open(tsv, "a") as t, open(jsonl, "a") as j:
        if new:
            t.write("\t".join(k for k, _ in COLUMNS) + "\n")
        for r in results:
            row = row_of(r, args.preset, args.device)
            row.update({"settings": settings, "timing": timing})
            epochs = epoch_seconds(row["tool"], args.gem_log if row["tool"] == "gaussianem" else args.cryodrgn_log)
            row.update(loop_rates(epochs, row.get("particle_epochs")))
            if row["tool"] == "gaussianem":
                row["outside_steps"] = overhead_seconds(args.gem_log)
            t.write("\t".join(_cell(row.get(k)) for k, _ in COLUMNS) + "\n")
            j.write(json.dumps(row) + "\n")
            print(f"{args.preset} {row['tool']}: per-image FSC-AUC {_cell(row['per_image_fsc_auc'])}, "
                  f"particles/s {_cell(row['particles_per_second'])}")


def markdown(args: argparse.Namespace) -> None:
    rows = []
    for path in args.jsonl_files:
        rows += [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    lines = ["| " + " | ".join(label for _, label in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(_cell(r.get(k)) for k, _ in COLUMNS) + " |")
    Path(args.markdown).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.markdown} ({len(rows)} rows)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("metrics", nargs="?", help="metrics.json of gaussianem benchmark")
    p.add_argument("--preset", default="?")
    p.add_argument("--device", default="?")
    p.add_argument("--setting", nargs="*")
    p.add_argument("--timing", nargs="*")
    p.add_argument("--gem-log", help="GaussianEM run's log.jsonl (in-loop epoch seconds)")
    p.add_argument("--cryodrgn-log", help="cryoDRGN train_vae's log (in-loop epoch seconds)")
    p.add_argument("--tsv", default="results.tsv")
    p.add_argument("--jsonl", default="results.jsonl")
    p.add_argument("--markdown", help="write the table of the given jsonl files (positional) to this file")
    p.add_argument("jsonl_files", nargs="*", default=[])
    args = p.parse_args(argv)
    if args.markdown:
        if args.metrics:
            args.jsonl_files.insert(0, args.metrics)
        markdown(args)
    elif args.metrics:
        append(args)
    else:
        p.error("give a metrics.json, or --markdown OUT with jsonl files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
