"""``ratchet collect git``: a scripted repository, Ratchet's own history, mappers and the CLI."""

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ratchet.cli import collect_cmd
from ratchet.cli.main import RatchetGroup
from ratchet.config import Settings
from ratchet.data.collect import (
    REPORT_NAME,
    GitCollector,
    MappedCommit,
    NearDuplicateFilter,
    SkipCommit,
    change_difficulty,
    get_git_mapper,
    git_mapper,
    iter_commits,
    parse_conventional,
)
from ratchet.data.collect import mappers as mappers_module
from ratchet.data.records import read_batch
from ratchet.errors import DataError, RegistryError, UnknownProgramError
from ratchet.programs import load_programs

NOW = datetime.now(UTC)
EMAIL = "ada@example.com"


def git(repo: Path, *args: str, days_ago: float = 0) -> str:
    when = (NOW - timedelta(days=days_ago)).isoformat(timespec="seconds")
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada Lovelace", "GIT_AUTHOR_EMAIL": EMAIL,
           "GIT_COMMITTER_NAME": "Ada Lovelace", "GIT_COMMITTER_EMAIL": EMAIL,
           "GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when, "GIT_CONFIG_GLOBAL": "/dev/null"}
    done = subprocess.run(["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout


def commit(repo: Path, message: str, files: dict[str, str | bytes], days_ago: float) -> None:
    for name, content in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    git(repo, "add", "-A", days_ago=days_ago)
    git(repo, "commit", "-q", "--allow-empty", "-m", message, days_ago=days_ago)


def lines(n: int, tag: str = "x") -> str:
    return "".join(f"{tag} line {i}\n" for i in range(n))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A history with every case: conventional commits of each size, aliases, merges, short and old messages."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "chore: initial import of the project skeleton", {"README.md": "hi\n"}, days_ago=200)  # too old
    commit(repo, "feat(api): add pagination to the list endpoint", {"api.py": lines(10)}, days_ago=30)
    commit(repo, "fix: Handle empty input in the parser!", {"parser.py": lines(21)}, days_ago=29)  # duplicate
    commit(repo, "feature: add dark mode to the settings page", {"ui.py": lines(3)}, days_ago=28)  # alias: refused
    commit(repo, "wip", {"scratch.txt": "x\n"}, days_ago=27)  # too short
    commit(repo, "Update the README and some other things", {"README.md": "more\n"}, days_ago=26)
    commit(repo, "docs!: rewrite the install guide", {"docs/install.md": lines(5), "docs/logo.png": b"\x89PNG\0\0\1"},
           days_ago=25)
    git(repo, "checkout", "-q", "-b", "topic", days_ago=24)
    commit(repo, "test: cover the retry policy of the client", {"tests/test_retry.py": lines(40)}, days_ago=24)
    git(repo, "checkout", "-q", "main", days_ago=23)
    commit(repo, "ci: run the linters on pull requests", {".ci.yml": lines(4)}, days_ago=23)
    git(repo, "merge", "-q", "--no-ff", "topic", "-m", "Merge branch 'topic' into main", days_ago=22)
    commit(repo, "fix: handle empty input in the parser",
           {"parser.py": lines(20), "lexer.py": lines(20), "tests/test_parser.py": lines(10)}, days_ago=21)
    commit(repo, "refactor: split the config loader into smaller functions for more readability",
           {"config/part0.py": lines(41)}, days_ago=20)  # near duplicate of the next one (Jaccard 10/11)
    commit(repo, "refactor: split the config loader into smaller functions for readability",
           {f"config/part{i}.py": lines(40, str(i)) for i in range(12)}, days_ago=19)  # hard: 12 files
    commit(repo, "FIX(Core): correct the rounding of invoice totals", {"core.py": lines(200), "b.py": lines(150)},
           days_ago=18)  # hard by lines, type case-insensitive
    commit(repo, "feat: drop support for Python 3.10\n\nBREAKING CHANGE: Python 3.11 or newer is required",
           {"pyproject.toml": "requires = 3.11\n"}, days_ago=17)
    return repo


@pytest.fixture(scope="module")
def registry():
    return load_programs(Settings())


def by_subject(path: Path) -> dict:
    return {r.values["subject"]: r for r in read_batch(path)}


def test_mines_conventional_commits_with_difficulty_category_and_provenance(repo: Path, registry, tmp_path: Path
                                                                            ) -> None:
    report = GitCollector(repo, registry, target=30, since_days=90).collect(tmp_path / "out")

    examples = by_subject(tmp_path / "out" / "classify_commit.jsonl")
    assert set(examples) == {
        "drop support for Python 3.10", "correct the rounding of invoice totals",
        "split the config loader into smaller functions for readability",
        "handle empty input in the parser", "run the linters on pull requests",
        "cover the retry policy of the client", "rewrite the install guide", "add pagination to the list endpoint",
    }
    assert [r.values["type"] for r in read_batch(tmp_path / "out" / "classify_commit.jsonl")][:3] == [
        "feat", "fix", "refactor"]  # newest first
    fix = examples["correct the rounding of invoice totals"]
    assert fix.values["type"] == "fix" and fix.category == "fix" and fix.source == "git"
    assert fix.difficulty == "hard"  # 350 lines
    assert fix.metadata["scope"] == "Core" and fix.metadata["breaking"] is False
    assert fix.metadata["files_changed"] == 2 and fix.metadata["insertions"] == 350
    assert fix.metadata["author"] == "Ada Lovelace" and len(fix.metadata["sha"]) == 40
    assert set(fix.metadata) == {"sha", "author", "timestamp", "files_changed", "insertions", "deletions", "scope",
                                 "breaking"}
    assert examples["add pagination to the list endpoint"].difficulty == "easy"
    assert examples["handle empty input in the parser"].difficulty == "medium"  # 3 files, 31 lines
    assert examples["split the config loader into smaller functions for readability"].difficulty == "hard"  # 12 files
    docs = examples["rewrite the install guide"]
    assert docs.metadata["breaking"] is True and docs.metadata["files_changed"] == 2  # the binary file counts
    assert docs.metadata["insertions"] == 5
    assert examples["drop support for Python 3.10"].metadata["breaking"] is True  # the footer
    assert EMAIL not in (tmp_path / "out" / "classify_commit.jsonl").read_text()

    assert dict(report.skipped) == {"merge_commit": 1, "short_message": 1, "unknown_type": 1, "not_conventional": 1,
                                    "duplicate": 1, "near_duplicate": 1}
    assert report.examined == report.collected + sum(report.skipped.values()) == 14  # the 200-day-old one is out
    assert report.summary().startswith("collected: 8 examples, target: 30 (14 commits examined; skipped:")
    assert not report.complete and report.stopped == "history exhausted: 14 commits in the last 90 days"
    assert any("1 older commits" in hint for hint in report.hints)
    saved = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert saved["collected"] == 8 and saved["skipped"]["merge_commit"] == 1
    assert saved["counts"]["by_difficulty"] == {"easy": 4, "medium": 2, "hard": 2}


def test_stops_at_the_target_and_stops_git(repo: Path, registry, tmp_path: Path) -> None:
    report = GitCollector(repo, registry, target=2).collect(tmp_path / "out")
    assert report.collected == 2 and report.complete
    assert report.examined == 2 and report.stopped == "target reached after 2 commits"
    assert not report.hints


def test_merges_and_short_messages_can_be_kept(repo: Path, registry, tmp_path: Path) -> None:
    report = GitCollector(repo, registry, include_merges=True, min_message_length=0,
                          since_days=None).collect(tmp_path / "out")
    assert "merge_commit" not in report.skipped and "short_message" not in report.skipped
    assert report.skipped["not_conventional"] == 3  # the merge, "wip" and the README update
    assert report.collected == 9  # the initial commit too: no time window


def test_a_path_that_is_not_a_repository_is_a_clear_error(registry, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a git repository"):
        GitCollector(tmp_path, registry)
    with pytest.raises(DataError, match="no such directory"):
        GitCollector(tmp_path / "missing", registry)
    with pytest.raises(UnknownProgramError, match="unknown signature"):
        GitCollector(tmp_path, registry, signature="nope")


def test_an_empty_repository_reports_no_commits(registry, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    report = GitCollector(empty, registry).collect(tmp_path / "out")
    assert report.collected == 0 and report.stopped == "the repository has no commits"
    assert (tmp_path / "out" / "classify_commit.jsonl").read_text() == ""


def test_ratchets_own_history(registry, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        pytest.skip("this checkout is not a git clone (an exported tree): no history to mine")
    report = GitCollector(root, registry, target=30).collect(tmp_path / "out")
    assert report.examined == report.collected + sum(report.skipped.values())
    assert report.summary().startswith(f"collected: {report.collected} example")
    assert "target: 30" in report.summary()
    if report.collected < 30:  # a young history: the report must say why it is short
        assert not report.complete and report.stopped.startswith("history exhausted")
        assert report.hints[0].startswith(f"short of the target by {30 - report.collected}")
    for example in read_batch(tmp_path / "out" / "classify_commit.jsonl"):
        assert example.values["type"] in {"feat", "fix", "docs", "style", "refactor", "perf", "test", "build", "ci",
                                          "chore", "revert"}
        assert "@" not in example.metadata["author"]


def test_iter_commits_reads_numstat_and_parents(repo: Path) -> None:
    commits = list(iter_commits(repo))
    assert len(commits) == 15
    merge = next(c for c in commits if c.subject.startswith("Merge branch"))
    assert merge.is_merge and merge.files == ()
    docs = next(c for c in commits if c.subject.startswith("docs!"))
    binary = next(f for f in docs.files if f.path == "docs/logo.png")
    assert binary.binary and docs.insertions == 5
    footer = next(c for c in commits if "3.10" in c.subject)
    assert footer.body == "BREAKING CHANGE: Python 3.11 or newer is required"
    early = iter_commits(repo)
    assert next(early).subject.startswith("feat: drop")
    early.close()  # stops git without an error


@pytest.mark.parametrize(("subject", "expected"), [
    ("feat(api): add pagination", {"type": "feat", "scope": "api", "breaking": False, "subject": "add pagination"}),
    ("Fix: handle None", {"type": "fix", "scope": None, "breaking": False, "subject": "handle None"}),
    ("refactor(core)!: drop the v1 API", {"type": "refactor", "scope": "core", "breaking": True,
                                          "subject": "drop the v1 API"}),
    ("REVERT: undo the cache change", {"type": "revert", "scope": None, "breaking": False,
                                       "subject": "undo the cache change"}),
])
def test_conventional_subjects(subject: str, expected: dict) -> None:
    assert parse_conventional(subject) == expected


@pytest.mark.parametrize(("subject", "reason"), [
    ("feature: add a thing", "unknown_type"),
    ("bugfix: repair a thing", "unknown_type"),
    ("feat:missing space", "not_conventional"),
    ("feat(): empty scope", "not_conventional"),
    ("Add a thing", "not_conventional"),
    ('Revert "feat: add a thing"', "not_conventional"),
    ("fix:  ", "not_conventional"),
])
def test_non_conventional_subjects_are_refused(subject: str, reason: str) -> None:
    with pytest.raises(SkipCommit) as info:
        parse_conventional(subject)
    assert info.value.reason == reason


def test_difficulty_boundaries() -> None:
    assert change_difficulty(2, 30) == "easy"
    assert change_difficulty(3, 30) == "medium"
    assert change_difficulty(2, 31) == "medium"
    assert change_difficulty(9, 299) == "medium"
    assert change_difficulty(10, 0) == "hard"
    assert change_difficulty(1, 300) == "hard"


def test_near_duplicate_filter() -> None:
    seen = NearDuplicateFilter(0.9)
    assert seen.check("Split the loader into smaller functions for readability now") is None
    assert seen.check("split the loader, into smaller functions for readability now!") == "duplicate"
    assert seen.check("split the loader into smaller functions for readability now please") == "near_duplicate"
    assert seen.check("split the loader into functions") is None


def test_custom_mappers_plug_in(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dspy

    from ratchet.programs import ProgramRegistry, program

    monkeypatch.setattr(mappers_module, "_MAPPERS", dict(mappers_module._MAPPERS))
    registry = ProgramRegistry()

    class Size(dspy.Signature):
        """Guess whether a change is big."""

        message: str = dspy.InputField()
        big: bool = dspy.OutputField()

    @program("change_size", metric=lambda e, p, trace=None: True, registry=registry)
    def change_size() -> dspy.Module:
        return dspy.Predict(Size)

    @git_mapper("change_size")
    def size_mapper(commit):
        if "config" in commit.subject:
            raise RuntimeError("boom")
        if commit.is_merge:
            return None
        return MappedCommit(values={"message": commit.message, "big": commit.files_changed > 2},
                            metadata={"custom": 1}, difficulty="easy", category="x")

    assert get_git_mapper("change_size") is size_mapper
    with pytest.raises(RegistryError, match="already registered"):
        git_mapper("change_size")(lambda commit: None)
    report = GitCollector(repo, registry, signature="change_size", include_merges=True,
                          min_message_length=0).collect(tmp_path / "out")
    assert report.skipped["mapper_error"] == 2 and report.skipped["skipped_by_mapper"] == 1
    assert any("RuntimeError: boom" in e for e in report.errors)
    examples = read_batch(tmp_path / "out" / "change_size.jsonl")
    assert examples and all(e.difficulty == "easy" and e.category == "x" and e.metadata["custom"] == 1
                            for e in examples)
    with pytest.raises(DataError, match=r"no git mapper for signature 'classify_intent'.*git_mapper"):
        get_git_mapper("classify_intent")


def cli() -> typer.Typer:
    root = typer.Typer(cls=RatchetGroup)
    root.add_typer(collect_cmd.app, name="collect")
    return root


def test_cli(repo: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli(), ["collect", "git", "--repo-path", str(repo), "--target", "3", "--output", "out",
                                   "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["collected"] == 3 and data["complete"] and data["written"] == {"classify_commit": 3}
    human = runner.invoke(cli(), ["collect", "git", "--repo-path", str(repo), "--output", "out2",
                                  "--include-merge-commits", "--min-commit-message-length", "0"])
    assert human.exit_code == 0, human.output
    assert "collected: 8 examples, target: 30" in human.stdout
    assert "not_conventional" in human.stdout and "hint:" in human.stdout
    everything = runner.invoke(cli(), ["collect", "git", "--repo-path", str(repo), "--output", "out4",
                                       "--since-days", "0", "--json"])
    assert json.loads(everything.stdout)["collected"] == 9  # 0: the whole history, the 200-day-old commit too
    bad = runner.invoke(cli(), ["collect", "git", "--repo-path", str(tmp_path), "--output", "out3"])
    assert bad.exit_code == 2 and "is not a git repository" in bad.stderr
