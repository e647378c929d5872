"""Drift detection: live inputs and outputs of each signature against its production version's training data.

Modules, lowest first:

- ``stats.py``: PSI with smoothing, the G-test of homogeneity, the lower bound of an excess share;
- ``reference.py``: which training data is the reference (production's dataset, else the latest, else
  the bundled data) and its held-out inputs;
- ``live.py``: the live window from telemetry (successful baseline calls; bad lines skipped and counted);
- ``novelty.py``: an input's best similarity to the training inputs (MinHash LSH of ``data/dedup.py``);
- ``verdicts.py``: output drift (PSI) and input drift (novel share) of a window;
- ``assess.py``: every signature's verdicts (or "not enough data");
- ``exposition.py``: the Prometheus textfile and the JSON snapshot the dashboard reads.

The check itself (alerts, resolution) is :func:`ratchet.monitor.checks.drift.check_drift`.
"""

from ratchet.monitor.drift.assess import KINDS, DriftReport, SignatureDrift, assess_drift, assess_signature
from ratchet.monitor.drift.exposition import FAMILIES, read_snapshot, render_metrics, write_results
from ratchet.monitor.drift.live import LiveCalls, TelemetryScan, read_live
from ratchet.monitor.drift.novelty import NoveltyIndex
from ratchet.monitor.drift.reference import Reference, load_reference
from ratchet.monitor.drift.verdicts import InputDrift, OutputDrift, judge_input, judge_output, label_field

__all__ = ["FAMILIES", "KINDS", "DriftReport", "InputDrift", "LiveCalls", "NoveltyIndex", "OutputDrift", "Reference",
           "SignatureDrift", "TelemetryScan", "assess_drift", "assess_signature", "judge_input", "judge_output",
           "label_field", "load_reference", "read_live", "read_snapshot", "render_metrics", "write_results"]
