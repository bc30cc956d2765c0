#include "backend/cuda/cuda_experts.h"

#include <algorithm>

#include "backend/cpu/moe.h"
#include "backend/cuda/ops.h"

namespace marlin::cuda {
namespace {

template <typename T>
void fit(DeviceArray<T>& buffer, size_t count) {
  if (buffer.size() < count) buffer = DeviceArray<T>(std::max(count, 2 * buffer.size()));
}

}  // namespace

std::unique_ptr<CudaExperts> CudaExperts::upload(std::span<const ExpertWeights> experts, LinearContext& ctx) {
  MARLIN_CHECK(!experts.empty(), "cuda backend: a sparse MLP needs at least one expert");
  auto x = std::make_unique<CudaExperts>();
  x->n_experts = int(experts.size());
  x->d_model = experts[0].gate.cols;
  x->d_ffn = experts[0].gate.rows;
  MARLIN_CHECK(x->d_model % 8 == 0 && x->d_ffn % 8 == 0, "cuda backend: expert widths {} and {} must be multiples of 8",
               x->d_model, x->d_ffn);
  for (const ExpertWeights& e : experts) {
    const bool same = e.gate.rows == x->d_ffn && e.gate.cols == x->d_model && e.up.rows == x->d_ffn &&
                      e.up.cols == x->d_model && e.down.rows == x->d_model && e.down.cols == x->d_ffn;
    MARLIN_CHECK(same, "cuda backend: experts of one layer differ in shape");
    const QuantTensor gate_up[] = {e.gate, e.up};
    x->gate_up_.push_back(CudaLinear::upload(gate_up, ctx));
    x->down_.push_back(CudaLinear::upload(std::span(&e.down, 1), ctx));
  }
  return x;
}

void CudaExperts::forward(const __half* h, int64_t rows, const float* router_logits, const MoeRouting& routing,
                          __half* out, LinearContext& ctx, MoeScratch& s) const {
  const int k = routing.top_k;
  MARLIN_CHECK(k >= 1 && k <= n_experts, "cuda moe: {} experts per token out of {}", k, n_experts);
  s.host_logits.resize(size_t(rows * n_experts));
  check_cuda(cudaMemcpyAsync(s.host_logits.data(), router_logits, s.host_logits.size() * sizeof(float),
                             cudaMemcpyDeviceToHost, ctx.stream),
             "cudaMemcpyAsync(router logits)");
  check_cuda(cudaStreamSynchronize(ctx.stream), "sparse MLP routing");

  // Tokens grouped by expert: expert e's rows are host_rows[begin[e] .. begin[e + 1]).
  std::vector<cpu::ExpertChoice> choices(size_t(rows * k));
  for (int64_t t = 0; t < rows; ++t)
    cpu::route_token(&s.host_logits[size_t(t * n_experts)], n_experts, routing, &choices[size_t(t * k)]);
  std::vector<int64_t> begin(size_t(n_experts) + 1, 0);
  for (const auto& c : choices) ++begin[size_t(c.expert) + 1];
  for (int e = 0; e < n_experts; ++e) begin[size_t(e) + 1] += begin[size_t(e)];
  s.host_rows.resize(choices.size());
  s.host_weights.resize(choices.size());
  std::vector<int64_t> next(begin.begin(), begin.end() - 1);
  for (int64_t t = 0; t < rows; ++t)
    for (int i = 0; i < k; ++i) {
      const auto& c = choices[size_t(t * k + i)];
      const int64_t at = next[size_t(c.expert)]++;
      s.host_rows[size_t(at)] = int32_t(t);
      s.host_weights[size_t(at)] = c.weight;
    }

  // The stream is idle here (synchronized above): scratch may grow.
  const size_t chosen = choices.size();
  fit(s.rows, chosen);
  fit(s.weights, chosen);
  fit(s.sums, size_t(rows * d_model));
  fit(s.x, size_t(rows * d_model));
  fit(s.gate_up, size_t(rows * 2 * d_ffn));
  fit(s.hidden, size_t(rows * d_ffn));
  fit(s.y, size_t(rows * d_model));
  check_cuda(cudaMemcpyAsync(s.rows.get(), s.host_rows.data(), chosen * sizeof(int32_t), cudaMemcpyHostToDevice,
                             ctx.stream),
             "cudaMemcpyAsync(expert rows)");
  check_cuda(cudaMemcpyAsync(s.weights.get(), s.host_weights.data(), chosen * sizeof(float), cudaMemcpyHostToDevice,
                             ctx.stream),
             "cudaMemcpyAsync(expert weights)");
  check_cuda(cudaMemsetAsync(s.sums.get(), 0, size_t(rows * d_model) * sizeof(float), ctx.stream), "cudaMemsetAsync");
  for (int e = 0; e < n_experts; ++e) {
    const int64_t n = begin[size_t(e) + 1] - begin[size_t(e)];
    if (n == 0) continue;
    const int32_t* expert_rows = s.rows.get() + begin[size_t(e)];
    gather_rows(h, d_model, expert_rows, n, s.x.get(), ctx.stream);
    gate_up_[size_t(e)]->forward(s.x.get(), n, s.gate_up.get(), false, ctx);
    silu_mul(s.gate_up.get(), n, d_ffn, s.hidden.get(), ctx.stream);
    down_[size_t(e)]->forward(s.hidden.get(), n, s.y.get(), false, ctx);
    add_weighted_rows(s.y.get(), d_model, expert_rows, s.weights.get() + begin[size_t(e)], n, s.sums.get(), ctx.stream);
  }
  float_to_half(s.sums.get(), rows * d_model, out, ctx.stream);
  // No synchronization needed for the host vectors: copies from pageable memory have read them
  // by the time cudaMemcpyAsync returns.
}

}  // namespace marlin::cuda
