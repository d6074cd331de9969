// The two ExecuTorch kernels a generation program calls outside XNNPACK, for the native runner:
// ``llama::update_cache.out`` (write this call's keys or values into the static cache, in place) and
// ``llama::custom_sdpa.out`` (causal, grouped-query attention of the new queries over the cache).
//
// The executorch wheel ships these kernels only inside libcustom_ops_aot_lib.so, which links libtorch; their sources
// (extension/llm/custom_ops) need ATen's vector headers, ExecuTorch's optimized-kernel headers and torchao's, none of
// which the wheel carries. So the runner has its own implementation of the same contract (schemas, argument order,
// layouts [B, S, H, D] for queries and [B, C, Hkv, D] for the cache, the causal offset start_pos), plain C++ the
// compiler vectorises, rows spread over ExecuTorch's threadpool, each cached row read once per query row. Checked
// against ExecuTorch's kernels logit for logit (tests/test_generation.py), by every profile's answers check (the
// build's greedy tokens), and side by side in benchmarks/peers/llm_vs_llamacpp.py; profiles that use it say so in
// their engine.

#include <executorch/extension/kernel_util/make_boxed_from_unboxed_functor.h>
#include <executorch/runtime/kernel/kernel_includes.h>
#include <executorch/runtime/kernel/thread_parallel_interface.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

namespace edgekit_llm_ops {

using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::runtime::Error;
using executorch::runtime::KernelRuntimeContext;
template <typename T>
using optional = std::optional<T>;

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

// a·b over n floats with eight partial sums (vectorised without -ffast-math)
inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

Tensor& custom_sdpa_out(KernelRuntimeContext& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                        const int64_t start_pos, const optional<Tensor>& attn_mask, const double dropout_p,
                        const bool is_causal, const optional<double> scale, Tensor& output) {
  ET_KERNEL_CHECK_MSG(ctx, !attn_mask.has_value(), NotSupported, output,
                      "custom_sdpa: an explicit attention mask is not supported by edgekit's native runner");
  ET_KERNEL_CHECK_MSG(ctx, dropout_p == 0.0, NotSupported, output, "custom_sdpa: dropout is not supported");
  ET_KERNEL_CHECK_MSG(ctx,
                      q.scalar_type() == ScalarType::Float && k.scalar_type() == ScalarType::Float &&
                          v.scalar_type() == ScalarType::Float,
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
  executorch::extension::parallel_for(0, B * S * Hkv, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> p(static_cast<size_t>(group * C)), sum(static_cast<size_t>(group));
    for (int64_t item = begin; item < end; ++item) {
      const int64_t kh = item % Hkv, i = (item / Hkv) % S, b = item / (Hkv * S);
      const int64_t keys = is_causal ? start_pos + i + 1 : start_pos + S;
      const float* q0 = qd + ((b * S + i) * H + kh * group) * D;  // the group's query heads, one after another
      for (int64_t j = 0; j < keys; ++j) {
        const float* kr = kd + ((b * C + j) * Hkv + kh) * D;
        for (int64_t g = 0; g < group; ++g) p[g * C + j] = dot(q0 + g * D, kr, D) * sc;
      }
      for (int64_t g = 0; g < group; ++g) {
        float* pg = p.data() + g * C;
        const float mx = *std::max_element(pg, pg + keys);
        float s = 0;
        for (int64_t j = 0; j < keys; ++j) {
          pg[j] = std::exp(pg[j] - mx);
          s += pg[j];
        }
        sum[g] = 1.0f / s;
      }
      float* o0 = od + ((b * S + i) * H + kh * group) * D;
      std::fill(o0, o0 + group * D, 0.0f);
      for (int64_t j = 0; j < keys; ++j) {
        const float* vr = vd + ((b * C + j) * Hkv + kh) * D;
        for (int64_t g = 0; g < group; ++g) {
          const float w = p[g * C + j] * sum[g];
          float* orow = o0 + g * D;
          for (int64_t d = 0; d < D; ++d) orow[d] += w * vr[d];
        }
      }
    }
  });
  return output;
}

}  // namespace edgekit_llm_ops

EXECUTORCH_LIBRARY(llama, "update_cache.out", edgekit_llm_ops::update_cache_out);
EXECUTORCH_LIBRARY(llama, "custom_sdpa.out", edgekit_llm_ops::custom_sdpa_out);
