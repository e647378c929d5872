"""Canaries on the real embedded model (Gemma 3 270M through llama.cpp): a few probes, three runs."""

from pathlib import Path

import pytest

from ratchet.config import Settings
from ratchet.monitor.canary import run_canaries
from ratchet.programs import load_programs
from ratchet.store.canaries import canary_history
from ratchet.store.db import StateDB

pytestmark = pytest.mark.integration

SIG = "classify_intent"


@pytest.mark.timeout(300)
def test_canaries_score_the_embedded_model_and_repeat_themselves(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    settings.monitor.canary.probes = 8
    settings.monitor.canary.min_probes = 8
    registry = load_programs(settings)
    db = StateDB.connect(settings)
    try:
        reports = [run_canaries(settings, registry, db=db, signatures=[SIG], force=True) for _ in range(3)]
    finally:
        db.dispose()
    (version,) = reports[0].signatures[SIG].versions
    run = version.run
    assert version.roles == ["production"] and run is not None and run.n == 8
    assert run.errors == 0 and run.parse_failures == 0  # constrained, choice-scored answers always parse
    assert 0.0 <= run.score <= 1.0 and run.seconds > 0
    db = StateDB.connect(settings)
    runs = canary_history(db, SIG, "base", limit=3)
    db.dispose()
    assert len({r.pass_id for r in runs}) == 3
    assert runs[0].scores == runs[1].scores == runs[2].scores  # no response cache, and still the same answers
    verdict = reports[2].signatures[SIG].degradation
    assert verdict is not None and verdict.status == "ok" and verdict.drop == 0.0, verdict.to_dict()
    assert 'ratchet_canary_score{signature="classify_intent",version="base"}' in reports[2].textfile.read_text()
