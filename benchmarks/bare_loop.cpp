// A bare execute() loop: the reference the profiler's native engine is compared against.
// No sampler, no progress, no JSON beyond the samples. Same runtime libraries as edgekit's runner.
#include <executorch/extension/data_loader/mmap_data_loader.h>
#include <executorch/extension/memory_allocator/malloc_memory_allocator.h>
#include <executorch/runtime/executor/method.h>
#include <executorch/runtime/executor/program.h>
#include <executorch/runtime/platform/runtime.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

using namespace executorch::runtime;

int main(int argc, char** argv) {
  if (argc < 5) return 2;
  int warmup = std::atoi(argv[2]), runs = std::atoi(argv[3]), threads = std::atoi(argv[4]);
  runtime_init();
  executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(threads);
  auto loader = executorch::extension::MmapDataLoader::from(argv[1]);
  auto program = Program::load(&loader.get());
  auto meta = program->method_meta("forward");
  std::vector<std::vector<uint8_t>> planned(meta->num_memory_planned_buffers());
  std::vector<Span<uint8_t>> spans;
  for (size_t i = 0; i < planned.size(); ++i) {
    planned[i].resize(meta->memory_planned_buffer_size(i).get());
    spans.emplace_back(planned[i].data(), planned[i].size());
  }
  HierarchicalAllocator planned_alloc({spans.data(), spans.size()});
  executorch::extension::MallocMemoryAllocator method_alloc, temp_alloc;
  MemoryManager mm(&method_alloc, &planned_alloc, &temp_alloc);
  auto method = program->load_method("forward", &mm);
  if (!method.ok()) return 1;
  // Inputs: zero-filled tensors of the program's input shapes; latency does not depend on values here.
  size_t n_in = meta->num_inputs();
  std::vector<std::vector<uint8_t>> data(n_in);
  std::vector<std::vector<int32_t>> sizes(n_in), strides(n_in);
  std::vector<std::vector<uint8_t>> order(n_in);
  std::vector<executorch::aten::TensorImpl*> impls;
  for (size_t i = 0; i < n_in; ++i) {
    auto tm = meta->input_tensor_meta(i);
    sizes[i].assign(tm->sizes().begin(), tm->sizes().end());
    strides[i].resize(sizes[i].size());
    order[i].resize(sizes[i].size());
    int32_t st = 1;
    for (int d = static_cast<int>(sizes[i].size()) - 1; d >= 0; --d) { strides[i][d] = st; st *= sizes[i][d]; order[i][d] = d; }
    data[i].assign(tm->nbytes(), 0);
    impls.push_back(new executorch::aten::TensorImpl(tm->scalar_type(), sizes[i].size(), sizes[i].data(), data[i].data(),
                                                    order[i].data(), strides[i].data()));
  }
  // One run = set_input + execute(), as Module::forward does (the planner may reuse input buffers).
  auto run = [&]() {
    for (size_t i = 0; i < n_in; ++i) {
      if (method->set_input(EValue(executorch::aten::Tensor(impls[i])), i) != Error::Ok) return false;
    }
    return method->execute() == Error::Ok;
  };
  for (int i = 0; i < warmup; ++i) {
    if (!run()) return 1;
  }
  std::vector<double> ms(runs);
  for (int i = 0; i < runs; ++i) {
    auto t = std::chrono::steady_clock::now();
    if (!run()) return 1;
    ms[i] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
  }
  std::printf("[");
  for (int i = 0; i < runs; ++i) std::printf(i ? ",%.9f" : "%.9f", ms[i]);
  std::printf("]\n");
  return 0;
}
