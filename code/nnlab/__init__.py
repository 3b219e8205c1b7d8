"""nnlab: train and measure every network of the executable deep-learning book."""

__version__ = "0.1.0"
