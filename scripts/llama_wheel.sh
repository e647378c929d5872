#!/usr/bin/env bash
# Build (once) the llama-cpp-python wheel Ratchet runs the embedded model with, and print its directory.
#
#   scripts/llama_wheel.sh [portable|native]        (default: $LLAMA_CPU, else portable)
#
# llama-cpp-python ships only a source package on PyPI; pip compiles llama.cpp, and by default
# (GGML_NATIVE=ON) for exactly the CPU that builds it: `-march=native`. Such a wheel crashes with
# "Illegal instruction" on a CPU that lacks one of the build machine's extensions (AVX-512 built on a
# workstation, deployed to an AVX2 server), and on CPUs with AMX it compiles the AMX backend whose
# repacked weights crash at the first decode (ggml-org/llama.cpp#20824). pip also caches the wheel
# under a key that ignores CMAKE_ARGS, so a wheel built one way is silently reused for another.
#
# So Ratchet builds the wheel itself, into a directory named by version and CPU variant:
#   portable  x86-64-v3 (AVX, AVX2, FMA, F16C, BMI2: Intel Haswell / AMD Zen and later), no
#             AVX-512 and no AMX code; runs on any such CPU; the default.
#             Other architectures: the compiler's baseline for the architecture (GGML_NATIVE=OFF).
#   native    -march=native: fastest on this CPU, runs only on CPUs with the same extensions.
# docs/benchmarks.md has the speed of each on the reference machine. Ratchet's model self-test
# (`ratchet doctor`) names the missing CPU features when a wheel built elsewhere cannot run here.
set -euo pipefail

VERSION=${LLAMA_CPP_VERSION:-0.3.36}
CPU=${1:-${LLAMA_CPU:-portable}}
PYTHON=${PYTHON:-python3}
ARCH=$(uname -m)

case "$CPU" in
  portable)
    if [ "$ARCH" = x86_64 ]; then
      FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
      VARIANT=portable-x86-64-v3
    else
      FLAGS="-DGGML_NATIVE=OFF"
      VARIANT="portable-$ARCH"
    fi
    ;;
  native)
    FLAGS="-DGGML_NATIVE=ON"
    # The CPU's extensions name the variant: a wheel built here is reused only on an identical CPU.
    CPU_ID=$( (grep -m1 -E '^(flags|Features)' /proc/cpuinfo 2>/dev/null || uname -a) | sha256sum | cut -c1-12)
    VARIANT="native-$ARCH-$CPU_ID"
    ;;
  *)
    echo "llama_wheel.sh: LLAMA_CPU must be 'portable' or 'native', got '$CPU'" >&2
    exit 2
    ;;
esac

ROOT=${RATCHET_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/ratchet/wheels}
DIR="$ROOT/llama-cpp-python-$VERSION-$VARIANT"
if ! ls "$DIR"/llama_cpp_python-"$VERSION"-*.whl >/dev/null 2>&1; then
  echo "compiling llama.cpp ($VARIANT, llama-cpp-python $VERSION): several minutes on 2 cores, once" >&2
  mkdir -p "$DIR.partial"
  CMAKE_ARGS="$FLAGS" "$PYTHON" -m pip wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
      --wheel-dir "$DIR.partial" "llama-cpp-python==$VERSION" >&2
  printf '{"version": "%s", "variant": "%s", "cmake_args": "%s", "built_on": "%s", "built_at": "%s"}\n' \
      "$VERSION" "$VARIANT" "$FLAGS" "$(uname -m) $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | xargs)" \
      "$(date -u +%FT%TZ)" > "$DIR.partial/BUILD_INFO.json"
  rm -rf "$DIR"
  mv "$DIR.partial" "$DIR"   # appears whole or not at all
fi
echo "$DIR"
