"""The Dash app of ``gaussianem view`` and its local server (127.0.0.1 only).

The callbacks are methods of :class:`ViewCallbacks` that take and return plain values (what ``dcc`` components
hold), so they can be called without a browser; :func:`build_app` wires them to the page. The page keeps the
current state in ``dcc.Store`` components: ``state`` (the latent point shown), ``clicks`` (the last two clicked
points), ``trajectory`` (the latent points of the trajectory being played) and ``selection`` (the lasso).
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

import numpy as np

from gaussianem.errors import InputError
from gaussianem.view import figures
from gaussianem.view.session import EXPORT_FORMATS, ViewSession

log = logging.getLogger(__name__)



def _no_update() -> Any:
    """``dash.no_update`` (None where dash is absent: the callbacks then run as plain functions)."""
    try:
        import dash
    except ImportError:
        return None
    return dash.no_update


def _fmt_z(z: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in np.asarray(z)[:8]) + (", …)" if len(z) > 8 else ")")


class ViewCallbacks:
    """The page's behaviour as plain functions of component values (see the module docstring)."""

    def __init__(self, session: ViewSession) -> None:
        self.s = session
        self._serial = 0

    # ------------------------------------------------------------------------------------------------- map
    def draw_map(self, method: str, colour_by: str):
        """Map radio + colour dropdown -> the map figure."""
        return figures.map_figure(self.s, method or "pca", colour_by or "class")

    # -------------------------------------------------------------------------------------------- the cloud
    def pick(self, trigger: str | None, click: dict | None, frame: int | None, trajectory: dict | None,
             method: str, clicks: list | None) -> tuple[Any, dict, list, str]:
        """A click on the map, a trajectory frame, or the first load -> (cloud figure, state, clicks, info); the
        state holds z, its label, the figure's tag and its position on the map (``xy``, for the map's marker).

        ``trigger`` is the id of the component that changed (``map``, ``frame``, ``trajectory``; None at load).
        """
        clicks = list(clicks or [])
        if trigger == "map" and click and click.get("points"):
            p = click["points"][0]
            particle = p.get("customdata")
            particle = int(particle[0] if isinstance(particle, list) else particle) if particle is not None else None
            z = self.s.latent_at(method or "pca", float(p["x"]), float(p["y"]), particle)
            where = f"particle {particle}" if particle is not None else f"map ({p['x']:.2f}, {p['y']:.2f})"
            label = f"{where}: z = {_fmt_z(z)}"
            clicks = [*clicks, {"z": z.tolist(), "label": where}][-2:]
        elif trigger in ("frame", "trajectory") and trajectory and trajectory.get("z"):
            pts = trajectory["z"]
            i = int(np.clip(frame or 0, 0, len(pts) - 1))
            z = np.asarray(pts[i])
            label = f"{trajectory['label']}: frame {i + 1}/{len(pts)}, z = {_fmt_z(z)}"
        else:
            z = self.s.z.mean(0)
            label = f"mean of the {self.s.n_particles:,} particles' z = {_fmt_z(z)}"
        cloud = self.s.decode(z)
        self._serial += 1
        tag = f"state-{self._serial}"
        fig = figures.cloud_figure(self.s, cloud, label, tag)
        disp = self.s.displacement(cloud)
        info = (f"{label} — decoded {self.s.n_gaussians:,} Gaussians in {1000 * cloud.seconds:.0f} ms; "
                f"displacement from the base cloud: mean {disp.mean():.2f} Å, max {disp.max():.2f} Å")
        xy = list(self.s.map_position(method or "pca", z))
        return fig, {"z": z.tolist(), "label": label, "tag": tag, "xy": xy}, clicks, info

    # ------------------------------------------------------------------------------------------ trajectories
    def make_trajectory(self, trigger: str | None, pc: int | None, n_frames: int | None,
                        clicks: list | None) -> tuple[Any, int, int, dict, str]:
        """'along PC' / 'between two clicks' buttons -> (trajectory store, slider max, slider value, marks,
        message)."""
        n = int(np.clip(n_frames or 10, 2, 100))
        try:
            if trigger == "traj-pc":
                pts = self.s.pc_path(int(pc or 1), n)
                label = f"PC{int(pc or 1)} (5th → 95th percentile)"
            elif trigger == "traj-line":
                if not clicks or len(clicks) < 2:
                    raise InputError("click two points on the map first")
                pts = self.s.line_path(clicks[0]["z"], clicks[1]["z"], n)
                label = f"{clicks[0]['label']} → {clicks[1]['label']}"
            else:
                return _no_update(), _no_update(), _no_update(), _no_update(), ""
        except InputError as exc:
            return _no_update(), _no_update(), _no_update(), _no_update(), str(exc)
        marks = {0: "1", n - 1: str(n)}
        return ({"z": pts.tolist(), "label": label}, n - 1, 0, marks,
                f"trajectory {label}: {n} frames (drag the slider or press play)")

    @staticmethod
    def toggle_play(n_clicks: int | None, disabled: bool) -> tuple[bool, str]:
        """The play button -> (interval disabled, button label)."""
        if not n_clicks:
            return True, "▶ play"
        playing = bool(disabled)  # it was stopped: start it
        return (not playing, "❚❚ pause" if playing else "▶ play")

    @staticmethod
    def tick(n_intervals: int | None, value: int | None, max_value: int | None) -> int:
        """The interval's tick -> the next frame (looping)."""
        top = int(max_value or 0)
        return 0 if top <= 0 else (int(value or 0) + 1) % (top + 1)

    # ------------------------------------------------------------------------------------------------ lasso
    def select(self, selection: dict | None, method: str) -> tuple[dict | None, str]:
        """The map's lasso/box selection -> (selection store, message)."""
        if not selection or not (selection.get("lassoPoints") or selection.get("range")):
            return None, "lasso particles on the map (drag), then write them"
        idx = self.s.particles_in(method or "pca", selection)
        store = {k: selection[k] for k in ("lassoPoints", "range") if selection.get(k)}
        store["method"] = method or "pca"
        return store, f"{len(idx):,} particles selected"

    def write_subset(self, n_clicks: int | None, fmt: str, name: str | None, selection: dict | None) -> str:
        """'write subset' -> a message naming the file written (or why not)."""
        if not n_clicks:
            return ""
        if not selection:
            return "nothing selected: lasso particles on the map first"
        try:
            idx = self.s.particles_in(selection.get("method", "pca"), selection)
            if len(idx) == 0:
                raise InputError("the selection holds no particles")
            path = self.s.subset_path(name, fmt)
            n = self.s.write_subset(idx, path)
        except (InputError, FileNotFoundError) as exc:
            return f"not written: {exc}"
        what = "source rows (cryoDRGN --ind)" if fmt == ".pkl" else "particles"
        return f"wrote {n:,} {what} to {path}"

    # ----------------------------------------------------------------------------------------------- export
    def export(self, n_clicks: int | None, formats: list[str] | None, state: dict | None) -> str:
        """'export' -> a message listing the files written for the state shown."""
        if not n_clicks:
            return ""
        if not state or "z" not in state:
            return "no state shown yet"
        try:
            paths = self.s.export_state(np.asarray(state["z"]), tuple(formats or ()))
        except InputError as exc:
            return f"not written: {exc}"
        return f"wrote {', '.join(p.name for p in paths)} to {paths[0].parent}"


# ------------------------------------------------------------------------------------------------------- layout
def _layout(s: ViewSession, initial: tuple):
    from dash import dcc, html

    umap_ok = s.umap_available()
    box = {"border": "1px solid #ddd", "borderRadius": "6px", "padding": "8px", "marginTop": "8px"}
    row = {"display": "flex", "gap": "8px", "alignItems": "center", "flexWrap": "wrap"}
    meta = (f"run {s.rundir or '(in memory)'} · epoch {s.epoch} · {s.n_particles:,} particles · zdim {s.zdim} · "
            f"{s.n_gaussians:,} Gaussians · classes: {s.label_source} · outputs go to {s.outdir}")
    pcs = [{"label": f"PC{i}", "value": i} for i in range(1, s.pca.n_components_ + 1)]
    return html.Div(style={"fontFamily": "Helvetica, Arial, sans-serif", "margin": "12px"}, children=[
        html.H2("GaussianEM view", style={"margin": "0"}),
        html.Div(meta, id="meta", style={"color": "#555", "fontSize": "0.85em"}),
        dcc.Store(id="state", data=initial[1]), dcc.Store(id="clicks", data=[]), dcc.Store(id="trajectory"),
        dcc.Store(id="selection"),
        html.Div(style={"display": "flex", "gap": "12px", "flexWrap": "wrap"}, children=[
            html.Div(style={"flex": "1 1 520px", "minWidth": "420px"}, children=[
                html.Div(style=row, children=[
                    dcc.RadioItems(id="method", value="pca", inline=True, options=[
                        {"label": " PCA ", "value": "pca"},
                        {"label": " UMAP" + ("" if umap_ok else " (install umap-learn)"), "value": "umap",
                         "disabled": not umap_ok}]),
                    html.Span("colour by"),
                    dcc.Dropdown(id="colour", value="class", clearable=False, style={"width": "160px"},
                                 options=[{"label": "class", "value": "class"}] +
                                 [{"label": f"z{i + 1}", "value": f"z{i + 1}"} for i in range(s.zdim)]),
                ]),
                dcc.Graph(id="map", config={"displaylogo": False, "scrollZoom": True}),
                html.Div("Click anywhere on the map to decode that latent point; drag to lasso particles "
                         "(UMAP has no inverse: a UMAP position shows the mean z of its 10 nearest particles).",
                         style={"fontSize": "0.8em", "color": "#666"}),
                html.Div(style=box, children=[
                    html.B("Particle subset "), html.Span(id="selected", children="lasso particles on the map"),
                    html.Div(style=row, children=[
                        dcc.Dropdown(id="subset-format", value=".star", clearable=False, style={"width": "230px"},
                                     options=[{"label": "RELION .star", "value": ".star"},
                                              {"label": "cryoSPARC .cs", "value": ".cs"},
                                              {"label": "cryoDRGN index .pkl", "value": ".pkl"}]),
                        dcc.Input(id="subset-name", placeholder="name (default subset_NNN)", type="text",
                                  style={"width": "220px"}),
                        html.Button("write subset", id="write-subset"),
                    ]),
                    html.Div(id="subset-message", style={"fontSize": "0.85em", "marginTop": "4px"}),
                ]),
            ]),
            html.Div(style={"flex": "1 1 560px", "minWidth": "440px"}, children=[
                dcc.Graph(id="cloud", figure=initial[0], config={"displaylogo": False}),
                html.Div(initial[3], id="info", style={"fontSize": "0.8em", "color": "#333"}),
                html.Div(style=box, children=[
                    html.B("Trajectory "),
                    html.Div(style=row, children=[
                        dcc.Dropdown(id="traj-dim", options=pcs, value=1, clearable=False, style={"width": "90px"}),
                        html.Button("along PC", id="traj-pc"),
                        html.Button("between the last two clicks", id="traj-line"),
                        html.Span("frames"),
                        dcc.Input(id="traj-n", type="number", value=10, min=2, max=100, style={"width": "60px"}),
                        html.Button("▶ play", id="play"),
                    ]),
                    dcc.Slider(id="frame", min=0, max=9, step=1, value=0, marks={0: "1", 9: "10"}),
                    dcc.Interval(id="player", interval=600, disabled=True),
                    html.Div(id="traj-message", style={"fontSize": "0.85em"}),
                ]),
                html.Div(style=box, children=[
                    html.B("Export the state shown "),
                    html.Div(style=row, children=[
                        dcc.Checklist(id="export-formats", value=list(EXPORT_FORMATS), inline=True,
                                      options=[{"label": " .mrc (voxelised) ", "value": "mrc"},
                                               {"label": " .ply ", "value": "ply"},
                                               {"label": " .pdb (pseudo-atomic) ", "value": "pdb"}]),
                        html.Button("export", id="export"),
                    ]),
                    html.Div(id="export-message", style={"fontSize": "0.85em", "marginTop": "4px"}),
                ]),
            ]),
        ]),
    ])


def build_app(session: ViewSession):
    """The Dash app for ``session`` (not yet served)."""
    import dash
    from dash import Input, Output, State

    cb = ViewCallbacks(session)
    app = dash.Dash(__name__, title="GaussianEM view", update_title=None, serve_locally=True)
    app.layout = _layout(session, cb.pick(None, None, None, None, "pca", []))  # the mean state drawn at load
    app.callback(Output("map", "figure"), Input("method", "value"), Input("colour", "value"))(cb.draw_map)

    @app.callback(Output("cloud", "figure"), Output("state", "data"), Output("clicks", "data"),
                  Output("info", "children"),
                  Input("map", "clickData"), Input("frame", "value"), Input("trajectory", "data"),
                  State("method", "value"), State("clicks", "data"), prevent_initial_call=True)
    def _pick(click, frame, trajectory, method, clicks):
        return cb.pick(dash.ctx.triggered_id, click, frame, trajectory, method, clicks)

    @app.callback(Output("map", "figure", allow_duplicate=True), Input("state", "data"), prevent_initial_call=True)
    def _marker(state):  # after the cloud is drawn: move the map's marker of the state shown (trace 1) only
        patch = dash.Patch()
        patch["data"][1]["x"] = [state["xy"][0]]
        patch["data"][1]["y"] = [state["xy"][1]]
        return patch

    @app.callback(Output("trajectory", "data"), Output("frame", "max"), Output("frame", "value"),
                  Output("frame", "marks"), Output("traj-message", "children"),
                  Input("traj-pc", "n_clicks"), Input("traj-line", "n_clicks"),
                  State("traj-dim", "value"), State("traj-n", "value"), State("clicks", "data"),
                  prevent_initial_call=True)
    def _trajectory(_a, _b, pc, n, clicks):
        return cb.make_trajectory(dash.ctx.triggered_id, pc, n, clicks)

    app.callback(Output("player", "disabled"), Output("play", "children"), Input("play", "n_clicks"),
                 State("player", "disabled"), prevent_initial_call=True)(cb.toggle_play)
    app.callback(Output("frame", "value", allow_duplicate=True), Input("player", "n_intervals"),
                 State("frame", "value"), State("frame", "max"), prevent_initial_call=True)(cb.tick)
    app.callback(Output("selection", "data"), Output("selected", "children"), Input("map", "selectedData"),
                 State("method", "value"))(cb.select)
    app.callback(Output("subset-message", "children"), Input("write-subset", "n_clicks"),
                 State("subset-format", "value"), State("subset-name", "value"), State("selection", "data"),
                 prevent_initial_call=True)(cb.write_subset)
    app.callback(Output("export-message", "children"), Input("export", "n_clicks"),
                 State("export-formats", "value"), State("state", "data"), prevent_initial_call=True)(cb.export)
    return app


class LocalServer:
    """The app served on ``host:port`` (port 0: a free one) by a thread; ``url`` once started."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0) -> None:
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request (-v shows our own debug)
        if port:  # werkzeug exits the process on a taken port: find out first (OSError)
            with socket.socket() as probe:
                probe.bind((host, port))
        self._server = make_server(host, port, app.server, threaded=True)
        self.url = f"http://{host}:{self._server.server_port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="gaussianem-view", daemon=True)

    def start(self) -> LocalServer:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
