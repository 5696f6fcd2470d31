"""Images read on demand: pixel sources, per-task transforms and labelled image sets.

A *source* is a whole on-disk dataset (a CIFAR array, an STL-10 memory map, a list of
image files) that yields float pixels in [0, 1] for any rows asked for. An
:class:`ImageSet` is one split of one task: a subset of a source's rows, their labels
and the task's transform (normalisation, channel permutation, noise). Nothing is decoded
until a batch asks for it; small sets are materialised once with :meth:`ImageSet.cache`.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lifelong.errors import DataError

__all__ = [
    "PixelSource",
    "ArraySource",
    "FileSource",
    "Transform",
    "Normalize",
    "Shift",
    "PermuteChannels",
    "GaussianNoise",
    "Compose",
    "ImageSet",
    "resize",
]


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a float batch (B, C, H, W) to (B, C, size, size), antialiased bilinear."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class PixelSource(ABC):
    """Rows of images of one shape, read on demand as float32 (B, C, H, W) in [0, 1]."""

    shape: tuple[int, int, int]

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def read(self, rows: np.ndarray) -> torch.Tensor:
        """Pixels of ``rows`` (any order, repeats allowed) as float32 (B, C, H, W) in [0, 1]."""

    @abstractmethod
    def describe(self) -> str:
        """A stable text that identifies the source's content layout (for fingerprints)."""


class ArraySource(PixelSource):
    """An array (N, C, H, W) of pixels, possibly a ``np.memmap`` or a strided view of one.

    ``scale`` is the value of a white pixel (255 for bytes, 16 for scikit-learn digits);
    ``size`` resizes square images on read (``None`` keeps the stored size).
    """

    def __init__(self, array: np.ndarray, *, scale: float = 255.0, size: int | None = None,
                 name: str = "array") -> None:
        if array.ndim != 4:
            raise ValueError(f"expected an (N, C, H, W) array, got shape {array.shape}")
        self.array = array
        self.scale = float(scale)
        self.size = size
        self.name = name
        c, h, w = (int(s) for s in array.shape[1:])
        self.shape = (c, size, size) if size else (c, h, w)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def read(self, rows: np.ndarray) -> torch.Tensor:
        rows = np.asarray(rows, dtype=np.int64)
        # Read memory maps in increasing row order (sequential disk access), then restore order.
        order = np.argsort(rows, kind="stable")
        block = np.ascontiguousarray(self.array[rows[order]])
        out = torch.empty(block.shape, dtype=torch.float32)
        out[torch.from_numpy(order)] = torch.from_numpy(block).float()
        out /= self.scale
        return resize(out, self.size) if self.size else out

    def describe(self) -> str:
        return f"{self.name}:{tuple(self.array.shape)}:{self.scale}:{self.size}"


class FileSource(PixelSource):
    """Image files decoded with Pillow, converted to RGB and resized to ``size`` x ``size``.

    Decoded images are kept as uint8 in a bounded cache (``cache_bytes``), so a task's
    training set is decoded once even when it is revisited every epoch.
    """

    def __init__(self, paths: Sequence[Path], *, size: int, cache_bytes: int = 1 << 30) -> None:
        self.paths = [Path(p) for p in paths]
        self.size = int(size)
        self.shape = (3, self.size, self.size)
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cache_limit = max(0, cache_bytes // (3 * self.size * self.size))

    def __len__(self) -> int:
        return len(self.paths)

    def _decode(self, row: int) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        path = self.paths[row]
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as err:
            raise DataError(f"cannot decode image {path}: {err}") from None
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0
        x = resize(x, self.size)  # (1, 3, size, size)
        return (x[0] * 255.0).round_().clamp_(0, 255).to(torch.uint8)

    def read(self, rows: np.ndarray) -> torch.Tensor:
        out = torch.empty((len(rows), *self.shape), dtype=torch.float32)
        for i, row in enumerate(np.asarray(rows, dtype=np.int64).tolist()):
            img = self._cache.get(row)
            if img is None:
                img = self._decode(row)
                if self._cache_limit:
                    self._cache[row] = img
                    if len(self._cache) > self._cache_limit:
                        self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(row)
            out[i] = img.float() / 255.0
        return out

    def describe(self) -> str:
        """File names relative to their common folder, and file sizes: a moved copy of the
        data matches, a renamed, added, removed or rewritten (resized) file does not."""
        base = os.path.commonpath([str(p.parent) for p in self.paths]) if self.paths else ""
        h = hashlib.sha256()
        for p in self.paths:
            try:
                size = p.stat().st_size
            except OSError:
                size = -1
            h.update(f"{os.path.relpath(p, base)}:{size}\n".encode())
        return f"files:{len(self.paths)}:{h.hexdigest()[:16]}:{self.size}"


class Transform(ABC):
    """A per-task pixel transform. ``rows`` are the source rows of the batch (for noise)."""

    @abstractmethod
    def __call__(self, x: torch.Tensor, rows: np.ndarray) -> torch.Tensor: ...

    @abstractmethod
    def describe(self) -> str: ...


class Normalize(Transform):
    """Per-channel ``(x - mean) / std``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)

    @classmethod
    def from_pixels(cls, x: torch.Tensor) -> Normalize:
        """Standardise with the per-channel statistics of ``x`` (N, C, H, W), the std floored
        at 1/sqrt(number of values) as the original code's ``cifar_data_standardization``."""
        values = x.transpose(0, 1).reshape(x.shape[1], -1)  # (C, N * H * W)
        floor = 1.0 / float(values.shape[1]) ** 0.5
        return cls(values.mean(1).tolist(), values.std(1, unbiased=False).clamp_min(floor).tolist())

    def __call__(self, x: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return (x - self.mean) / self.std

    def describe(self) -> str:
        return f"normalize{self.mean.flatten().tolist()}{self.std.flatten().tolist()}"


class Shift(Transform):
    """Add a constant, e.g. -0.5 to move [0, 1] pixels to [-0.5, 0.5]."""

    def __init__(self, offset: float) -> None:
        self.offset = float(offset)

    def __call__(self, x: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return x + self.offset

    def describe(self) -> str:
        return f"shift{self.offset}"


class PermuteChannels(Transform):
    """Reorder colour channels: output channel i is input channel ``perm[i]``."""

    def __init__(self, perm: Sequence[int]) -> None:
        self.perm = [int(p) for p in perm]

    def __call__(self, x: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return x[:, self.perm]

    def describe(self) -> str:
        return f"permute{self.perm}"


class GaussianNoise(Transform):
    """Add Gaussian noise N(mean, std^2), fixed per image: the same row always gets the same
    noise (the original code stored noisy copies once), drawn from ``seed`` and the row."""

    def __init__(self, mean: float, std: float, seed: int) -> None:
        self.mean = float(mean)
        self.std = float(std)
        self.seed = int(seed)

    def __call__(self, x: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        noise = torch.empty_like(x)
        g = torch.Generator()
        for i, row in enumerate(np.asarray(rows).tolist()):
            g.manual_seed(self.seed * 1_000_003 + int(row))
            noise[i] = torch.randn(x.shape[1:], generator=g)
        return x + self.mean + self.std * noise

    def describe(self) -> str:
        return f"noise({self.mean},{self.std},{self.seed})"


class Compose(Transform):
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, x: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, rows)
        return x

    def describe(self) -> str:
        return "|".join(t.describe() for t in self.transforms)


class ImageSet:
    """One split of one task: rows of a source, labels in 0..C-1 and the task's transform."""

    def __init__(self, source: PixelSource, rows: np.ndarray | Sequence[int],
                 labels: np.ndarray | Sequence[int], transform: Transform | None = None) -> None:
        self.source = source
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if len(self.rows) != len(self.labels):
            raise ValueError("rows and labels differ in length")
        self.transform = transform
        self._cached: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.source.shape

    def images(self, index: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """Images at positions ``index`` of this set (all when None), float32 (B, C, H, W)."""
        idx = np.arange(len(self)) if index is None else np.asarray(index, dtype=np.int64)
        if self._cached is not None:
            return self._cached[torch.from_numpy(idx)]
        rows = self.rows[idx]
        x = self.source.read(rows)
        return self.transform(x, rows) if self.transform else x

    @property
    def nbytes(self) -> int:
        """Memory the decoded float32 images take."""
        return len(self) * 4 * int(np.prod(self.shape))

    @property
    def cached(self) -> bool:
        return self._cached is not None

    def cache(self) -> None:
        """Decode all images once and keep them (see ``RunConfig.cache_mb`` for the budget)."""
        if self._cached is None:
            self._cached = self.images()

    def fingerprint(self) -> str:
        """A hash of what this set contains: source layout, rows, labels and transform."""
        h = hashlib.sha256()
        h.update(self.source.describe().encode())
        h.update(self.rows.tobytes())
        h.update(self.labels.numpy().tobytes())
        h.update((self.transform.describe() if self.transform else "").encode())
        return h.hexdigest()
