"""Score an analysis's trajectories against a simulation's ground-truth volumes (issue 17: "a trajectory whose end
volumes match the motion's ends"), and its state volumes against the truth's states.

  python benchmarks/accuracy/trajectory_vs_truth.py ANALYSIS_DIR SIM_DIR [--json OUT.json]

For each trajectory folder of ``gaussianem analyze`` (``motionK/``, ``pcK/``: ``vol_000.mrc`` ... in order) it prints
the ground-truth volume that each end matches best (masked FSC-AUC; the truth's state name, bin and coordinate from
``simulation.json``), the correlation of the trajectory's change with the truth's change between those two volumes,
and how far along that change each volume of the trajectory lies (0 at the first, 1 = the matched truth's change).
For ``states/vol_*.mrc`` it prints the best-matching truth volume of each.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gaussianem.evaluation.metrics import load_truth, spherical_mask
from gaussianem.evaluation.trajectory import fsc_auc_against, trajectory_against_truth
from gaussianem.io.mrc import read_volume


def _label(spec: dict, index: int) -> str:
    for v in spec.get("volumes", []):
        if int(v.get("volume_index", -1)) == index:
            parts = [str(v.get("state_name", v.get("state", "")))]
            if v.get("bin") is not None:
                parts.append(f"bin {v['bin']}")
            for key in ("hinge_angle_deg", "coordinate"):
                if v.get(key) is not None:
                    parts.append(f"{key} {v[key]:g}")
                    break
            return f"{index} ({', '.join(parts)})"
    return str(index)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("analysis", type=Path)
    p.add_argument("sim", type=Path)
    p.add_argument("--json", type=Path, help="also write every number here")
    args = p.parse_args(argv)
    truth = load_truth(args.sim)
    n_volumes = int(truth.volume_index.max()) + 1
    ref = [truth.volume(i)[0] for i in range(n_volumes)]
    result: dict = {"analysis": str(args.analysis), "sim": str(args.sim), "trajectories": {}, "states": []}
    print("| trajectory | first end matches | last end matches | change correlation | progress (0 → 1) |")
    print("| --- | --- | --- | ---: | --- |")
    folders = sorted(d for d in args.analysis.iterdir() if d.is_dir() and d.name.startswith(("motion", "pc")))
    for folder in folders:
        vols = sorted(folder.glob("vol_*.mrc"))
        if len(vols) < 2:
            continue
        got = trajectory_against_truth([read_volume(v)[0] for v in vols], ref)
        result["trajectories"][folder.name] = got
        cc = got["change_correlation"]
        prog = "–" if got["progress"] is None else " ".join(f"{x:.2f}" for x in got["progress"])
        print(f"| {folder.name} | {_label(truth.spec, got['match_first'])} | {_label(truth.spec, got['match_last'])} "
              f"| {'–' if cc is None else f'{cc:.3f}'} | {prog} |")
    states = sorted((args.analysis / "states").glob("vol_*.mrc"))
    if states:
        import torch

        box = ref[0].shape[-1]
        mask = spherical_mask(box)
        t_ref = [torch.as_tensor(r, dtype=torch.float64) for r in ref]
        print("\n| state volume | best truth volume | FSC-AUC |")
        print("| --- | --- | ---: |")
        for s in states:
            vol = torch.as_tensor(read_volume(s)[0], dtype=torch.float64)
            scores = fsc_auc_against(vol, t_ref, mask)
            best = max(range(len(scores)), key=scores.__getitem__)
            result["states"].append({"file": s.name, "match": best, "fsc_auc": scores})
            print(f"| {s.name} | {_label(truth.spec, best)} | {scores[best]:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
