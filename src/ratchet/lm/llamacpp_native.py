"""llama.cpp on this machine: the CPU's features, what the library was compiled for, extra buffer types.

Also the model self-test's child: ``python -P llamacpp_native.py '<json>'`` imports llama.cpp,
loads the weights and runs one completion, reporting each phase on stdout, so that a crash
(SIGSEGV, SIGILL, abort) kills only the child and the parent can say which phase died
(see :mod:`ratchet.lm.selftest`). This module therefore uses the standard library only and
imports ``llama_cpp`` inside functions: the child starts in a fraction of a second.

*Extra buffer types* are llama.cpp's weight repacking at load time: the CPU backend's
``REPACK`` (interleaved quant blocks for AVX2/AVX-512/NEON kernels) and, when the library
was compiled with it and the CPU has it, the AMX backend. AMX-repacked Q4_K weights crash
at the first decode (ggml-org/llama.cpp#20824, open; DSPy's CI dropped the AMX backend for
the same crash, stanfordnlp/dspy#10079), so ``auto`` turns extra buffers off exactly when
both the CPU and the library have AMX, and keeps the faster repack everywhere else.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "EXTRA_BUFFERS_KEY",
    "PROTOCOL_PREFIX",
    "CpuInfo",
    "ExtraBuffers",
    "compiled_features",
    "cpu_info",
    "missing_cpu_features",
    "new_llama",
    "resolve_extra_buffers",
]

EXTRA_BUFFERS_KEY = "lm.local.extra_buffers"
PROTOCOL_PREFIX = "RATCHET-SELFTEST "
ExtraBuffersSetting = Literal["auto", "on", "off"]

# llama.cpp's compiled-feature names (``llama_print_system_info``) → the /proc/cpuinfo flag each needs.
_FEATURE_FLAGS = {
    "SSE3": "pni", "SSSE3": "ssse3", "SSE4_2": "sse4_2", "AVX": "avx", "AVX2": "avx2", "AVX_VNNI": "avx_vnni",
    "F16C": "f16c", "FMA": "fma", "BMI2": "bmi2", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16", "AMX_INT8": "amx_int8", "AMX_BF16": "amx_bf16",
}


@dataclass(frozen=True)
class CpuInfo:
    """The CPU model and its feature flags (``/proc/cpuinfo``; empty flags where the OS does not say)."""

    arch: str
    model: str
    flags: frozenset[str] = field(default_factory=frozenset)

    @property
    def avx2(self) -> bool:
        return "avx2" in self.flags

    @property
    def avx512(self) -> bool:
        return "avx512f" in self.flags

    @property
    def amx(self) -> bool:
        return bool({"amx_int8", "amx_tile", "amx_bf16"} & self.flags)

    def summary(self) -> str:
        """``x86_64 Intel Xeon …: AVX2 yes, AVX-512 yes, AMX no``."""
        if not self.flags:
            return f"{self.arch} {self.model}".strip()
        yes = {True: "yes", False: "no"}
        return (f"{self.arch} {self.model}: AVX2 {yes[self.avx2]}, AVX-512 {yes[self.avx512]}, "
                f"AMX {yes[self.amx]}").strip()

    def fingerprint(self) -> str:
        """A stable id of the CPU model and its features (a self-test result holds for this CPU only)."""
        text = "\n".join([self.arch, self.model, *sorted(self.flags)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "model": self.model, "avx2": self.avx2, "avx512": self.avx512,
                "amx": self.amx, "fingerprint": self.fingerprint()}


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """This machine's CPU, read from ``/proc/cpuinfo`` (Linux; elsewhere the model name only)."""
    arch = platform.machine() or "unknown"
    model, flags = "", frozenset[str]()
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return CpuInfo(arch, platform.processor())
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "cpu model", "hardware") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return CpuInfo(arch, model or platform.processor(), flags)


def compiled_features(system_info: str) -> frozenset[str]:
    """The features llama.cpp's CPU backend was compiled with (``AVX2 = 1`` in its system info)."""
    found = set()
    for part in system_info.replace("\n", "|").split("|"):
        name, sep, value = part.rpartition("=")
        name = name.split(":")[-1].strip()
        if sep and value.strip() == "1" and name:
            found.add(name.upper())
    return frozenset(found)


def missing_cpu_features(compiled: frozenset[str], cpu: CpuInfo) -> list[str]:
    """Compiled-in instruction sets this CPU lacks (empty when unknown, e.g. no CPU flags)."""
    if not cpu.flags:
        return []
    return sorted(name for name in compiled if name in _FEATURE_FLAGS and _FEATURE_FLAGS[name] not in cpu.flags)


@dataclass(frozen=True)
class ExtraBuffers:
    """Whether llama.cpp may repack weights into extra buffer types, and why."""

    enabled: bool
    setting: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "setting": self.setting, "reason": self.reason}


def resolve_extra_buffers(setting: str, compiled: frozenset[str], cpu: CpuInfo) -> ExtraBuffers:
    """``on``/``off`` as set; ``auto``: off when both the CPU and the library have AMX, else on."""
    if setting == "on":
        return ExtraBuffers(True, setting, f"{EXTRA_BUFFERS_KEY} = \"on\"")
    if setting == "off":
        return ExtraBuffers(False, setting, f"{EXTRA_BUFFERS_KEY} = \"off\"")
    if setting != "auto":
        raise ValueError(f"{EXTRA_BUFFERS_KEY} must be auto, on or off, got {setting!r}")
    if cpu.amx and "AMX_INT8" in compiled:
        return ExtraBuffers(False, setting, "auto: this CPU has AMX and llama.cpp was built with its AMX backend, "
                                            "whose repacked weights crash (ggml-org/llama.cpp#20824)")
    if cpu.amx:
        return ExtraBuffers(True, setting, "auto: this CPU has AMX but llama.cpp was built without it; "
                                           "CPU weight repacking kept")
    return ExtraBuffers(True, setting, "auto: no AMX on this CPU; CPU weight repacking kept")


_PARAMS_LOCK = threading.Lock()


@contextmanager
def _model_params(use_extra_bufts: bool) -> Iterator[None]:
    """Make ``llama_cpp.Llama`` build its model with ``use_extra_bufts`` set as asked.

    llama-cpp-python (0.3.x) does not expose the field, and its ``Llama.__init__`` fills the
    params from ``llama_model_default_params()`` and loads the model in one go; the only way
    in is that call. It is swapped for the duration of one construction, under a lock.
    """
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params
    if original().use_extra_bufts == use_extra_bufts:
        yield
        return

    def params() -> Any:
        value = original()
        value.use_extra_bufts = use_extra_bufts
        return value

    with _PARAMS_LOCK:
        lib.llama_model_default_params = params
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def new_llama(model_path: str, *, extra_buffers: bool, **kwargs: Any) -> Any:
    """A ``llama_cpp.Llama`` for ``model_path`` with extra buffer types on or off (``kwargs`` as for Llama)."""
    from llama_cpp import Llama

    with _model_params(extra_buffers):
        llama = Llama(model_path=model_path, **kwargs)
    actual = bool(llama.model_params.use_extra_bufts)
    if actual != extra_buffers:  # a llama-cpp-python that builds its params differently: say so, never guess
        llama.close()
        raise RuntimeError(f"llama-cpp-python ignored use_extra_bufts={extra_buffers} (got {actual}); "
                           f"set {EXTRA_BUFFERS_KEY} to match or pin llama-cpp-python 0.3.x")
    return llama


def system_info() -> str:
    """llama.cpp's own system info line (loads the library)."""
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip()


# -- the self-test child ------------------------------------------------------------------------------
def _emit(phase: str, **data: Any) -> None:
    sys.stdout.write(PROTOCOL_PREFIX + json.dumps({"phase": phase, **data}) + "\n")
    sys.stdout.flush()


def run_child(args: dict[str, Any]) -> int:
    """Import llama.cpp, load the weights, complete a few tokens; report each phase before it starts."""
    _emit("import")
    import llama_cpp

    _emit("system_info", llama_cpp_version=getattr(llama_cpp, "__version__", "unknown"))
    info = system_info()
    cpu = cpu_info()
    choice = resolve_extra_buffers(str(args.get("extra_buffers", "auto")), compiled_features(info), cpu)
    _emit("load", system_info=info, cpu=cpu.to_dict(), extra_buffers=choice.to_dict())
    started = time.perf_counter()
    llama = new_llama(str(args["model_path"]), extra_buffers=choice.enabled, n_ctx=int(args.get("n_ctx", 512)),
                      n_threads=int(args.get("n_threads") or 0) or None, seed=0, verbose=False)
    loaded = time.perf_counter()
    _emit("complete", load_s=round(loaded - started, 3))
    out = llama.create_completion(prompt=str(args.get("prompt", "The capital of France is")),
                                  max_tokens=int(args.get("max_tokens", 8)), temperature=0.0)
    done = time.perf_counter()
    usage = out.get("usage") or {}
    _emit("done", load_s=round(loaded - started, 3), complete_s=round(done - loaded, 3),
          text=out["choices"][0].get("text") or "", completion_tokens=int(usage.get("completion_tokens", 0)))
    llama.close()
    return 0


if __name__ == "__main__":
    sys.exit(run_child(json.loads(sys.argv[1])))
