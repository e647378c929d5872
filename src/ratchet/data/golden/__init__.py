"""Golden datasets: per signature, the curated, human-checked examples that training never reads.

Why a separate root and not a ``kind`` on training versions: a golden set lives under
``<home>/golden/<signature>/`` with exactly the training store's versioned layout
(``vYYYYMMDD_HHMMSS/{dataset.json, metadata.json, provenance.jsonl}``, ``latest``, lock,
archive), written by the same machinery (:class:`GoldenStore` is a
:class:`~ratchet.data.datasets.DatasetStore` with another root). Nothing that reads
``training_data/`` — optimization, the cycle, drift references, canary probes — can pick
a golden example up by accident, no existing reader needs a new filter, and the golden
versions keep their own lineage and ``latest``. A flag on versions would instead have to
be honoured by every reader of the training store, today's and tomorrow's.

The leakage rule: any input in a signature's latest golden set is left out of the
examples that signature's optimization trains, validates and tests on, matched by the
stable :func:`~ratchet.data.records.input_hash`. It is applied where training reads data
(:func:`ratchet.optimize.run.run_optimization`, used by ``ratchet optimize`` and the
cycle) and where the cycle builds a dataset version (its ``version`` phase), and both
report how many examples it left out (``excluded_golden``).

Modules: ``store.py`` (the store, :func:`add_golden`, :func:`load_golden`, the leakage
rule) and ``coverage.py`` (``ratchet golden stats`` and ``coverage``).
"""

from ratchet.data.golden.coverage import GoldenCoverage, LabelCoverage, golden_coverage, golden_stats
from ratchet.data.golden.store import (
    PROVENANCE_KEYS,
    GoldenExample,
    GoldenStore,
    add_golden,
    golden_input_hashes,
    load_golden,
    without_golden,
)

__all__ = [
    "PROVENANCE_KEYS",
    "GoldenCoverage",
    "GoldenExample",
    "GoldenStore",
    "LabelCoverage",
    "add_golden",
    "golden_coverage",
    "golden_input_hashes",
    "golden_stats",
    "load_golden",
    "without_golden",
]
