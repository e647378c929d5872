"""Canaries: a fixed probe set per signature, scored on production and every live candidate every N minutes.

Quality signals that need no user feedback. Modules, lowest first:

- ``probes.py``: the probe set — your file, or a seeded sample (production's dataset test split, else
  the latest dataset's, else the bundled test data) written once to ``<home>/canaries/<signature>.jsonl``;
- ``degradation.py``: production's newest run against its own trailing runs, probe by probe;
- ``exposition.py``: ``<home>/metrics/ratchet_canary.prom`` for Prometheus;
- ``runner.py``: :func:`run_canaries`, which scores what is due and records it (table ``canary_runs``).

The rollout trigger (a candidate worse than its baseline on the same probes) is
:mod:`ratchet.rollout.canary`; the alerting check is :func:`ratchet.monitor.checks.canary.check_canary`.
"""

from ratchet.monitor.canary.degradation import MIN_TRAILING, Degradation, assess_degradation, production_degradation
from ratchet.monitor.canary.exposition import FAMILIES, TEXTFILE_NAME, SignatureSnapshot, render_metrics, write_metrics
from ratchet.monitor.canary.probes import PROBES_DIRNAME, ProbeSet, ensure_probes, load_probe_file, probe_path
from ratchet.monitor.canary.runner import CanaryReport, SignatureCanary, VersionRun, canary_targets, run_canaries

__all__ = ["FAMILIES", "MIN_TRAILING", "PROBES_DIRNAME", "TEXTFILE_NAME", "CanaryReport", "Degradation", "ProbeSet",
           "SignatureCanary", "SignatureSnapshot", "VersionRun", "assess_degradation", "canary_targets",
           "ensure_probes", "load_probe_file", "probe_path", "production_degradation", "render_metrics",
           "run_canaries", "write_metrics"]
