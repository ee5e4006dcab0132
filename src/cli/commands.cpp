#include "cli/commands.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "common/env.h"
#include "common/error.h"
#include "common/mapped_file.h"
#include "engine/bench.h"
#include "engine/engine.h"
#include "engine/generate.h"
#include "cli/device.h"
#include "eval/fidelity.h"
#include "kv/spec.h"
#include "model/forward.h"
#include "model/presets.h"

namespace harmonia::cli {

using nlohmann::json;

namespace {

DType parse_dtype(const std::string& s) {
  auto t = dtype_from_name(s);
  if (!t || !dtype_info(*t).supported)
    fail(ErrorKind::InvalidInput, "unknown or unsupported --dtype '{}' (use f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k)", s);
  return *t;
}

std::string dump(const json& j, int indent = -1) { return dump_json(j, indent); }

}  // namespace

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string r;
  for (const auto& s : v) r += (r.empty() ? "" : sep) + s;
  return r;
}

json bench_row_json(const std::string& kv, const BenchOptions& o, const BenchResult& r) {
  return {{"kv", kv},
          {"depth", o.depth},
          {"n_prompt", o.n_prompt},
          {"n_gen", o.n_gen},
          {"prefill_tok_s", r.prefill_tok_s},
          {"decode_tok_s", r.decode_tok_s},
          {"prefill_samples", r.prefill_samples},
          {"decode_samples", r.decode_samples},
          {"weight_bytes_per_token", r.weight_bytes},
          {"kv_bytes_per_token", r.kv_bytes_read}};
}

std::string dump_json(const json& j, int indent) { return j.dump(indent, ' ', false, json::error_handler_t::replace); }

void ModelFlags::attach(CLI::App* sub, bool) {
  sub->add_option("-m,--model", model, "model file: GGUF, llama2.c .bin, or Hugging Face folder / config.json");
  sub->add_option("--preset", preset, "random weights of a known shape instead of -m (" + join(preset_names()) + ")");
  sub->add_option("--dtype", dtype, "weight type for --preset: f32 f16 bf16 q8_0 q4_0 q4_k q5_k q6_k")->capture_default_str();
  sub->add_option("--tokenizer", tokenizer, "tokenizer file (llama2.c tokenizer.bin, tokenizer.json, tokenizer.model)");
  sub->add_option("--weight-seed", weight_seed, "seed of the random weights for --preset")->capture_default_str();
  sub->add_flag("--mmap", mmap,
                "keep the weight matrices memory-mapped from the model file (faster load, shared page cache) instead of "
                "copying them to huge pages (faster decode)");
}

std::unique_ptr<Model> ModelFlags::load() const {
  if (!model.empty() && !preset.empty()) fail(ErrorKind::InvalidInput, "give either -m or --preset, not both");
  if (model.empty() && preset.empty()) {
    const std::string dflt = shared_path("models/stories260K/stories260K.gguf");
    fail(ErrorKind::InvalidInput, "no model: give -m MODEL (e.g. -m {}) or --preset NAME", dflt);
  }
  std::unique_ptr<Model> m;
  if (!preset.empty()) {
    RandomModelOptions o;
    o.dtype = parse_dtype(dtype);
    o.seed = weight_seed;
    m = make_random_model(preset_config(preset), o);
    m->path = "preset " + preset + " (" + dtype + ", random weights)";
  } else {
    LoadOptions lo;
    lo.tokenizer_path = tokenizer;
    lo.mmap_weights = mmap;
    m = load_model(model, lo);
  }
  if (!tokenizer.empty() && (!m->tokenizer || m->format != "llama2c")) m->tokenizer = load_tokenizer(tokenizer);
  return m;
}

// ---- generate -------------------------------------------------------------------------

class GenerateCmd : public Command {
 public:
  void attach(CLI::App& app) override {
    sub_ = app.add_subcommand("generate", "generate text from a prompt");
    mf_.attach(sub_);
    sub_->add_option("-p,--prompt", prompt_, "prompt text (default: start from BOS alone)");
    sub_->add_option("-f,--file", file_, "read the prompt from a file");
    sub_->add_option("-n,--n-predict", o_.max_tokens, "new tokens at most")->capture_default_str();
    sub_->add_option("--temp", o_.sampling.temperature, "temperature (0 = greedy)")->capture_default_str();
    sub_->add_option("--top-k", o_.sampling.top_k, "top-k (0 = off)")->capture_default_str();
    sub_->add_option("--top-p", o_.sampling.top_p, "top-p (1 = off)")->capture_default_str();
    sub_->add_option("--min-p", o_.sampling.min_p, "min-p (0 = off)")->capture_default_str();
    sub_->add_option("--repeat-penalty", o_.sampling.repeat_penalty, "repetition penalty (1 = off)")->capture_default_str();
    sub_->add_option("--repeat-last-n", o_.sampling.repeat_last_n, "window of the penalties")->capture_default_str();
    sub_->add_option("--frequency-penalty", o_.sampling.frequency_penalty, "OpenAI frequency penalty")->capture_default_str();
    sub_->add_option("--presence-penalty", o_.sampling.presence_penalty, "OpenAI presence penalty")->capture_default_str();
    sub_->add_option("--seed", seed_, "sampling seed (default fixed; -1 = random)");
    sub_->add_option("--stop", o_.stop, "stop string (repeatable)");
    sub_->add_flag("--ignore-eos", o_.ignore_eos, "do not stop at EOS/EOT");
    sub_->add_option("-c,--ctx", o_.ctx, "context size in tokens (default: the model's)");
    sub_->add_option("-t,--threads", threads_, "threads (default: all cores)");
    sub_->add_flag("--chat", chat_, "wrap the prompt in the model's chat template");
    sub_->add_option("--system", system_, "system message for --chat");
    sub_->add_flag("--json", json_, "print one JSON object with tokens, text and timings");
    sub_->add_option("--kv", o_.kv_policy, "KV cache policy (" + join(kv::policy_names()) + ")")->capture_default_str();
    sub_->add_option("--kv-opt", kv_opts_, "KV policy option key=value (repeatable)");
    sub_->add_option("--draft", draft_path_, "draft model for speculative decoding (same vocabulary)");
    sub_->add_option("--spec", spec_.drafter, "speculative drafter without a second model: ngram | layerskip");
    sub_->add_option("--draft-n", spec_.n, "draft tokens per step")->capture_default_str();
    sub_->add_option("--draft-layers", spec_.layers, "layerskip: draft depth (default: half the layers)");
    sub_->add_flag("--draft-adaptive", spec_.adaptive, "pause drafting while it does not pay");
    dev_.attach(sub_);
  }

  int run() override {
    dev_.check();
    if (!draft_path_.empty()) {
      if (spec_.drafter != "none") fail(ErrorKind::InvalidInput, "give either --draft MODEL or --spec, not both");
      spec_.drafter = "draft";
    }
    spec_.validate();
    if (dev_.cuda() && spec_.drafter != "none")
      fail(ErrorKind::Unsupported, "--device cuda: speculative decoding (--{}) runs on the CPU only",
           draft_path_.empty() ? "spec" : "draft");
    if (!prompt_.empty() && !file_.empty()) fail(ErrorKind::InvalidInput, "give either -p or -f, not both");
    if (!file_.empty()) prompt_ = read_file(file_);
    {
      const auto specs = kv::parse_policy_list(o_.kv_policy, kv_opts_);
      if (specs.size() != 1) fail(ErrorKind::InvalidInput, "generate takes one --kv policy, got '{}'", o_.kv_policy);
      o_.kv_policy = specs[0].name;
      o_.kv_options = specs[0].options;
    }
    if (seed_ == -1) o_.sampling.seed = SamplingOptions::kRandomSeed;
    else if (seed_ >= 0) o_.sampling.seed = static_cast<uint64_t>(seed_);
    else if (seed_ != -2) fail(ErrorKind::InvalidInput, "--seed must be >= 0 or -1 (random), got {}", seed_);
    o_.sampling.validate();
    set_threads(threads_);
    auto m = mf_.load();
    std::vector<int32_t> prompt;
    const Tokenizer* tok = m->tokenizer.get();
    if (chat_) {
      if (!tok) fail(ErrorKind::InvalidInput, "--chat needs a tokenizer (give --tokenizer)");
      std::vector<ChatMessage> msgs;
      if (!system_.empty()) msgs.push_back({"system", system_});
      msgs.push_back({"user", prompt_});
      const ChatFormat f = detect_chat_format(tok->chat_template());
      prompt = tok->encode(apply_chat_template(f, msgs, true), tok->bos_id() >= 0, true);
    } else if (!prompt_.empty()) {
      if (!tok) fail(ErrorKind::InvalidInput, "{}: no tokenizer to encode -p (give --tokenizer PATH)", m->path);
      prompt = tok->encode(prompt_, tok->bos_id() >= 0 && tok->add_bos_default());
      if (prompt.empty()) prompt.push_back(tok->bos_id() >= 0 ? tok->bos_id() : 0);
    } else {
      prompt.push_back(tok && tok->bos_id() >= 0 ? tok->bos_id() : 1);
    }
    const bool stream = !json_;
    // Like llama-cli, echo the prompt (as the model sees it) before the continuation.
    if (stream && tok && !prompt_.empty()) {
      std::fputs(tok->decode(prompt, true).c_str(), stdout);
      std::fflush(stdout);
    }
    auto on_text = [&](const std::string& s) {
      if (stream) {
        std::fwrite(s.data(), 1, s.size(), stdout);
        std::fflush(stdout);
      }
    };
    engine::Usage usage;
    GenerateResult res;
    if (dev_.cuda()) {
      res = generate_cuda(*m, prompt, o_, dev_, on_text);
    } else if (spec_.drafter == "none") {
      Forward fw(*m);
      res = generate(fw, prompt, o_, on_text);
    } else {
      std::unique_ptr<Model> draft;
      if (!draft_path_.empty()) draft = load_model(draft_path_);
      res = generate_speculative(*m, draft.get(), prompt, on_text, &usage);
    }
    if (json_) {
      json j;
      j["prompt_tokens"] = res.prompt_tokens;
      j["tokens"] = res.tokens;
      j["text"] = res.text;
      j["stop_reason"] = stop_reason_name(res.stop_reason);
      if (spec_.drafter != "none")
        j["speculative"] = {{"drafter", spec_.drafter}, {"n", spec_.n}, {"drafted", usage.drafted},
                            {"accepted", usage.accepted}, {"acceptance_rate", usage.acceptance_rate()}};
      j["kv"] = {{"policy", o_.kv_policy}, {"bytes", res.kv_bytes}, {"ctx", res.ctx}};
      j["timings"] = {{"prefill_ms", res.prefill_ms},
                      {"decode_ms", res.decode_ms},
                      {"prefill_tok_s", res.prefill_tok_s()},
                      {"decode_tok_s", res.decode_tok_s()}};
      std::cout << dump(j) << "\n";
    } else {
      std::printf("\n");
      std::fprintf(stderr,
                   "[%zu prompt tokens, %.1f ms, %.1f tok/s | %zu generated, %.1f ms, %.1f tok/s | kv %s %zu bytes | %s]\n",
                   res.prompt_tokens.size(), res.prefill_ms, res.prefill_tok_s(), res.tokens.size(), res.decode_ms,
                   res.decode_tok_s(), o_.kv_policy.c_str(), res.kv_bytes, stop_reason_name(res.stop_reason));
      if (spec_.drafter != "none")
        std::fprintf(stderr, "[speculative %s n=%d: %lld drafted, %lld accepted (%.1f%%)]\n", spec_.drafter.c_str(),
                     spec_.n, static_cast<long long>(usage.drafted), static_cast<long long>(usage.accepted),
                     100.0 * usage.acceptance_rate());
    }
    return 0;
  }

  // One request through the serving engine, which owns speculative decoding.
  GenerateResult generate_speculative(const Model& m, const Model* draft, const std::vector<int32_t>& prompt,
                                      const std::function<void(const std::string&)>& on_text, engine::Usage* usage) {
    GenerateResult res;
    res.prompt_tokens = prompt;
    res.ctx = resolve_ctx(m, o_.ctx, prompt.size(), o_.max_tokens);
    engine::EngineOptions eo;
    eo.ctx = res.ctx;
    eo.max_seqs = 1;
    eo.prefill_chunk = std::max<int64_t>(1, o_.prefill_chunk);
    eo.token_budget = std::max<int64_t>(eo.prefill_chunk, spec_.n + 1);
    engine::Engine eng(m, draft, eo);
    engine::RequestOptions r;
    r.prompt = prompt;
    r.max_tokens = std::max(1, std::min<int>(o_.max_tokens, static_cast<int>(res.ctx - static_cast<int64_t>(prompt.size()))));
    r.sampling = o_.sampling;
    r.stop = o_.stop;
    r.ignore_eos = o_.ignore_eos;
    r.kv = {o_.kv_policy, o_.kv_options};
    r.speculative = spec_;
    std::string error;
    eng.submit(r, [&](const engine::Event& e) {
      for (const auto& t : e.tokens) res.tokens.push_back(t.token);
      res.text += e.text;
      if (!e.text.empty()) on_text(e.text);
      if (e.done) {
        res.stop_reason = e.reason;
        res.prefill_ms = e.ttft_ms;
        res.decode_ms = e.latency_ms - e.ttft_ms;
        *usage = e.usage;
        error = e.error;
      }
    });
    eng.run_until_idle();
    if (!error.empty()) fail(ErrorKind::InvalidInput, "{}", error);
    return res;
  }

 private:
  ModelFlags mf_;
  GenerateOptions o_;
  spec::SpecOptions spec_;
  std::string draft_path_;
  DeviceFlags dev_;
  std::string prompt_, file_, system_;
  std::vector<std::string> kv_opts_;
  int64_t seed_ = -2;  // -2 = keep the default
  int threads_ = 0;
  bool chat_ = false, json_ = false;
};

// ---- info -----------------------------------------------------------------------------

std::unique_ptr<Model> shape_only(const ModelFlags& mf) {
  auto m = std::make_unique<Model>();
  m->config = preset_config(mf.preset);
  m->format = "preset";
  m->path = "preset " + mf.preset + " (" + mf.dtype + ", shape only)";
  const ModelConfig& c = m->config;
  const DType dt = dtype_from_name(mf.dtype).value_or(DType::F32);
  auto mat = [&](const char* name, int64_t rows, int64_t cols) {
    Tensor t;
    t.name = name;
    t.type = cols % dtype_info(dt).block_elems == 0 ? dt : DType::F32;
    t.ne = {cols, rows, 1, 1};
    t.n_dims = 2;
    t.nbytes = row_bytes(t.type, cols) * static_cast<size_t>(rows);
    return t;
  };
  auto vec = [&](const char* name, int64_t n) {
    Tensor t;
    t.name = name;
    t.ne = {n, 1, 1, 1};
    t.n_dims = 1;
    t.nbytes = static_cast<size_t>(n) * 4;
    return t;
  };
  ModelWeights& w = m->weights;
  w.tok_embd = mat("token_embd.weight", c.vocab_size, c.dim);
  w.output_norm = vec("output_norm.weight", c.dim);
  w.output = c.tied_embeddings ? w.tok_embd : mat("output.weight", c.vocab_size, c.dim);
  w.layers.resize(c.n_layers);
  for (auto& l : w.layers) {
    l.attn_norm = vec("attn_norm.weight", c.dim);
    l.ffn_norm = vec("ffn_norm.weight", c.dim);
    l.wq = mat("attn_q.weight", c.q_dim(), c.dim);
    l.wk = mat("attn_k.weight", c.kv_dim(), c.dim);
    l.wv = mat("attn_v.weight", c.kv_dim(), c.dim);
    l.wo = mat("attn_output.weight", c.dim, c.q_dim());
    l.w_gate = mat("ffn_gate.weight", c.ffn_dim, c.dim);
    l.w_up = mat("ffn_up.weight", c.ffn_dim, c.dim);
    l.w_down = mat("ffn_down.weight", c.dim, c.ffn_dim);
    if (c.qkv_bias) {
      l.bq = vec("attn_q.bias", c.q_dim());
      l.bk = vec("attn_k.bias", c.kv_dim());
      l.bv = vec("attn_v.bias", c.kv_dim());
    }
    if (c.qk_norm) {
      l.q_norm = vec("attn_q_norm.weight", c.head_dim);
      l.k_norm = vec("attn_k_norm.weight", c.head_dim);
    }
  }
  return m;
}

class InfoCmd : public Command {
 public:
  void attach(CLI::App& app) override {
    sub_ = app.add_subcommand("info", "architecture, shapes, tensor types and bytes, context, RoPE, KV bytes/token");
    mf_.attach(sub_);
    sub_->add_flag("--json", json_, "print JSON");
    sub_->add_flag("--tensors", tensors_, "list every tensor");
    sub_->add_option("--kv", kv_, "KV policies to account for, comma list with inline options (name:k=v:k=v)");
    sub_->add_option("--kv-opt", kv_opts_, "KV policy option key=value for every listed policy (repeatable)");
    sub_->add_option("-c,--ctx", ctx_, "context length for the KV accounting (default: the model's)");
    sub_->add_flag("--per-layer", per_layer_, "KV bytes per layer too");
  }
  int run() override {
    // --preset needs no weights: the shape alone answers (an 8B preset would
    // otherwise allocate and fill gigabytes).
    if (!mf_.model.empty() && !mf_.preset.empty()) fail(ErrorKind::InvalidInput, "give either -m or --preset, not both");
    std::unique_ptr<Model> m = mf_.preset.empty() ? mf_.load() : shape_only(mf_);
    const ModelConfig& c = m->config;
    json j;
    j["path"] = m->path;
    j["format"] = m->format;
    j["architecture"] = arch_name(c.arch);
    j["dim"] = c.dim;
    j["n_layers"] = c.n_layers;
    j["n_heads"] = c.n_heads;
    j["n_kv_heads"] = c.n_kv_heads;
    j["head_dim"] = c.head_dim;
    j["ffn_dim"] = c.ffn_dim;
    j["vocab_size"] = c.vocab_size;
    j["context_length"] = c.ctx_len;
    j["norm_eps"] = c.norm_eps;
    j["tied_embeddings"] = c.tied_embeddings;
    j["qkv_bias"] = c.qkv_bias;
    j["qk_norm"] = c.qk_norm;
    j["rope"] = {{"style", c.rope.style == RopeConfig::Style::Interleaved ? "interleaved" : "half"},
                 {"n_rot", c.rope.n_rot},
                 {"theta", c.rope.theta},
                 {"scaling", rope_scaling_name(c.rope.scaling)},
                 {"factor", c.rope.factor},
                 {"original_ctx", c.rope.original_ctx},
                 {"freq_factors", !c.rope.freq_factors.empty()}};
    j["kv_bytes_per_token_f32"] = c.kv_bytes_per_token_f32();
    j["weight_bytes"] = m->weight_bytes();
    std::map<std::string, std::pair<int64_t, size_t>> by_type;  // dtype -> (tensors, bytes)
    json tl = json::array();
    auto visit = [&](const Tensor& t) {
      if (t.nbytes == 0) return;
      auto& e = by_type[dtype_name(t.type)];
      e.first++;
      e.second += t.nbytes;
      if (tensors_) tl.push_back({{"name", t.name}, {"type", dtype_name(t.type)}, {"rows", t.rows()}, {"cols", t.cols()}, {"bytes", t.nbytes}});
    };
    visit(m->weights.tok_embd);
    visit(m->weights.output_norm);
    if (!c.tied_embeddings) visit(m->weights.output);
    for (const auto& l : m->weights.layers)
      for (const Tensor* t : {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.bq, &l.bk, &l.bv, &l.q_norm, &l.k_norm,
                              &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down})
        visit(*t);
    for (const auto& [k, v] : by_type) j["tensor_types"][k] = {{"tensors", v.first}, {"bytes", v.second}};
    if (tensors_) j["tensors"] = tl;
    if (m->tokenizer)
      j["tokenizer"] = {{"kind", m->tokenizer->kind()},
                        {"vocab_size", m->tokenizer->vocab_size()},
                        {"bos", m->tokenizer->bos_id()},
                        {"eos", m->tokenizer->eos_id()},
                        {"chat_format", chat_format_name(detect_chat_format(m->tokenizer->chat_template()))}};
    if (ctx_ < 0) fail(ErrorKind::InvalidInput, "--ctx must be positive (or 0 for the model's), got {}", ctx_);
    const int64_t ctx = ctx_ > 0 ? ctx_ : c.ctx_len;
    std::vector<std::string> kv_lines;
    if (!kv_.empty()) {
      const auto specs = kv::parse_policy_list(kv_, kv_opts_);
      const kv::Shape shape = kv_shape(c, ctx);
      const size_t full_total = kv::ledger_total(kv::make_policy("full", shape)->bytes_at(ctx));
      json kvj = json::array();
      for (const auto& sp : specs) {
        auto p = kv::make_policy(sp.name, shape, sp.options);
        p->plan(ctx, 0);
        const kv::ByteLedger led = p->bytes_at(ctx);
        const size_t total = kv::ledger_total(led);
        json e{{"policy", sp.label()}, {"ctx", ctx}, {"total_bytes", total}, {"segments", led},
               {"ratio_to_full", full_total ? static_cast<double>(total) / full_total : 0.0}};
        std::string line = fmt::format("kv {:<28} ctx {:>7}: {:>14} bytes ({:.1f} MiB), {:.3f} x full", sp.label(), ctx,
                                       total, total / 1048576.0, full_total ? static_cast<double>(total) / full_total : 0.0);
        for (const auto& [seg, b] : led) line += fmt::format("\n    {:<14} {:>14} bytes ({:.2f} MiB)", seg, b, b / 1048576.0);
        if (per_layer_) {
          const auto layers = p->layer_bytes_at(ctx);
          json lj = json::array();
          for (size_t l = 0; l < layers.size(); ++l) {
            lj.push_back(layers[l]);
            line += fmt::format("\n    layer {:>3}: {:>12} bytes", l, kv::ledger_total(layers[l]));
          }
          e["layers"] = lj;
        }
        kvj.push_back(e);
        kv_lines.push_back(line);
      }
      j["kv"] = kvj;
    }
    if (json_) {
      std::cout << dump(j, 2) << "\n";
      return 0;
    }
    std::printf("model       %s (%s)\n", m->path.c_str(), m->format.c_str());
    std::printf("arch        %s: dim %d, %d layers, %d heads / %d kv heads (head_dim %d), ffn %d, vocab %d\n",
                arch_name(c.arch), c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn_dim, c.vocab_size);
    std::printf("context     %lld tokens (trained)\n", static_cast<long long>(c.ctx_len));
    std::printf("rope        %s, n_rot %d, theta %g, scaling %s%s\n",
                c.rope.style == RopeConfig::Style::Interleaved ? "interleaved" : "half", c.rope.n_rot, c.rope.theta,
                rope_scaling_name(c.rope.scaling), c.rope.freq_factors.empty() ? "" : " (+ rope_freqs factors)");
    std::printf("extras      tied embeddings %s, qkv bias %s, qk norm %s, norm eps %g\n", c.tied_embeddings ? "yes" : "no",
                c.qkv_bias ? "yes" : "no", c.qk_norm ? "yes" : "no", c.norm_eps);
    for (const auto& [k, v] : by_type)
      std::printf("tensors     %-5s %4lld tensors %12zu bytes\n", k.c_str(), static_cast<long long>(v.first), v.second);
    std::printf("weights     %zu bytes (%.2f MiB)\n", m->weight_bytes(), m->weight_bytes() / 1048576.0);
    std::printf("kv cache    %zu bytes per token (f32 K+V, all layers)\n", c.kv_bytes_per_token_f32());
    if (m->tokenizer)
      std::printf("tokenizer   %s, %d tokens, bos %d, eos %d, chat %s\n", m->tokenizer->kind().c_str(),
                  m->tokenizer->vocab_size(), m->tokenizer->bos_id(), m->tokenizer->eos_id(),
                  chat_format_name(detect_chat_format(m->tokenizer->chat_template())));
    for (const auto& l : kv_lines) std::printf("%s\n", l.c_str());
    if (tensors_)
      for (const auto& t : tl)
        std::printf("  %-32s %-5s [%lld, %lld] %zu bytes\n", t["name"].get<std::string>().c_str(),
                    t["type"].get<std::string>().c_str(), t["rows"].get<long long>(), t["cols"].get<long long>(),
                    t["bytes"].get<size_t>());
    return 0;
  }

 private:
  ModelFlags mf_;
  std::string kv_;
  std::vector<std::string> kv_opts_;
  int64_t ctx_ = 0;
  bool json_ = false, tensors_ = false, per_layer_ = false;
};

// ---- tokenize -------------------------------------------------------------------------

class TokenizeCmd : public Command {
 public:
  void attach(CLI::App& app) override {
    sub_ = app.add_subcommand("tokenize", "print the token ids of a text");
    sub_->add_option("-m,--model", model_, "model file whose vocabulary to use");
    sub_->add_option("--tokenizer", tok_, "tokenizer file instead of -m");
    sub_->add_option("-p,--prompt", text_, "text")->required();
    sub_->add_flag("--no-bos", no_bos_, "do not prepend BOS");
    sub_->add_flag("--special", special_, "parse special tokens like <|eot_id|> in the text");
    sub_->add_flag("--json", json_, "print JSON");
  }
  int run() override {
    std::unique_ptr<Model> m;
    std::unique_ptr<Tokenizer> own;
    const Tokenizer* tok = nullptr;
    if (!tok_.empty()) {
      own = load_tokenizer(tok_);
      tok = own.get();
    } else if (!model_.empty()) {
      m = load_model(model_);
      tok = m->tokenizer.get();
      if (!tok) fail(ErrorKind::InvalidInput, "{}: has no tokenizer (give --tokenizer)", model_);
    } else {
      fail(ErrorKind::InvalidInput, "give -m MODEL or --tokenizer PATH");
    }
    const auto ids = tok->encode(text_, !no_bos_ && tok->bos_id() >= 0 && tok->add_bos_default(), special_);
    if (json_) {
      json pieces = json::array();
      for (int32_t id : ids) pieces.push_back(tok->piece(id));
      std::cout << dump(json{{"tokens", ids}, {"pieces", pieces}, {"count", ids.size()}}) << "\n";
    } else {
      for (int32_t id : ids) std::printf("%6d -> '%s'\n", id, tok->piece(id).c_str());
      std::printf("%zu tokens\n", ids.size());
    }
    return 0;
  }

 private:
  std::string model_, tok_, text_;
  bool no_bos_ = false, special_ = false, json_ = false;
};

// ---- make-model -----------------------------------------------------------------------

class MakeModelCmd : public Command {
 public:
  void attach(CLI::App& app) override {
    sub_ = app.add_subcommand("make-model", "write a GGUF with random weights of a real model's shape (for benchmarks)");
    sub_->add_option("--preset", preset_, "shape: " + join(preset_names()));
    sub_->add_option("--arch", arch_, "explicit shape: llama | mistral | qwen2 | qwen3");
    sub_->add_option("--dim", c_.dim, "hidden size");
    sub_->add_option("--layers", c_.n_layers, "layers");
    sub_->add_option("--heads", c_.n_heads, "query heads");
    sub_->add_option("--kv-heads", c_.n_kv_heads, "KV heads (default: heads)");
    sub_->add_option("--head-dim", c_.head_dim, "per-head size (default: dim/heads)");
    sub_->add_option("--ffn", c_.ffn_dim, "FFN hidden size");
    sub_->add_option("--vocab", c_.vocab_size, "vocabulary size");
    sub_->add_option("--ctx", c_.ctx_len, "context length");
    sub_->add_option("--rope-theta", theta_, "RoPE base");
    sub_->add_option("--dtype", dtype_, "weight type: f32 f16 bf16 q8_0 q4_0 q4_k q5_k q6_k")->capture_default_str();
    sub_->add_option("--seed", seed_, "seed of the random weights")->capture_default_str();
    sub_->add_option("-o,--output", out_, "output .gguf")->required();
  }
  int run() override {
    ModelConfig c;
    if (!preset_.empty()) {
      c = preset_config(preset_);
    } else {
      if (arch_.empty()) fail(ErrorKind::InvalidInput, "give --preset NAME or --arch with the shape flags");
      static const std::map<std::string, std::string> base = {
          {"llama", "tiny-llama"}, {"mistral", "tiny-mistral"}, {"qwen2", "tiny-qwen2"}, {"qwen3", "tiny-qwen3"}};
      auto it = base.find(arch_);
      if (it == base.end()) fail(ErrorKind::InvalidInput, "unknown --arch '{}' (llama, mistral, qwen2, qwen3)", arch_);
      ModelConfig b = preset_config(it->second);
      auto pick = [](int v, int d) { return v > 0 ? v : d; };
      b.dim = pick(c_.dim, b.dim);
      b.n_layers = pick(c_.n_layers, b.n_layers);
      b.n_heads = pick(c_.n_heads, b.n_heads);
      b.n_kv_heads = pick(c_.n_kv_heads, b.n_heads);
      b.head_dim = pick(c_.head_dim, b.dim / b.n_heads);
      b.ffn_dim = pick(c_.ffn_dim, b.ffn_dim);
      b.vocab_size = pick(c_.vocab_size, b.vocab_size);
      b.ctx_len = c_.ctx_len > 0 ? c_.ctx_len : b.ctx_len;
      if (theta_ > 0) b.rope.theta = theta_;
      b.rope.n_rot = b.head_dim;
      c = b;
    }
    RandomModelOptions o;
    o.dtype = parse_dtype(dtype_);
    o.seed = seed_;
    auto m = make_random_model(c, o);
    write_gguf(*m, out_);
    std::printf("wrote %s: %s, %d layers, dim %d, %s, %.1f MiB of weights\n", out_.c_str(), arch_name(c.arch),
                c.n_layers, c.dim, dtype_.c_str(), m->weight_bytes() / 1048576.0);
    return 0;
  }

 private:
  std::string preset_, arch_, dtype_ = "f32", out_;
  ModelConfig c_;
  double theta_ = 0;
  uint64_t seed_ = 1;
};

// ---- bench ----------------------------------------------------------------------------

class BenchCmd : public Command {
 public:
  void attach(CLI::App& app) override {
    sub_ = app.add_subcommand("bench", "prefill and decode tokens/s at a context depth (median of repetitions)");
    mf_.attach(sub_);
    sub_->add_option("-p,--n-prompt", o_.n_prompt, "prefill test tokens (0 = skip)")->capture_default_str();
    sub_->add_option("-n,--n-gen", o_.n_gen, "decode test tokens (0 = skip)")->capture_default_str();
    sub_->add_option("-d,--depth", depths_, "context depth(s) before each test (comma list)")->delimiter(',');
    sub_->add_option("-r,--reps", o_.reps, "repetitions (median reported)")->capture_default_str();
    sub_->add_option("-t,--threads", o_.threads, "threads (default: all cores)");
    sub_->add_option("--kv", kvs_, "KV policies, comma list with inline options (name:k=v:k=v)");
    sub_->add_option("--kv-opt", kv_opts_, "KV policy option key=value for every listed policy (repeatable)");
    sub_->add_option("--fill", o_.fill, "how the depth enters the cache: synthetic (random K/V, no compute) | model (real prefill)")->capture_default_str();
    sub_->add_flag("--no-bandwidth", no_bw_, "skip the memory-bandwidth measurement");
    sub_->add_flag("--json", json_, "print JSON");
    dev_.attach(sub_,
                "; with cuda the depth is always synthetic (the KV cache is filled with noise, no prefill runs for it: "
                "decode time does not depend on the values), and --preset weights are generated on the GPU (none on "
                "the host, so 8B shapes fit)");
    profile_ = attach_bench_profile(sub_);
  }
  int run() override {
    dev_.check();
    if (bench_profile_requested(*profile_)) {
      // The profile measures its own grid (its --profile-* flags); these would be silently ignored.
      for (const char* f : {"--n-prompt", "--n-gen", "--depth", "--reps", "--kv", "--kv-opt", "--fill", "--no-bandwidth", "--json"})
        if (sub_->count(f) > 0)
          fail(ErrorKind::InvalidInput, "bench --profile: {} does not apply to the cost profile (see bench --help)", f);
      return run_bench_profile(*profile_, mf_, o_.threads, dev_);
    }
    if (o_.reps < 1) fail(ErrorKind::InvalidInput, "-r/--reps must be >= 1, got {}", o_.reps);
    if (o_.n_prompt < 0) fail(ErrorKind::InvalidInput, "-p/--n-prompt must be >= 0, got {}", o_.n_prompt);
    if (o_.n_gen < 0) fail(ErrorKind::InvalidInput, "-n/--n-gen must be >= 0, got {}", o_.n_gen);
    for (int64_t d : depths_)
      if (d < 0) fail(ErrorKind::InvalidInput, "-d/--depth must be >= 0, got {}", d);
    if (dev_.cuda()) {
      if (o_.fill != "synthetic") fail(ErrorKind::Unsupported, "--device cuda: --fill {} (have: synthetic)", o_.fill);
      if (depths_.empty()) depths_ = {0};
      const bool random = !mf_.preset.empty();
      if (random && !mf_.model.empty()) fail(ErrorKind::InvalidInput, "give either -m or --preset, not both");
      auto m = random ? shape_only(mf_) : mf_.load();
      if (random) m->path = "preset " + mf_.preset + " (random weights on the GPU)";
      for (const auto& sp : kv::parse_policy_list(kvs_.empty() ? "full" : kvs_, kv_opts_))
        bench_cuda(*m, random, o_, depths_, sp, dev_, json_);
      return 0;
    }
    auto m = mf_.load();
    set_threads(o_.threads);
    const double bw = no_bw_ ? 0.0 : -1.0;  // measured beside each decode repetition
    if (depths_.empty()) depths_ = {0};
    const auto specs = kv::parse_policy_list(kvs_.empty() ? "full" : kvs_, kv_opts_);
    json rows = json::array();
    if (!json_)
      std::printf("%-28s %8s %12s %12s %9s %12s %9s\n", "kv", "depth", "prefill t/s", "decode t/s", "bw GB/s",
                  "roofline t/s", "fraction");
    for (const auto& sp : specs)
      for (int64_t d : depths_) {
        const std::string kvp = sp.label();
        BenchOptions o = o_;
        o.depth = d;
        o.kv_policy = sp.name;
        o.kv_options = sp.options;
        const BenchResult r = run_bench(*m, o, bw);
        json row = bench_row_json(kvp, o, r);
        row.update(json{{"bandwidth_gb_s", r.bandwidth_gb_s},
                        {"bandwidth_samples", r.bandwidth_samples},
                        {"roofline_tok_s", r.roofline_tok_s},
                        {"roofline_fraction", r.roofline_fraction()}});
        rows.push_back(row);
        if (!json_)
          std::printf("%-28s %8lld %12.1f %12.2f %9.2f %12.2f %8.1f%%\n", kvp.c_str(), static_cast<long long>(d),
                      r.prefill_tok_s, r.decode_tok_s, r.bandwidth_gb_s, r.roofline_tok_s, 100.0 * r.roofline_fraction());
        if (!r.bandwidth_samples.empty()) {
          const auto [lo, hi] = std::minmax_element(r.bandwidth_samples.begin(), r.bandwidth_samples.end());
          if (*hi > 1.5 * *lo)
            std::fprintf(stderr,
                         "harmonia: warning: the read bandwidth varied from %.1f to %.1f GB/s across repetitions "
                         "(a busy machine?): the roofline fraction at depth %lld is unreliable\n",
                         *lo, *hi, static_cast<long long>(d));
        }
      }
    const int threads = o_.threads > 0 ? o_.threads : omp_threads();
    if (json_) {
      std::cout << dump(json{{"model", m->path}, {"threads", threads}, {"results", rows}}, 2) << "\n";
    } else {
      std::printf("model %s, %d threads, %.1f MiB weights read per token; bandwidth measured before each repetition, "
                  "fraction = median of per-repetition ratios\n",
                  m->path.c_str(), threads, m->decode_read_bytes() / 1048576.0);
    }
    return 0;
  }

 private:
  static int omp_threads();
  ModelFlags mf_;
  std::shared_ptr<BenchProfileFlags> profile_;
  BenchOptions o_;
  std::vector<int64_t> depths_;
  std::string kvs_;
  std::vector<std::string> kv_opts_;
  DeviceFlags dev_;
  bool json_ = false, no_bw_ = false;
};

}  // namespace harmonia::cli

#include <omp.h>

namespace harmonia::cli {

int BenchCmd::omp_threads() { return omp_get_max_threads(); }

std::vector<std::unique_ptr<Command>> all_commands() {
  std::vector<std::unique_ptr<Command>> v;
  v.push_back(std::make_unique<GenerateCmd>());
  v.push_back(std::make_unique<InfoCmd>());
  v.push_back(std::make_unique<TokenizeCmd>());
  v.push_back(std::make_unique<MakeModelCmd>());
  v.push_back(std::make_unique<BenchCmd>());
  v.push_back(make_eval_command());
  v.push_back(make_serve_command());
  v.push_back(make_load_command());
  v.push_back(make_calibrate_command());
  v.push_back(make_simulate_command());
  v.push_back(make_replay_command());
  return v;
}

}  // namespace harmonia::cli
