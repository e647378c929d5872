"""The installed llama.cpp build on CPUs this machine does not have, emulated by qemu-user.

The default wheel is portable (x86-64-v3): it must run on a Haswell (AVX2, no AVX-512, no AMX),
and on an older CPU without AVX2 the self-test must turn the real SIGILL into a clear error.
`make test` installs qemu-user (Debian) for this; elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import platform
import shutil

import pytest

from ratchet.errors import ModelNotAvailableError
from ratchet.lm import bundled_weights
from ratchet.lm.selftest import run_self_test

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 builds only"),
    pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="qemu-user not installed (apt-get install "
                                                                     "qemu-user; `make test` does)"),
]


def _compiled_avx512() -> bool:
    from ratchet.lm.llamacpp_native import compiled_features, system_info

    return "AVX512" in compiled_features(system_info())


def test_the_installed_build_runs_on_a_haswell(tmp_path) -> None:
    if _compiled_avx512():
        pytest.skip("this venv holds a native AVX-512 build (make LLAMA_CPU=native), not the portable one")
    weights = bundled_weights()
    result = run_self_test(weights.path, weights_sha256=weights.sha256, use_cache=False, cache_dir=tmp_path,
                           launcher=("qemu-x86_64", "-cpu", "Haswell-v4"), timeout_s=600)
    assert result.complete_s > 0 and "AVX2" in result.compiled and "AVX512" not in result.compiled


def test_a_cpu_without_avx2_gets_the_real_sigill_as_a_clear_error(tmp_path) -> None:
    weights = bundled_weights()
    with pytest.raises(ModelNotAvailableError) as caught:
        run_self_test(weights.path, weights_sha256=weights.sha256, use_cache=False, cache_dir=tmp_path,
                      launcher=("qemu-x86_64", "-cpu", "Nehalem"), timeout_s=600)
    message = str(caught.value)
    assert "SIGILL (illegal instruction)" in message
    assert "built for instructions this CPU lacks" in message and "rebuild it here" in message
