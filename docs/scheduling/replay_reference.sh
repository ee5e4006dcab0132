#!/bin/sh
# The reference mix (docs/scheduling.md, "The reference workload"; lengths / 4 so that prompts and outputs
# fit the tiny models' 512-token context; 200 requests: docs/scheduling/replay/ref200_quarter.jsonl) on the
# real engine: record its acceptance traces once under fcfs, measure a cost profile, then replay every
# policy at the reference loads with the simulator beside each (--compare). Run from the repository root:
#   sh docs/scheduling/replay_reference.sh OUTDIR [LOADS]      (LOADS default 0.5,0.8,0.95)
# WORKLOAD overrides the workload file. HARMONIA (default build/harmonia) is the binary; RUN (default "nice -n -10") prefixes every timed command.
set -e
OUT=${1:?usage: replay_reference.sh OUTDIR [LOADS]}
LOADS=${2:-0.5,0.8,0.95}
H=${HARMONIA:-build/harmonia}
S=${HARMONIA_SHARED:-../shared}
M=$S/models/TinyStories-656K
D=$M/TinyStories-656K-Q8_0.gguf
W=${WORKLOAD:-docs/scheduling/replay/ref200_quarter.jsonl}
mkdir -p "$OUT"
export OMP_WAIT_POLICY=active
RUN=${RUN-nice -n -10}
date -u >> "$OUT/date.txt"
$RUN $H bench --profile -m "$M" --draft "$D" -t 1 --profile-reps 15 --batches 1 -o "$OUT/p.json" > "$OUT/p.txt"
$RUN $H replay -m "$M" --draft "$D" -t 1 --batch 1 --workload "$W" --profile "$OUT/p.json" \
  --sched fcfs --rates 20 --record "$OUT/rec.jsonl" > "$OUT/record.txt"
$RUN $H replay -m "$M" --draft "$D" -t 1 --batch 1 --workload "$OUT/rec.jsonl" --profile "$OUT/p.json" \
  --loads "$LOADS" --compare --steps "$OUT/steps.jsonl" > "$OUT/compare.txt"
date -u >> "$OUT/date.txt"
