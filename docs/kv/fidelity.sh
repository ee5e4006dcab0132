#!/bin/sh
# Regenerates the fidelity tables of docs/kv.md (run from the repository root).
# 512 tokens of tests/data/tinystory.txt: 384-token prompt, 128 teacher-forced tokens.
set -e
export OMP_WAIT_POLICY=passive
H="nice -n 19 build/harmonia"
S=../shared/models
F=fourier:sink=4:window=32
for MODEL in stories260K TinyStories-656K; do
  if [ $MODEL = stories260K ]; then
    M=$S/stories260K/stories260K.gguf
    KIVI4=kivi:bits=4:residual=192:scale_type=f32
    H2O=h2o:heavy=120:recent=120
  else
    M=$S/TinyStories-656K
    KIVI4=kivi:bits=4:group=16:residual=208:scale_type=f32
    H2O=h2o:heavy=124:recent=124
  fi
  D=docs/kv/$MODEL
  KV=full,full:k_type=f16:v_type=f16,full:k_type=bf16:v_type=bf16,$KIVI4,kivi:bits=2:group=8:residual=248:scale_type=f32
  KV=$KV,streaming:sink=4:window=252,snapkv:budget=96:window=32,pyramidkv:budget=96:window=32,$H2O
  KV=$KV,$F:coeffs=96:dims=$D-c96-tinystory.json,$F:coeffs=96:dims=$D-c96-gen.json,$F:coeffs=96
  KV=$KV,$F:coeffs=320:coeff_dtype=f16:dims=$D-c320-u0.875-tinystory.json,$F:coeffs=320:coeff_dtype=f16:dims=$D-c320-u0.875-gen.json
  $H eval fidelity -m $M -f tests/data/tinystory.txt --ctx 512 --prompt-frac 0.75 -t 1 --kv $KV
  $H eval fidelity -m $M -f tests/data/tinystory.txt --ctx 512 --prompt-frac 0.75 -t 1 --kv $KV --json > docs/kv/fidelity-$MODEL.json
  $H eval fidelity -m $M -f docs/kv/heldout-$MODEL.txt --ctx 512 --prompt-frac 0.75 -t 1 --kv $KV
done
