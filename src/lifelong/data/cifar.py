"""CIFAR-10 and CIFAR-100 in the official "python version" layout (pickled batches).

The official files are Python 2 pickles of dicts holding a numpy array. They are read
with a restricted unpickler that can rebuild numpy arrays and nothing else, so a
tampered file cannot run code: any other global it names is refused with a DataError.
"""

from __future__ import annotations

import importlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lifelong.data.images import ArraySource
from lifelong.errors import DataError

__all__ = ["CifarData", "read_cifar10", "read_cifar100"]

_ROW = 3 * 32 * 32  # bytes of one image: R, G then B planes of 32 x 32, each row-major


@dataclass
class CifarData:
    """Both splits of CIFAR-10 or CIFAR-100; labels are int64 in 0..len(class_names)-1.

    The coarse fields hold CIFAR-100's 20 superclasses and are None for CIFAR-10.
    """

    train: ArraySource
    train_labels: np.ndarray
    test: ArraySource
    test_labels: np.ndarray
    class_names: list[str]
    train_coarse: np.ndarray | None = None
    test_coarse: np.ndarray | None = None
    coarse_names: list[str] | None = None


def _numpy_global(submodule: str, name: str) -> Callable[..., Any]:
    # numpy 2 moved numpy.core to numpy._core; old pickles still name numpy.core.
    for package in ("numpy._core", "numpy.core"):
        try:
            return getattr(importlib.import_module(f"{package}.{submodule}"), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"numpy has no {submodule}.{name}")


def _latin1_encode(text: Any, encoding: str = "latin1") -> bytes:
    # Python 3 pickles of protocol <= 2 store bytes as _codecs.encode(text, "latin1").
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError("_codecs.encode is only allowed for latin1 text")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # Protocol 5 pickles of arrays (a file re-saved by Python 3) use numeric._frombuffer.
    needed = [("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")]
    for package in ("numpy.core", "numpy._core"):
        for submodule, name in needed:
            allowed[(f"{package}.{submodule}", name)] = _numpy_global(submodule, name)
    return allowed


_ALLOWED = _allowed_globals()


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that only rebuilds numpy arrays, dtypes and scalars."""

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise DataError(f"{self.path}: refusing to unpickle {module}.{name} "
                            "(only numpy arrays are allowed)")
        return found


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _load(path: Path) -> dict[str, Any]:
    """The pickled dict at ``path`` with str keys (the official files have bytes keys)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        with path.open("rb") as f:
            obj = _SafeUnpickler(f, path).load()
    except DataError:
        raise
    except Exception as err:  # anything failing inside the unpickler is the file's fault
        raise DataError(f"{path}: not a readable pickle ({_one_line(err)})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _field(d: dict[str, Any], key: str, path: Path) -> Any:
    if key not in d:
        raise DataError(f"{path}: missing key {key!r}")
    return d[key]


def _names(d: dict[str, Any], key: str, path: Path) -> list[str]:
    value = _field(d, key, path)
    if not isinstance(value, (list, tuple)) or not value:
        raise DataError(f"{path}: {key!r} must be a non-empty list of names")
    names = []
    for v in value:
        if isinstance(v, bytes):
            v = v.decode("utf-8", errors="replace")
        if not isinstance(v, str):
            raise DataError(f"{path}: {key!r} holds a {type(v).__name__}, not a name")
        names.append(v)
    return names


def _images(d: dict[str, Any], path: Path) -> np.ndarray:
    data = _field(d, "data", path)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == _ROW):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be an N x {_ROW} uint8 array, found {got}")
    return data.reshape(-1, 3, 32, 32)  # (N, C, H, W), a view


def _labels(d: dict[str, Any], key: str, n: int, n_classes: int, path: Path) -> np.ndarray:
    value = np.asarray(_field(d, key, path))
    if value.size == 0:
        value = value.astype(np.int64)
    if value.ndim != 1 or not np.issubdtype(value.dtype, np.integer):
        raise DataError(f"{path}: {key!r} must be a list of integers")
    if len(value) != n:
        raise DataError(f"{path}: {len(value)} {key} for {n} images")
    if n and (value.min() < 0 or value.max() >= n_classes):
        raise DataError(f"{path}: {key} outside 0..{n_classes - 1} "
                        f"(found {value.min()}..{value.max()})")
    return value.astype(np.int64)


def _resolve(root: str | Path, dirname: str) -> Path:
    root = Path(root)
    if (root / dirname).is_dir():
        return root / dirname
    if root.is_dir():
        return root
    raise DataError(f"{root}: directory not found (expected {dirname}/ or a folder holding it)")


def read_cifar10(root: str | Path) -> CifarData:
    """Read CIFAR-10 from ``cifar-10-batches-py`` (``root`` is that folder or its parent).

    Args:
        root: The ``cifar-10-batches-py`` folder or a folder containing it.

    Returns:
        The 50000 training images of ``data_batch_1..5`` and the 10000 of ``test_batch``
        as (N, 3, 32, 32) uint8 sources, with int64 labels and the names of ``batches.meta``.

    Raises:
        DataError: A folder or file is missing, unreadable or not in the official layout.
    """
    d = _resolve(root, "cifar-10-batches-py")
    meta_path = d / "batches.meta"
    names = _names(_load(meta_path), "label_names", meta_path)
    images, labels = [], []
    for path in [d / f"data_batch_{i}" for i in range(1, 6)] + [d / "test_batch"]:
        batch = _load(path)
        x = _images(batch, path)
        images.append(x)
        labels.append(_labels(batch, "labels", len(x), len(names), path))
    return CifarData(
        train=ArraySource(np.concatenate(images[:5]), scale=255.0, name="cifar10"),
        train_labels=np.concatenate(labels[:5]),
        test=ArraySource(images[5], scale=255.0, name="cifar10"),
        test_labels=labels[5],
        class_names=names,
    )


def read_cifar100(root: str | Path) -> CifarData:
    """Read CIFAR-100 from ``cifar-100-python`` (``root`` is that folder or its parent).

    Args:
        root: The ``cifar-100-python`` folder or a folder containing it.

    Returns:
        ``train`` and ``test`` as (N, 3, 32, 32) uint8 sources with int64 fine labels
        (100 classes) and coarse labels (20 superclasses), names from ``meta``.

    Raises:
        DataError: A folder or file is missing, unreadable or not in the official layout.
    """
    d = _resolve(root, "cifar-100-python")
    meta_path = d / "meta"
    meta = _load(meta_path)
    fine = _names(meta, "fine_label_names", meta_path)
    coarse = _names(meta, "coarse_label_names", meta_path)
    splits = []
    for path in (d / "train", d / "test"):
        batch = _load(path)
        x = _images(batch, path)
        splits.append((
            ArraySource(x, scale=255.0, name="cifar100"),
            _labels(batch, "fine_labels", len(x), len(fine), path),
            _labels(batch, "coarse_labels", len(x), len(coarse), path),
        ))
    (train, train_y, train_c), (test, test_y, test_c) = splits
    return CifarData(train=train, train_labels=train_y, test=test, test_labels=test_y,
                     class_names=fine, train_coarse=train_c, test_coarse=test_c,
                     coarse_names=coarse)
