"""The console's Programs and Datasets pages over a real home: versions, lineage, scores, diffs, examples with their
provenance, pagination, 404 and 400 pages, and user text rendered escaped."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ratchet.config import Settings
from ratchet.console import create_console_app
from ratchet.data.datasets import DatasetStore
from ratchet.data.golden import GoldenExample, add_golden
from ratchet.data.records import ExampleRecord
from ratchet.evaluation import fewshot_program
from ratchet.programs import load_programs
from ratchet.programs.production import ProductionPointers
from ratchet.programs.versions import VersionStore
from ratchet.store.db import StateDB

SIG = "classify_intent"
BANKING = Path(__file__).parents[2] / "src" / "ratchet" / "examples" / "data" / "banking77"
INJECTION = '<script>alert("x")</script><img src=x onerror=alert(1)>'
NEW_INSTRUCTIONS = "Classify the banking customer's message into exactly one intent. Prefer card_arrival when unsure."


def banking(start: int, stop: int, source: str = "synthetic") -> list[ExampleRecord]:
    rows = [json.loads(line) for line in (BANKING / "train.jsonl").read_text().splitlines()][start:stop]
    return [ExampleRecord(values=row, signature=SIG, source=source, quality=float(60 + i % 40),
                          difficulty=("easy", "medium", "hard")[i % 3], category=row["intent"],
                          metadata={"request_id": f"req-{i}"}) for i, row in enumerate(rows, start)]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A home with two program versions (v1 in production), three training versions and a golden set."""
    settings = Settings(home=tmp_path / "home")
    registry = load_programs(settings)
    spec = registry.get(SIG)
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    first = store.create(SIG, banking(0, 40), source="synthetic").version
    added = banking(40, 70, source="telemetry")
    added[0].values["text"] = INJECTION
    second = store.add(SIG, added, source="telemetry").version
    relabelled = banking(0, 40)
    relabelled[3].values["intent"] = "age_limit" if relabelled[3].values["intent"] != "age_limit" else "atm_support"
    third = store.create(SIG, relabelled[:39], source="synthetic").version  # one changed, one removed, 30 gone
    add_golden(settings, SIG, [GoldenExample(values={"text": "my card never came", "intent": "card_arrival"},
                                             task_id="task-7", annotator="ann-a", request_id="req-golden")],
               source="annotation", registry=registry)

    versions = VersionStore(settings.home_dir)
    v1 = versions.save(spec, fewshot_program(spec, 3), lm="llamacpp/x", adapter="CompletionAdapter", parent="base",
                       dataset_version=first, optimizer="labeled", optimizer_params={"k": 3},
                       scores={"test": 0.61, "baseline_test": 0.42,
                               "decision": {"deploy": True, "improvement_percent": 45.2, "reason": "deploy: enough"}})
    module = fewshot_program(spec, 5, seed=1)
    module.signature = module.signature.with_instructions(NEW_INSTRUCTIONS)
    v2 = versions.save(spec, module, lm="llamacpp/x", adapter="CompletionAdapter", parent=v1.version,
                       dataset_version=second, optimizer="mipro")  # no scores recorded
    with StateDB.connect(settings) as db:
        ProductionPointers(db, versions).set(SIG, v1.version, actor="operator", reason="test")
    app = create_console_app(settings)
    with TestClient(app, base_url="http://testserver") as client:
        yield {"client": client, "settings": settings, "spec": spec, "datasets": (first, second, third),
               "v1": v1, "v2": v2, "module": module}


def _text(response: Any) -> str:
    """The page's visible text, tags stripped and entities decoded, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.text)).split())


def test_programs_page_lists_versions_with_lineage_scores_and_production(home) -> None:
    client = home["client"]
    response = client.get("/ui/programs")
    assert response.status_code == 200
    text = _text(response)
    assert re.search(r"v2 \S+ \S+ UTC v1 · diff v\d{8}_\d{6}_1 mipro – – – –", text), text  # no scores: dashes
    assert re.search(r"v1 production \S+ \S+ UTC base · diff v\d{8}_\d{6} labeled 0.42 0.61 \+45.2 % deploy", text)
    assert "labeled" in text and "mipro" in text
    first, second, _ = home["datasets"]
    assert f'href="/ui/datasets/{SIG}/{first}/examples"' in response.text
    assert f'href="/ui/datasets/{SIG}/{second}/examples"' in response.text
    assert f'href="/ui/programs/{SIG}/diff?a=v1&amp;b=v2"' in response.text
    assert 'scope="col"' in response.text and 'scope="row"' in response.text


def test_a_version_page_shows_instructions_demos_and_metadata(home) -> None:
    client, module = home["client"], home["module"]
    response = client.get(f"/ui/programs/{SIG}/v2")
    assert response.status_code == 200
    text = _text(response)
    assert NEW_INSTRUCTIONS in text
    assert "Demos 5" in text
    for demo in module.demos:
        assert demo.text in text
    assert "mipro" in text and "llamacpp/x" in text and "no scores recorded" in text
    assert f'href="/ui/programs/{SIG}/v1"' in response.text  # the parent
    base = client.get(f"/ui/programs/{SIG}/base")
    assert base.status_code == 200 and "no demos (zero-shot)" in base.text


def test_the_diff_marks_the_changed_instructions_and_demos(home) -> None:
    client, module = home["client"], home["module"]
    v1_demos = {d["text"] for d in json.loads((home["settings"].home_dir / "programs" / SIG / "v1" / "program.json")
                                              .read_text())["demos"]}
    v2_demos = {d.text for d in module.demos}
    response = client.get(f"/ui/programs/{SIG}/diff", params={"a": "v1", "b": "v2"})
    assert response.status_code == 200
    page = response.text
    assert re.search(r'<ins class="diff-add"[^>]*>[^<]*Prefer card_arrival', page)  # added words, marked
    assert '<del class="diff-del"' in page
    text = _text(response)
    added, removed, kept = len(v2_demos - v1_demos), len(v1_demos - v2_demos), len(v1_demos & v2_demos)
    assert f"3 → 5: {added} added, {removed} removed, {kept} kept" in text
    assert text.count("+ added") >= added and text.count("− removed") >= removed
    for demo in v2_demos - v1_demos:
        assert demo in text
    # the form: two labelled selects with the versions chosen
    assert '<label for="diff-a">' in page and '<label for="diff-b">' in page
    assert '<option value="v1" selected>' in page and '<option value="v2" selected>' in page
    # without a choice: the newest version against its parent
    default = client.get(f"/ui/programs/{SIG}/diff")
    assert default.status_code == 200 and "v1 → v2" in _text(default)


def test_unknown_programs_and_versions_are_404_pages_and_bad_values_400(home) -> None:
    client = home["client"]
    section = client.get(f"/ui/programs/{SIG}", follow_redirects=False)
    assert section.status_code == 303 and section.headers["location"] == f"/ui/programs#p-{SIG}"
    for path in ("/ui/programs/nope", "/ui/programs/nope/v1", f"/ui/programs/{SIG}/v99", f"/ui/programs/{SIG}/latest",
                 f"/ui/programs/{SIG}/diff?a=v1&b=v99", "/ui/programs/nope/diff"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Not found" in response.text and "Traceback" not in response.text
    bad = client.get(f"/ui/programs/{SIG}/diff", params={"a": "../../etc", "b": "v2"})
    assert bad.status_code == 400 and "Bad request" in bad.text and "&#39;a&#39; must be a version" in bad.text


def test_datasets_page_lists_training_and_golden_versions_with_sizes_quality_gates_sources(home) -> None:
    client = home["client"]
    first, second, third = home["datasets"]
    response = client.get("/ui/datasets")
    assert response.status_code == 200
    text = _text(response)
    assert "Training data 3 version(s)" in text and "Golden set 1 version(s)" in text
    for version, size in ((first, 40), (second, 70), (third, 39)):
        assert re.search(rf"{version}( latest)? \S+ \S+ UTC {size} ", text), version
    assert "synthetic 40, telemetry 30" in text
    # each live version's gates were run: all 40 synthetic card_arrival examples fail diversity, some quality
    assert re.search(rf"{first} \S+ \S+ UTC 40 25/8/7 79.5 failed min_quality, difficulty_distribution, "
                     r"category_diversity, source_diversity synthetic 40", text), text
    assert "failed min_quality, difficulty_distribution, category_diversity synthetic 40, telemetry 30" in text
    golden = client.get(f"/ui/datasets/{SIG}?kind=golden")
    assert golden.status_code == 200
    golden_text = _text(golden)
    assert "ann-a 1" in golden_text and "annotation 1" in golden_text


def test_a_signature_page_shows_the_latest_summary_gate_checks_and_versions(home) -> None:
    client = home["client"]
    response = client.get(f"/ui/datasets/{SIG}")
    assert response.status_code == 200
    text = _text(response)
    assert "min_quality" in text and "source_diversity" in text and "category_diversity" in text
    assert "Examples 39" in text
    for version in home["datasets"]:
        assert version in text


def test_the_dataset_diff_counts_changes_and_samples_changed_examples(home) -> None:
    client = home["client"]
    _, second, third = home["datasets"]
    response = client.get(f"/ui/datasets/{SIG}/diff", params={"a": second, "b": third})
    assert response.status_code == 200
    text = _text(response)
    assert "70 → 39" in text and "−31" in text and "+0" in text
    assert "Changed 1" in text and "Changed examples 1 of 1" in text
    assert re.search(r"<del>[^<]*</del>", response.text) and re.search(r"<ins>[^<]*</ins>", response.text)
    assert "telemetry" in text  # the sources distribution changed
    assert '<label for="diff-a">' in response.text
    default = client.get(f"/ui/datasets/{SIG}/diff")  # latest against the one before it
    assert default.status_code == 200 and f"{second} → {third}" in _text(default)


def test_examples_are_paginated_with_provenance_and_user_text_escaped(home) -> None:
    client = home["client"]
    _, second, _ = home["datasets"]
    first_page = client.get(f"/ui/datasets/{SIG}/{second}/examples")
    assert first_page.status_code == 200
    text = _text(first_page)
    assert "Examples 1–25 of 70" in text and "page 1 of 3" in text
    assert "request_id req-0" in text and "source synthetic" in text
    last = client.get(f"/ui/datasets/{SIG}/{second}/examples", params={"page": 3})
    assert last.status_code == 200
    last_text = _text(last)
    assert "Examples 51–70 of 70" in last_text
    assert "Next →" not in last_text and "← Previous" in last_text
    # the injected text is shown, escaped, never as markup
    found = [client.get(f"/ui/datasets/{SIG}/{second}/examples", params={"page": n}) for n in (1, 2, 3)]
    page = next(r.text for r in found if "onerror" in r.text)
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    test_split = client.get(f"/ui/datasets/{SIG}/{second}/examples", params={"split": "test"})
    assert test_split.status_code == 200 and "test split" in _text(test_split)
    assert '<option value="test" selected>' in test_split.text and '<label for="ex-split">' in test_split.text
    golden = client.get(f"/ui/datasets/{SIG}/latest/examples", params={"kind": "golden"})
    golden_text = _text(golden)
    assert golden.status_code == 200 and "my card never came" in golden_text
    assert "task_id task-7" in golden_text and "annotator ann-a" in golden_text
    assert "request_id req-golden" in golden_text and "source annotation" in golden_text


def test_unknown_datasets_404_and_bad_query_values_400(home) -> None:
    client = home["client"]
    _, second, _ = home["datasets"]
    for path in ("/ui/datasets/nope", f"/ui/datasets/{SIG}/v20000101_000000/examples",
                 f"/ui/datasets/{SIG}/not-a-version/examples", f"/ui/datasets/nope/{second}/examples",
                 f"/ui/datasets/{SIG}/diff?a=v20000101_000000", "/ui/datasets/extract_booking/diff"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "Not found" in response.text and "Traceback" not in response.text
    for query in ({"page": "0"}, {"page": "x"}, {"page": "99"}, {"split": "evil"}, {"kind": "other"}):
        response = client.get(f"/ui/datasets/{SIG}/{second}/examples", params=query)
        assert response.status_code == 400, query
        assert "Bad request" in response.text
    bad = client.get(f"/ui/datasets/{SIG}/diff", params={"a": "<b>x</b>"})
    assert bad.status_code == 400 and "<b>x</b>" not in bad.text



def test_an_archived_version_is_listed_but_never_unpacked_by_a_page(home) -> None:
    client, settings = home["client"], home["settings"]
    first, second, third = home["datasets"]
    store = DatasetStore(settings.home_dir, settings.data, registry=load_programs(settings))
    assert [i.version for i in store.archive(SIG, older_than_days=0, keep=0)] == [first, second]
    listed = client.get(f"/ui/datasets/{SIG}")
    assert listed.status_code == 200 and _text(listed).count("archived") >= 2
    for path, params in ((f"/ui/datasets/{SIG}/{first}/examples", {}),
                         (f"/ui/datasets/{SIG}/diff", {"a": second, "b": third})):
        response = client.get(path, params=params)
        assert response.status_code == 409 and "is archived" in response.text
    assert not (settings.home_dir / "training_data" / SIG / first).exists()  # still packed
