#!/usr/bin/env bash
# Packs one GPU round into one file small enough to travel to the GPU machine
# (64 MiB limit): the stripped harmonia and test_cuda from BUILD_DIR, the shared
# libraries they need that are not glibc/libstdc++/CUDA (the GPU machine's image
# lacks fmt, OpenBLAS, sentencepiece, ...), bench_cuda, the two tiny shared models, and
# scripts/{gpu-forward-check.sh,gpu-check.sh,pytorch_baseline.py}. On the GPU machine:
#   tar xJf bundle.tar.xz && bash gpu-forward-check.sh bin shared
#
#   scripts/gpu-bundle.sh [BUILD_DIR] [OUT_FILE]   (defaults: build, .device/gpu/bundle.tar.xz)
set -euo pipefail
BUILD=${1:-build}
OUT_FILE=${2:-.device/gpu/bundle.tar.xz}
SHARED=${HARMONIA_SHARED:-$(cd "$(dirname "$0")/.." && pwd)/../shared}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin/lib" "$stage/shared/models"
for b in harmonia test_cuda bench_cuda; do
  [[ -x "$BUILD/$b" ]] || { echo "gpu-bundle: $BUILD/$b missing (cmake --build $BUILD --target harmonia test_cuda bench_cuda)"; exit 1; }
  strip -o "$stage/bin/$b" "$BUILD/$b"
done
# Every resolved library except the C/C++ runtime (the GPU machine has newer ones) and CUDA's own.
ldd "$BUILD/harmonia" "$BUILD/test_cuda" "$BUILD/bench_cuda" | awk '/=> \// {print $3}' | sort -u |
  grep -vE '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so|/libcu(da|dart|blas|blasLt|fft)[^/]*\.so' |
  while read -r lib; do cp -L "$lib" "$stage/bin/lib/"; done
cp -r "$SHARED/models/stories260K" "$SHARED/models/TinyStories-656K" "$stage/shared/models/"
cp "$(dirname "$0")"/{gpu-forward-check.sh,gpu-check.sh,pytorch_baseline.py} "$stage/"
mkdir -p "$(dirname "$OUT_FILE")"
tar -C "$stage" -cf - bin shared gpu-forward-check.sh gpu-check.sh pytorch_baseline.py | xz -T1 -9 > "$OUT_FILE"  # one thread, -9: a 64 MiB dictionary over the whole stream dedupes the kernels the three binaries share
echo "gpu-bundle: $OUT_FILE, $(du -h "$OUT_FILE" | cut -f1), libraries: $(ls "$stage/bin/lib" | tr '\n' ' ')"
