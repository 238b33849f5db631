"""GaussianEM: cryo-EM heterogeneity analysis with 3D Gaussians."""

__version__ = "0.1.0"
