"""The model self-test: a crash in the child (a stand-in llama.cpp that kills itself) becomes a clear error.

These run the real child process (`python -P llamacpp_native.py`) with a fake ``llama_cpp`` package
first on PYTHONPATH; the parent process is this test, which must survive every crash.
"""

import os
from pathlib import Path

import pytest

from fake_llama import install
from ratchet.errors import ModelNotAvailableError
from ratchet.lm import llamacpp_native as native
from ratchet.lm.engines.llamacpp import LlamaCppEngine
from ratchet.lm.selftest import run_self_test


@pytest.fixture
def fake_llama(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``fake_llama(crash)``: child processes import a llama_cpp that crashes at ``crash``."""

    def use(crash: str, **kwargs) -> Path:
        directory = install(tmp_path / f"fake-{crash}", crash=crash, **kwargs)
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(directory), os.environ.get("PYTHONPATH", "")]))
        return directory

    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"GGUF not really")
    monkeypatch.setenv("RATCHET_CACHE_DIR", str(tmp_path / "cache"))
    use.weights = weights
    return use


def _test(fake_llama, **kwargs):
    return run_self_test(fake_llama.weights, weights_sha256="0" * 64, **kwargs)


def test_a_segfault_while_loading_names_the_signal_the_cpu_and_the_setting(fake_llama) -> None:
    fake_llama("load")
    with pytest.raises(ModelNotAvailableError) as caught:
        _test(fake_llama)
    message = str(caught.value)
    assert "SIGSEGV (segmentation fault) during loading the weights" in message
    assert "CPU: " in message and "AVX2" in message and "AMX" in message
    assert "llama.cpp was compiled for: " in message and "REPACK" in message
    assert 'lm.local.extra_buffers = "off"' in message and "RATCHET_LM__LOCAL__EXTRA_BUFFERS=off" in message
    assert not list((fake_llama.weights.parent / "cache").glob("**/*.json"))  # nothing remembered


def test_a_segfault_at_the_first_completion_is_caught_too(fake_llama) -> None:
    fake_llama("complete")
    with pytest.raises(ModelNotAvailableError, match=r"SIGSEGV \(segmentation fault\) during the first completion"):
        _test(fake_llama)


def test_with_extra_buffers_already_off_the_advice_changes(fake_llama) -> None:
    fake_llama("complete")
    with pytest.raises(ModelNotAvailableError) as caught:
        _test(fake_llama, extra_buffers="off")
    assert 'was already "off"' in str(caught.value) and "portable" in str(caught.value)


def test_an_illegal_instruction_says_the_library_was_built_for_another_cpu(fake_llama) -> None:
    fake_llama("import")
    with pytest.raises(ModelNotAvailableError) as caught:
        _test(fake_llama)
    message = str(caught.value)
    assert "SIGILL (illegal instruction) during importing llama.cpp" in message
    assert "instructions this CPU lacks" in message and "rebuild it here" in message


def test_a_crash_of_a_library_built_for_a_bigger_cpu_names_the_missing_instructions(fake_llama, monkeypatch) -> None:
    from test_llamacpp_native import HASWELL_SERVER, NATIVE_AMX_BUILD

    cpuinfo = fake_llama.weights.parent / "cpuinfo"
    cpuinfo.write_text(HASWELL_SERVER)
    haswell = native.cpu_info(cpuinfo)
    monkeypatch.setattr(native, "cpu_info", lambda: haswell)  # the parent judges this CPU (the child its own)
    fake_llama("load", system_info=NATIVE_AMX_BUILD)
    with pytest.raises(ModelNotAvailableError) as caught:
        _test(fake_llama)
    message = str(caught.value)
    assert "CPU: x86_64 Intel(R) Xeon(R) CPU E5-2680 v3: AVX2 yes, AVX-512 no, AMX no." in message
    assert "built for instructions this CPU lacks (AMX_INT8, AVX512, AVX512_VNNI)" in message


def test_an_abort_and_a_python_error_are_reported_with_their_cause(fake_llama) -> None:
    fake_llama("abort")
    with pytest.raises(ModelNotAvailableError, match="SIGABRT"):
        _test(fake_llama)
    fake_llama("error")
    with pytest.raises(ModelNotAvailableError, match="failed during loading the weights: ValueError: Failed to load"):
        _test(fake_llama)


def test_a_hung_child_is_stopped(fake_llama) -> None:
    fake_llama("hang")
    with pytest.raises(ModelNotAvailableError, match=r"did not finish in 2 s \(stuck in loading the weights\)"):
        _test(fake_llama, timeout_s=2)


def test_a_pass_is_remembered_and_a_remembered_pass_starts_no_child(fake_llama) -> None:
    fake_llama("none")
    first = _test(fake_llama)
    assert not first.cached and first.extra_buffers["setting"] == "auto" and "REPACK" in first.compiled
    fake_llama("load")  # would crash now: a remembered pass must not even start the child
    again = _test(fake_llama)
    assert again.cached and again.key == first.key
    with pytest.raises(ModelNotAvailableError):
        _test(fake_llama, use_cache=False)
    with pytest.raises(ModelNotAvailableError):
        _test(fake_llama, extra_buffers="on")  # another setting is another test


def test_the_engine_self_tests_before_loading_and_survives_the_crash(fake_llama) -> None:
    fake_llama("load")
    engine = LlamaCppEngine(fake_llama.weights, model_id="fake", weights_sha256="1" * 64)
    with pytest.raises(ModelNotAvailableError, match="SIGSEGV"):
        engine.warm_up()
    assert not engine.loaded and engine.extra_buffers is None
    with pytest.raises(ModelNotAvailableError, match="SIGSEGV"):  # asked again: tested again, same answer
        engine.prepare()



def test_ratchet_serve_exits_with_the_reason_instead_of_serving_a_crashing_model(fake_llama, free_port) -> None:
    """A real `ratchet serve` process: the self-test child segfaults, the command exits 2 with the message."""
    import subprocess
    import sys

    fake_llama("load")
    config = fake_llama.weights.parent / "ratchet.toml"
    config.write_text(f'home = ".ratchet"\n\n[lm.local]\nmodel_path = "{fake_llama.weights}"\n')
    served = subprocess.run([sys.executable, "-m", "ratchet", "--config", str(config), "serve", "--port",
                             str(free_port())], capture_output=True, text=True, timeout=120, check=False)
    assert served.returncode == 2, served.stderr  # its own exit, not killed by the signal
    assert "error:" in served.stderr and "SIGSEGV (segmentation fault) during loading the weights" in served.stderr
    assert "RATCHET_LM__LOCAL__EXTRA_BUFFERS=off" in served.stderr.replace("\n", "")
    assert "Traceback" not in served.stderr
