import json
import os
from pathlib import Path

import pytest

from ratchet.errors import DataError
from ratchet.hashing import canonical_json, sha256_hex
from ratchet.routing import (
    RoutingState,
    RoutingWatcher,
    SignatureRoute,
    choose_arm,
    read_routing,
    write_routing,
)


def route(share: float, salt: str = "exp-1") -> SignatureRoute:
    return SignatureRoute(baseline_version="v1", candidate_version="v2", candidate_share=share, salt=salt,
                          experiment_id="exp-1", state="running")


def test_bucketing_is_monotone_across_stages() -> None:
    keys = [f"user-{i}" for i in range(5000)]
    previous: set[str] = set()
    for share in (0.10, 0.25, 0.50, 0.75, 1.0):
        chosen = {k for k in keys if choose_arm(route(share), k) == "candidate"}
        assert previous <= chosen  # nobody in the candidate arm goes back to baseline as the share grows
        assert abs(len(chosen) / len(keys) - share) < 0.03
        previous = chosen


def test_no_candidate_or_zero_share_means_baseline() -> None:
    assert choose_arm(None, "k") == "baseline"
    assert choose_arm(route(0.0), "k") == "baseline"
    assert choose_arm(SignatureRoute(baseline_version="v1", candidate_share=0.5), "k") == "baseline"
    assert choose_arm(route(1.0), "k") == "candidate"


def test_salts_pick_different_users() -> None:
    keys = [f"u{i}" for i in range(2000)]
    a = {k for k in keys if choose_arm(route(0.5, "exp-a"), k) == "candidate"}
    b = {k for k in keys if choose_arm(route(0.5, "exp-b"), k) == "candidate"}
    assert 0.35 < len(a & b) / len(a) < 0.65


def test_share_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        route(1.5)


def test_write_and_read_round_trip_with_versions(tmp_path: Path) -> None:
    path = tmp_path / "routing_config.json"
    assert read_routing(path) == RoutingState()
    first = write_routing(path, RoutingState().with_route("classify_intent", route(0.1)))
    second = write_routing(path, first.with_route("classify_intent", route(0.25)))
    assert (first.version, second.version) == (1, 2)
    loaded = read_routing(path)
    assert loaded.route("classify_intent") == route(0.25)
    assert loaded.version == 2
    data = json.loads(path.read_text())
    assert data["signatures"]["classify_intent"]["candidate_share"] == 0.25
    assert len(data["checksum"]) == 64


def test_a_tampered_or_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "routing_config.json"
    write_routing(path, RoutingState().with_route("s", route(0.1)))
    data = json.loads(path.read_text())
    data["signatures"]["s"]["candidate_share"] = 0.9
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="checksum mismatch"):
        read_routing(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="invalid routing state"):
        read_routing(path)
    path.write_text(json.dumps({"signatures": {"s": {"candidate_version": "v9", "candidate_share": 1.0}}}))
    with pytest.raises(DataError, match="no checksum"):  # unsigned: never obeyed, whatever it says
        read_routing(path)
    body = {"signatures": {"s": {"candidate_share": 0.1}}}
    path.write_text(json.dumps({**body, "checksum": sha256_hex(canonical_json(body))}))
    with pytest.raises(DataError, match="baseline_version"):
        read_routing(path)


def test_watcher_reloads_changes_and_keeps_the_last_good_state(tmp_path: Path) -> None:
    path = tmp_path / "routing_config.json"
    watcher = RoutingWatcher(path, check_interval_s=0.0)
    assert watcher.current() == RoutingState()
    write_routing(path, RoutingState().with_route("s", route(0.1)))
    assert watcher.current().route("s").candidate_share == 0.1
    path.write_text("garbage")
    assert watcher.current().route("s").candidate_share == 0.1  # last good state kept
    assert watcher.errors == 1 and "invalid routing state" in watcher.last_error
    assert watcher.current().route("s").candidate_share == 0.1
    assert watcher.errors == 1  # the same bad file is not re-read and re-counted
    write_routing(path, RoutingState().with_route("s", route(0.5)))
    assert watcher.current().route("s").candidate_share == 0.5
    os.unlink(path)
    assert watcher.current() == RoutingState()


def test_watcher_checks_at_most_every_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "routing_config.json"
    clock = [1000.0]
    monkeypatch.setattr("ratchet.routing.time.monotonic", lambda: clock[0])
    watcher = RoutingWatcher(path, check_interval_s=1.0)
    write_routing(path, RoutingState().with_route("s", route(0.1)))
    assert watcher.current().route("s") is None  # checked less than a second ago
    clock[0] += 1.01
    assert watcher.current().route("s").candidate_share == 0.1
