#!/usr/bin/env python3
"""PyTorch baselines for issue #7's end-to-end comparison (run on the GPU machine).

Two measurements on the Llama-3.1-8B shape (32 layers, dim 4096, 32 query heads,
8 KV heads, head_dim 128, FFN 14336, vocab 128256), random bf16 weights (timing
does not depend on values):

  attention  torch.nn.functional.scaled_dot_product_attention decode over a bf16
             KV cache (one query per sequence, GQA via enable_gqa): time per layer
             and bytes/s, at the given contexts and batches. Several layers' caches
             are rotated so that calls do not hit in L2 (as bench_cuda does).
  hf         a plain Hugging Face decode loop: LlamaForCausalLM (transformers, sdpa
             attention) with its default DynamicCache filled with `depth` random
             tokens per layer, then `steps` greedy decode steps (model(...) ->
             argmax -> next input). Reports decode tokens/s (median step time) and
             peak GPU memory; with --prefill, also prefill tokens/s of a `depth`-token
             prompt (logits of the last position only).

Usage:
  python3 scripts/pytorch_baseline.py attention --ctx 4096,32768,131072 --batch 1,16
  python3 scripts/pytorch_baseline.py hf --depth 32768,131072 --batch 1 [--prefill] [--layers 32]
Prints one JSON object per measurement (one line each).
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

SHAPE = dict(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, head_dim=128, ffn=14336, vocab=128256)


def ints(s):
    return [int(x) for x in s.split(",") if x]


def cuda_time_ms(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def copy_bandwidth():
    n = 1 << 30  # bf16 elements: 2 GiB per buffer
    a = torch.empty(n, dtype=torch.bfloat16, device="cuda")
    b = torch.empty_like(a)
    ms = cuda_time_ms(lambda: b.copy_(a), 10)
    return 2 * a.numel() * 2 / (ms * 1e-3)  # bytes read + written per second


def run_attention(args):
    s = SHAPE
    copy_bps = copy_bandwidth()
    for ctx in ints(args.ctx):
        for B in ints(args.batch):
            per_layer = B * s["n_kv_heads"] * ctx * s["head_dim"] * 2 * 2  # K + V bytes
            layers = max(2, min(16, (512 << 20) // per_layer + 1))
            ks = [torch.randn(B, s["n_kv_heads"], ctx, s["head_dim"], dtype=torch.bfloat16, device="cuda")
                  for _ in range(layers)]
            vs = [torch.randn_like(k) for k in ks]
            q = torch.randn(B, s["n_heads"], 1, s["head_dim"], dtype=torch.bfloat16, device="cuda")
            i = [0]

            def step():
                j = i[0] % layers
                i[0] += 1
                F.scaled_dot_product_attention(q, ks[j], vs[j], enable_gqa=True)

            ms = cuda_time_ms(step, args.reps, warmup=5)
            print(json.dumps(dict(kind="attention", impl="torch sdpa", context=ctx, batch=B,
                                  us_per_layer=ms * 1e3, mb_read=per_layer / 1e6,
                                  gb_s=per_layer / (ms * 1e-3) / 1e9, copy_gb_s=copy_bps / 1e9,
                                  pct_of_copy=100 * per_layer / (ms * 1e-3) / copy_bps)), flush=True)
            del ks, vs
            torch.cuda.empty_cache()


def run_hf(args):
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.cache_utils import DynamicCache

    s = SHAPE
    cfg = LlamaConfig(hidden_size=s["dim"], intermediate_size=s["ffn"], num_hidden_layers=args.layers,
                      num_attention_heads=s["n_heads"], num_key_value_heads=s["n_kv_heads"],
                      head_dim=s["head_dim"], vocab_size=s["vocab"], max_position_embeddings=131072 + 4096,
                      rope_theta=500000.0, tie_word_embeddings=False, torch_dtype=torch.bfloat16)
    try:
        cfg._attn_implementation = "sdpa"
    except Exception:  # read-only in some transformers versions; sdpa is their default anyway
        pass
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)  # build the 8B parameters in bf16 directly
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).eval()
    torch.set_default_dtype(torch.float32)
    for p in model.parameters():  # small random weights (default init may give inf in bf16 logits)
        p.data.uniform_(-0.02, 0.02)
    for B in ints(args.batch):
        for depth in ints(args.depth):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            prefill_tok_s = None
            with torch.inference_mode():
                if args.prefill and B == 1:
                    ids = torch.randint(0, s["vocab"], (1, depth), device="cuda")
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
                    torch.cuda.synchronize()
                    prefill_tok_s = depth / (time.perf_counter() - t0)
                    cache = out.past_key_values
                    del out
                else:
                    cache = DynamicCache()
                    for layer in range(args.layers):
                        k = torch.randn(B, s["n_kv_heads"], depth, s["head_dim"], dtype=torch.bfloat16, device="cuda")
                        cache.update(k, torch.randn_like(k), layer)
                nxt = torch.randint(0, s["vocab"], (B, 1), device="cuda")
                times = []
                for step in range(args.steps + 2):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
                    nxt = out.logits[:, -1:].argmax(-1)
                    torch.cuda.synchronize()
                    if step >= 2:  # warm-up steps
                        times.append(time.perf_counter() - t0)
                    cache = out.past_key_values
                    del out
            med = statistics.median(times)
            print(json.dumps(dict(kind="hf_decode", impl="transformers LlamaForCausalLM + DynamicCache (sdpa)",
                                  layers=args.layers, depth=depth, batch=B, decode_ms_per_step=med * 1e3,
                                  decode_tok_s=B / med, prefill_tok_s=prefill_tok_s,
                                  peak_gib=torch.cuda.max_memory_allocated() / 2**30)), flush=True)
            del cache


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("attention")
    a.add_argument("--ctx", default="4096,32768,131072")
    a.add_argument("--batch", default="1,16")
    a.add_argument("--reps", type=int, default=50)
    h = sub.add_parser("hf")
    h.add_argument("--depth", default="32768,131072")
    h.add_argument("--batch", default="1")
    h.add_argument("--steps", type=int, default=8)
    h.add_argument("--layers", type=int, default=SHAPE["n_layers"])
    h.add_argument("--prefill", action="store_true")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("pytorch_baseline: no CUDA device", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    print(json.dumps(dict(device=torch.cuda.get_device_name(0), torch=torch.__version__)), flush=True)
    {"attention": run_attention, "hf": run_hf}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
