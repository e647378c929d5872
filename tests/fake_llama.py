"""A stand-in ``llama_cpp`` package that crashes on purpose, for the model self-test's tests.

``install(directory, crash=...)`` writes the package; put ``directory`` first on ``PYTHONPATH`` and
every child process imports it instead of the real one. ``crash`` picks where it dies:
``import`` (SIGILL on import, like a library built for another CPU), ``load`` or ``complete``
(SIGSEGV, like the AMX defect), ``abort`` (SIGABRT at load), ``error`` (a Python exception at
load), ``hang`` (sleeps at load) or ``none`` (works: a 2-token completion).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

SYSTEM_INFO = "CPU : LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |"  # no instruction set: runs "on any CPU"

_PACKAGE = '''
import os
import signal
import time

__version__ = "0.0.0-fake"
CRASH = {crash!r}


def _die(sig):
    os.kill(os.getpid(), sig)
    time.sleep(5)


if CRASH == "import":
    _die(signal.SIGILL)


def llama_print_system_info():
    return {system_info!r}.encode()


class _Params:
    use_extra_bufts = True


class Llama:
    def __init__(self, model_path, **kwargs):
        from llama_cpp import llama_cpp as lib

        self.model_params = lib.llama_model_default_params()
        if CRASH == "load":
            _die(signal.SIGSEGV)
        if CRASH == "abort":
            _die(signal.SIGABRT)
        if CRASH == "error":
            raise ValueError("Failed to load model from file: " + model_path)
        if CRASH == "hang":
            time.sleep(60)

    def create_completion(self, prompt, **kwargs):
        if CRASH == "complete":
            _die(signal.SIGSEGV)
        return {{"choices": [{{"text": " Paris", "finish_reason": "stop"}}],
                 "usage": {{"prompt_tokens": 5, "completion_tokens": 2}}}}

    def close(self):
        pass
'''

_LIB = '''
def llama_model_default_params():
    from llama_cpp import _Params

    return _Params()
'''


def install(directory: Path, *, crash: str, system_info: str = SYSTEM_INFO) -> Path:
    """Write the fake ``llama_cpp`` package under ``directory`` and return ``directory``."""
    package = directory / "llama_cpp"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(textwrap.dedent(_PACKAGE.format(crash=crash, system_info=system_info)))
    (package / "llama_cpp.py").write_text(textwrap.dedent(_LIB))
    (package / "lib").mkdir(exist_ok=True)
    return directory
