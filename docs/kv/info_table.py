#!/usr/bin/env python3
"""Tables of docs/kv.md from docs/kv/info-*.json (written by docs/kv/info.sh)."""
import json, os, re
MiB = 1 << 20
here = os.path.dirname(os.path.abspath(__file__))
ctxs = [4096, 8192, 16384, 32768, 65536, 131072]
def load(p, n):
    with open(os.path.join(here, f"info-{p}-{n}.json")) as f:
        # the dims path is the authors' file of the preset; leave it out of the names
        return {re.sub(r"dims=[^,)]*,?", "", e["policy"]): e for e in json.load(f)["kv"]}
for p in ["llama-3b", "llama-8b"]:
    rows = {}
    for n in ctxs:
        for name, e in load(p, n).items():
            rows.setdefault(name, {})[n] = e
    print(f"\n{p}: MiB (x full f32)\n")
    print("| policy | " + " | ".join(f"{n//1024}k" for n in ctxs) + " |")
    print("|---|" + "---:|" * len(ctxs))
    for name, r in rows.items():
        print(f"| `{name}` | " + " | ".join(f"{r[n]['total_bytes']/MiB:.1f} ({r[n]['ratio_to_full']:.3f})" for n in ctxs) + " |")
    # Spec section 8 accounting: exact K/V in fp16 (2 B), coefficients f32, statistics fp16, no index lists.
    print(f"\n{p}: spec §8 accounting (fp16 exact, f32 coefficients, fp16 statistics, indices excluded)\n")
    print("| L | full fp16 (MiB) | FA, spec §8 (MiB) | ratio | FA in memory, f32 exact (MiB) | segments in memory: sinks / local / middle_exact / coefficients / statistics / indices (bytes) |")
    print("|---:|---:|---:|---:|---:|---|")
    for n in ctxs:
        full16 = rows["full(k_type=f16,v_type=f16)"][n]["total_bytes"]
        fa = rows["fourier(window=1020)"][n]
        fa16s = rows["fourier(coeff_dtype=f16,stats_dtype=f16,window=1020)"][n]["segments"]
        s = fa["segments"]
        spec = (s["sinks"] + s["local"] + s["middle_exact"]) // 2 + s["coefficients"] + fa16s["statistics"]
        print(f"| {n} | {full16/MiB:.1f} | {spec/MiB:.1f} | {spec/full16:.3f} | {fa['total_bytes']/MiB:.1f} | "
              f"{s['sinks']} / {s['local']} / {s['middle_exact']} / {s['coefficients']} / {s['statistics']} / {s['indices']} |")
