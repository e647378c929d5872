"""The backup archive: a tar.gz whose last member, ``manifest.json``, lists every other member with its SHA-256.

Writing (:class:`ArchiveWriter`) hashes each file as it streams into the archive, appends the
manifest last and renames the finished file into place (temp file, fsync, rename): a reader
sees a complete archive or none. Reading (:func:`scan_archive`) streams the archive once,
checks every member's path (relative, no ``..``, under a known top-level name), type (files
and symlinks that stay inside) and content against the manifest, and raises
:class:`~ratchet.errors.BackupError` naming the first bad member. Because the manifest comes
last, an archive cut short anywhere has no manifest and is refused.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import tarfile
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from ratchet.errors import BackupError
from ratchet.store.atomic import fsync_dir
from ratchet.store.private import PRIVATE_FILE, make_private_dir, private_opener

__all__ = ["FORMAT", "LEGACY_FORMAT", "MANIFEST", "TOP_LEVEL", "ArchiveWriter", "Progress", "check_member_path",
           "scan_archive"]

MANIFEST = "manifest.json"
FORMAT = 2
LEGACY_FORMAT = 1
"""Archives of Ratchet before signed, data-only backups: read and verified, their database never restored."""
TOP_LEVEL = frozenset({"programs", "training_data", "golden", "experiments", "routing_config.json",
                       "monitoring_state.json", "config", "database", "telemetry", "audit", "secrets"})
"""The only names a member may start with (besides the manifest): nothing else is ever written to a home."""

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: bytes of the current phase done so far."""

_CHUNK = 1024 * 1024
_MAX_MANIFEST_BYTES = 256 * 1024 * 1024
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError, ValueError)


def check_member_path(name: str) -> str:
    """``name`` if it is a safe relative member path under a known top-level name, else ``BackupError``."""
    parts = name.split("/")
    if (not name or name.startswith("/") or "\\" in name or "\x00" in name
            or any(part in ("", ".", "..") for part in parts)):
        raise BackupError(f"unsafe archive member {name!r}: absolute, empty or '..' paths are refused")
    if name != MANIFEST and parts[0] not in TOP_LEVEL:
        raise BackupError(f"unexpected archive member {name!r}: not part of a Ratchet home")
    return name


def _check_link(name: str, target: str) -> None:
    """A symlink may only point at or below its own directory (``latest -> v20261125_120000``)."""
    if not target or target.startswith("/") or ".." in target.split("/") or "\x00" in target:
        raise BackupError(f"unsafe archive member {name!r}: a symlink to {target!r} leaves the home")


class _HashingReader(io.RawIOBase):
    """Reads a file for ``tarfile.addfile`` and hashes (and counts) what it reads."""

    def __init__(self, fh: BinaryIO, on_bytes: Callable[[int], None] | None) -> None:
        self._fh = fh
        self._on_bytes = on_bytes
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self.sha256.update(data)
        self.size += len(data)
        if self._on_bytes is not None and data:
            self._on_bytes(len(data))
        return data


class ArchiveWriter:
    """Builds ``output`` in a temp file next to it; :meth:`commit` adds the manifest and renames it into place."""

    def __init__(self, output: Path, *, on_bytes: Callable[[int], None] | None = None) -> None:
        self.output = Path(output)
        make_private_dir(self.output.parent)
        self.tmp = self.output.with_name(f".{self.output.name}.{uuid.uuid4().hex[:8]}.tmp")
        self.members: list[dict[str, Any]] = []
        self._on_bytes = on_bytes
        self._raw = open(self.tmp, "xb", opener=private_opener)  # noqa: SIM115 - closed by commit/abort; owner-only
        self._tar = tarfile.open(fileobj=self._raw, mode="w:gz", compresslevel=6)  # noqa: SIM115

    def add_file(self, arcname: str, path: Path) -> None:
        check_member_path(arcname)
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            info = tarfile.TarInfo(arcname)
            info.size, info.mtime, info.mode = st.st_size, int(st.st_mtime), st.st_mode & 0o755
            reader = _HashingReader(fh, self._on_bytes)
            try:
                self._tar.addfile(info, reader)
            except OSError as exc:
                raise BackupError(f"{path}: could not be archived (changed while being read?): {exc}") from None
        self.members.append({"path": arcname, "type": "file", "size": reader.size,
                             "sha256": reader.sha256.hexdigest()})

    def add_bytes(self, arcname: str, data: bytes, *, mtime: float | None = None) -> None:
        """Add ``data`` as the file ``arcname`` (content already read, e.g. checked before archiving)."""
        check_member_path(arcname)
        info = tarfile.TarInfo(arcname)
        info.size, info.mode = len(data), 0o600
        info.mtime = int(time.time() if mtime is None else mtime)
        reader = _HashingReader(io.BytesIO(data), self._on_bytes)
        self._tar.addfile(info, reader)
        self.members.append({"path": arcname, "type": "file", "size": reader.size,
                             "sha256": reader.sha256.hexdigest()})

    def add_symlink(self, arcname: str, target: str) -> None:
        check_member_path(arcname)
        _check_link(arcname, target)
        info = tarfile.TarInfo(arcname)
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        self._tar.addfile(info)
        self.members.append({"path": arcname, "type": "symlink", "target": target})

    def commit(self, manifest: dict[str, Any], *, sign: Callable[[dict[str, Any]], dict[str, Any]] | None = None
               ) -> dict[str, Any]:
        """Append ``manifest`` (with the member list, signed by ``sign``) last, close, fsync and rename; return it."""
        manifest = {**manifest, "members": self.members}
        if sign is not None:
            manifest = sign(manifest)
        data = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode = len(data), 0o644
        info.mtime = int(time.time())
        self._tar.addfile(info, io.BytesIO(data))
        self._tar.close()
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self._raw.close()
        os.replace(self.tmp, self.output)
        fsync_dir(self.output.parent)
        return manifest

    def abort(self) -> None:
        """Drop the unfinished archive."""
        with contextlib.suppress(Exception):
            self._tar.close()
        with contextlib.suppress(Exception):
            self._raw.close()
        with contextlib.suppress(OSError):
            self.tmp.unlink()


class _CountingReader(io.RawIOBase):
    def __init__(self, fh: BinaryIO, progress: Progress | None, phase: str, total: int) -> None:
        self._fh, self._progress, self._phase, self._total = fh, progress, phase, total
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._fh.readinto(buffer)
        self.position += n or 0
        if self._progress is not None and n:
            self._progress(self._phase, self.position, self._total)
        return n or 0


def scan_archive(path: Path, *, extract_to: Path | None = None, progress: Progress | None = None,
                 phase: str = "verifying") -> dict[str, Any]:
    """Check every member of the archive at ``path`` against its manifest; return the manifest.

    With ``extract_to`` (an empty directory) members are also written there as they stream by;
    the caller removes it when this raises. Raises ``BackupError`` naming the first bad member.
    """
    path = Path(path)
    try:
        total = path.stat().st_size
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise BackupError(f"{path}: cannot read the archive: {exc.strerror or exc}") from None
    seen: dict[str, dict[str, Any]] = {}
    manifest: dict[str, Any] | None = None
    last: str | None = None
    try:
        counting = _CountingReader(raw, progress, phase, total)
        gz = gzip.GzipFile(fileobj=io.BufferedReader(counting, _CHUNK), mode="rb")
        try:
            tar = tarfile.open(fileobj=gz, mode="r|")  # noqa: SIM115 - a stream over gz, closed with raw
            while True:
                try:
                    member = tar.next()
                except _READ_ERRORS as exc:
                    raise _damaged(path, _after(last), exc) from None
                if member is None:
                    break
                name = member.name
                if manifest is not None:
                    raise BackupError(f"{path}: unexpected member {name!r} after {MANIFEST}")
                try:
                    check_member_path(name)
                    if name in seen:
                        raise BackupError(f"member {name!r} appears twice")
                    parents = ["/".join(name.split("/")[:i]) for i in range(1, name.count("/") + 1)]
                    through = next((p for p in parents if p in seen), None)
                    if through is not None:
                        raise BackupError(f"unsafe archive member {name!r}: it lies under the "
                                          f"{seen[through]['type']} {through!r}")
                    if name == MANIFEST:
                        manifest = _read_manifest(tar, member)
                    else:
                        seen[name] = _take_member(tar, member, extract_to)
                except BackupError as exc:
                    raise BackupError(f"{path}: {exc}") from None
                except _READ_ERRORS as exc:
                    raise _damaged(path, f"at member {name!r}", exc) from None
                last = name
            try:  # read to the end: the gzip trailer's CRC catches damage the tar layer cannot see
                while gz.read(_CHUNK):
                    pass
            except _READ_ERRORS as exc:
                if manifest is not None:  # a member that does not match its hash names the damage best
                    _compare(path, manifest, seen)
                raise _damaged(path, _after(last), exc) from None
        except EOFError as exc:
            raise _damaged(path, "at its start", exc) from None
        except (tarfile.ReadError, zlib.error, gzip.BadGzipFile) as exc:
            raise BackupError(f"{path}: not a readable tar.gz archive: {exc}") from None
    finally:
        raw.close()
    if manifest is None:
        raise BackupError(f"{path}: not a complete Ratchet backup: no {MANIFEST} (the archive is truncated or "
                          f"damaged {_after(last)})")
    _compare(path, manifest, seen)
    return manifest


def _damaged(path: Path, where: str, exc: BaseException) -> BackupError:
    if isinstance(exc, EOFError):
        return BackupError(f"{path}: the archive is truncated {where} ({exc})")
    return BackupError(f"{path}: the archive is damaged {where}: {exc}")


def _after(last: str | None) -> str:
    return f"after member {last!r}" if last else "at its start"


def _read_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo) -> dict[str, Any]:
    if not member.isfile() or member.size > _MAX_MANIFEST_BYTES:
        raise BackupError(f"{MANIFEST} is not a plain file of reasonable size")
    handle = tar.extractfile(member)
    assert handle is not None
    try:
        manifest = json.loads(handle.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupError(f"{MANIFEST} is not valid JSON: {exc}") from None
    if (not isinstance(manifest, dict) or manifest.get("format") not in (FORMAT, LEGACY_FORMAT)
            or not isinstance(manifest.get("members"), list)):
        raise BackupError(f"{MANIFEST} is not a Ratchet backup manifest (format {FORMAT})")
    return manifest


def _take_member(tar: tarfile.TarFile, member: tarfile.TarInfo, extract_to: Path | None) -> dict[str, Any]:
    """Hash (and with ``extract_to`` write) one member; what it turned out to be."""
    name = member.name
    if member.issym():
        _check_link(name, member.linkname)
        if extract_to is not None:
            target = extract_to / name
            make_private_dir(target.parent)
            os.symlink(member.linkname, target)
        return {"type": "symlink", "target": member.linkname}
    if not member.isfile():
        raise BackupError(f"unsupported archive member {name!r}: only files and symlinks are restored")
    handle = tar.extractfile(member)
    assert handle is not None
    digest, size = hashlib.sha256(), 0
    out = None
    if extract_to is not None:
        target = extract_to / name
        make_private_dir(target.parent)
        # The owner's bits of the archived mode (0o400 dataset files stay read-only), never more: user text.
        mode = (member.mode & 0o700) or PRIVATE_FILE
        out = os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode), "wb")
    try:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
        if out is not None:
            out.flush()
            os.fsync(out.fileno())
    finally:
        if out is not None:
            out.close()
    return {"type": "file", "size": size, "sha256": digest.hexdigest()}


def _compare(path: Path, manifest: dict[str, Any], seen: dict[str, dict[str, Any]]) -> None:
    listed: dict[str, dict[str, Any]] = {}
    for entry in manifest["members"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise BackupError(f"{path}: {MANIFEST} has a malformed member entry: {entry!r}")
        listed[check_member_path(entry["path"])] = entry
    for name, actual in seen.items():  # archive order: the first bad member is named
        expected = listed.get(name)
        if expected is None:
            raise BackupError(f"{path}: member {name!r} is not listed in {MANIFEST} (the archive was altered)")
        if expected.get("type") != actual["type"]:
            raise BackupError(f"{path}: member {name!r} is a {actual['type']}, "
                              f"the manifest says {expected.get('type')}")
        if actual["type"] == "symlink":
            if expected.get("target") != actual["target"]:
                raise BackupError(f"{path}: member {name!r} points at {actual['target']!r}, the manifest says "
                                  f"{expected.get('target')!r}")
        elif expected.get("size") != actual["size"] or expected.get("sha256") != actual["sha256"]:
            raise BackupError(f"{path}: member {name!r} is damaged: its size/SHA-256 ({actual['size']} bytes, "
                              f"{actual['sha256'][:12]}…) do not match the manifest ({expected.get('size')} bytes, "
                              f"{str(expected.get('sha256'))[:12]}…)")
    missing = [name for name in listed if name not in seen]
    if missing:
        raise BackupError(f"{path}: member {missing[0]!r} is listed in {MANIFEST} but missing from the archive"
                          + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
