// The two ExecuTorch kernels a generation program calls outside XNNPACK, for the native runner:
// ``llama::update_cache.out`` (write this call's keys or values into the static cache, in place) and
// ``llama::custom_sdpa.out`` (causal, grouped-query attention of the new queries over the cache).
//
// The executorch wheel ships these kernels only inside libcustom_ops_aot_lib.so, which links libtorch; their sources
// (extension/llm/custom_ops) need ATen's vector headers, ExecuTorch's optimized-kernel headers and torchao's, none of
// which the wheel carries. So the runner has its own implementation of the same contract (schemas, argument order,
// layouts [B, S, H, D] for queries and [B, C, Hkv, D] for the cache, the causal offset start_pos), plain C++ the
// compiler vectorises, rows spread over ExecuTorch's threadpool, each cached row read once per query row (a decode
// step whose kv heads the threads do not divide also splits its keys between them). Checked
// against ExecuTorch's kernels on the same inputs at the attention shapes people ship (tests/test_attention_kernels.py)
// and logit for logit in a program (tests/test_generation.py), by every profile's answers check (the program's
// divergence from the user's model, edgekit/token_fidelity.py), and side by side in benchmarks/peers/; profiles that
// use it say so in their engine.

#include <executorch/extension/kernel_util/make_boxed_from_unboxed_functor.h>
#include <executorch/runtime/kernel/kernel_includes.h>
#include <executorch/runtime/kernel/thread_parallel_interface.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <vector>

#pragma GCC diagnostic ignored "-Wpsabi"  // eight-float vectors passed between inlined helpers: no ABI crosses here

// The attention core, written with GCC's vector extensions (eight floats: two NEON registers on aarch64, one AVX
// register on x86-64, where a second copy is compiled for x86-64-v3, AVX2 + FMA, and picked at load time).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define EK_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define EK_CLONES
#endif

namespace edgekit_attention {
typedef float f8 __attribute__((vector_size(32)));
typedef int32_t i8 __attribute__((vector_size(32)));

__attribute__((always_inline)) static inline f8 load8(const float* p) { f8 v; std::memcpy(&v, p, sizeof v); return v; }
__attribute__((always_inline)) static inline void store8(float* p, f8 v) { std::memcpy(p, &v, sizeof v); }
__attribute__((always_inline)) static inline float hsum(f8 v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}
__attribute__((always_inline)) static inline f8 splat(float x) { return f8{x, x, x, x, x, x, x, x}; }

// e^x for x <= 0 (softmax after subtracting the max), Cephes' expf polynomial: relative error ~2e-7
__attribute__((always_inline)) static inline f8 exp8(f8 x) {
  x = x < splat(-87.3f) ? splat(-87.3f) : x;
  f8 fx = x * splat(1.44269504088896341f) + splat(0.5f);
  i8 n = __builtin_convertvector(fx, i8);
  f8 nf = __builtin_convertvector(n, f8);
  n = nf > fx ? n - 1 : n;  // floor
  nf = __builtin_convertvector(n, f8);
  x = x - nf * splat(0.693359375f) - nf * splat(-2.12194440e-4f);
  f8 z = x * x;
  f8 y = splat(1.9875691500E-4f);
  y = y * x + splat(1.3981999507E-3f);
  y = y * x + splat(8.3334519073E-3f);
  y = y * x + splat(4.1665795894E-2f);
  y = y * x + splat(1.6666665459E-1f);
  y = y * x + splat(5.0000001201E-1f);
  y = y * z + x + splat(1.0f);
  i8 bits = (n + 127) << 23;
  f8 pow2;
  std::memcpy(&pow2, &bits, sizeof pow2);
  return y * pow2;
}

// p: group*C scratch. q0: the group's query heads (group*D), k/v rows at stride `row` floats, o0: group*D out.
// With `partial` (group*2 floats: each head's max score and sum of exponentials) the output is left unnormalised
// and the two figures written there, for merging key ranges attended separately (see custom_sdpa_out).
EK_CLONES void attend(const float* q0, const float* kd, const float* vd, int64_t row, float* o0, int64_t keys,
                      int64_t group, int64_t D, int64_t C, float sc, float* p, float* partial = nullptr) {
  const bool vec = D % 8 == 0;
  for (int64_t j = 0; j < keys; ++j) {
    const float* kr = kd + j * row;
    for (int64_t g = 0; g < group; ++g) {
      const float* qg = q0 + g * D;
      float s;
      if (vec) {
        f8 a0 = splat(0), a1 = splat(0);
        int64_t d = 0;
        for (; d + 16 <= D; d += 16) {
          a0 += load8(qg + d) * load8(kr + d);
          a1 += load8(qg + d + 8) * load8(kr + d + 8);
        }
        for (; d < D; d += 8) a0 += load8(qg + d) * load8(kr + d);
        s = hsum(a0 + a1);
      } else {
        s = 0;
        for (int64_t d = 0; d < D; ++d) s += qg[d] * kr[d];
      }
      p[g * C + j] = s * sc;
    }
  }
  for (int64_t g = 0; g < group; ++g) {
    float* pg = p + g * C;
    const float mx = *std::max_element(pg, pg + keys);
    f8 acc = splat(0);
    int64_t j = 0;
    for (; j + 8 <= keys; j += 8) {
      f8 e = exp8(load8(pg + j) - splat(mx));
      store8(pg + j, e);
      acc += e;
    }
    float sum = hsum(acc);
    for (; j < keys; ++j) {
      pg[j] = std::exp(pg[j] - mx);
      sum += pg[j];
    }
    if (partial != nullptr) {
      partial[2 * g] = mx;
      partial[2 * g + 1] = sum;
      continue;
    }
    const float inv = 1.0f / sum;
    for (j = 0; j < keys; ++j) pg[j] *= inv;
  }
  std::fill(o0, o0 + group * D, 0.0f);
  for (int64_t j = 0; j < keys; ++j) {
    const float* vr = vd + j * row;
    for (int64_t g = 0; g < group; ++g) {
      const float w = p[g * C + j];
      float* orow = o0 + g * D;
      if (vec) {
        const f8 ww = splat(w);
        for (int64_t d = 0; d < D; d += 8) store8(orow + d, load8(orow + d) + ww * load8(vr + d));
      } else {
        for (int64_t d = 0; d < D; ++d) orow[d] += w * vr[d];
      }
    }
  }
}
}  // namespace edgekit_attention

namespace edgekit_llm_ops {

using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::runtime::Error;
using executorch::runtime::KernelRuntimeContext;
template <typename T>
using optional = std::optional<T>;

// Per-thread scratch that only grows (a decode step calls the kernel once per layer: no allocation per call). Slot 0
// holds one block of tasks' scores on whichever thread runs it, slots 1 and 2 the split path's partial outputs and
// maxima/sums on the calling thread, which may also run tasks: the slots never alias.
float* scratch(size_t n, int slot) {
  thread_local std::vector<float> buffers[3];
  if (buffers[slot].size() < n) buffers[slot].resize(n);
  return buffers[slot].data();
}

bool contiguous4(const Tensor& t) {
  if (t.dim() != 4) return false;
  auto s = t.strides();
  auto n = t.sizes();
  return s[3] == 1 && s[2] == n[3] && s[1] == n[2] * n[3] && s[0] == n[1] * n[2] * n[3];
}

Tensor& update_cache_out(KernelRuntimeContext& ctx, const Tensor& value, Tensor& cache, const int64_t start_pos,
                         Tensor& output) {
  ET_KERNEL_CHECK_MSG(ctx, contiguous4(value) && contiguous4(cache), InvalidArgument, output,
                      "update_cache: value and cache must be contiguous 4-D tensors");
  ET_KERNEL_CHECK_MSG(ctx,
                      value.size(0) == cache.size(0) && value.size(2) == cache.size(2) &&
                          value.size(3) == cache.size(3) && value.scalar_type() == cache.scalar_type(),
                      InvalidArgument, output, "update_cache: value [B, S, H, D] does not fit the cache [B, C, H, D]");
  ET_KERNEL_CHECK_MSG(ctx, start_pos >= 0 && start_pos + value.size(1) <= cache.size(1), InvalidArgument, output,
                      "update_cache: positions past the end of the cache");
  const size_t row = static_cast<size_t>(value.size(2) * value.size(3)) * value.element_size();
  const auto* src = static_cast<const uint8_t*>(value.const_data_ptr());
  auto* dst = static_cast<uint8_t*>(cache.mutable_data_ptr());
  for (int64_t b = 0; b < value.size(0); ++b) {
    std::memcpy(dst + (b * cache.size(1) + start_pos) * row, src + b * value.size(1) * row,
                row * static_cast<size_t>(value.size(1)));
  }
  return output;  // a placeholder, as upstream's: nobody reads it
}

Tensor& custom_sdpa_out(KernelRuntimeContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        const int64_t start_pos, const optional<Tensor>& attn_mask, const double dropout_p,
                        const bool is_causal, const optional<double> scale, Tensor& output) {
  ET_KERNEL_CHECK_MSG(ctx, !attn_mask.has_value(), NotSupported, output,
                      "custom_sdpa: an explicit attention mask is not supported by edgekit's native runner");
  ET_KERNEL_CHECK_MSG(ctx, dropout_p == 0.0, NotSupported, output, "custom_sdpa: dropout is not supported");
  ET_KERNEL_CHECK_MSG(ctx,
                      q.scalar_type() == ScalarType::Float && k.scalar_type() == ScalarType::Float &&
                          v.scalar_type() == ScalarType::Float && output.scalar_type() == ScalarType::Float,
                      NotSupported, output, "custom_sdpa: edgekit's native runner implements float32 only");
  ET_KERNEL_CHECK_MSG(ctx, contiguous4(q) && contiguous4(k) && contiguous4(v), InvalidArgument, output,
                      "custom_sdpa: q, k and v must be contiguous 4-D tensors");
  const int64_t B = q.size(0), S = q.size(1), H = q.size(2), D = q.size(3);
  const int64_t C = k.size(1), Hkv = k.size(2);
  ET_KERNEL_CHECK_MSG(ctx,
                      k.size(0) == B && v.size(0) == B && v.size(1) == C && v.size(2) == Hkv && k.size(3) == D &&
                          v.size(3) == D && Hkv > 0 && H % Hkv == 0,
                      InvalidArgument, output, "custom_sdpa: q [B, S, H, D] does not fit the cache [B, C, Hkv, D]");
  ET_KERNEL_CHECK_MSG(ctx, start_pos >= 0 && start_pos + S <= C, InvalidArgument, output,
                      "custom_sdpa: positions past the end of the cache");
  ET_KERNEL_CHECK(ctx, executorch::runtime::resize_tensor(output, q.sizes()) == Error::Ok, InvalidArgument, output);
  const float sc = scale.has_value() ? static_cast<float>(*scale) : 1.0f / std::sqrt(static_cast<float>(D));
  const int64_t group = H / Hkv;
  const float* qd = q.const_data_ptr<float>();
  const float* kd = k.const_data_ptr<float>();
  const float* vd = v.const_data_ptr<float>();
  float* od = output.mutable_data_ptr<float>();
  // one item per (batch, query row, kv head): the kv head's query heads together, so each cached key and value row
  // is read once per query row (ExecuTorch's kernel reads it once per query head: three times for SmolLM2's 9/3)
  const int64_t items = B * S * Hkv;
  const int64_t threads = executorch::extension::get_thread_count();
  // A decode step (S = 1) whose items the threads do not divide (SmolLM2's 3 kv heads on 2 threads ran 2:1) also
  // splits each item's keys into `parts` ranges attended separately and merged by their maxima (flash-decoding):
  // the fewest parts that make items × parts a multiple of the threads (parallel_for hands each thread one block of
  // tasks), as long as each range keeps at least kMinKeys keys.
  constexpr int64_t kMinKeys = 64;
  int64_t parts = 1;
  if (S == 1 && threads > 1 && items % threads != 0) {
    parts = std::min(threads / std::gcd(items, threads), (start_pos + 1) / kMinKeys);
    parts = std::max<int64_t>(parts, 1);
  }
  if (parts == 1) {
    executorch::extension::parallel_for(0, items, 1, [&](int64_t begin, int64_t end) {
      float* p = scratch(static_cast<size_t>(group * C), 0);
      for (int64_t item = begin; item < end; ++item) {
        const int64_t kh = item % Hkv, i = (item / Hkv) % S, b = item / (Hkv * S);
        const int64_t keys = is_causal ? start_pos + i + 1 : start_pos + S;
        const int64_t head = (b * S + i) * H + kh * group;  // the group's query heads, one after another
        const int64_t cached = (b * C * Hkv + kh) * D;
        edgekit_attention::attend(qd + head * D, kd + cached, vd + cached, Hkv * D, od + head * D, keys, group, D, C,
                                  sc, p);
      }
    });
    return output;
  }
  const int64_t keys = start_pos + 1;  // S = 1: causal or not, every cached position up to this one
  const int64_t span = (keys + parts - 1) / parts;
  float* outs = scratch(static_cast<size_t>(items * parts * group * D), 1);
  float* stats = scratch(static_cast<size_t>(items * parts * group * 2), 2);
  executorch::extension::parallel_for(0, items * parts, 1, [&](int64_t begin, int64_t end) {
    float* p = scratch(static_cast<size_t>(group * span), 0);  // scores of one range: span is their stride
    for (int64_t task = begin; task < end; ++task) {
      const int64_t item = task / parts, part = task % parts;
      const int64_t kh = item % Hkv, b = item / Hkv;
      const int64_t first = part * span, n = std::min(keys, first + span) - first;
      const int64_t head = b * H + kh * group;
      const int64_t cached = (b * C * Hkv + kh) * D + first * Hkv * D;
      edgekit_attention::attend(qd + head * D, kd + cached, vd + cached, Hkv * D, outs + task * group * D, n, group,
                                D, span, sc, p, stats + task * group * 2);
    }
  });
  for (int64_t item = 0; item < items; ++item) {  // merge: o = sum_r e^(m_r - m) o_r / sum_r e^(m_r - m) l_r
    const int64_t kh = item % Hkv, b = item / Hkv;
    for (int64_t g = 0; g < group; ++g) {
      float m = -INFINITY;
      for (int64_t r = 0; r < parts; ++r) m = std::max(m, stats[((item * parts + r) * group + g) * 2]);
      float* o = od + (b * H + kh * group + g) * D;
      std::fill(o, o + D, 0.0f);
      float total = 0;
      for (int64_t r = 0; r < parts; ++r) {
        const float* st = stats + ((item * parts + r) * group + g) * 2;
        const float w = std::exp(st[0] - m);
        total += w * st[1];
        const float* part_out = outs + ((item * parts + r) * group + g) * D;
        for (int64_t d = 0; d < D; ++d) o[d] += w * part_out[d];
      }
      const float inv = 1.0f / total;
      for (int64_t d = 0; d < D; ++d) o[d] *= inv;
    }
  }
  return output;
}

}  // namespace edgekit_llm_ops

EXECUTORCH_LIBRARY(llama, "update_cache.out", edgekit_llm_ops::update_cache_out);
EXECUTORCH_LIBRARY(llama, "custom_sdpa.out", edgekit_llm_ops::custom_sdpa_out);
