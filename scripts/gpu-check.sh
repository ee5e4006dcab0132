#!/usr/bin/env bash
# One GPU round for src/cuda (issue #7): every GPU test, a compute-sanitizer
# pass over small cases, and the kernel-level decode-attention benchmark; a
# short table at the end of stdout, full logs under $OUT (or ./gpu-check-out).
#
#   scripts/gpu-check.sh [BIN_DIR]        (default BIN_DIR: build-cuda)
#
# BIN_DIR holds test_cuda and bench_cuda, built where the dependencies are:
#   cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release
#   cmake --build build-cuda --target test_cuda bench_cuda
# (nvcc builds for sm_90a + sm_90, see HARMONIA_CUDA_GENCODE). If they are
# missing here, it builds them (needs the project's build dependencies).
# Shared libraries copied into BIN_DIR/lib come first on LD_LIBRARY_PATH (a GPU
# machine without the build machine's libfmt/libfftw3f/libgomp), then the CUDA
# toolkit's and the Python CUDA wheels' (libcufft).
set -uo pipefail
BIN=${1:-build-cuda}
LOG=${OUT:-gpu-check-out}
mkdir -p "$LOG"
SANITIZE=${GPU_CHECK_SANITIZE:-1}
REPS=${GPU_CHECK_REPS:-50}
# GPU_CHECK_BENCH_ARGS: more bench_cuda flags, e.g. "--contexts 131072,32768"

say() { echo "== $*"; }
say "gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 | tee "$LOG/nvidia-smi.txt"

if [[ ! -x "$BIN/test_cuda" || ! -x "$BIN/bench_cuda" ]]; then
  say "building test_cuda and bench_cuda in $BIN"
  cmake -S . -B "$BIN" -DCMAKE_BUILD_TYPE=Release > "$LOG/build.log" 2>&1 &&
    cmake --build "$BIN" --target test_cuda bench_cuda -j"$(nproc)" >> "$LOG/build.log" 2>&1 ||
    { tail -30 "$LOG/build.log"; echo "gpu-check: build failed (log: $LOG/build.log)"; exit 1; }
fi

libs="$(cd "$BIN" && pwd)/lib"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [[ -d $d ]] && libs="$libs:$d"; done
py_libs=$(python3 -c 'import glob, nvidia; print(":".join(sorted(glob.glob(nvidia.__path__[0] + "/*/lib"))))' 2>/dev/null)
[[ -n "$py_libs" ]] && libs="$libs:$py_libs"
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ldd "$BIN/test_cuda" "$BIN/bench_cuda" | grep "not found"; then
  echo "gpu-check: missing shared libraries (above); LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
  exit 1
fi

say "test_cuda"
timeout ${GPU_CHECK_TEST_TIMEOUT:-200} "$BIN/test_cuda" --gtest_color=no 2>&1 | tee "$LOG/test_cuda.log"
test_rc=${PIPESTATUS[0]}

san_rc=skipped
if [[ "$SANITIZE" == 1 ]] && command -v compute-sanitizer > /dev/null; then
  say "compute-sanitizer memcheck (small cases)"
  filter='Shapes/CudaFullDecode.*/2:Shapes/CudaFullDecode.*/5:Shapes/CudaFourier.*/0:Shapes/CudaFourier.*/1'
  filter+=':Shapes/CudaFourier.*/4:Shapes/CudaFourierPaths.*/2'
  filter+=':Shapes/CudaFourier.*/8:Shapes/CudaFourierPaths.*/7'  # four-step path (period=aligned), small
  timeout ${GPU_CHECK_SANITIZER_TIMEOUT:-120} compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/test_cuda" --gtest_color=no \
    --gtest_filter="$filter" > "$LOG/sanitizer.log" 2>&1
  san_rc=$?
  tail -5 "$LOG/sanitizer.log"
fi

say "bench_cuda"
timeout ${GPU_CHECK_BENCH_TIMEOUT:-240} "$BIN/bench_cuda" --reps "$REPS" ${GPU_CHECK_BENCH_ARGS:-} --out "$LOG/bench.md" 2>&1 |
  tee "$LOG/bench.log"
bench_rc=${PIPESTATUS[0]}

say "summary"
echo "test_cuda: exit $test_rc, $(grep -c '^\[       OK \]' "$LOG/test_cuda.log") ok," \
  "$(grep -c '^\[  FAILED  \]' "$LOG/test_cuda.log") failed lines, $(grep -c '^\[  SKIPPED \]' "$LOG/test_cuda.log") skipped"
grep -E '^fourier (f32|bf16|paths)' "$LOG/test_cuda.log" || true
grep -E '^\[  FAILED  \]' "$LOG/test_cuda.log" | sort -u || true
echo "compute-sanitizer: $san_rc (0 = clean)"
echo "bench_cuda: exit $bench_rc"
cat "$LOG/bench.md" 2>/dev/null
[[ $test_rc == 0 && $bench_rc == 0 && ( $san_rc == 0 || $san_rc == skipped ) ]]
