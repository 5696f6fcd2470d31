"""``lifelong bundle verify`` and ``lifelong bundle inspect``: check bundle files by hand.

``verify PATH... [--against RUN_DIR]`` checks each file and prints one line per file,
``PATH: ok`` or ``PATH: refused: REASON``. With ``--against`` a population run directory,
the file must carry a signature that verifies with the run's key (when the run has one)
and its content must pass what an agent of that run checks on receipt: the run's backbone,
task mapper and settings, and a task and classes of the run's stream. Without it only the
structure is checked (the signature, if any, cannot be). ``inspect PATH`` prints the
manifest and the tensor table as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from lifelong.errors import ConfigError
from lifelong.learners.lll.admission import Admission
from lifelong.learners.lll.bundle import BundleError, decode, describe
from lifelong.skill.signing import is_signed, read_key, unwrap_unverified, verify

__all__ = ["verify_files", "inspect_file"]


def _read(path: Path) -> bytes:
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    if not path.is_file():
        raise ConfigError(f"{path}: not a file")
    return path.read_bytes()


class _RunChecker:
    """What an agent of the run at ``run_dir`` would check: its key, learner and stream."""

    def __init__(self, run_dir: Path) -> None:
        from lifelong.experiment import make_experiment
        from lifelong.learners.lll.learner import LLL
        from lifelong.skill.run import MARKER, STATE

        if not (run_dir / MARKER).is_file() or not (run_dir / STATE).is_file():
            raise ConfigError(f"--against {run_dir}: not a population run directory")
        try:
            raw = json.loads((run_dir / STATE).read_text())["raw"]
        except (ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{run_dir / STATE} is damaged ({type(err).__name__})") from None
        self.key = read_key(run_dir)
        exp = make_experiment(raw)
        stream = exp.build_stream()
        learner = exp.build_learner(stream, torch.device("cpu"))
        if not isinstance(learner, LLL):
            raise ConfigError(f"--against {run_dir}: its learner shares no bundles")
        self.learner = learner
        self.admission = Admission.of(stream)

    def check(self, data: bytes) -> str:
        inner = verify(self.key, data)
        task = self.learner.check_bundle(inner, self.admission)
        signed = "signed, " if self.key is not None else ""
        return f"ok ({signed}task {task})"


def _structure(data: bytes) -> str:
    signed = is_signed(data)
    b = decode(unwrap_unverified(data))
    note = "; signature not checked without --against" if signed else ""
    return f"ok (structure only, task key {b.key!r}{note})"


def verify_files(paths: list[str], against: str | None = None) -> tuple[list[str], bool]:
    """One line per path and whether every file passed."""
    checker = _RunChecker(Path(against)) if against else None
    lines, ok = [], True
    for p in paths:
        path = Path(p)
        try:
            data = _read(path)
            verdict = checker.check(data) if checker is not None else _structure(data)
        except BundleError as err:
            ok = False
            lines.append(f"{path}: refused: {str(err).removeprefix('bundle refused: ')}")
            continue
        except ConfigError as err:  # not a readable file
            ok = False
            lines.append(f"{path}: error: {str(err).removeprefix(f'{path}: ')}")
            continue
        lines.append(f"{path}: {verdict}")
    return lines, ok


def inspect_file(path: str) -> dict[str, Any]:
    """Manifest, tensors and sizes of one bundle file (signed or not)."""
    data = _read(Path(path))
    signed = is_signed(data)
    out = describe(unwrap_unverified(data))
    return {"path": str(path), "signed": signed, "file_bytes": len(data), **out}
