"""Monitoring checks, one module each; ``run_checks`` runs a selection and dispatches the alerts."""

from ratchet.monitor.checks.ab_tests import TrafficSplit, check_ab_tests, traffic_split
from ratchet.monitor.checks.annotation import check_annotation
from ratchet.monitor.checks.audit import check_audit
from ratchet.monitor.checks.canary import check_canary
from ratchet.monitor.checks.controller import check_controller
from ratchet.monitor.checks.datasets import check_dataset_quality
from ratchet.monitor.checks.drift import check_drift
from ratchet.monitor.checks.golden import check_golden
from ratchet.monitor.checks.orchestration import check_orchestration
from ratchet.monitor.checks.runner import CHECKS, EXIT_CODES, CheckRun, exit_code, run_checks
from ratchet.monitor.checks.slo import ServiceLevel, check_slo, service_levels

__all__ = ["CHECKS", "EXIT_CODES", "CheckRun", "ServiceLevel", "TrafficSplit", "check_ab_tests", "check_annotation",
           "check_audit", "check_canary", "check_controller", "check_dataset_quality", "check_drift", "check_golden",
           "check_orchestration", "check_slo", "exit_code", "run_checks", "service_levels", "traffic_split"]
