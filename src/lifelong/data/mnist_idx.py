"""MNIST-style IDX files, plain (memory-mapped, read lazily) or gzipped (read into memory).

An IDX file is a 4-byte magic (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lifelong.data.images import ArraySource
from lifelong.errors import DataError

__all__ = ["MnistData", "read_idx", "read_mnist"]

_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_MAX_HEADER = 4 + 4 * 255  # the dimension count is one byte


@dataclass
class MnistData:
    """Both splits of MNIST; images (N, 1, 28, 28) uint8, labels int64 in 0..9."""

    train: ArraySource
    train_labels: np.ndarray
    test: ArraySource
    test_labels: np.ndarray
    class_names: list[str]


def _header(head: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """The value type, the dimensions and the payload offset from a file's first bytes."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype = _TYPES.get(head[2])
    if dtype is None:
        raise DataError(f"{path}: unknown IDX type code 0x{head[2]:02X}")
    ndim = head[3]
    offset = 4 + 4 * ndim
    if len(head) < offset:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", head[4:offset])
    return dtype, dims, offset


def _check_size(path: Path, dims: tuple[int, ...], dtype: np.dtype, offset: int,
                total: int) -> None:
    expected = offset + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if total != expected:
        problem = "truncated" if total < expected else f"{total - expected} bytes too long"
        raise DataError(f"{path}: {problem} (dimensions {dims} need {expected} bytes, "
                        f"found {total})")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, gzipped when its name ends in ``.gz``.

    Args:
        path: The file.

    Returns:
        An array of the stored dimensions. Plain single-byte files come back as a
        read-only ``np.memmap`` (nothing read yet); multi-byte values are converted to
        native byte order, which reads them into memory.

    Raises:
        DataError: The file is missing, not gzip or IDX, or its size does not match
            its dimensions.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
            head, total = raw[:_MAX_HEADER], len(raw)
        else:
            with path.open("rb") as f:
                head = f.read(_MAX_HEADER)
            raw, total = None, path.stat().st_size
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: cannot read ({' '.join(str(err).split())})") from None
    dtype, dims, offset = _header(head, path)
    _check_size(path, dims, dtype, offset, total)
    if raw is not None:
        array = np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims)
    elif total == offset:  # no values: a zero-length memory map is not allowed
        array = np.zeros(dims, dtype=dtype)
    else:
        array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=dims)
    return array if dtype.isnative else array.astype(dtype.newbyteorder("="))


def _find(root: Path, stem: str, kind: str) -> Path:
    # Official names are train-images-idx3-ubyte[.gz]; some mirrors use train-images.idx3-ubyte.
    for name in (f"{stem}-{kind}", f"{stem}.{kind}"):
        for suffix in ("", ".gz"):
            if (root / (name + suffix)).is_file():
                return root / (name + suffix)
    raise DataError(f"{root}: no {stem}-{kind} or {stem}-{kind}.gz")


def _split(root: Path, prefix: str) -> tuple[ArraySource, np.ndarray]:
    images_path = _find(root, f"{prefix}-images", "idx3-ubyte")
    labels_path = _find(root, f"{prefix}-labels", "idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected N x H x W bytes, found {images.dtype} "
                        f"{images.shape}")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{labels_path}: expected a list of integer labels, found "
                        f"{labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images")
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{labels_path}: labels outside 0..9 "
                        f"(found {labels.min()}..{labels.max()})")
    return ArraySource(images[:, None], scale=255.0, name="mnist"), labels  # (N, 1, H, W)


def read_mnist(root: str | Path) -> MnistData:
    """Read MNIST (or a drop-in such as Fashion-MNIST) from its four IDX files.

    Args:
        root: A folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
            ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each possibly
            gzipped (``.gz``) or named with a dot (``train-images.idx3-ubyte``).

    Returns:
        Lazy (N, 1, 28, 28) uint8 sources for plain files (in memory for gzipped
        ones), int64 labels and the class names "0".."9".

    Raises:
        DataError: A file is missing or corrupt, or counts or labels do not match.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: directory not found")
    train, train_labels = _split(root, "train")
    test, test_labels = _split(root, "t10k")
    return MnistData(train=train, train_labels=train_labels, test=test,
                     test_labels=test_labels, class_names=[str(i) for i in range(10)])
