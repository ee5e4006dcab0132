#!/bin/sh
# Regenerates the texts and dims files used by docs/kv.md (run from the repository root).
set -e
export OMP_WAIT_POLICY=passive
H="nice -n 19 build/harmonia"
S=../shared/models
OUT=${OUT:-docs/kv}
for MODEL in stories260K TinyStories-656K; do
  [ $MODEL = stories260K ] && M=$S/stories260K/stories260K.gguf
  [ $MODEL = TinyStories-656K ] && M=$S/TinyStories-656K
  # Model-written stories: seeds 1-16 for calibration, 101-106 as a second evaluation text.
  for s in $(seq 1 16); do $H generate -m $M -n 400 --seed $s -t 1 --ctx 512 2>/dev/null; echo; done > $OUT/calib-$MODEL.txt
  for s in $(seq 101 106); do $H generate -m $M -n 400 --seed $s -t 1 --ctx 512 2>/dev/null; echo; done > $OUT/heldout-$MODEL.txt
  for T in tinystory gen; do
    [ $T = tinystory ] && TXT=tests/data/tinystory.txt
    [ $T = gen ] && TXT=$OUT/calib-$MODEL.txt
    C="$H calibrate -m $M --text $TXT --ctx 512 --sink 4 --window 32 -t 1"
    $C --coeffs 96 -o $OUT/$MODEL-c96-$T.json                                    # inverted pyramid (default)
    $C --coeffs 320 --schema uniform --ratio 0.875 -o $OUT/$MODEL-c320-u0.875-$T.json
  done
done
