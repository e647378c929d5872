"""Getting a serving process ready: load the model, load and prime every program version that serves now."""

from __future__ import annotations

import logging
from collections.abc import Callable

import dspy

from ratchet.errors import ModelNotAvailableError, VersionError
from ratchet.lm.setup import LMBundle
from ratchet.programs import ProgramRegistry
from ratchet.serve.served import ServedVersion, ServedVersions
from ratchet.serve.state_follower import ServingState

__all__ = ["warm_up"]

log = logging.getLogger(__name__)


def warm_up(lms: LMBundle, registry: ProgramRegistry, served: ServedVersions, state: ServingState,
            on_phase: Callable[[str], None] | None = None) -> list[tuple[str, str, str]]:
    """Self-test and load the model, load every program version that serves in ``state``.

    With the embedded model each of those versions also answers two requests on neutral inputs (not
    counted, not sampled), so its prompt prefix is in the engine's prompt cache (kept once a prompt
    recurs, the second call costs only its last tokens) and the first real request costs what later
    ones do. ``on_phase`` hears ``model`` then ``programs``.
    Returns the (signature, arm, version) triples warmed. Raises ``ModelNotAvailableError``
    when the model cannot run here.
    """
    report = on_phase or (lambda phase: None)
    report("model")
    lms.warm_up()
    report("programs")
    warmed: list[tuple[str, str, str]] = []
    for spec in registry:
        for arm, version in served.serving_now(spec.name, state):
            try:
                version_served = served.get(spec, version, arm)
            except VersionError as exc:  # /ready reports it; the other programs still warm up
                log.error("cannot load %s %s for the %s arm: %s", spec.name, version, arm, exc)
                continue
            if lms.engine is not None:  # twice: the engine keeps a prompt family's KV cache once it recurs
                _warm_prompt(lms, version_served)
                _warm_prompt(lms, version_served)
            warmed.append((spec.name, arm, version))
    return warmed


def _warm_prompt(lms: LMBundle, served: ServedVersion) -> None:
    """Run a version once on neutral inputs so the model caches its prompt prefix (outcome ignored)."""
    try:
        with dspy.context(lm=lms.task, adapter=lms.adapter):
            served.module(**served.spec.schema.neutral_inputs())
    except ModelNotAvailableError:
        raise
    except Exception as exc:  # a neutral input may well not parse: the prefix is cached all the same
        log.debug("warm-up call of %s %s: %s", served.spec.name, served.version, exc)
