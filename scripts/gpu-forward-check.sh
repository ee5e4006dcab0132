#!/usr/bin/env bash
# One GPU round for the forward pass (`--device cuda`, issue #7): the GPU tests
# of the forward pass and decode attention, greedy generation CPU vs GPU on the
# shared models (f32 and bf16 weights + KV; the full cache, and FourierAttention
# with a prompt that compresses), and decode/prefill benchmarks
# (the shared models, and Llama-3.1-8B's shape with random weights made on the GPU).
#
#   scripts/gpu-forward-check.sh BIN_DIR SHARED_DIR
#
# BIN_DIR holds harmonia and test_cuda built here (nvcc, sm_90a + sm_90) and lib/
# with the shared libraries the GPU machine lacks (see docs/perf/gpu.md); logs go
# to $OUT (or ./gpu-forward-out). GPU_TEST_FILTER: test_cuda's filter; GPU_SKIP_BENCH=1: no benchmarks.
set -uo pipefail
BIN=$(cd "${1:?BIN_DIR}" && pwd)
export HARMONIA_SHARED=$(cd "${2:?SHARED_DIR}" && pwd)
LOG=${OUT:-gpu-forward-out}
mkdir -p "$LOG"
say() { echo "== $*"; }
libs="$BIN/lib"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [[ -d $d ]] && libs="$libs:$d"; done
py_libs=$(python3 -c 'import glob, nvidia; print(":".join(sorted(glob.glob(nvidia.__path__[0] + "/*/lib"))))' 2>/dev/null)
[[ -n "$py_libs" ]] && libs="$libs:$py_libs"
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ldd "$BIN/harmonia" "$BIN/test_cuda" | grep "not found" && { echo "missing libraries"; exit 1; }
H="$BIN/harmonia"
S260="$HARMONIA_SHARED/models/stories260K/stories260K.gguf"
S656="$HARMONIA_SHARED/models/TinyStories-656K"

say "test_cuda (forward + full decode attention)"
timeout ${GPU_TEST_TIMEOUT:-120} "$BIN/test_cuda" --gtest_color=no \
  --gtest_filter="${GPU_TEST_FILTER:-CudaDevice.*:CudaForward*:Shapes/CudaForward*:Shapes/CudaFullDecode.*}" 2>&1 | tee "$LOG/test_cuda.log" |
  grep -E '^(\[  FAILED|\[  PASSED|gpu |device)|Failure|Expected|Which is|first differing'
test_rc=${PIPESTATUS[0]}

say "greedy generation, CPU vs GPU (128 tokens from BOS and from a prompt)"
gen_rc=0
for m in "$S260" "$S656"; do
  for p in "" "-p 'Once upon a time, there was a little dog'"; do
    cpu=$(eval "$H" generate -m "$m" $p -n 128 --temp 0 --ignore-eos --json 2> "$LOG/err.txt" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')
    for dt in f32 bf16; do
      gpu=$(eval "$H" generate -m "$m" $p -n 128 --temp 0 --ignore-eos --json --device cuda --gpu-dtype $dt 2>> "$LOG/err.txt" |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["tokens"]); print(j["timings"]["decode_tok_s"], file=sys.stderr)' 2> "$LOG/rate.txt")
      same=$(python3 -c "a=$cpu; b=${gpu:-[]}; n=next((i for i,(x,y) in enumerate(zip(a,b)) if x!=y), min(len(a),len(b))); print(f'{n} of {len(a)} equal')")
      echo "$(basename "$m") ${p:+prompt} $dt: $same (gpu decode $(tail -1 "$LOG/rate.txt") tok/s)"
      [[ $dt == f32 && "$cpu" != "$gpu" ]] && gen_rc=1
    done
  done
done
cat "$LOG/err.txt" | grep -i error | head -5

say "greedy generation with FourierAttention, CPU vs GPU (a ~200-token prompt compresses at its end; 128 tokens)"
FP="Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends. \
One day, she saw a big red ball under a tree. She ran to the ball and picked it up. It was shiny and round. \
Lily wanted to share the ball with her friend Tom. Tom was sad because he lost his toy car. Lily said, \
\"Tom, do not be sad. We can play with my ball together.\" Tom smiled and they played all day. They threw the \
ball high in the sky and ran after it. Then the sun went down and the sky was orange and pink. Their moms \
called them home for dinner. Lily and Tom said goodbye and promised to play again the next day. At home, \
Lily told her mom about the ball and her friend. Her mom was happy and gave her a big hug. That night, Lily \
dreamed about the park, the ball and the tree. The next morning, she woke up early and"
for m in "$S260" "$S656"; do
  for kvo in "fourier:sink=4:window=32:coeffs=64" "fourier:sink=4:window=32:coeffs=64:coeff_dtype=bf16"; do
    cpu=$("$H" generate -m "$m" -p "$FP" -n 128 --temp 0 --ignore-eos --json --kv "$kvo" 2> "$LOG/err.txt" |
      python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["tokens"]); print(len(j["prompt_tokens"]), j["kv"]["bytes"], file=sys.stderr)' 2> "$LOG/cpu_info.txt")
    for dt in f32 bf16; do
      gpu=$("$H" generate -m "$m" -p "$FP" -n 128 --temp 0 --ignore-eos --json --kv "$kvo" --device cuda --gpu-dtype $dt 2>> "$LOG/err.txt" |
        python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["tokens"]); print(j["kv"]["bytes"], j["timings"]["decode_tok_s"], file=sys.stderr)' 2> "$LOG/rate.txt")
      same=$(python3 -c "a=$cpu; b=${gpu:-[]}; n=next((i for i,(x,y) in enumerate(zip(a,b)) if x!=y), min(len(a),len(b))); print(f'{n} of {len(a)} equal')")
      read -r np cpu_b < "$LOG/cpu_info.txt"; read -r gpu_b rate < "$LOG/rate.txt"
      echo "$(basename "$m") $kvo $dt: $same (prompt $np tokens; kv bytes cpu $cpu_b gpu $gpu_b; gpu decode $rate tok/s)"
      [[ $dt == f32 && "$cpu" != "$gpu" ]] && gen_rc=1
    done
  done
done
cat "$LOG/err.txt" | grep -i error | head -5

bench_rc=0
if [[ -z ${GPU_SKIP_BENCH:-} ]]; then
say "bench (decode tokens/s; depth synthetic)"
"$H" bench -m "$S656" --device cuda -p 128 -n 128 -r 3 -d 0,1024 2>&1 | tee "$LOG/bench_656k.txt"
"$H" bench --preset llama-8b --device cuda -p 512 -n 32 -r 3 -d 0 2>&1 | tee "$LOG/bench_8b_prefill.txt"
"$H" bench --preset llama-8b --device cuda -p 0 -n 64 -r 3 -d ${GPU_BENCH_DEPTHS:-4096,32768,131072} \
  --kv "${GPU_BENCH_KV:-full,fourier,fourier:coeff_dtype=bf16}" 2>&1 | tee "$LOG/bench_8b.txt"
bench_rc=${PIPESTATUS[0]}
fi

say "summary"
echo "test_cuda: exit $test_rc, $(grep -c '^\[       OK \]' "$LOG/test_cuda.log") ok, $(grep -c '^\[  FAILED  \]' "$LOG/test_cuda.log") failed lines"
echo "generate f32 equality: $([[ $gen_rc == 0 ]] && echo all equal || echo DIFFERENT)"
[[ $test_rc == 0 && $gen_rc == 0 && $bench_rc == 0 ]]
