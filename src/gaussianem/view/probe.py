"""Probes of the view's page for automated checks (the headless-browser test and the screenshot benchmark):
JavaScript run in the page through WebDriver, and a polling wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

# the tag of the cloud drawn (ViewCallbacks.pick puts a new one in the figure's layout.meta at every state)
TAG_JS = ("const g = document.querySelector('#cloud .js-plotly-plot');"
          "return g && g.layout && g.layout.meta ? g.layout.meta.tag : null;")
# page clocks: window.__clicked at the map's click event, window.__drawn (and __tag) when the cloud is redrawn
CLOCK_JS = """
const m = document.querySelector('#map .js-plotly-plot'), c = document.querySelector('#cloud .js-plotly-plot');
m.on('plotly_click', () => { window.__clicked = performance.now(); });
c.on('plotly_afterplot', () => { window.__drawn = performance.now(); window.__tag = c.layout.meta.tag; });
"""
CLOCK_READ_JS = "return [window.__clicked, window.__drawn, window.__tag]"


def wait_for(fn: Callable[[], Any], timeout: float, what: str, poll: float = 0.02) -> Any:
    """Call ``fn`` until it returns something true (returned) or ``timeout`` seconds pass (TimeoutError)."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        v = fn()
        if v:
            return v
        time.sleep(poll)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def decode_seconds(n_gaussians: int = 60_000, repeats: int = 3, zdim: int = 8) -> list[float]:
    """Seconds of ``repeats`` decodes of one latent point by a view session over a model of the default layer sizes
    (``ModelSpec``) with ``n_gaussians`` random Gaussians, on the CPU, with the embedding cached as the view does."""
    import numpy as np
    import torch

    from gaussianem.gaussians import GaussianCloud
    from gaussianem.model.spec import ModelSpec
    from gaussianem.model.vae import GaussianVAE
    from gaussianem.view.session import ViewSession

    g = n_gaussians
    spec = ModelSpec(box_size=128, pixel_size_angstrom=1.5, n_gaussians=g, width_min=1.0, width_max=4.0, zdim=zdim)
    pos = torch.as_tensor(np.random.default_rng(0).normal(size=(g, 3)) * 25, dtype=torch.float32)
    model = GaussianVAE(GaussianCloud(pos, torch.full((g,), 2.0), torch.ones(g), 1.0, 4.0), spec).eval()
    z = np.random.default_rng(1).normal(size=(max(20, repeats), zdim))
    session = ViewSession(model, {"box_size": 128, "pixel_size_angstrom": 1.5}, 1, z, n_classes=2)
    clouds = [session.decode(z[i]) for i in range(repeats)]
    assert clouds[0].positions.shape == (g, 3)
    return [c.seconds for c in clouds]
