"""trpo-ng: natural-gradient policy optimisation for PyTorch and Gymnasium."""

__version__ = "0.1.0"
