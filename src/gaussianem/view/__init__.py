"""``gaussianem view``: explore a trained run's latent space live in the browser.

- :mod:`gaussianem.view.session`: everything that is not a web page (the model loaded once, the latent map,
  decoding a latent point into a Gaussian cloud, trajectories, particle subsets, exports); usable without Dash.
- :mod:`gaussianem.view.figures`: Plotly figures of the latent map and of a Gaussian cloud.
- :mod:`gaussianem.view.app`: the Dash app (layout and callbacks) and the local server.
"""
