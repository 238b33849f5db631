"""Plotly figures of ``gaussianem view``: the latent map and a decoded Gaussian cloud in 3D.

Figures are plain dicts (``{"data": [...], "layout": {...}}``), which ``dcc.Graph`` takes as they are: building
``plotly.graph_objects`` validates every array and costs a few hundred ms per click.
"""

from __future__ import annotations

import numpy as np

from gaussianem.view.session import Cloud, ViewSession

# Tol's qualitative colours (the report's class colours)
CLASS_COLOURS = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb", "#ee7733",
                 "#0077bb", "#33bbee", "#009988", "#cc3311", "#ee3377", "#999933", "#882255", "#44aa99"]
OPACITY_BANDS = ((0.25, 0.15), (0.5, 0.4), (0.75, 0.7), (np.inf, 0.95))  # (amplitude / reference below, opacity)
MAP_GRID = 150  # cells per side of the invisible layer that makes every map position clickable
MAX_MAP_POINTS = 200_000


def _round(a: np.ndarray, decimals: int = 3) -> np.ndarray:
    """Smaller JSON: float32 values rounded."""
    return np.round(np.asarray(a, np.float32), decimals)


def map_figure(session: ViewSession, method: str, colour_by: str = "class", max_points: int = MAX_MAP_POINTS) -> dict:
    """The latent map (particles as points, every position clickable) coloured by class or by a z dimension
    (``colour_by`` = ``"class"`` or ``"z3"`` for z's 3rd value); lasso is the drag mode."""
    xy = session.map_coordinates(method)
    xname, yname = session.axis_names(method)
    n = len(xy)
    shown = np.arange(n)
    if n > max_points:
        shown = np.sort(np.random.default_rng(0).choice(n, max_points, replace=False))
    lo, hi = xy.min(0), xy.max(0)
    pad = 0.05 * np.maximum(hi - lo, 1e-6)
    lo, hi = lo - pad, hi + pad
    gx, gy = np.linspace(lo[0], hi[0], MAP_GRID), np.linspace(lo[1], hi[1], MAP_GRID)
    traces = [dict(type="heatmap", x=_round(gx), y=_round(gy), z=np.zeros((MAP_GRID, MAP_GRID), np.int8),
                   opacity=0, showscale=False, name="map",
                   hovertemplate=f"{xname} %{{x:.2f}}, {yname} %{{y:.2f}}<extra>click: decode here</extra>"),
              # trace 1: the state shown (moved by the pick callback; SVG, so it sits above the WebGL points)
              dict(type="scatter", x=[], y=[], mode="markers", name="shown", showlegend=False, hoverinfo="skip",
                   marker={"symbol": "x-thin", "size": 16, "line": {"width": 3, "color": "black"}})]
    if colour_by.startswith("z") and colour_by[1:].isdigit():
        d = int(colour_by[1:]) - 1
        traces.append(dict(
            type="scattergl", x=_round(xy[shown, 0]), y=_round(xy[shown, 1]), customdata=shown, mode="markers",
            name="particles",
            marker={"size": 4, "color": _round(session.z[shown, d]), "colorscale": "Viridis", "opacity": 0.7,
                    "colorbar": {"title": {"text": colour_by}, "thickness": 12}},
            hovertemplate="particle %{customdata}<extra></extra>"))
    else:
        labels = session.labels
        for j in np.unique(labels):
            sel = shown[labels[shown] == j]
            traces.append(dict(
                type="scattergl", x=_round(xy[sel, 0]), y=_round(xy[sel, 1]), customdata=sel, mode="markers",
                name=f"class {j} ({int((labels == j).sum()):,})",
                marker={"size": 4, "color": CLASS_COLOURS[int(j) % len(CLASS_COLOURS)], "opacity": 0.7},
                hovertemplate=f"particle %{{customdata}}, class {j}<extra></extra>"))
    note = f" ({len(shown):,} of {n:,} particles drawn)" if len(shown) < n else ""
    layout = dict(
        title={"text": f"{method.upper() if xname.startswith('UMAP') else 'PCA'} of z{note}", "font": {"size": 14}},
        xaxis={"title": {"text": xname}, "range": [float(lo[0]), float(hi[0])]},
        yaxis={"title": {"text": yname}, "range": [float(lo[1]), float(hi[1])]},
        dragmode="lasso", clickmode="event", uirevision=method, margin={"l": 50, "r": 10, "t": 40, "b": 40},
        legend={"itemsizing": "constant", "font": {"size": 10}}, plot_bgcolor="white", height=520)
    return {"data": traces, "layout": layout}


def cloud_figure(session: ViewSession, cloud: Cloud, label: str, tag: str = "") -> dict:
    """A decoded cloud in 3D: colour = displacement from the base cloud (a fixed scale), marker size ~ width,
    opacity banded by amplitude (relative to the base cloud's 99th-percentile amplitude)."""
    idx = session.draw_index if session.draw_index is not None else np.arange(session.n_gaussians)
    pos = cloud.positions[idx]
    disp = session.displacement(cloud)[idx]
    ref_w = float(np.median(session.base_widths)) or 1.0
    size = np.clip(4.0 * cloud.widths[idx] / ref_w, 1.5, 14.0)
    ref_a = float(np.percentile(session.base_amplitudes, 99)) or 1.0
    rel = cloud.amplitudes[idx] / ref_a
    traces, lower = [], -np.inf
    for upper, opacity in OPACITY_BANDS:
        m = (rel >= lower) & (rel < upper)
        lower = upper
        if not m.any():
            continue
        traces.append(dict(
            type="scatter3d", x=_round(pos[m, 0], 2), y=_round(pos[m, 1], 2), z=_round(pos[m, 2], 2), mode="markers",
            name=f"amplitude < {upper:g}×" if np.isfinite(upper) else "amplitude high", opacity=opacity,
            marker={"size": _round(size[m], 1), "color": _round(disp[m], 2), "coloraxis": "coloraxis",
                    "line": {"width": 0}},
            hovertemplate="displacement %{marker.color:.2f} Å<extra></extra>", showlegend=False))
    half = session.view_half_width
    axis = {"range": [-half, half], "showbackground": True, "backgroundcolor": "#f7f7f7"}
    drawn = (f"drawing {len(idx):,} of {session.n_gaussians:,} Gaussians (a fixed random subset)"
             if len(idx) < session.n_gaussians else f"{session.n_gaussians:,} Gaussians")
    layout = dict(
        title={"text": f"{label}<br><sup>{drawn}; decoded in {1000 * cloud.seconds:.0f} ms</sup>",
               "font": {"size": 14}},
        scene={"xaxis": {**axis, "title": {"text": "x (Å)"}}, "yaxis": {**axis, "title": {"text": "y (Å)"}},
               "zaxis": {**axis, "title": {"text": "z (Å)"}}, "aspectmode": "cube",
               "camera": {"eye": {"x": 0.95, "y": 0.95, "z": 0.75}}},
        coloraxis={"colorscale": "Viridis", "cmin": 0.0, "cmax": session.displacement_max,
                   "colorbar": {"title": {"text": "displacement (Å)"}, "thickness": 12}},
        uirevision="cloud", margin={"l": 0, "r": 0, "t": 60, "b": 0}, height=560, meta={"tag": tag})
    return {"data": traces, "layout": layout}
