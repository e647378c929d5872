"""Every key the ``ratchet init`` template shows is a real setting that the code reads.

The template (``src/ratchet/templates/ratchet.toml``) holds active keys and commented-out
examples (``# api_base = "…"``, ``# [lm.prompt]`` then ``# model = "…"``). Each key is mapped
to its field of :class:`~ratchet.config.Settings` (nested sections, ``dict[str, Section]``
entries such as ``data.gates.<signature>``); a key with no field fails.

A field counts as read when ``src/ratchet`` outside the settings modules (``config/settings.py`` and the
section modules it re-exports) reads it
(``x.<field>``, or ``getattr`` with the name as a literal, iterated from a literal tuple as in
``{k: getattr(cfg, k) for k in ("alpha", …)}``, or an f-string: ``f"{job}_cron"`` reads every
``*_cron``), or reads a property of its settings class that uses it (``settings.home_dir``
resolves ``self.home``). A name alone proves little: ``request_index_days`` is a field of
``[serve]`` and of ``[retention]``, ``latency_p99_ms`` also an attribute of ``ServiceLevel``.
So the read must go through the key's section: ``….serve.request_index_days``, a variable
assigned from ``….serve`` or annotated with its class (``thresholds: GateThresholds``), or a
``self.<attr>`` that the class assigned from such a parameter.
"""

import ast
import inspect
import re
import tomllib
import types
import typing
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ratchet.config import Settings

SRC = Path(__file__).parents[2] / "src" / "ratchet"
TEMPLATE = SRC / "templates" / "ratchet.toml"
# The modules that declare the settings: their own reads (validators, properties) are not the code's.
SETTINGS_MODULES = tuple(SRC / "config" / name for name in (
    "settings.py", "section.py", "models.py", "serving.py", "operations.py", "limits.py"))
TOP_LEVEL = "settings"  # what top-level keys are read through: settings.home, self.settings.programs


@dataclass(frozen=True)
class TemplateKey:
    """One key of the template and the settings model that declares it."""

    path: tuple[str, ...]
    model: type[BaseModel]
    commented: bool

    @property
    def name(self) -> str:
        return self.path[-1]

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def qualifiers(self) -> set[str]:
        """Names a read may go through to be this section's: the section key and the model's classes."""
        section = self.path[-2] if len(self.path) > 1 else TOP_LEVEL
        classes = {self.model} | {_declared_in(self.model, name) for name in self.model.model_fields}
        return {section} | {cls.__name__ for cls in classes}


# -- the template -----------------------------------------------------------------------------------------------


def _union_members(annotation: Any) -> tuple[Any, ...]:
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    return typing.get_args(annotation) if is_union else (annotation,)


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The settings model a field holds (``LMSettings``, ``ModelSettings | None``), else None."""
    for member in _union_members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            return member
    return None


def entry_model(annotation: Any) -> type[BaseModel] | None:
    """The model of each entry of a ``dict[str, Model]`` field (``data.gates``), else None."""
    for member in _union_members(annotation):
        if typing.get_origin(member) is dict:
            return section_model(typing.get_args(member)[1])
    return None


def _walk(data: dict[str, Any], model: type[BaseModel], path: tuple[str, ...], commented: bool,
          keys: list[TemplateKey], unknown: list[str]) -> None:
    for name, value in data.items():
        where = (*path, name)
        field = model.model_fields.get(name)
        if field is None:
            unknown.append(".".join(where))
            continue
        keys.append(TemplateKey(where, model, commented))
        if not isinstance(value, dict):
            continue
        if (section := section_model(field.annotation)) is not None:
            _walk(value, section, where, commented, keys, unknown)
        elif (entry := entry_model(field.annotation)) is not None:
            for entry_name, entry_value in value.items():
                if isinstance(entry_value, dict):
                    _walk(entry_value, entry, (*where, entry_name), commented, keys, unknown)


def _table_path(parsed: dict[str, Any]) -> tuple[str, ...]:
    """``{"lm": {"prompt": {}}}`` (a parsed ``[lm.prompt]``) → ``("lm", "prompt")``."""
    path: list[str] = []
    while isinstance(parsed, dict) and len(parsed) == 1:
        name, parsed = next(iter(parsed.items()))
        path.append(name)
    return tuple(path)


def commented_examples(text: str) -> dict[str, Any]:
    """The commented-out ``# key = value`` lines and ``# [table]`` headers, as the TOML they would be.

    A comment counts when it parses as TOML on its own (prose does not); its table is the
    last header above it, commented or not.
    """
    examples: dict[str, Any] = {}
    table: tuple[str, ...] = ()
    for raw in text.splitlines():
        line = raw.strip()
        commented = line.startswith("#")
        body = line.lstrip("#").strip()
        if not commented and not body.startswith("["):
            continue
        try:
            parsed = tomllib.loads(body)
        except tomllib.TOMLDecodeError:
            continue
        if not parsed:
            continue
        if body.startswith("["):
            table = _table_path(parsed)
            if commented:
                _subtable(examples, table)
        else:
            _subtable(examples, table).update(parsed)
    return examples


def _subtable(root: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for name in path:
        root = root.setdefault(name, {})
    return root


def template_keys(text: str) -> tuple[list[TemplateKey], list[str]]:
    """Every key of a template, active and commented out, and the dotted keys ``Settings`` does not have."""
    keys: list[TemplateKey] = []
    unknown: list[str] = []
    _walk(tomllib.loads(text), Settings, (), False, keys, unknown)
    _walk(commented_examples(text), Settings, (), True, keys, unknown)
    return keys, unknown


# -- the code -----------------------------------------------------------------------------------------------------


@dataclass
class CodeReads:
    """Attribute names read in the code, each with the names its object went through."""

    names: dict[str, set[str]]
    patterns: list[tuple[re.Pattern[str], set[str]]]  # getattr(x, f"{job}_cron"): a name pattern

    def qualifiers(self, name: str) -> set[str] | None:
        """What reads of ``name`` went through; None when nothing reads it."""
        found = [quals for pattern, quals in self.patterns if pattern.fullmatch(name)]
        if name not in self.names and not found:
            return None
        return self.names.get(name, set()).union(*found)


def _annotation_names(annotation: ast.expr | None) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(annotation) if annotation is not None else ():
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):  # "GateThresholds | None"
            names.update(re.findall(r"\w+", node.value))
    return names


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, set[str]]:
    arguments = function.args
    return {arg.arg: _annotation_names(arg.annotation)
            for arg in (*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs)}


def _stands_for(value: ast.expr, parameters: dict[str, set[str]]) -> set[str]:
    """What an assigned value is: ``settings.rollout`` → rollout; ``settings or DataSettings()`` → the
    parameter's annotation and the class called."""
    if isinstance(value, ast.Attribute):
        return {value.attr}
    names: set[str] = set()
    for node in ast.walk(value):
        if isinstance(node, ast.Name) and node.id in parameters:
            names |= parameters[node.id]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            names.add(node.func.id)
    return names


def _assignments(node: ast.AST) -> Iterator[tuple[ast.expr, ast.expr]]:
    """(target, value) pairs of an assignment, ``a, b = x.a, x.b`` unpacked."""
    if not isinstance(node, ast.Assign):
        return
    for target in node.targets:
        if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
            yield from zip(target.elts, node.value.elts, strict=False)
        else:
            yield target, node.value


def _self_attributes(cls: ast.ClassDef) -> dict[str, set[str]]:
    """``self.<attr>`` → what the methods assign to it: ``self.settings = settings`` (``settings: DataSettings``)."""
    attributes: dict[str, set[str]] = {}
    for method in cls.body:
        if not isinstance(method, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        parameters = _parameters(method)
        for node in ast.walk(method):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Attribute):
                attributes.setdefault(node.target.attr, set()).update(_annotation_names(node.annotation))
            for target, value in _assignments(node):
                if isinstance(target, ast.Attribute) and _is_self(target.value):
                    attributes.setdefault(target.attr, set()).update(_stands_for(value, parameters))
    return attributes


def _local_names(function: ast.AST) -> dict[str, set[str]]:
    """Variable → what it stands for in a function (or module): its annotation, or the value assigned to it."""
    parameters = _parameters(function) if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef) else {}
    names = {name: set(annotation) for name, annotation in parameters.items()}
    for node in ast.walk(function):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.setdefault(node.target.id, set()).update(_annotation_names(node.annotation))
        for target, value in _assignments(node):
            if isinstance(target, ast.Name):
                names.setdefault(target.id, set()).update(_stands_for(value, parameters))
    return names


def _through(obj: ast.expr, local: dict[str, set[str]], attributes: dict[str, set[str]]) -> set[str]:
    """The names a read's object goes through: ``x.serve`` → serve; ``cfg`` → cfg and what cfg stands for;
    ``self.settings`` → settings and what the class assigned to it."""
    if isinstance(obj, ast.Attribute):
        return {obj.attr} | (attributes.get(obj.attr, set()) if _is_self(obj.value) else set())
    if isinstance(obj, ast.Name):
        return {obj.id} | local.get(obj.id, set())
    return set()


def _literal_loops(node: ast.AST) -> dict[str, list[str]]:
    """Loop variable → the string literals a comprehension or ``for`` iterates it over."""
    if isinstance(node, ast.For):
        generators = [(node.target, node.iter)]
    elif isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
        generators = [(gen.target, gen.iter) for gen in node.generators]
    else:
        return {}
    loops = {}
    for target, iterable in generators:
        if (isinstance(target, ast.Name) and isinstance(iterable, ast.Tuple | ast.List) and iterable.elts
                and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in iterable.elts)):
            loops[target.id] = [e.value for e in iterable.elts]
    return loops


def _getattr_names(call: ast.Call, loops: dict[str, list[str]]) -> tuple[list[str], re.Pattern[str] | None]:
    """The attribute names a ``getattr(obj, name)`` call reads: literal, looped over literals, or an f-string."""
    name = call.args[1]
    if isinstance(name, ast.Constant) and isinstance(name.value, str):
        return [name.value], None
    if isinstance(name, ast.Name):
        return loops.get(name.id, []), None
    if isinstance(name, ast.JoinedStr):
        parts = [re.escape(p.value) if isinstance(p, ast.Constant) else r"\w+" for p in name.values]
        return [], re.compile("".join(parts))
    return [], None


def _scopes(tree: ast.Module) -> Iterator[tuple[ast.AST, dict[str, set[str]]]]:
    """The module, every function, and every method with its class's ``self.<attr>`` assignments."""
    yield tree, {}
    methods: dict[ast.AST, dict[str, set[str]]] = {}
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        attributes = _self_attributes(cls)
        for method in cls.body:
            methods[method] = attributes
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node, methods.get(node, {})


def _read_in(reads: CodeReads, scope: ast.AST, attributes: dict[str, set[str]]) -> None:
    local = _local_names(scope)
    loops: dict[str, list[str]] = {}
    for node in ast.walk(scope):
        loops.update(_literal_loops(node))
    for node in ast.walk(scope):
        if isinstance(node, ast.Attribute):
            reads.names.setdefault(node.attr, set()).update(_through(node.value, local, attributes))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
              and len(node.args) >= 2):
            through = _through(node.args[0], local, attributes)
            names, pattern = _getattr_names(node, loops)
            for name in names:
                reads.names.setdefault(name, set()).update(through)
            if pattern is not None:
                reads.patterns.append((pattern, through))


def code_reads(package: Path = SRC, exclude: Collection[Path] = SETTINGS_MODULES) -> CodeReads:
    """Every attribute read (and ``getattr``) in the modules under ``package``, except ``exclude``."""
    reads = CodeReads({}, [])
    for path in sorted(package.rglob("*.py")):
        if path not in exclude:
            for scope, attributes in _scopes(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
                _read_in(reads, scope, attributes)
    return reads


def derived_reads(modules: Collection[Path] = SETTINGS_MODULES) -> dict[tuple[str, str], set[str]]:
    """(class, field) → the methods and properties of that settings class that read ``self.<field>``.

    ``home`` is read as ``settings.home_dir``, a property that resolves ``self.home``.
    """
    derived: dict[tuple[str, str], set[str]] = {}
    trees = [ast.parse(module.read_text(encoding="utf-8")) for module in modules]
    for cls in (n for tree in trees for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            for node in ast.walk(method):
                if isinstance(node, ast.Attribute) and _is_self(node.value):
                    derived.setdefault((cls.name, node.attr), set()).add(method.name)
    return derived


def _declared_in(model: type[BaseModel], name: str) -> type:
    """The class whose body declares field ``name`` (``LMSettings.model`` → ``ModelSettings``)."""
    return next(c for c in reversed(model.__mro__) if name in getattr(c, "__annotations__", {}))


def unread(keys: list[TemplateKey], reads: CodeReads,
           derived: dict[tuple[str, str], set[str]] | None = None) -> list[str]:
    """A message per key the code never reads through its section (directly or by a settings property)."""
    derived = derived_reads() if derived is None else derived
    problems = []
    for key in keys:
        via = {key.name} | derived.get((key.model.__name__, key.name), set()) | derived.get(
            (_declared_in(key.model, key.name).__name__, key.name), set())
        through = [q for name in sorted(via) if (q := reads.qualifiers(name)) is not None]
        if not through:
            problems.append(f"{key.dotted}: '{key.name}' is read nowhere in src/ratchet")
        elif not set().union(*through) & key.qualifiers:
            problems.append(f"{key.dotted}: '{key.name}' is read, but never through {sorted(key.qualifiers)}")
    return problems


# -- the tests ----------------------------------------------------------------------------------------------------


def test_every_template_key_is_a_setting() -> None:
    keys, unknown = template_keys(TEMPLATE.read_text(encoding="utf-8"))
    assert unknown == []
    commented = {key.dotted for key in keys if key.commented}
    assert {"database_url", "lm.api_base", "lm.local.model_path", "lm.prompt.model", "lm.teacher",
            "monitor.smtp_username", "data.gates.classify_intent.min_quality"} <= commented
    assert {"serve.request_index_days", "retention.request_index_days", "thresholds.latency_p99_ms"} <= {
        key.dotted for key in keys if not key.commented}


def test_the_settings_modules_declare_every_section() -> None:
    """A section declared elsewhere would count its own validators and properties as the code's reads."""
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = [Settings]
    while todo:
        model = todo.pop()
        if model not in seen:
            seen.add(model)
            for field in model.model_fields.values():
                todo.extend(m for m in (section_model(field.annotation), entry_model(field.annotation)) if m)
    assert {Path(inspect.getfile(model)) for model in seen} <= set(SETTINGS_MODULES)


def test_every_template_key_is_read_outside_settings() -> None:
    keys, _ = template_keys(TEMPLATE.read_text(encoding="utf-8"))
    assert unread(keys, code_reads()) == []


def test_a_key_that_is_not_a_setting_fails() -> None:
    text = ('[serve]\nport = 8000\nnot_a_key = 1\n# [lm.prompt]   # a commented table\n# modle = "x"\n'
            "# Prose: is not = a key\n[data.gates.sig]\nmin_quality = 1.0\nmin_qualty = 2.0\n")
    keys, unknown = template_keys(text)
    assert unknown == ["serve.not_a_key", "data.gates.sig.min_qualty", "lm.prompt.modle"]
    assert [key.dotted for key in keys] == ["serve", "serve.port", "data", "data.gates", "data.gates.sig.min_quality",
                                            "lm", "lm.prompt"]


def test_an_unread_key_or_one_read_through_another_object_fails(tmp_path: Path) -> None:
    (tmp_path / "mod.py").write_text(
        "def f(settings, job, level, thresholds: 'GateThresholds'):\n"
        "    retention = settings.retention\n"
        "    print(settings.data.default_gate, level.latency_p99_ms)\n"
        "    print(retention.request_index_days, settings.thresholds.latency_p50_ms, thresholds.min_quality)\n"
        "    print(getattr(settings.schedule, f'{job}_cron'), {k: getattr(settings.rollout, k) for k in ('alpha',)})\n"
        "class Store:\n"
        "    def __init__(self, settings: 'DataSettings | None' = None):\n"
        "        self.settings = settings or DataSettings()\n"
        "    def check(self):\n"
        "        return self.settings.max_field_chars\n")
    keys, _ = template_keys("[serve]\nrequest_index_days = 7.0\n[retention]\nrequest_index_days = 7.0\n"
                            "[thresholds]\nlatency_p50_ms = 1.0\nlatency_p99_ms = 2.0\n"
                            "[schedule]\ncycle_cron = '0 * * * *'\n[rollout]\nalpha = 0.05\nmin_quality = 0.7\n"
                            "[data]\nmax_field_chars = 100\n[data.default_gate]\nmin_quality = 70.0\n")
    problems = unread(keys, code_reads(tmp_path, exclude=[tmp_path / "settings.py"]), derived={})
    assert problems == [
        "serve: 'serve' is read nowhere in src/ratchet",
        "serve.request_index_days: 'request_index_days' is read, but never through ['ServeSettings', 'serve']",
        "thresholds.latency_p99_ms: 'latency_p99_ms' is read, but never through ['ThresholdSettings', 'thresholds']",
        "rollout.min_quality: 'min_quality' is read, but never through ['RolloutSettings', 'rollout']",
    ]


def test_a_field_read_by_a_settings_property_counts(tmp_path: Path) -> None:
    keys, _ = template_keys("home = '.ratchet'\n")
    (tmp_path / "mod.py").write_text("def f(settings):\n    return settings.home_dir\n")
    reads = code_reads(tmp_path, exclude=[tmp_path / "settings.py"])
    assert unread(keys, reads) == []
    assert unread(keys, reads, derived={}) == ["home: 'home' is read nowhere in src/ratchet"]
