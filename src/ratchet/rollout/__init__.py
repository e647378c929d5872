"""Rollouts: gradual A/B experiments with anytime-valid auto-rollback, manual controls and routing."""

from ratchet.rollout.controller import RolloutController
from ratchet.rollout.daemon import monitor_experiment
from ratchet.rollout.decision import Decision, decide, decide_shadow
from ratchet.rollout.experiments import Experiment, ExperimentEvent, ExperimentStore

__all__ = ["Decision", "Experiment", "ExperimentEvent", "ExperimentStore", "RolloutController", "decide",
           "decide_shadow", "monitor_experiment"]
