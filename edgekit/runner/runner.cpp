// edgekit's native profiling runner: the measured process. No Python, no torch: its RSS is the program's.
//
// It loads an ExecuTorch program with the runtime that the executorch wheel ships, feeds it inputs the
// parent prepared (raw bytes), runs it through the phases users know from TFLite's benchmark_model
// (load, first run, warm-up, timed runs) and writes raw samples and counters as JSON to --result. Before the first
// run it can run the package's reference inputs (--check-inputs) and write their outputs (--check-outputs), so the
// parent can tell a device that computes the wrong answer from one that is merely slow.
// Statistics are computed by the parent from the raw samples, so both engines share one definition.
//
// Protocol (edgekit/runner/protocol.py, version kProtocolVersion): progress lines on stderr ("@phase NAME",
// "@progress DONE TOTAL"); errors as "@error MESSAGE" and exit code 1; the result file is a WorkerResult.
// A crash (signal) is detected by the parent.
//
// Generation programs (ExecuTorch's text-runner convention, forward(tokens int64[1, T], input_pos int64[1]) ->
// logits of the last position) run in their own mode when --prompt-tokens is given: the answers check
// (--check-prompt fed in one call, then --check-tokens one per call; --outputs: each step's logits, raw float32, which
// the parent compares with the user's model's), then --warmup + --runs rounds of one prefill call and --gen-len - 1
// greedy decode steps, each call timed (--etdump: one more prefill and decode, traced). The result has the generation
// worker's keys (edgekit/runner/llmworker.py), so both engines share the parent's statistics. The
// llama:: kernels such programs call come from llm_ops.cpp.

#include <executorch/extension/data_loader/file_data_loader.h>
#include <executorch/extension/data_loader/mmap_data_loader.h>
#include <executorch/extension/flat_tensor/flat_tensor_data_map.h>
#include <executorch/extension/memory_allocator/malloc_memory_allocator.h>
#include <executorch/devtools/etdump/etdump_flatcc.h>
#include <executorch/runtime/executor/method.h>
#include <executorch/runtime/executor/program.h>
#include <executorch/runtime/platform/runtime.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

// The wheel ships libexecutorch_threadpool.so but not threadpool.h: declare the members we call, exactly as
// upstream's extension/threadpool/threadpool.h declares them (the class is never constructed here).
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

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

namespace {

constexpr int kProtocolVersion = 3;  // edgekit/runner/protocol.py PROTOCOL_VERSION

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Names of runtime/core/error.h codes, so users read "DelegateInvalidCompatibility", not "0x30".
std::string error_name(Error e) {
  int c = static_cast<int>(e);
  const char* name = "Unknown";
  switch (c) {
    case 0x01: name = "Internal"; break;
    case 0x02: name = "InvalidState"; break;
    case 0x03: name = "EndOfMethod"; break;
    case 0x10: name = "NotSupported"; break;
    case 0x11: name = "NotImplemented"; break;
    case 0x12: name = "InvalidArgument"; break;
    case 0x13: name = "InvalidType"; break;
    case 0x14: name = "OperatorMissing"; break;
    case 0x20: name = "NotFound"; break;
    case 0x21: name = "MemoryAllocationFailed"; break;
    case 0x22: name = "AccessFailed"; break;
    case 0x23: name = "InvalidProgram"; break;
    case 0x24: name = "InvalidExternalData"; break;
    case 0x25: name = "OutOfResources"; break;
    case 0x30: name = "DelegateInvalidCompatibility"; break;
    case 0x31: name = "DelegateMemoryAllocationFailed"; break;
    case 0x32: name = "DelegateInvalidHandle"; break;
    default: break;
  }
  std::ostringstream o;
  o << name << " (0x" << std::hex << c << ")";
  return o.str();
}

[[noreturn]] void fail(const std::string& msg) {
  std::fprintf(stderr, "@error %s\n", msg.c_str());
  std::fflush(stderr);
  std::exit(1);
}

// Resident and proportional memory of this process, in bytes (Linux /proc).
long long read_status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  size_t n = std::strlen(key);
  while (std::getline(f, line)) {
    if (line.compare(0, n, key) == 0) {
      return std::atoll(line.c_str() + n + 1);
    }
  }
  return -1;
}

long long rss_bytes() {
  long long kb = read_status_kb("VmRSS");
  return kb < 0 ? -1 : kb * 1024;
}

long long hwm_bytes() {
  long long kb = read_status_kb("VmHWM");
  return kb < 0 ? -1 : kb * 1024;
}

struct Usage {
  double user_s = 0, sys_s = 0;
  long long nvcsw = 0, nivcsw = 0;
};

Usage usage_now() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  Usage u;
  u.user_s = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6;
  u.sys_s = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  u.nvcsw = ru.ru_nvcsw;
  u.nivcsw = ru.ru_nivcsw;
  return u;
}

std::string usage_json(const Usage& a, const Usage& b) {
  std::ostringstream o;
  o.precision(9);
  o << "{\"user_s\":" << (b.user_s - a.user_s) << ",\"sys_s\":" << (b.sys_s - a.sys_s)
    << ",\"voluntary_ctx_switches\":" << (b.nvcsw - a.nvcsw)
    << ",\"involuntary_ctx_switches\":" << (b.nivcsw - a.nivcsw) << "}";
  return o.str();
}

// A JSON array of numbers; a NaN or an infinity (a kernel that computed garbage) is written as null, which JSON has.
std::string samples_json(const std::vector<double>& v) {
  std::ostringstream o;
  o.precision(9);
  o << "[";
  for (size_t i = 0; i < v.size(); ++i) {
    o << (i ? "," : "");
    if (std::isfinite(v[i])) o << v[i]; else o << "null";
  }
  o << "]";
  return o.str();
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out;
}

struct Args {
  std::string model, data, method = "forward", inputs, result, etdump, outputs, loader = "mmap";
  std::string check_inputs, check_outputs;
  std::vector<int64_t> prompt_tokens, check_prompt, check_tokens;  // generation mode
  int gen_len = 0, prefill_chunk = 0;  // prefill_chunk: prompts fed this many tokens per call (0: all at once)
  std::vector<std::vector<int32_t>> shapes, check_shapes;
  int threads = 1, warmup = 20, runs = 100, etdump_runs = 20, check_count = 0;
  double warmup_seconds = 0, min_seconds = 0, max_seconds = 1e9;
};

// The items of a comma-separated option value (empty items kept: the callers decide what they mean).
std::vector<std::string> split_csv(const std::string& s) {
  std::vector<std::string> items;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) items.push_back(item);
  return items;
}

std::vector<int64_t> parse_ids(const std::string& opt, const std::string& s) {
  std::vector<int64_t> ids;
  for (const std::string& item : split_csv(s)) {
    char* end = nullptr;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v < 0) fail(opt + " takes comma-separated token ids, got '" + item + "'");
    ids.push_back(v);
  }
  return ids;
}

std::vector<int32_t> parse_shape(const std::string& s) {
  std::vector<int32_t> dims;
  for (const std::string& item : split_csv(s)) {
    if (!item.empty()) dims.push_back(static_cast<int32_t>(std::atoi(item.c_str())));
  }
  return dims;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    if (i + 1 >= argc) fail("missing value for " + k);
    std::string v = argv[++i];
    if (k == "--model") a.model = v;
    else if (k == "--data") a.data = v;
    else if (k == "--method") a.method = v;
    else if (k == "--inputs") a.inputs = v;
    else if (k == "--shape") a.shapes.push_back(parse_shape(v));
    else if (k == "--result") a.result = v;
    else if (k == "--etdump") a.etdump = v;
    else if (k == "--outputs") a.outputs = v;
    else if (k == "--etdump-runs") a.etdump_runs = std::atoi(v.c_str());
    else if (k == "--loader") a.loader = v;
    else if (k == "--threads") a.threads = std::atoi(v.c_str());
    else if (k == "--warmup") a.warmup = std::atoi(v.c_str());
    else if (k == "--warmup-seconds") a.warmup_seconds = std::atof(v.c_str());
    else if (k == "--runs") a.runs = std::atoi(v.c_str());
    else if (k == "--min-seconds") a.min_seconds = std::atof(v.c_str());
    else if (k == "--max-seconds") a.max_seconds = std::atof(v.c_str());
    else if (k == "--check-inputs") a.check_inputs = v;
    else if (k == "--check-shape") a.check_shapes.push_back(parse_shape(v));
    else if (k == "--check-count") a.check_count = std::atoi(v.c_str());
    else if (k == "--check-outputs") a.check_outputs = v;
    else if (k == "--prompt-tokens") a.prompt_tokens = parse_ids(k, v);
    else if (k == "--gen-len") a.gen_len = std::atoi(v.c_str());
    else if (k == "--check-prompt") a.check_prompt = parse_ids(k, v);
    else if (k == "--check-tokens") a.check_tokens = parse_ids(k, v);
    else if (k == "--prefill-chunk") a.prefill_chunk = std::atoi(v.c_str());
    else fail("unknown option " + k);
  }
  if (a.model.empty() || a.result.empty()) fail("--model and --result are required");
  return a;
}

// Everything one loaded method needs to stay alive.
struct Loaded {
  std::vector<std::vector<uint8_t>> planned;
  std::vector<Span<uint8_t>> spans;
  std::unique_ptr<HierarchicalAllocator> planned_alloc;
  std::unique_ptr<executorch::extension::MallocMemoryAllocator> method_alloc, temp_alloc;
  std::unique_ptr<MemoryManager> memory;
  std::unique_ptr<Method> method;
};

// --data: the program's external weights (ExecuTorch's .ptd flat-tensor file), loaded once and kept for the
// process's life; every method load (timed and traced) resolves its external tensors and XNNPACK weights in it.
const executorch::runtime::NamedDataMap* external_data(const Args& a) {
  static std::unique_ptr<executorch::extension::MmapDataLoader> loader;
  static std::unique_ptr<executorch::extension::FlatTensorDataMap> map;
  if (a.data.empty()) return nullptr;
  if (!map) {
    auto l = executorch::extension::MmapDataLoader::from(
        a.data.c_str(), executorch::extension::MmapDataLoader::MlockConfig::NoMlock);
    if (!l.ok()) fail("cannot open " + a.data);
    loader = std::make_unique<executorch::extension::MmapDataLoader>(std::move(l.get()));
    auto m = executorch::extension::FlatTensorDataMap::load(loader.get());
    if (!m.ok()) fail(a.data + " is not a valid ExecuTorch data file: " + error_name(m.error()));
    map = std::make_unique<executorch::extension::FlatTensorDataMap>(std::move(m.get()));
  }
  return map.get();
}

std::unique_ptr<Loaded> load_method(Program& program, const Args& a,
                                     executorch::runtime::EventTracer* tracer) {
  auto meta = program.method_meta(a.method.c_str());
  if (!meta.ok()) fail("the program has no method '" + a.method + "'");
  auto out = std::make_unique<Loaded>();
  size_t n = meta->num_memory_planned_buffers();
  out->planned.resize(n);
  for (size_t i = 0; i < n; ++i) {
    out->planned[i].resize(static_cast<size_t>(meta->memory_planned_buffer_size(i).get()));
    out->spans.emplace_back(out->planned[i].data(), out->planned[i].size());
  }
  out->planned_alloc = std::make_unique<HierarchicalAllocator>(
      Span<Span<uint8_t>>(out->spans.data(), out->spans.size()));
  out->method_alloc = std::make_unique<executorch::extension::MallocMemoryAllocator>();
  out->temp_alloc = std::make_unique<executorch::extension::MallocMemoryAllocator>();
  out->memory = std::make_unique<MemoryManager>(out->method_alloc.get(), out->planned_alloc.get(),
                                                out->temp_alloc.get());
  auto m = program.load_method(a.method.c_str(), out->memory.get(), tracer, external_data(a));
  if (!m.ok()) {
    fail("loading method '" + a.method + "' failed: " + error_name(m.error()) +
         (a.data.empty() ? " - the program is corrupt, needs a kernel or delegate this runtime lacks, or keeps "
                           "weights in a .ptd file (pass it with --data)"
                         : " - the program is corrupt, needs a kernel or delegate this runtime lacks, or " + a.data +
                               " is not its data file"));
  }
  out->method = std::make_unique<Method>(std::move(m.get()));
  return out;
}

struct Inputs {
  std::vector<std::vector<uint8_t>> data;
  std::vector<std::vector<int32_t>> sizes;
  std::vector<std::vector<uint8_t>> dim_order;
  std::vector<std::vector<int32_t>> strides;
  std::vector<std::unique_ptr<TensorImpl>> impls;
};

void set_inputs(Method& method, Inputs& in) {
  for (size_t i = 0; i < in.impls.size(); ++i) {
    Error e = method.set_input(EValue(Tensor(in.impls[i].get())), i);
    if (e != Error::Ok) {
      fail("setting input " + std::to_string(i) + " failed: " + error_name(e) +
           " (its shape or dtype does not fit the program)");
    }
  }
}

// One set of inputs: from ``f`` when it is open (raw bytes, one tensor after another), else zeros; shapes from
// ``shapes`` where given, else the method's own (a dynamic dimension's upper bound).
std::unique_ptr<Inputs> read_inputs(const MethodMeta& meta, const std::vector<std::vector<int32_t>>& shapes,
                                    std::ifstream& f, const std::string& what) {
  auto in = std::make_unique<Inputs>();
  for (size_t i = 0; i < meta.num_inputs(); ++i) {
    auto tm = meta.input_tensor_meta(i);
    if (!tm.ok()) fail("input " + std::to_string(i) + " is not a tensor; only tensor inputs are supported");
    std::vector<int32_t> sizes(tm->sizes().begin(), tm->sizes().end());
    if (i < shapes.size() && !shapes[i].empty()) sizes = shapes[i];
    size_t numel = 1;
    for (auto s : sizes) numel *= static_cast<size_t>(s);
    size_t elem = executorch::runtime::elementSize(tm->scalar_type());
    std::vector<uint8_t> buf(numel * elem);
    if (f.is_open()) {
      f.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
      if (static_cast<size_t>(f.gcount()) != buf.size()) fail(what + " file is shorter than the inputs need");
    }
    std::vector<uint8_t> order(sizes.size());
    for (size_t d = 0; d < order.size(); ++d) order[d] = static_cast<uint8_t>(d);
    std::vector<int32_t> strides(sizes.size());
    int32_t st = 1;
    for (int d = static_cast<int>(sizes.size()) - 1; d >= 0; --d) {
      strides[d] = st;
      st *= sizes[d];
    }
    in->data.push_back(std::move(buf));
    in->sizes.push_back(std::move(sizes));
    in->dim_order.push_back(std::move(order));
    in->strides.push_back(std::move(strides));
  }
  for (size_t i = 0; i < in->data.size(); ++i) {
    auto tm = meta.input_tensor_meta(i);
    in->impls.push_back(std::make_unique<TensorImpl>(
        tm->scalar_type(), static_cast<ssize_t>(in->sizes[i].size()), in->sizes[i].data(),
        in->data[i].data(), in->dim_order[i].data(), in->strides[i].data(),
        executorch::aten::TensorShapeDynamism::STATIC));
  }
  return in;
}

std::unique_ptr<Inputs> read_inputs(const MethodMeta& meta, const Args& a) {
  std::ifstream f;
  if (!a.inputs.empty()) {
    f.open(a.inputs, std::ios::binary);
    if (!f) fail("cannot open inputs file " + a.inputs);
  }
  return read_inputs(meta, a.shapes, f, "inputs");
}

void write_outputs(Method& m, std::ofstream& f) {
  for (size_t i = 0; i < m.outputs_size(); ++i) {
    const EValue& v = m.get_output(i);
    if (!v.isTensor()) continue;
    const Tensor t = v.toTensor();
    f.write(static_cast<const char*>(t.const_data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  }
}

// The noise floor: a fixed scalar + SIMD-friendly loop (multiply-adds over a 4 KiB array, ~2 ms on a server
// core), timed 5 times; the median is returned. Timed before the warm-up and after the timed runs, its drift
// shows how much the machine itself (frequency, thermal throttling, neighbours) moved during the measurement.
int rep_guard() {
  static volatile int i = 7;
  return i;
}

double reference_ms() {
  static float buf[1024];
  std::vector<double> t(5);
  for (double& ms : t) {
    for (int i = 0; i < 1024; ++i) buf[i] = 1.0f + static_cast<float>(i) * 1e-6f;
    auto t0 = Clock::now();
    for (int rep = 0; rep < 20000; ++rep) {
      for (int i = 0; i < 1024; ++i) buf[i] = buf[i] * 0.999999f + 1e-7f;
    }
    ms = ms_since(t0);
    if (buf[rep_guard()] < 0) std::fprintf(stderr, "\n");  // keeps the loop from being optimised away
  }
  std::sort(t.begin(), t.end());
  return t[2];
}

// One run, as ExecuTorch's Module::forward and the Python bindings do it: set the inputs, then execute.
// Inputs are set every time because the memory planner may reuse an input's buffer once it is consumed,
// so after a run the planned input holds intermediates, not the input.
void run_once(Method& m, Inputs& in, const char* phase) {
  set_inputs(m, in);
  Error e = m.execute();
  if (e != Error::Ok) {
    fail(std::string("execute() failed during ") + phase + ": " + error_name(e));
  }
}

// ---- generation programs ----

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

// One prefill and --gen-len - 1 greedy decode steps on a method loaded with an ETDump tracer, written to --etdump:
// where a generation's time goes, per operator (after the timed rounds, which carry no tracing).
void trace_generation(Program& program, const Args& a) {
  std::fprintf(stderr, "@phase ops\n");
  executorch::etdump::ETDumpGen etdump;
  auto traced = load_method(program, a, &etdump);
  Step step{*traced->method};
  auto [x, n] = prefill(step, a.prompt_tokens, a.prefill_chunk, "the ETDump run");
  int64_t tok = argmax(x, n);
  for (int i = 0; i < a.gen_len - 1; ++i) {
    auto [y, vn] = step({tok}, static_cast<int64_t>(a.prompt_tokens.size()) + i, "the ETDump run");
    tok = argmax(y, vn);
  }
  auto data = etdump.get_etdump_data();
  if (data.buf == nullptr || data.size == 0) fail("the ETDump run recorded nothing");
  std::ofstream f(a.etdump, std::ios::binary);
  f.write(static_cast<const char*>(data.buf), static_cast<std::streamsize>(data.size));
  free(data.buf);
  if (!f) fail("cannot write ETDump file " + a.etdump);
}

int run_generation(Program& program, Method& m, const Args& a, double load_ms, long long rss_baseline,
                   long long rss_after_load, int threads_effective) {
  Step step{m};
  std::string check = "null";
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
    std::ostringstream o;
    o.precision(9);
    o << "{\"prompt_tokens\":" << a.check_prompt.size() << ",\"tokens\":" << a.check_tokens.size()
      << ",\"matching\":" << same << ",\"got\":[";
    for (size_t i = 0; i < got.size(); ++i) o << (i ? "," : "") << got[i];
    o << "],\"gaps\":" << samples_json(gaps) << "}";
    check = o.str();
  }
  const int64_t plen = static_cast<int64_t>(a.prompt_tokens.size());
  std::fprintf(stderr, "@phase warmup\n");
  std::ostringstream rounds;
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
      rounds << (timed++ ? "," : "") << "{\"prefill_ms\":" << prefill << ",\"decode_ms\":" << samples_json(decode)
             << "}";
      std::fprintf(stderr, "@progress %d %d\n", timed, a.runs);
    }
  }
  double wall = seconds_since(wall0);
  Usage u1 = usage_now();
  long long peak_kb = hwm_bytes() / 1024;  // before the ETDump run loads a second copy of the method
  if (!a.etdump.empty()) trace_generation(program, a);
  std::ostringstream o;
  o.precision(9);
  o << "{\"engine\":\"native\",\"threads\":" << threads_effective << ",\"load_ms\":" << load_ms
    << ",\"rounds\":[" << rounds.str() << "],\"baseline_rss_kb\":" << rss_baseline / 1024
    << ",\"after_load_rss_kb\":" << rss_after_load / 1024 << ",\"peak_rss_kb\":" << peak_kb
    << ",\"cpu_s\":" << ((u1.user_s + u1.sys_s) - (u0.user_s + u0.sys_s)) << ",\"wall_s\":" << wall
    << ",\"check\":" << check << "}";
  std::ofstream out(a.result);  // in the run's own folder, read by the parent after the exit
  out << o.str() << "\n";
  out.close();
  if (!out) fail("cannot write result file " + a.result);
  std::fprintf(stderr, "@phase done\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse(argc, argv);
  // Baseline: the process with the runtime's shared libraries mapped and nothing loaded.
  executorch::runtime::runtime_init();
  long long rss_baseline = rss_bytes();
  Usage u_start = usage_now();

  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (pool == nullptr) fail("the ExecuTorch threadpool is unavailable");
  if (a.threads > 0) pool->_unsafe_reset_threadpool(static_cast<uint32_t>(a.threads));
  int threads_effective = static_cast<int>(pool->get_thread_count());

  std::fprintf(stderr, "@phase load\n");
  auto t_load = Clock::now();
  std::unique_ptr<executorch::runtime::DataLoader> loader;
  if (a.loader == "file") {
    auto l = executorch::extension::FileDataLoader::from(a.model.c_str());
    if (!l.ok()) fail("cannot open " + a.model);
    loader = std::make_unique<executorch::extension::FileDataLoader>(std::move(l.get()));
  } else {
    auto l = executorch::extension::MmapDataLoader::from(
        a.model.c_str(), executorch::extension::MmapDataLoader::MlockConfig::NoMlock);
    if (!l.ok()) fail("cannot open " + a.model);
    loader = std::make_unique<executorch::extension::MmapDataLoader>(std::move(l.get()));
  }
  auto program = Program::load(loader.get(), Program::Verification::InternalConsistency);
  if (!program.ok()) {
    fail("not a valid ExecuTorch program: Program::load failed with " + error_name(program.error()));
  }
  auto loaded = load_method(program.get(), a, nullptr);
  double load_ms = ms_since(t_load);
  long long rss_after_load = rss_bytes();
  Usage u_loaded = usage_now();

  if (!a.prompt_tokens.empty()) {
    if (a.gen_len < 1) fail("--gen-len must be at least 1 (the prefill's token, then greedy decode steps)");
    return run_generation(program.get(), *loaded->method, a, load_ms, rss_baseline, rss_after_load,
                          threads_effective);
  }
  auto meta = program->method_meta(a.method.c_str());
  // The reference check: each stored input set once, its outputs written raw, before anything is timed.
  int check_runs = 0;
  if (a.check_count > 0) {
    std::fprintf(stderr, "@phase check\n");
    std::ifstream cin(a.check_inputs, std::ios::binary);
    if (!cin) fail("cannot open reference inputs file " + a.check_inputs);
    std::ofstream cout(a.check_outputs, std::ios::binary);
    for (int k = 0; k < a.check_count; ++k) {
      auto set = read_inputs(meta.get(), a.check_shapes, cin, "reference inputs");
      run_once(*loaded->method, *set, "the reference check");
      write_outputs(*loaded->method, cout);
      ++check_runs;
    }
    if (!cout) fail("cannot write reference outputs file " + a.check_outputs);
  }
  auto inputs = read_inputs(meta.get(), a);
  double reference_before_ms = reference_ms();
  std::fprintf(stderr, "@phase first_run\n");
  auto t_first = Clock::now();
  run_once(*loaded->method, *inputs, "the first run");
  double first_run_ms = ms_since(t_first);

  std::fprintf(stderr, "@phase warmup\n");
  std::vector<double> warm;
  auto t_warm = Clock::now();
  while (static_cast<int>(warm.size()) < a.warmup || seconds_since(t_warm) < a.warmup_seconds) {
    auto t = Clock::now();
    run_once(*loaded->method, *inputs, "warm-up");
    warm.push_back(ms_since(t));
  }

  std::fprintf(stderr, "@phase timed\n");
  std::vector<double> samples;
  samples.reserve(static_cast<size_t>(a.runs));
  Usage u_timed0 = usage_now();
  auto t_timed = Clock::now();
  int last_report = 0;
  while (true) {
    double elapsed = seconds_since(t_timed);
    bool enough = static_cast<int>(samples.size()) >= a.runs && elapsed >= a.min_seconds;
    if (enough || (elapsed >= a.max_seconds && !samples.empty())) break;
    auto t = Clock::now();
    run_once(*loaded->method, *inputs, "the timed runs");
    samples.push_back(ms_since(t));
    int done = static_cast<int>(samples.size());
    if (done - last_report >= 25 || done == a.runs) {
      std::fprintf(stderr, "@progress %d %d\n", done, a.runs);
      last_report = done;
    }
  }
  double timed_wall_s = seconds_since(t_timed);
  Usage u_timed1 = usage_now();
  long long hwm_end = hwm_bytes();
  double reference_after_ms = reference_ms();

  // The outputs of the last timed run, raw, one tensor after another (to compare engines and devices).
  if (!a.outputs.empty()) {
    std::ofstream f(a.outputs, std::ios::binary);
    write_outputs(*loaded->method, f);
    if (!f) fail("cannot write outputs file " + a.outputs);
  }

  // Per-operator profile: a separate load with an ETDump tracer, so the timed runs above carry no tracing.
  std::string etdump_status = "\"not requested\"";
  if (!a.etdump.empty()) {
    std::fprintf(stderr, "@phase ops\n");
    executorch::etdump::ETDumpGen etdump;
    auto traced = load_method(program.get(), a, &etdump);
    for (int i = 0; i < a.etdump_runs; ++i) run_once(*traced->method, *inputs, "the ETDump runs");
    auto data = etdump.get_etdump_data();
    if (data.buf == nullptr || data.size == 0) {
      etdump_status = "\"empty\"";
    } else {
      std::ofstream f(a.etdump, std::ios::binary);
      f.write(static_cast<const char*>(data.buf), static_cast<std::streamsize>(data.size));
      free(data.buf);
      etdump_status = "\"written\"";
    }
  }

  std::ostringstream o;
  o.precision(9);
  o << "{\"protocol\":" << kProtocolVersion << ",\"engine\":\"native\",\"method\":\"" << escape(a.method) << "\",\"loader\":\"" << a.loader << "\""
    << ",\"threads_requested\":" << a.threads << ",\"threads_effective\":" << threads_effective
    << ",\"load_ms\":" << load_ms << ",\"first_run_ms\":" << first_run_ms
    << ",\"warmup_ms\":" << samples_json(warm) << ",\"samples_ms\":" << samples_json(samples)
    << ",\"timed_wall_s\":" << timed_wall_s << ",\"reference_before_ms\":" << reference_before_ms
    << ",\"reference_after_ms\":" << reference_after_ms
    << ",\"rss_baseline_bytes\":" << rss_baseline << ",\"rss_after_load_bytes\":" << rss_after_load
    << ",\"hwm_bytes\":" << hwm_end
    << ",\"cpu_load\":" << usage_json(u_start, u_loaded) << ",\"cpu_timed\":" << usage_json(u_timed0, u_timed1)
    << ",\"etdump\":" << etdump_status << ",\"check_runs\":" << check_runs << "}";
  std::ofstream out(a.result);
  out << o.str() << "\n";
  out.close();
  if (!out) fail("cannot write result file " + a.result);
  std::fprintf(stderr, "@phase done\n");
  return 0;
}
