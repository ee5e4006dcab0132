#!/bin/sh
# Regenerates the memory tables of docs/kv.md (run from the repository root).
set -e
D=../shared/data/fourierattention-dims
for P in llama-3b llama-8b; do
  [ $P = llama-3b ] && F=$D/llama3.2-3b-fourier/compressed_dims_32k_1024states_splithead.json
  [ $P = llama-8b ] && F=$D/llama3.1-8b-fourier/compressed_dims_32k_1024states_splithead.json
  for N in 4096 8192 16384 32768 65536 131072; do
    nice -n 19 build/harmonia info --preset $P --ctx $N --json \
      --kv full,full:k_type=f16:v_type=f16,kivi:bits=4,kivi:bits=2,streaming,snapkv,pyramidkv,h2o,fourier:window=1020:dims=$F,fourier:window=1020:coeff_dtype=f16:stats_dtype=f16:dims=$F \
      > docs/kv/info-$P-$N.json
  done
done
