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
// Generation programs run in their own mode, in runner_generation.cpp; what both modes share is in runner.h, and
// every result file is written by its one JSON writer.

#include "runner.h"

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


namespace edgekit_runner {

constexpr int kProtocolVersion = 3;  // edgekit/runner/protocol.py PROTOCOL_VERSION


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

// The usage between two readings, as the result file's CpuUsage.
std::string usage_json(const Usage& a, const Usage& b) {
  return JsonObject()
      .num("user_s", b.user_s - a.user_s)
      .num("sys_s", b.sys_s - a.sys_s)
      .integer("voluntary_ctx_switches", b.nvcsw - a.nvcsw)
      .integer("involuntary_ctx_switches", b.nivcsw - a.nivcsw)
      .str();
}

std::string write_etdump(executorch::etdump::ETDumpGen& etdump, const std::string& path) {
  auto data = etdump.get_etdump_data();
  if (data.buf == nullptr || data.size == 0) return "empty";
  std::ofstream f(path, std::ios::binary);
  f.write(static_cast<const char*>(data.buf), static_cast<std::streamsize>(data.size));
  free(data.buf);
  if (!f) fail("cannot write ETDump file " + path);
  return "written";
}

void write_result(const std::string& path, const JsonObject& result) {
  std::ofstream out(path);  // in the run's own folder, read by the parent after the exit
  out << result.str() << "\n";
  out.close();
  if (!out) fail("cannot write result file " + path);
  std::fprintf(stderr, "@phase done\n");
}

}  // namespace edgekit_runner

int main(int argc, char** argv) {
  using namespace edgekit_runner;
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
  std::string etdump_status = "not requested";
  if (!a.etdump.empty()) {
    std::fprintf(stderr, "@phase ops\n");
    executorch::etdump::ETDumpGen etdump;
    auto traced = load_method(program.get(), a, &etdump);
    for (int i = 0; i < a.etdump_runs; ++i) run_once(*traced->method, *inputs, "the ETDump runs");
    etdump_status = write_etdump(etdump, a.etdump);
  }

  write_result(a.result, JsonObject()
                             .integer("protocol", kProtocolVersion)
                             .text("engine", "native")
                             .text("method", a.method)
                             .text("loader", a.loader)
                             .integer("threads_requested", a.threads)
                             .integer("threads_effective", threads_effective)
                             .num("load_ms", load_ms)
                             .num("first_run_ms", first_run_ms)
                             .nums("warmup_ms", warm)
                             .nums("samples_ms", samples)
                             .num("timed_wall_s", timed_wall_s)
                             .num("reference_before_ms", reference_before_ms)
                             .num("reference_after_ms", reference_after_ms)
                             .integer("rss_baseline_bytes", rss_baseline)
                             .integer("rss_after_load_bytes", rss_after_load)
                             .integer("hwm_bytes", hwm_end)
                             .object("cpu_load", usage_json(u_start, u_loaded))
                             .object("cpu_timed", usage_json(u_timed0, u_timed1))
                             .text("etdump", etdump_status)
                             .integer("check_runs", check_runs));
  return 0;
}
