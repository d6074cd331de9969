// edgekit's native runner, a generation program's mode (runner.cpp calls it when --prompt-tokens is given).
//
// Generation programs follow ExecuTorch's text-runner convention: forward(tokens int64[1, T], input_pos int64[1]) ->
// logits of the last position. First the answers check (--check-prompt fed in one call, then --check-tokens one per
// call; --outputs: each step's logits, raw float32, which the parent compares with the user's model's), then --warmup +
// --runs rounds of one prefill call and --gen-len - 1 greedy decode steps, each call timed (--etdump: one more prefill
// and up to --etdump-runs decode steps, traced). The result has the generation worker's keys (edgekit/runner/llmworker.py), so both engines
// share the parent's statistics. The llama:: kernels such programs call come from llm_ops.cpp.

#include "runner.h"

#include <algorithm>
#include <cstdio>
#include <fstream>

namespace edgekit_runner {
namespace {

// One call of a generation program: tokens [1, T] at input_pos; returns the last position's logits.
struct Step {
  Method& m;
  std::vector<int64_t> tokens, pos = {0};
  std::vector<int32_t> tok_sizes = {1, 0}, pos_sizes = {1};
  std::vector<uint8_t> order2 = {0, 1}, order1 = {0};
  std::vector<int32_t> tok_strides = {0, 1}, pos_strides = {1};

  std::pair<const float*, int64_t> operator()(const std::vector<int64_t>& ids, int64_t at, const char* phase) {
    tokens = ids;
    pos[0] = at;
    tok_sizes[1] = static_cast<int32_t>(ids.size());
    tok_strides[0] = static_cast<int32_t>(ids.size());
    TensorImpl ti(ScalarType::Long, 2, tok_sizes.data(), tokens.data(), order2.data(), tok_strides.data(),
                  executorch::aten::TensorShapeDynamism::STATIC);
    TensorImpl pi(ScalarType::Long, 1, pos_sizes.data(), pos.data(), order1.data(), pos_strides.data(),
                  executorch::aten::TensorShapeDynamism::STATIC);
    Error e = m.set_input(EValue(Tensor(&ti)), 0);
    if (e == Error::Ok) e = m.set_input(EValue(Tensor(&pi)), 1);
    if (e != Error::Ok) fail(std::string("setting the inputs failed during ") + phase + ": " + error_name(e));
    e = m.execute();
    if (e != Error::Ok) fail(std::string("execute() failed during ") + phase + ": " + error_name(e));
    const EValue& out = m.get_output(0);
    if (!out.isTensor() || out.toTensor().scalar_type() != ScalarType::Float) {
      fail("the program's first output is not float logits: not a generation program (build it with --task "
           "text-generation)");
    }
    const Tensor t = out.toTensor();
    int64_t vocab = t.size(t.dim() - 1);
    return {t.const_data_ptr<float>() + (t.numel() - vocab), vocab};
  }
};

// A prompt fed from position 0, all at once or ``chunk`` tokens per call (as an app with a prompt longer than the
// program's tokens per call does); returns the last call's logits.
std::pair<const float*, int64_t> prefill(Step& step, const std::vector<int64_t>& ids, int chunk, const char* phase) {
  if (chunk <= 0 || static_cast<size_t>(chunk) >= ids.size()) return step(ids, 0, phase);
  std::pair<const float*, int64_t> out{nullptr, 0};
  for (size_t at = 0; at < ids.size(); at += static_cast<size_t>(chunk)) {
    std::vector<int64_t> part(ids.begin() + at, ids.begin() + std::min(ids.size(), at + chunk));
    out = step(part, static_cast<int64_t>(at), phase);
  }
  return out;
}

int64_t argmax(const float* x, int64_t n) {
  return static_cast<int64_t>(std::max_element(x, x + n) - x);
}

// One prefill and min(--gen-len - 1, --etdump-runs) greedy decode steps on a method loaded with an ETDump tracer,
// written to --etdump: where a generation's time goes, per operator (after the timed rounds, which carry no tracing).
void trace_generation(Program& program, const Args& a) {
  std::fprintf(stderr, "@phase ops\n");
  executorch::etdump::ETDumpGen etdump;
  auto traced = load_method(program, a, &etdump);
  Step step{*traced->method};
  auto [x, n] = prefill(step, a.prompt_tokens, a.prefill_chunk, "the ETDump run");
  int64_t tok = argmax(x, n);
  for (int i = 0; i < std::min(a.gen_len - 1, a.etdump_runs); ++i) {
    auto [y, vn] = step({tok}, static_cast<int64_t>(a.prompt_tokens.size()) + i, "the ETDump run");
    tok = argmax(y, vn);
  }
  if (write_etdump(etdump, a.etdump) == "empty") fail("the ETDump run recorded nothing");
}

}  // namespace

int run_generation(Program& program, Method& m, const Args& a, double load_ms, long long rss_baseline,
                   long long rss_after_load, int threads_effective) {
  Step step{m};
  std::string check;  // empty: no answers check (null)
  if (!a.check_prompt.empty()) {
    std::fprintf(stderr, "@phase check\n");
    std::vector<int64_t> got;
    std::vector<double> gaps;
    std::ofstream logits;  // --outputs: each check step's logits, raw float32, one step after another
    if (!a.outputs.empty()) logits.open(a.outputs, std::ios::binary);
    auto out = prefill(step, a.check_prompt, a.prefill_chunk, "the answers check");
    for (size_t i = 0; i < a.check_tokens.size(); ++i) {
      const int64_t at = static_cast<int64_t>(a.check_prompt.size() + i) - 1;
      if (i) out = step({a.check_tokens[i - 1]}, at, "the answers check");
      auto [x, n] = out;
      if (logits.is_open()) {
        logits.write(reinterpret_cast<const char*>(x), static_cast<std::streamsize>(n * sizeof(float)));
      }
      int64_t want = a.check_tokens[i];
      if (want < 0 || want >= n) {
        fail("a check token is outside the program's vocabulary: the manifest is not this program's (rebuild it)");
      }
      int64_t top = argmax(x, n);
      double mean = 0;
      for (int64_t j = 0; j < n; ++j) mean += x[j];
      mean /= static_cast<double>(n);
      double spread = std::max(static_cast<double>(x[top]) - mean, 1e-9);
      got.push_back(top);
      gaps.push_back((static_cast<double>(x[top]) - x[want]) / spread);
    }
    if (logits.is_open() && !logits) fail("cannot write outputs file " + a.outputs);
    int same = 0;
    for (size_t i = 0; i < got.size(); ++i) same += got[i] == a.check_tokens[i];
    check = JsonObject()
                .integer("prompt_tokens", static_cast<long long>(a.check_prompt.size()))
                .integer("tokens", static_cast<long long>(a.check_tokens.size()))
                .integer("matching", same)
                .ints("got", got)
                .nums("gaps", gaps)
                .str();
  }
  const int64_t plen = static_cast<int64_t>(a.prompt_tokens.size());
  std::fprintf(stderr, "@phase warmup\n");
  std::vector<std::string> rounds;
  Usage u0 = usage_now();
  auto wall0 = Clock::now();
  int timed = 0;
  for (int r = 0; r < a.warmup + a.runs; ++r) {
    if (r == a.warmup) {
      std::fprintf(stderr, "@phase timed\n");
      u0 = usage_now();
      wall0 = Clock::now();
    }
    auto t = Clock::now();
    auto [x, n] = prefill(step, a.prompt_tokens, a.prefill_chunk, "the prefill");
    int64_t tok = argmax(x, n);
    double prefill = ms_since(t);
    std::vector<double> decode;
    for (int i = 0; i < a.gen_len - 1; ++i) {
      t = Clock::now();
      auto [y, vn] = step({tok}, plen + i, "a decode step");
      tok = argmax(y, vn);
      decode.push_back(ms_since(t));
    }
    if (r >= a.warmup) {
      rounds.push_back(JsonObject().num("prefill_ms", prefill).nums("decode_ms", decode).str());
      ++timed;
      std::fprintf(stderr, "@progress %d %d\n", timed, a.runs);
    }
  }
  double wall = seconds_since(wall0);
  Usage u1 = usage_now();
  long long peak_kb = hwm_bytes() / 1024;  // before the ETDump run loads a second copy of the method
  if (!a.etdump.empty()) trace_generation(program, a);
  write_result(a.result, JsonObject()
                             .text("engine", "native")
                             .integer("threads", threads_effective)
                             .num("load_ms", load_ms)
                             .objects("rounds", rounds)
                             .integer("baseline_rss_kb", rss_baseline / 1024)
                             .integer("after_load_rss_kb", rss_after_load / 1024)
                             .integer("peak_rss_kb", peak_kb)
                             .num("cpu_s", (u1.user_s + u1.sys_s) - (u0.user_s + u0.sys_s))
                             .num("wall_s", wall)
                             .object("check", check));
  return 0;
}

}  // namespace edgekit_runner
