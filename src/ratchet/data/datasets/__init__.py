"""The versioned dataset store: immutable, crash-safe versions of each signature's training examples.

Each signature's versions live under ``<home>/training_data/<signature>/`` (seed 001's
layout, drawn in ``layout.py``): ``vYYYYMMDD_HHMMSS/{dataset.json, metadata.json,
provenance.jsonl}``, a ``latest`` symlink to the newest complete version, and
``archive/<version>.tar.gz``. A version is built in a hidden temp directory, renamed into
place, and only then is ``latest`` switched, so a crash leaves ``latest`` on a complete
version; writers of one signature hold its lock, so concurrent ``add``s never lose
examples. Each example's split comes from a stable hash of its inputs, so an input keeps
its split in every version. Examples are user text: directories are owner-only
(``0o700``) and version files owner-read-only (``0o400``).

Modules, lowest first:

- ``layout.py``: paths, version names, the ``latest`` pointer, JSON encoding;
- ``lock.py``: the writers' lock of a signature;
- ``splits.py`` and ``stats.py``: an example's split, a version's statistics;
- ``results.py``: what the store returns (:class:`WriteResult`, :class:`VersionInfo`, :class:`DatasetVersion`);
- ``admit.py``: validating, splitting and encoding incoming examples;
- ``commit.py``: writing a version atomically, switching ``latest``, sweeping leftovers;
- ``archive.py``: packing, listing and restoring archived versions;
- ``read.py``: resolving and loading a version;
- ``diff.py``: how two versions differ;
- ``store.py``: :class:`DatasetStore`, the API over all of them.
"""

from ratchet.data.datasets.diff import DatasetDiff
from ratchet.data.datasets.layout import LATEST, VERSION_PATTERN
from ratchet.data.datasets.results import DatasetVersion, Rejection, VersionInfo, WriteResult
from ratchet.data.datasets.splits import SPLITS, assign_split
from ratchet.data.datasets.stats import dataset_statistics
from ratchet.data.datasets.store import DatasetStore

__all__ = [
    "LATEST",
    "SPLITS",
    "VERSION_PATTERN",
    "DatasetDiff",
    "DatasetStore",
    "DatasetVersion",
    "Rejection",
    "VersionInfo",
    "WriteResult",
    "assign_split",
    "dataset_statistics",
]
