// What runner.cpp (the process, its arguments, a program's tensor mode) and runner_generation.cpp (a generation
// program's mode) share: the runtime's types, the arguments, loading a method, failing in one protocol line, the
// process's memory and CPU counters, and the one writer of the JSON result files.

#pragma once

#include <executorch/devtools/etdump/etdump_flatcc.h>
#include <executorch/extension/data_loader/mmap_data_loader.h>
#include <executorch/extension/memory_allocator/malloc_memory_allocator.h>
#include <executorch/runtime/executor/method.h>
#include <executorch/runtime/executor/program.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

namespace edgekit_runner {

using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::aten::TensorImpl;
using executorch::runtime::Error;
using executorch::runtime::EValue;
using executorch::runtime::HierarchicalAllocator;
using executorch::runtime::MemoryManager;
using executorch::runtime::Method;
using executorch::runtime::MethodMeta;
using executorch::runtime::Program;
using executorch::runtime::Result;
using executorch::runtime::Span;

using Clock = std::chrono::steady_clock;

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Names of runtime/core/error.h codes, so users read "DelegateInvalidCompatibility", not "0x30".
std::string error_name(Error e);

// "@error MESSAGE" on stderr and exit code 1 (the protocol's failure).
[[noreturn]] void fail(const std::string& msg);

long long rss_bytes();  // resident memory of this process now (Linux /proc), -1 when unreadable
long long hwm_bytes();  // its high-water mark

struct Usage {
  double user_s = 0, sys_s = 0;
  long long nvcsw = 0, nivcsw = 0;
};

Usage usage_now();

struct Args {
  std::string model, data, method = "forward", inputs, result, etdump, outputs, loader = "mmap";
  std::string check_inputs, check_outputs;
  std::vector<int64_t> prompt_tokens, check_prompt, check_tokens;  // generation mode
  int gen_len = 0, prefill_chunk = 0;  // prefill_chunk: prompts fed this many tokens per call (0: all at once)
  std::vector<std::vector<int32_t>> shapes, check_shapes;
  int threads = 1, warmup = 20, runs = 100, etdump_runs = 20, check_count = 0;
  double warmup_seconds = 0, min_seconds = 0, max_seconds = 1e9;
};

// Everything one loaded method needs to stay alive.
struct Loaded {
  std::vector<std::vector<uint8_t>> planned;
  std::vector<Span<uint8_t>> spans;
  std::unique_ptr<HierarchicalAllocator> planned_alloc;
  std::unique_ptr<executorch::extension::MallocMemoryAllocator> method_alloc, temp_alloc;
  std::unique_ptr<MemoryManager> memory;
  std::unique_ptr<Method> method;
};

std::unique_ptr<Loaded> load_method(Program& program, const Args& a, executorch::runtime::EventTracer* tracer);

// The ETDump a tracer recorded, written to ``path`` ("empty" when it recorded nothing, else "written").
std::string write_etdump(executorch::etdump::ETDumpGen& etdump, const std::string& path);

// One JSON object, written key by key: the only writer of the runner's result files (both modes). Numbers keep 9
// significant digits; a NaN or an infinity (a kernel that computed garbage) is written as null, which JSON has.
class JsonObject {
 public:
  JsonObject() {
    o_.precision(9);
    o_ << '{';
  }
  JsonObject& num(const char* key, double v) {
    next(key);
    put(v);
    return *this;
  }
  JsonObject& integer(const char* key, long long v) {
    next(key);
    o_ << v;
    return *this;
  }
  JsonObject& text(const char* key, const std::string& v) {
    next(key);
    o_ << '"';
    for (char c : v) {
      if (c == '"' || c == '\\') o_ << '\\';
      if (static_cast<unsigned char>(c) >= 0x20) o_ << c;
    }
    o_ << '"';
    return *this;
  }
  JsonObject& nums(const char* key, const std::vector<double>& v) {
    next(key);
    o_ << '[';
    for (size_t i = 0; i < v.size(); ++i) {
      if (i) o_ << ',';
      put(v[i]);
    }
    o_ << ']';
    return *this;
  }
  JsonObject& ints(const char* key, const std::vector<int64_t>& v) {
    next(key);
    o_ << '[';
    for (size_t i = 0; i < v.size(); ++i) o_ << (i ? "," : "") << v[i];
    o_ << ']';
    return *this;
  }
  // A nested object (another JsonObject's str()), or null when ``json`` is empty.
  JsonObject& object(const char* key, const std::string& json) {
    next(key);
    o_ << (json.empty() ? "null" : json);
    return *this;
  }
  JsonObject& objects(const char* key, const std::vector<std::string>& items) {
    next(key);
    o_ << '[';
    for (size_t i = 0; i < items.size(); ++i) o_ << (i ? "," : "") << items[i];
    o_ << ']';
    return *this;
  }
  std::string str() const { return o_.str() + "}"; }

 private:
  void next(const char* key) {
    o_ << (first_ ? "" : ",") << '"' << key << "\":";
    first_ = false;
  }
  void put(double v) {
    if (std::isfinite(v)) o_ << v;
    else o_ << "null";
  }
  std::ostringstream o_;
  bool first_ = true;
};

// The result file (in the run's own folder, read by the parent after the exit), then "@phase done".
void write_result(const std::string& path, const JsonObject& result);

// A generation program's mode (runner_generation.cpp): the answers check, then timed prefill + decode rounds.
int run_generation(Program& program, Method& m, const Args& a, double load_ms, long long rss_baseline,
                   long long rss_after_load, int threads_effective);

}  // namespace edgekit_runner
