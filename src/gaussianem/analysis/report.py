"""The analysis report: one self-contained ``report.html`` (PNG images base64-embedded, no scripts, no external
resources) and a ChimeraX command script ``chimerax.cxc``."""

from __future__ import annotations

import base64
import datetime
import html
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gaussianem.io.writes import atomic_path

log = logging.getLogger(__name__)

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1200px;color:#222}
h1{font-size:1.6em;margin-bottom:0}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
.meta{color:#666;font-size:.9em}.row{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
figure{margin:0 0 8px 0}figcaption{font-size:.8em;color:#555;text-align:center}
img{max-width:100%;image-rendering:auto}.row figure img{max-width:560px}.thumb img{width:180px;border:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f3f3f3}pre{background:#f6f6f6;padding:10px;overflow-x:auto;font-size:.85em}
.views{display:flex;flex-direction:column;gap:6px}.views figure img{width:900px;max-width:100%}
.lead{background:#eef4fb;border-left:4px solid #4477aa;padding:6px 12px}.lead pre{background:#fff;margin:4px 0}
"""


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_png(img: np.ndarray, cmap: str = "gray") -> bytes:
    """A 2-D array (values in [0, 1]) -> PNG bytes, first row at the top."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    plt.imsave(buf, np.asarray(img, np.float64), cmap=cmap, vmin=0.0, vmax=1.0, format="png", origin="lower")
    return buf.getvalue()


def read_log(path: Path) -> list[dict]:
    """Records of a ``log.jsonl`` (one JSON object a line); unreadable lines are skipped with a warning."""
    out = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            log.warning("%s line %d is not JSON: skipped", path, i + 1)
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def plot_loss_curves(records: list[dict]) -> bytes | None:
    """Every numeric field whose name holds 'loss' (or is 'kl'), against 'epoch'/'step'/'iteration' if present,
    one panel per field -> PNG bytes, or None when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys: list[str] = []
    for r in records:
        for k, v in r.items():
            if k not in keys and isinstance(v, (int, float)) and not isinstance(v, bool) and \
                    ("loss" in k.lower() or k.lower() in ("kl", "fsc_auc", "lr")):
                keys.append(k)
    if not keys:
        return None
    xkey = next((k for k in ("step", "iteration", "global_step", "epoch") if any(k in r for r in records)), None)
    cols = min(len(keys), 3)
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax, k in zip(axes.ravel(), keys, strict=False):
        pts = [(r.get(xkey, i) if xkey else i, r[k]) for i, r in enumerate(records)
               if isinstance(r.get(k), (int, float))]
        x, y = zip(*pts, strict=True)
        ax.plot(x, y, lw=1, color="#4477aa")
        ax.set_title(k, fontsize=9)
        ax.set_xlabel(xkey or "record", fontsize=8)
        if min(y) > 0 and max(y) / max(min(y), 1e-30) > 100:
            ax.set_yscale("log")
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


@dataclass
class Report:
    """Sections of HTML built up by the analysis and written once at the end."""

    title: str
    meta: dict[str, str] = field(default_factory=dict)
    parts: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def paragraph(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def figures(self, items: list[tuple[bytes, str]], thumb: bool = False) -> None:
        """A row of images with captions."""
        cls = ' class="thumb"' if thumb else ""
        figs = "".join(f'<figure{cls}><img alt="{html.escape(c)}" src="{png_data_uri(p)}">'
                       f"<figcaption>{html.escape(c)}</figcaption></figure>" for p, c in items)
        self.parts.append(f'<div class="row">{figs}</div>')

    def views(self, items: list[tuple[bytes, str]]) -> None:
        """Large labelled pictures (the state views), one per row at their own width."""
        figs = "".join(f'<figure><img alt="{html.escape(c)}" src="{png_data_uri(p)}"></figure>' for p, c in items)
        self.parts.append(f'<div class="views">{figs}</div>')

    def lead(self, text: str, command: str) -> None:
        """A highlighted line and a command to copy (the first thing a reader sees)."""
        self.parts.append(f'<div class="lead"><p>{html.escape(text)}</p><pre>{html.escape(command)}</pre></div>')

    def table(self, header: list[str], rows: list[list[object]]) -> None:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def code(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def render(self) -> str:
        meta = "<br>".join(f"{html.escape(k)}: {html.escape(v)}" for k, v in self.meta.items())
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1><p class=\"meta\">{meta}<br>written {stamp}</p>"
                + "\n".join(self.parts) + "</body></html>\n")

    def write(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(self.render(), encoding="utf-8")


@dataclass
class CxcVolume:
    """A volume (or volume series) for the ChimeraX script: path relative to the script, contour level."""

    path: str
    level: float
    color: str = "#4477aa"
    series: bool = False
    shown: bool = False


def write_chimerax_script(
    path: Path, consensus: CxcVolume, volumes: list[CxcVolume], models: list[str] | None = None,
) -> str:
    """Write ``chimerax.cxc``: the consensus map (model #1, transparent mesh) and each volume (or series) on top,
    the first shown and the rest hidden (toggle them in the Models panel); pseudo-atomic models after.

    ChimeraX runs a .cxc with the current directory set to the script's folder, so paths are relative.
    Returns the script text.
    """
    lines = ["# GaussianEM analysis: open in ChimeraX with  chimerax chimerax.cxc  (or: open chimerax.cxc)",
             f"open {_q(consensus.path)}",
             f"volume #1 level {consensus.level:.6g} style mesh color #999999"]
    mid = 2
    for v in volumes:
        opt = " vseries true" if v.series else ""
        lines.append(f"open {_q(v.path)}{opt}")
        lines.append(f"volume #{mid} level {v.level:.6g} color {v.color} transparency 0.3")
        if not v.shown:
            lines.append(f"hide #{mid} models")
        mid += 1
    for m in models or []:
        lines.append(f"open {_q(m)}")
        lines.append(f"hide #{mid} models")
        mid += 1
    lines += ["view", "set bgColor white"]
    text = "\n".join(lines) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return text


def _q(p: str) -> str:
    return f'"{p}"' if " " in p else p
