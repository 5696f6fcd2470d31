"""Image-folder trees: ``<class>/<image>``, Office-Home domains and SKILL-102 splits.

Only files with an image extension count; names starting with '.' (``.DS_Store``,
``.ipynb_checkpoints``) are ignored. Everything is listed in sorted order so class
indices and row orders are the same on every machine.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from lifelong.errors import DataError

__all__ = [
    "IMAGE_EXTENSIONS",
    "scan_class_dirs",
    "read_domain_tree",
    "find_domain",
    "read_split_tree",
    "check_images",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
"""Lower-case suffixes of the files taken as images (matched case-insensitively)."""

_SPLITS = ("train", "val", "test")


def _visible_dirs(root: Path) -> list[Path]:
    with os.scandir(root) as entries:
        return sorted(Path(e.path) for e in entries
                      if not e.name.startswith(".") and e.is_dir())


def _require_dir(root: Path) -> None:
    if not root.is_dir():
        raise DataError(f"{root}: directory not found")


def scan_class_dirs(root: str | Path) -> dict[str, list[Path]]:
    """List the images of each class folder directly under ``root``.

    Args:
        root: A folder holding one sub-folder per class.

    Returns:
        Class name (the folder name) -> sorted image paths, classes in sorted order.
        Class folders without images are left out.

    Raises:
        DataError: ``root`` is missing or no class folder holds an image.
    """
    root = Path(root)
    _require_dir(root)
    classes: dict[str, list[Path]] = {}
    for folder in _visible_dirs(root):
        with os.scandir(folder) as entries:
            images = sorted(
                Path(e.path) for e in entries
                if not e.name.startswith(".")
                and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS
                and e.is_file()
            )
        if images:
            classes[folder.name] = images
    if not classes:
        raise DataError(f"{root}: no class folder with images "
                        f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return classes


def read_domain_tree(root: str | Path) -> dict[str, dict[str, list[Path]]]:
    """Read an Office-Home style tree ``root/<domain>/<class>/<image>``.

    Args:
        root: The dataset folder, holding one folder per domain.

    Returns:
        Domain -> class -> sorted image paths, domains and classes in sorted order.

    Raises:
        DataError: ``root`` is missing, has no domain folder, or a domain has no images.
    """
    root = Path(root)
    _require_dir(root)
    domains = {folder.name: scan_class_dirs(folder) for folder in _visible_dirs(root)}
    if not domains:
        raise DataError(f"{root}: no domain folders")
    return domains


def _domain_key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch not in " _-")


def find_domain(tree: Mapping[str, object], name: str) -> str:
    """The key of ``tree`` meaning ``name``, ignoring case, spaces, underscores and dashes.

    Office-Home's folder is literally "Real World"; "Real_World" or "real-world" find it.

    Args:
        tree: A mapping keyed by domain folder names, e.g. from :func:`read_domain_tree`.
        name: The domain asked for.

    Returns:
        The folder name as it appears in ``tree``.

    Raises:
        DataError: No domain matches; the message lists the available ones.
    """
    if name in tree:
        return name
    wanted = _domain_key(name)
    for domain in tree:
        if _domain_key(domain) == wanted:
            return domain
    raise DataError(f"unknown domain {name!r}; available: {', '.join(tree) or 'none'}")


def read_split_tree(root: str | Path) -> dict[str, dict[str, dict[str, list[Path]]]]:
    """Read a SKILL-102 style tree ``root/<dataset>/{train,val,test}/<class>/<image>``.

    Args:
        root: The folder holding one folder per dataset.

    Returns:
        Dataset -> split -> class -> sorted image paths. ``train`` and ``test`` are
        always present; ``val`` only where the dataset has that folder.

    Raises:
        DataError: ``root`` is missing or has no dataset folder, a dataset lacks
            ``train`` or ``test``, or a split holds no images.
    """
    root = Path(root)
    _require_dir(root)
    datasets: dict[str, dict[str, dict[str, list[Path]]]] = {}
    for folder in _visible_dirs(root):
        missing = [s for s in ("train", "test") if not (folder / s).is_dir()]
        if missing:
            raise DataError(f"{folder}: dataset {folder.name!r} has no "
                            f"{' or '.join(missing)} folder")
        datasets[folder.name] = {
            split: scan_class_dirs(folder / split)
            for split in _SPLITS if (folder / split).is_dir()
        }
    if not datasets:
        raise DataError(f"{root}: no dataset folders")
    return datasets


def check_images(paths: Sequence[Path]) -> None:
    """Check that every file opens as an image, reading headers only (no decoding).

    Args:
        paths: Image files.

    Raises:
        DataError: Naming the first file that is missing or not a readable image.
    """
    from PIL import Image

    for path in paths:
        try:
            with Image.open(path):
                pass  # the header was parsed by open(); pixels are decoded lazily
        except Exception as err:  # Pillow raises many types for a bad header
            detail = " ".join(str(err).split()) or type(err).__name__
            raise DataError(f"{path}: not a readable image ({detail})") from None
