#pragma once
// Speed measurement in the manner of llama-bench: prefill (pp) and decode (tg)
// tokens/s at a given context depth, median over repetitions, and the memory
// read bandwidth that bounds decode (the roofline).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/model.h"

namespace harmonia {

struct BenchOptions {
  int n_prompt = 512;     // prefill test: tokens per prefill (0 = skip)
  int n_gen = 128;        // decode test: tokens decoded one at a time (0 = skip)
  int64_t depth = 0;      // tokens already in the KV cache before each test
  int reps = 3;           // repetitions; the median is reported
  int threads = 0;        // 0 = all cores
  std::string kv_policy = "full";
  std::map<std::string, std::string> kv_options;  // policy options (key=value)
  uint64_t seed = 1;      // random prompt token ids and synthetic KV
  // How the depth is put into the KV cache before each test: "synthetic" appends
  // random keys/values of unit scale straight into the policy (no model compute:
  // decode speed does not depend on the values, and a real 16k-token prefill
  // takes minutes on a small CPU); "model" runs a real prefill of random tokens.
  std::string fill = "synthetic";
};

struct BenchResult {
  std::string kv_policy;
  int64_t depth = 0;
  double prefill_tok_s = 0;               // median
  double decode_tok_s = 0;                // median
  std::vector<double> prefill_samples, decode_samples;  // tokens/s per repetition
  size_t weight_bytes = 0;                // read per decode token
  size_t kv_bytes_read = 0;               // KV bytes read per decode token at this depth (mid-test)
  double bandwidth_gb_s = 0;              // read bandwidth (1e9 bytes/s): median of bandwidth_samples
  std::vector<double> bandwidth_samples;  // measured right before each decode repetition (bw < 0)
  double roofline_tok_s = 0;              // bandwidth / (weight + KV bytes per token)
  // Median over repetitions of decode tokens/s ÷ the roofline of the bandwidth
  // measured just before that repetition (0 without a bandwidth).
  double fraction = 0;
  double roofline_fraction() const { return fraction; }
};

// Streams a buffer much larger than the caches with `threads` threads and
// returns the median read bandwidth in GB/s (1e9 bytes/s) over `reps` passes.
double measure_read_bandwidth(int threads, size_t bytes = size_t(1) << 30, int reps = 5);

// bandwidth_gb_s: > 0 a bandwidth measured by the caller; 0 none (no roofline);
// < 0 measure_read_bandwidth (256 MiB, median of 3) right before each decode
// repetition, each repetition's roofline fraction taken against its own.
BenchResult run_bench(const Model& m, const BenchOptions& opts, double bandwidth_gb_s);

double median(std::vector<double> v);

}  // namespace harmonia
