"""The package metadata matches the code: every third-party import is declared, every package-data file exists.

A module under ``src/ratchet`` that imports a distribution which ``pyproject.toml`` does not
declare works on a developer's machine (something else pulled it in) and breaks for users
the day that something else drops it. These tests read the source with ``ast`` (imports at
any depth, ``TYPE_CHECKING`` blocks included) and the metadata with ``tomllib`` and
``packaging``, so they need nothing but the installed environment.
"""

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[2]
PYPROJECT = ROOT / "pyproject.toml"
PACKAGE = ROOT / "src" / "ratchet"

ALLOWED_TRANSITIVE: dict[str, tuple[str, str]] = {
    "pydantic_core": ("pydantic", "pydantic pins pydantic-core to the exact version it is built on, and its docs "
                                  "import PydanticCustomError from pydantic_core; a second, looser pin here could "
                                  "only disagree with pydantic's"),
}
"""Top-level import name → (declared distribution that guarantees it, why that is enough).

An entry belongs here only for a module that a declared distribution itself installs and pins
as part of its own API, never for a package that merely happens to be a dependency of a
dependency today.
"""


def normalize(name: str) -> str:
    """PEP 503 normal form of a name: ``SQLAlchemy`` → ``sqlalchemy``, ``json_repair`` → ``json-repair``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions(pyproject: Path = PYPROJECT) -> set[str]:
    """Normalised names of ``[project].dependencies`` (extras and markers ignored: the package is required)."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    return {normalize(Requirement(spec).name) for spec in project.get("dependencies", [])}


def imported_names(path: Path) -> Iterator[tuple[str, int]]:
    """Top-level module names a file imports, with line numbers: ``import a.b`` and ``from a.b import c`` give ``a``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.partition(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.partition(".")[0], node.lineno


def third_party_imports(package: Path = PACKAGE) -> dict[str, list[str]]:
    """Import name → ``file:line`` of each use, for every module under ``package`` (stdlib and ratchet left out)."""
    found: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for name, line in imported_names(path):
            if name in sys.stdlib_module_names or name == package.name:
                continue
            found.setdefault(name, []).append(f"{path.relative_to(package.parent)}:{line}")
    return found


def undeclared(imports: dict[str, list[str]], declared: set[str]) -> list[str]:
    """One message per import name whose distribution is neither declared nor an allowed transitive one."""
    providers = importlib.metadata.packages_distributions()
    problems = []
    for name, where in sorted(imports.items()):
        if name in ALLOWED_TRANSITIVE:
            continue
        dists = {normalize(d) for d in providers.get(name, [])}
        if not dists:
            problems.append(f"{name!r} (imported at {', '.join(where)}) comes from no installed distribution")
        elif not dists & declared:
            problems.append(f"{name!r} (imported at {', '.join(where)}) comes from {sorted(dists)}, "
                            "which [project].dependencies does not declare")
    return problems


def test_every_third_party_import_is_a_declared_dependency() -> None:
    imports = third_party_imports()
    assert {"dspy", "numpy", "sqlalchemy"} <= set(imports)  # the scan sees imports at all depths
    assert undeclared(imports, declared_distributions()) == []


def test_an_undeclared_import_is_caught(tmp_path: Path) -> None:
    package = tmp_path / "ratchet"
    package.mkdir()
    (package / "mod.py").write_text("import os\nfrom ratchet import x\n\ndef f():\n    import pytest.mark\n")
    imports = third_party_imports(package)
    assert imports == {"pytest": ["ratchet/mod.py:5"]}
    (problem,) = undeclared(imports, declared_distributions())
    assert "'pytest'" in problem and "does not declare" in problem
    assert undeclared(imports, {"pytest"}) == []
    assert "no installed distribution" in undeclared({"surely_not_installed_xyz": ["m.py:1"]}, set())[0]


def test_allowed_transitive_imports_name_a_declared_carrier() -> None:
    declared = declared_distributions()
    imports = third_party_imports()
    for name, (carrier, why) in ALLOWED_TRANSITIVE.items():
        assert name in imports, f"{name!r} is no longer imported: drop it from ALLOWED_TRANSITIVE"
        assert normalize(carrier) in declared and why.strip(), f"{name!r}: {carrier!r} must be declared, with a reason"
        provided = {normalize(d) for d in importlib.metadata.packages_distributions().get(name, [])}
        pins = {normalize(Requirement(r).name) for r in importlib.metadata.requires(carrier) or []}
        assert provided & pins, f"{name!r} comes from {sorted(provided)}, which {carrier!r} does not require"


PACKAGE_DATA = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]["ratchet"]


@pytest.mark.parametrize("pattern", PACKAGE_DATA)
def test_every_package_data_pattern_matches_a_file(pattern: str) -> None:
    assert any(p.is_file() for p in PACKAGE.glob(pattern)), f"package-data {pattern!r} matches no file in {PACKAGE}"
