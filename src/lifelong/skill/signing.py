"""Signed bundles: authenticity within one population.

The payload hash inside a bundle is integrity only (anyone can recompute it). A population's
driver therefore draws a secret key per run (:func:`new_key`) and hands it to its agents;
every bundle an agent shares or saves is wrapped as

    MAGIC (25 bytes) | HMAC-SHA256(key, bundle) (32 bytes) | bundle

and a receiver holding a key refuses anything whose tag does not verify: unsigned bytes,
a tag made with another key (another population's bundle), or bytes altered after signing.
The bundle inside is byte-for-byte what :func:`lifelong.learners.lll.bundle.encode` made, so the
SHA-256 digests agents compare are those of the bundles, not of the envelopes. The content
checks of :func:`~lifelong.learners.lll.bundle.decode` still apply to every signed bundle: a key
held by a buggy or compromised member of the population must not be enough to crash others.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from lifelong.learners.lll.bundle import BundleError

__all__ = ["MAGIC", "new_key", "sign", "verify", "is_signed", "unwrap_unverified", "read_key",
           "write_key", "KEY_FILE"]

MAGIC = b"lifelong-signed-bundle/1\n"
TAG_BYTES = 32
KEY_FILE = "population.key"  # in the run directory, readable by its owner only


def new_key() -> bytes:
    """A fresh 256-bit secret for one population run."""
    return secrets.token_bytes(32)


def _tag(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def sign(key: bytes, data: bytes) -> bytes:
    """The envelope of ``data`` (a bundle's bytes) under ``key``."""
    return MAGIC + _tag(key, data) + bytes(data)


def is_signed(data: bytes) -> bool:
    return bytes(data[: len(MAGIC)]) == MAGIC


def unwrap_unverified(data: bytes) -> bytes:
    """The bundle inside an envelope, or ``data`` itself if unsigned, *without* checking the
    tag: only for looking at a file (``lifelong bundle inspect``), never for using it."""
    return bytes(data[len(MAGIC) + TAG_BYTES:]) if is_signed(data) else bytes(data)


def verify(key: bytes | None, data: bytes) -> bytes:
    """The bundle inside a verified envelope; BundleError if it does not verify.

    ``key=None`` (no population, e.g. a single learner) accepts plain bundles only: a signed
    one cannot be checked and is refused rather than silently trusted."""
    if not isinstance(data, (bytes, bytearray)):
        raise BundleError(f"bundle refused: expected bytes, got {type(data).__name__}")
    signed = is_signed(data)
    if key is None:
        if signed:
            raise BundleError("bundle refused: signed, and this receiver has no key to check it")
        return bytes(data)
    if not signed:
        raise BundleError("bundle refused: unsigned (this population signs its bundles)")
    start = len(MAGIC)
    tag, inner = bytes(data[start:start + TAG_BYTES]), bytes(data[start + TAG_BYTES:])
    if len(tag) != TAG_BYTES or not hmac.compare_digest(tag, _tag(key, inner)):
        raise BundleError("bundle refused: signature does not verify (altered, or signed by "
                          "another population)")
    return inner


def write_key(run_dir: Path, key: bytes) -> Path:
    """Store the run's key (hex) so that ``--resume`` and ``bundle verify`` can check the
    saved bundles; created with mode 0600 before a byte is written."""
    path = Path(run_dir) / KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return path


def read_key(run_dir: Path) -> bytes | None:
    """The run's key, or None if the run has none (an unsigned, older run)."""
    path = Path(run_dir) / KEY_FILE
    if not path.is_file():
        return None
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise BundleError(f"{path}: not a population key (64 hex digits)")
    return key
