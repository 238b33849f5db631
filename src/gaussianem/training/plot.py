"""Loss plot of a run from its ``log.jsonl`` (written atomically as ``loss.png``)."""

from __future__ import annotations

import json
from pathlib import Path

from gaussianem.io.writes import atomic_path
from gaussianem.training.objective import LOSS_TERMS


def read_log(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill
                continue
    return out


def plot_losses(log_path: str | Path, out_path: str | Path) -> None:
    """Per-step total and render loss (thin) and per-epoch means (markers), log scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_log(log_path)
    steps = [r for r in records if r.get("type") == "step"]
    epochs = [r for r in records if r.get("type") == "epoch"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    terms = ["loss", *LOSS_TERMS]
    for key in terms[:2]:
        xs = [r["step"] for r in steps if key in r]
        if xs:
            axes[0].plot(xs, [r[key] for r in steps if key in r], lw=0.6, label=key)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss")
    axes[0].set_title("per step")
    for key in terms:
        xs = [r["epoch"] for r in epochs if r.get(key, 0) > 0]
        if xs:
            axes[1].semilogy(xs, [r[key] for r in epochs if r.get(key, 0) > 0], "o-", label=key)
    axes[1].set_xlabel("epoch")
    axes[1].set_title("epoch means (unweighted terms)")
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
