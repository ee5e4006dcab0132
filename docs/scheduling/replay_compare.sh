#!/bin/sh
# Simulate against replay on the shared tiny models (docs/scheduling.md, "Simulate against replay").
# The machine's speed drifts (other processes share its cores, caches and memory bandwidth), so every
# replay point gets its own cost profile, measured immediately before it in this one script. Run from
# the repository root:
#   sh docs/scheduling/replay_compare.sh OUTDIR [B]
# PER_POLICY=1 in the environment measures a profile before every policy's replay instead of once per load.
# HARMONIA (default build/harmonia) is the binary; SPECS_ONLY=draft|ngram runs one drafter of the B = 1 pair;
# RUN (default "nice -n -10") prefixes every timed command.
# B (default 1) is the batch size of the comparison; B > 1 uses loads 0.5, 1.0, 1.4 (relative to
# one-at-a-time service, like simulate's) and the draft model only.
set -e
OUT=${1:?usage: replay_compare.sh OUTDIR [B]}
B=${2:-1}
H=${HARMONIA:-build/harmonia}
S=${HARMONIA_SHARED:-../shared}
M=$S/models/TinyStories-656K
D=$M/TinyStories-656K-Q8_0.gguf
mkdir -p "$OUT"
# Timing runs at high priority with spinning OpenMP workers, so concurrent (nice 19) builds do not
# take their CPU; memory bandwidth and caches are still shared.
export OMP_WAIT_POLICY=active
RUN=${RUN-nice -n -10}
date -u >> "$OUT/date.txt"
# The workload: 100 requests, log-normal prompts (median 40, <= 120) and outputs (median 80, 8-380).
$H simulate --synthetic "single:requests=100:seed=1:prompt=40:prompt_sigma=0.6:prompt_max=120:output=80:output_sigma=0.9:output_min=8:output_max=380" \
  --write-workload "$OUT/w0.jsonl" --sched fcfs > /dev/null
if [ "$B" = 1 ]; then SPECS="draft ngram"; LOADS="0.3 0.5 0.7"; BATCHES=1; else SPECS="draft"; LOADS="0.5 1.0 1.4"; BATCHES=1,2,4,8; fi
if [ -n "$SPECS_ONLY" ]; then SPECS=$SPECS_ONLY; fi
for spec in $SPECS; do
  if [ "$spec" = draft ]; then DR="--draft $D"; else DR="--spec ngram"; fi
  P="$OUT/p_${spec}_b$B"
  $RUN $H bench --profile -m "$M" $DR -t 1 --profile-reps 15 --batches $BATCHES -o "$P.json" > "$P.txt"
  $RUN $H replay -m "$M" $DR -t 1 --batch "$B" --workload "$OUT/w0.jsonl" --profile "$P.json" \
    --sched fcfs --rates 20 --record "$OUT/rec_${spec}_b$B.jsonl" > "$OUT/record_${spec}_b$B.txt"
  for load in $LOADS; do
    if [ -z "$PER_POLICY" ]; then
      $RUN $H bench --profile -m "$M" $DR -t 1 --profile-reps 15 --batches $BATCHES -o "${P}_l$load.json" > "${P}_l$load.txt"
      $RUN $H replay -m "$M" $DR -t 1 --batch "$B" --workload "$OUT/rec_${spec}_b$B.jsonl" --profile "${P}_l$load.json" \
        --loads "$load" --compare --steps "$OUT/steps_${spec}_b${B}_l$load.jsonl" > "$OUT/compare_${spec}_b${B}_l$load.txt"
      continue
    fi
    # PER_POLICY=1: a fresh profile right before every policy's replay (seconds apart, not a minute).
    for pol in fcfs sjf srpt-oracle las mlfq laps-sd; do
      $RUN $H bench --profile -m "$M" $DR -t 1 --profile-reps 15 --batches $BATCHES -o "${P}_l${load}_$pol.json" > "${P}_l${load}_$pol.txt"
      $RUN $H replay -m "$M" $DR -t 1 --batch "$B" --workload "$OUT/rec_${spec}_b$B.jsonl" --profile "${P}_l${load}_$pol.json" \
        --sched $pol --loads "$load" --compare > "$OUT/compare_${spec}_b${B}_l${load}_$pol.txt"
    done
  done
done
date -u >> "$OUT/date.txt"
