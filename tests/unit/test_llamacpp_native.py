"""CPU features, llama.cpp's compiled features and the extra-buffer decision, forced both ways on any CPU."""

from pathlib import Path

import pytest

from ratchet.lm import llamacpp_native as native

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c bmi2 avx2 avx512f avx512bw avx512_vnni amx_bf16 amx_tile \
amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c bmi2 avx2 avx512f avx512bw avx512_vnni amx_bf16 amx_tile \
amx_int8
"""
HASWELL_SERVER = """model name\t: Intel(R) Xeon(R) CPU E5-2680 v3
flags\t\t: fpu sse sse2 pni ssse3 fma sse4_1 sse4_2 avx f16c bmi2 avx2
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
"""
NATIVE_AMX_BUILD = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | " \
                   "AVX512_VNNI = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |"
PORTABLE_BUILD = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | " \
                 "OPENMP = 1 | REPACK = 1 |"


def _cpu(tmp_path: Path, text: str) -> native.CpuInfo:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return native.cpu_info(path)


def test_cpu_info_reads_model_and_flags(tmp_path: Path) -> None:
    amx = _cpu(tmp_path, SAPPHIRE_RAPIDS)
    assert amx.model == "Intel(R) Xeon(R) Platinum 8480+"
    assert amx.avx2 and amx.avx512 and amx.amx
    assert "AMX yes" in amx.summary() and "AVX-512 yes" in amx.summary()
    old = _cpu(tmp_path, HASWELL_SERVER)
    assert old.avx2 and not old.avx512 and not old.amx
    assert old.fingerprint() != amx.fingerprint() and old.fingerprint() == _cpu(tmp_path, HASWELL_SERVER).fingerprint()
    arm = _cpu(tmp_path, GRAVITON)
    assert "asimd" in arm.flags and not arm.amx
    missing = native.cpu_info(tmp_path / "no-such-file")
    assert not missing.flags and missing.summary()


def test_compiled_features_parse_the_system_info_line() -> None:
    compiled = native.compiled_features(NATIVE_AMX_BUILD)
    assert {"AVX2", "AVX512", "AMX_INT8", "REPACK"} <= compiled
    assert "AMX_INT8" not in native.compiled_features(PORTABLE_BUILD)
    assert native.compiled_features("") == frozenset()
    assert native.compiled_features("CPU : AVX = 0 | FMA = 1") == {"FMA"}


@pytest.mark.parametrize(
    ("cpuinfo", "build", "setting", "enabled", "reason"),
    [
        (SAPPHIRE_RAPIDS, NATIVE_AMX_BUILD, "auto", False, "llama.cpp#20824"),  # the crash the issue reports
        (SAPPHIRE_RAPIDS, PORTABLE_BUILD, "auto", True, "built without it"),  # portable wheel: no AMX code at all
        (HASWELL_SERVER, PORTABLE_BUILD, "auto", True, "no AMX"),
        (GRAVITON, "CPU : NEON = 1 | REPACK = 1 |", "auto", True, "no AMX"),
        (SAPPHIRE_RAPIDS, NATIVE_AMX_BUILD, "on", True, '= "on"'),  # forced: the user takes the risk
        (HASWELL_SERVER, PORTABLE_BUILD, "off", False, '= "off"'),
    ],
)
def test_extra_buffers_auto_is_off_only_where_amx_would_be_used(tmp_path, cpuinfo, build, setting, enabled,
                                                                  reason) -> None:
    choice = native.resolve_extra_buffers(setting, native.compiled_features(build), _cpu(tmp_path, cpuinfo))
    assert choice.enabled is enabled and choice.setting == setting
    assert reason in choice.reason


def test_an_unknown_extra_buffers_setting_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"lm\.local\.extra_buffers must be auto, on or off"):
        native.resolve_extra_buffers("maybe", frozenset(), _cpu(tmp_path, HASWELL_SERVER))


def test_missing_cpu_features_name_what_a_foreign_build_needs(tmp_path) -> None:
    haswell = _cpu(tmp_path, HASWELL_SERVER)
    assert native.missing_cpu_features(native.compiled_features(NATIVE_AMX_BUILD), haswell) == [
        "AMX_INT8", "AVX512", "AVX512_VNNI"]
    assert native.missing_cpu_features(native.compiled_features(PORTABLE_BUILD), haswell) == []
    assert native.missing_cpu_features(native.compiled_features(NATIVE_AMX_BUILD), native.CpuInfo("x", "y")) == []


def test_model_params_are_changed_for_one_construction_only() -> None:
    lib = pytest.importorskip("llama_cpp.llama_cpp")
    assert lib.llama_model_default_params().use_extra_bufts  # llama.cpp's default: on
    with native._model_params(False):
        assert lib.llama_model_default_params().use_extra_bufts is False
    assert lib.llama_model_default_params().use_extra_bufts
    with native._model_params(True):  # the default already: nothing swapped
        assert lib.llama_model_default_params is lib.llama_model_default_params
    with pytest.raises(RuntimeError), native._model_params(False):
        raise RuntimeError("a failed load")
    assert lib.llama_model_default_params().use_extra_bufts  # restored after a failure too
