"""The embedded model's self-test: load + one completion in a child process, before a process loads it.

A crash inside llama.cpp (a CPU-specific defect, a library compiled for another CPU) kills the
process that runs it. So before a serving or optimizing process loads the weights, a child
process does exactly that first (:mod:`ratchet.lm.llamacpp_native` run by path). If the child
dies, the parent raises :class:`~ratchet.errors.ModelNotAvailableError` naming the signal, the
phase, the CPU's features and the setting to change, and stays alive.

A passed test is remembered per (llama.cpp library, weights, CPU, setting) in
``~/.cache/ratchet/selftest/`` (``RATCHET_CACHE_DIR`` overrides the cache root), so it costs
seconds once per machine and build, not per start. Failures are not remembered: the next
start tests again, after the user changed what the message said to change.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ratchet.errors import ModelNotAvailableError
from ratchet.lm import llamacpp_native as native
from ratchet.store.atomic import atomic_write_json

__all__ = ["SelfTestResult", "default_cache_dir", "library_identity", "run_self_test"]

log = logging.getLogger(__name__)

_PHASES = {
    "import": "importing llama.cpp",
    "system_info": "reading llama.cpp's system info",
    "load": "loading the weights",
    "complete": "the first completion",
    "done": "shutting down",
}
_SIGNAL_TEXT = {
    signal.SIGSEGV: "segmentation fault",
    signal.SIGILL: "illegal instruction",
    signal.SIGABRT: "abort",
    signal.SIGBUS: "bus error",
    signal.SIGFPE: "floating-point exception",
    signal.SIGKILL: "killed, e.g. by the out-of-memory killer",
}


@dataclass(frozen=True)
class SelfTestResult:
    """A passed self-test: what llama.cpp reported, what ``extra_buffers`` resolved to, and the timings."""

    key: str
    llama_cpp_version: str
    system_info: str
    cpu: dict[str, Any]
    extra_buffers: dict[str, Any]
    load_s: float
    complete_s: float
    total_s: float
    tested_at: float
    cached: bool = False
    compiled: list[str] = field(default_factory=list)

    @property
    def extra_buffers_enabled(self) -> bool:
        return bool(self.extra_buffers.get("enabled"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_cache_dir() -> Path:
    """Where passed self-tests are remembered: ``$RATCHET_CACHE_DIR/selftest`` or ``~/.cache/ratchet/selftest``."""
    root = os.environ.get("RATCHET_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ratchet")
    return Path(root) / "selftest"


def library_identity() -> str:
    """llama-cpp-python's installed native libraries, by name, size and modification time (not imported)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError("the embedded model needs llama-cpp-python: run `make` in a Ratchet clone "
                                     "or `pip install llama-cpp-python` (see scripts/llama_wheel.sh)")
    package = Path(next(iter(spec.submodule_search_locations)))
    parts = [str(package)]
    for lib in sorted((package / "lib").glob("*")):
        with contextlib.suppress(OSError):
            st = lib.stat()
            parts.append(f"{lib.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _key(weights_sha256: str, extra_buffers: str, cpu: native.CpuInfo, launcher: Sequence[str]) -> str:
    text = json.dumps([library_identity(), weights_sha256, cpu.fingerprint(), extra_buffers, sys.executable,
                       list(launcher)])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def run_self_test(model_path: str | Path, *, weights_sha256: str, extra_buffers: str = "auto", n_threads: int = 0,
                  use_cache: bool = True, cache_dir: Path | None = None, timeout_s: float = 180.0,
                  launcher: Sequence[str] = ()) -> SelfTestResult:
    """Load ``model_path`` and complete a few tokens in a child process; raise ``ModelNotAvailableError`` if it fails.

    With ``use_cache``, a result remembered for this library, weights, CPU and setting is returned at once.
    ``launcher`` runs the child's Python through another program, e.g. a CPU emulator
    (``("qemu-x86_64", "-cpu", "Haswell")``) to try this build on a CPU the machine does not have.
    """
    cpu = native.cpu_info()
    key = _key(weights_sha256, extra_buffers, cpu, launcher)
    cache_file = (cache_dir or default_cache_dir()) / f"{key}.json"
    if use_cache:
        cached = _read_cached(cache_file)
        if cached is not None:
            return cached
    args = {"model_path": str(model_path), "extra_buffers": extra_buffers, "n_threads": n_threads}
    started = time.perf_counter()
    try:
        child = subprocess.run([*launcher, sys.executable, "-P", native.__file__, json.dumps(args)],
                               capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        phases = _phases(exc.stdout or b"")
        raise ModelNotAvailableError(
            f"the embedded model's self-test did not finish in {timeout_s:.0f} s "
            f"(stuck in {_PHASES.get(_last_phase(phases), 'starting')}); CPU: {cpu.summary()}") from None
    phases = _phases(child.stdout)
    if child.returncode != 0 or "done" not in phases:
        raise ModelNotAvailableError(_failure_message(child.returncode, phases, child.stderr, cpu, extra_buffers))
    loaded, done = phases["load"], phases["done"]
    result = SelfTestResult(
        key=key, llama_cpp_version=str(phases["system_info"].get("llama_cpp_version", "unknown")),
        system_info=str(loaded.get("system_info", "")), cpu=loaded.get("cpu") or cpu.to_dict(),
        extra_buffers=loaded.get("extra_buffers") or {}, load_s=float(done.get("load_s", 0.0)),
        complete_s=float(done.get("complete_s", 0.0)), total_s=round(time.perf_counter() - started, 3),
        tested_at=time.time(), compiled=sorted(native.compiled_features(str(loaded.get("system_info", "")))),
    )
    log.info("embedded model self-test passed in %.1f s; extra buffer types %s (%s)", result.total_s,
             "on" if result.extra_buffers_enabled else "off", result.extra_buffers.get("reason"))
    with contextlib.suppress(OSError):  # an unwritable cache only means testing again next time
        atomic_write_json(cache_file, result.to_dict())
    return result


def _read_cached(path: Path) -> SelfTestResult | None:
    try:
        data = json.loads(path.read_text())
        return SelfTestResult(**{**data, "cached": True})
    except (OSError, ValueError, TypeError):
        return None


def _phases(stdout: bytes) -> dict[str, dict[str, Any]]:
    """The phases the child reported, in order (later lines of other output are ignored)."""
    phases: dict[str, dict[str, Any]] = {}
    for line in stdout.decode("utf-8", "replace").splitlines():
        if line.startswith(native.PROTOCOL_PREFIX):
            with contextlib.suppress(ValueError, TypeError):
                data = json.loads(line[len(native.PROTOCOL_PREFIX):])
                phases[str(data.pop("phase"))] = data
    return phases


def _last_phase(phases: dict[str, dict[str, Any]]) -> str:
    return next(reversed(phases), "import")


def _failure_message(returncode: int, phases: dict[str, dict[str, Any]], stderr: bytes, cpu: native.CpuInfo,
                     setting: str) -> str:
    """What died, where, on which CPU, and what to change."""
    phase = _last_phase(phases)
    where = _PHASES.get(phase, phase)
    loaded = phases.get("load", {})
    compiled = native.compiled_features(str(loaded.get("system_info", "")))
    extra = loaded.get("extra_buffers") or {}
    if returncode < 0:
        number = -returncode
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else f"signal {number}"
        what = f"crashed with {name} ({_SIGNAL_TEXT.get(number, 'killed by a signal')}) during {where}"
    elif returncode == 0:
        what = f"stopped during {where} without reporting a result"
    else:
        detail = _last_error_line(stderr)
        what = f"failed during {where}: {detail}" if detail else f"exited with code {returncode} during {where}"
    lines = [f"the embedded model's self-test {what}.", f"CPU: {cpu.summary()}."]
    if compiled:
        lines.append(f"llama.cpp was compiled for: {' '.join(sorted(compiled))}.")
    missing = native.missing_cpu_features(compiled, cpu)
    if missing or returncode == -signal.SIGILL:
        lacks = f"instructions this CPU lacks ({', '.join(missing)})" if missing else "instructions this CPU lacks"
        lines.append(f"The llama.cpp library was built for {lacks}, e.g. on another machine: rebuild it here with "
                     "`make` (portable by default, see scripts/llama_wheel.sh) or "
                     "`pip install --force-reinstall --no-cache-dir --no-binary llama-cpp-python llama-cpp-python`.")
    if returncode < 0 and returncode != -signal.SIGILL and phase in ("load", "complete", "done"):
        if extra.get("enabled", setting != "off"):
            lines.append(f"Extra buffer types (weight repacking) were on ({extra.get('reason', setting)}): set "
                         f"{native.EXTRA_BUFFERS_KEY} = \"off\" in ratchet.toml "
                         "(or RATCHET_LM__LOCAL__EXTRA_BUFFERS=off) and start again.")
        else:
            lines.append(f"{native.EXTRA_BUFFERS_KEY} was already \"off\"; try a portable llama.cpp build "
                         "(`make`, see scripts/llama_wheel.sh) or another GGUF file (lm.local.model_path).")
    return " ".join(lines)


def _last_error_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""
