"""Collectors: where training examples come from (one module per source, like httpx's ``_transports/``).

- ``base.py``: the :class:`Collector` interface and the :class:`CollectionReport` every collection writes;
- ``telemetry.py``: logged calls joined with their feedback (seed 002's aggregator);
- ``git.py`` and ``mappers.py``: commits mapped to examples by a per-signature :func:`git_mapper`;
- ``synthetic.py``: new examples written by the configured LM from real seed examples.

Each writes ``<output>/<signature>.jsonl`` (:class:`~ratchet.data.records.ExampleRecord` lines)
and ``<output>/collection_report.json``.
"""

from ratchet.data.collect.base import REPORT_NAME, CollectionReport, Collector, ProgressFn, parse_since
from ratchet.data.collect.git import GitCollector, NearDuplicateFilter, change_difficulty, iter_commits
from ratchet.data.collect.mappers import (
    Commit,
    FileChange,
    MappedCommit,
    SkipCommit,
    get_git_mapper,
    git_mapper,
    git_mappers,
    parse_conventional,
)
from ratchet.data.collect.synthetic import DIFFICULTY_MIX, SyntheticCollector, difficulty_quotas, load_seed_examples
from ratchet.data.collect.telemetry import TelemetryCollector, expand_log_paths

__all__ = [
    "DIFFICULTY_MIX",
    "REPORT_NAME",
    "CollectionReport",
    "Collector",
    "Commit",
    "FileChange",
    "GitCollector",
    "MappedCommit",
    "NearDuplicateFilter",
    "ProgressFn",
    "SkipCommit",
    "SyntheticCollector",
    "TelemetryCollector",
    "change_difficulty",
    "difficulty_quotas",
    "expand_log_paths",
    "get_git_mapper",
    "git_mapper",
    "git_mappers",
    "iter_commits",
    "load_seed_examples",
    "parse_conventional",
    "parse_since",
]
