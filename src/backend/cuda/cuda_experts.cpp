#include "backend/cuda/cuda_experts.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <string>

#include "backend/cpu/moe.h"
#include "backend/cuda/ops.h"

namespace marlin::cuda {
namespace {

template <typename T>
void fit(DeviceArray<T>& buffer, size_t count) {
  if (buffer.size() < count) buffer = DeviceArray<T>(std::max(count, 2 * buffer.size()));
}

// Before a device-path buffer is replaced: no graph may be recording (it would keep the old one)
// and no queued kernel may still use it. Graphs recorded before are stale afterwards.
void before_resizing(LinearContext& ctx) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  check_cuda(cudaStreamIsCapturing(ctx.stream, &capture), "cudaStreamIsCapturing");
  MARLIN_CHECK(capture == cudaStreamCaptureStatusNone, "cuda moe: scratch sized while capturing a graph");
  check_cuda(cudaStreamSynchronize(ctx.stream), "cudaStreamSynchronize");
  ++ctx.generation;
}

// Grows a device-path buffer to hold `count` elements (doubling, but never past `most`, the need of
// the largest step).
template <typename T>
void grow(DeviceArray<T>& buffer, size_t count, size_t most, LinearContext& ctx) {
  if (buffer.size() >= count) return;
  before_resizing(ctx);
  buffer = DeviceArray<T>(std::max(count, std::min(2 * buffer.size(), most)));
}

// Counters that kernels hand back at zero: `count` of them, zero.
void zeroed_counters(DeviceArray<int32_t>& counters, size_t count, LinearContext& ctx) {
  if (counters.size() >= count) return;
  before_resizing(ctx);
  counters = DeviceArray<int32_t>(count);
  check_cuda(cudaMemsetAsync(counters.get(), 0, count * sizeof(int32_t), ctx.stream), "cudaMemsetAsync");
}

// The experts' weights as a device table of pointers, when every expert has them in a form a
// routed kernel reads (tiles of a format with a routed variant, or fp16); else empty.
DeviceArray<const void*> routed_table(const std::vector<std::unique_ptr<CudaLinear>>& linears) {
  std::vector<const void*> pointers;
  for (const auto& l : linears) {
    const TiledWeights* t = l->tiles();
    const TiledWeights* first = linears[0]->tiles();
    if (t && first && routed_gemv_supported(t->shape) && t->shape.codec == first->shape.codec &&
        t->shape.groups_per_tile == first->shape.groups_per_tile && t->shape.asymmetric == first->shape.asymmetric) {
      pointers.push_back(t->tiles);
    } else if (!t && !first && l->half_weights()) {
      pointers.push_back(l->half_weights());
    } else {
      return {};
    }
  }
  DeviceArray<const void*> table(pointers.size());
  table.upload(pointers.data(), pointers.size());
  return table;
}

}  // namespace

std::unique_ptr<CudaExperts> CudaExperts::upload(std::span<const ExpertWeights> experts,
                                                 std::span<const float> score_bias, LinearContext& ctx) {
  MARLIN_CHECK(!experts.empty(), "cuda backend: a sparse MLP needs at least one expert");
  MARLIN_CHECK(score_bias.size() <= experts.size(), "cuda backend: {} score biases for {} experts", score_bias.size(),
               experts.size());
  auto x = std::make_unique<CudaExperts>();
  x->n_experts = int(experts.size());
  x->has_score_bias = !score_bias.empty();
  x->host_score_bias_.assign(score_bias.begin(), score_bias.end());
  if (x->has_score_bias) {
    x->score_bias_ = DeviceArray<float>(score_bias.size());
    x->score_bias_.upload(score_bias.data(), score_bias.size());
  }
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
  x->gate_up_table_ = routed_table(x->gate_up_);
  x->down_table_ = routed_table(x->down_);
  x->device_routable_ = x->n_experts <= 256 && x->gate_up_table_.size() > 0 && x->down_table_.size() > 0;
  const TiledWeights* gate_up = x->gate_up_[0]->tiles();
  const TiledWeights* down = x->down_[0]->tiles();
  // MARLIN_MOE_GROUPED=0 keeps longer steps on the host-routed path (to measure against it).
  const char* grouped = std::getenv("MARLIN_MOE_GROUPED");
  x->grouped_ = x->device_routable_ && gate_up && down && grouped_gemm_supported(gate_up->shape) &&
                grouped_gemm_supported(down->shape) && !(grouped && std::string(grouped) == "0");
  // MARLIN_MOE_FUSED=0 keeps a decode step's routing, SwiGLU and combination in launches of their
  // own (to measure against them; the results are the same bits).
  const char* fused = std::getenv("MARLIN_MOE_FUSED");
  x->fused_decode_ = gate_up && down && !(fused && std::string(fused) == "0");
  // MARLIN_MOE_ONE_LAUNCH=0 keeps decode steps in the two launches above (to measure against them).
  const char* one_launch = std::getenv("MARLIN_MOE_ONE_LAUNCH");
  if (x->fused_decode_ && x->device_routable_ && !(one_launch && std::string(one_launch) == "0"))
    x->one_launch_ = moe_decode_limits(gate_up->shape, down->shape);
  // MARLIN_MOE_WGMMA=0 keeps longer steps on narrow mma.sync chunks, =1 on wide wgmma ones (to
  // measure the two against each other); unset, grouped_gemm_chunk picks by the step.
  const char* wgmma = std::getenv("MARLIN_MOE_WGMMA");
  const bool wide =
      x->grouped_ && grouped_gemm_wide_supported(gate_up->shape) && grouped_gemm_wide_supported(down->shape);
  x->chunks_ = !wide ? ChunkChoice::kNarrow
                : wgmma == nullptr ? ChunkChoice::kPick
                : std::string(wgmma) == "0" ? ChunkChoice::kNarrow
                : std::string(wgmma) == "1" ? ChunkChoice::kWide
                                            : ChunkChoice::kPick;
  return x;
}

void CudaExperts::forward(const __half* h, int64_t rows, const float* router_logits, const MoeRouting& routing,
                          __half* out, LinearContext& ctx, MoeScratch& scratch) const {
  if (device_routed(rows)) return forward_on_device(h, rows, router_logits, routing, out, ctx, scratch);
  if (grouped_) return forward_grouped(h, rows, router_logits, routing, out, ctx, scratch);
  forward_on_host(h, rows, router_logits, routing, out, ctx, scratch);
}

void CudaExperts::routed_product(const DeviceArray<const void*>& table, const CudaLinear& first, const int32_t* ids,
                                 int slots, int slot_div, const __half* a, __half* c, LinearContext& ctx) const {
  if (const TiledWeights* t = first.tiles())
    return routed_gemv(reinterpret_cast<const uint8_t* const*>(table.get()), t->shape, ids, slots, slot_div, a, c,
                       ctx.stream);
  routed_dense_gemv(reinterpret_cast<const __half* const*>(table.get()), ids, slots, slot_div, a, first.rows,
                    first.cols, c, ctx.stream);
}

void CudaExperts::forward_on_device(const __half* h, int64_t rows, const float* router_logits,
                                    const MoeRouting& routing, __half* out, LinearContext& ctx, MoeScratch& s) const {
  const int k = routing.top_k + routing.n_shared;  // slots per token
  MARLIN_CHECK(routing.top_k >= 1 && k <= n_experts && k <= kMaxTopK, "cuda moe: {} experts per token out of {}", k,
               n_experts);
  const int slots = int(rows) * k;
  // Sized once for the largest device-routed step, before any graph records them.
  const size_t most = size_t(kDeviceRows * kMaxTopK);
  // (A prompt's grouped step may have grown the ids and weights already, but never the counters.)
  grow(s.slot_ids, most, most, ctx);
  grow(s.slot_weights, most, most, ctx);
  zeroed_counters(s.slot_counters, most, ctx);
  zeroed_counters(s.one_launch_counters, size_t(moe_decode_counters(int(most), one_launch_.resident_blocks)), ctx);
  grow(s.slot_gate_up, most * size_t(2 * d_ffn), most * size_t(2 * d_ffn), ctx);
  grow(s.slot_hidden, most * size_t(d_ffn), most * size_t(d_ffn), ctx);
  grow(s.slot_y, most * size_t(d_model), most * size_t(d_model), ctx);
  const float* score_bias = has_score_bias ? score_bias_.get() : nullptr;
  if (slots <= one_launch_.resident_blocks) {  // the whole step in one launch
    MoeDecodeStep step;
    step.gate_up = reinterpret_cast<const uint8_t* const*>(gate_up_table_.get());
    step.down = reinterpret_cast<const uint8_t* const*>(down_table_.get());
    step.gate_up_shape = gate_up_[0]->tiles()->shape;
    step.down_shape = down_[0]->tiles()->shape;
    step.h = h;
    step.out = out;
    step.rows = rows;
    step.logits = router_logits;
    step.score_bias = score_bias;
    step.n_experts = n_experts;
    step.n_routed = n_experts - routing.n_shared;
    step.routing = routing;
    step.hidden = s.slot_hidden.get();
    step.y = s.slot_y.get();
    step.counters = s.one_launch_counters.get();
    step.limits = one_launch_;
    return moe_decode(step, ctx.stream);
  }
  if (fused_decode_) {  // routing, SwiGLU and the combination inside the two products
    const auto table = [](const DeviceArray<const void*>& t) { return reinterpret_cast<const uint8_t* const*>(t.get()); };
    routed_gemv(table(gate_up_table_), gate_up_[0]->tiles()->shape, nullptr, slots, k, h, s.slot_gate_up.get(),
                ctx.stream, {RoutedEpilogue::kSiluMul, s.slot_counters.get(), s.slot_hidden.get()},
                {router_logits, score_bias, n_experts - routing.n_shared, routing, s.slot_ids.get(),
                 s.slot_weights.get()});
    routed_gemv(table(down_table_), down_[0]->tiles()->shape, s.slot_ids.get(), slots, 1, s.slot_hidden.get(),
                s.slot_y.get(), ctx.stream,
                {RoutedEpilogue::kCombine, s.slot_counters.get(), out, s.slot_weights.get(), k});
    return;
  }
  moe_route(router_logits, score_bias, int(rows), n_experts - routing.n_shared, routing, s.slot_ids.get(),
            s.slot_weights.get(), ctx.stream);
  routed_product(gate_up_table_, *gate_up_[0], s.slot_ids.get(), slots, k, h, s.slot_gate_up.get(), ctx);
  silu_mul(s.slot_gate_up.get(), slots, d_ffn, s.slot_hidden.get(), ctx.stream);
  routed_product(down_table_, *down_[0], s.slot_ids.get(), slots, 1, s.slot_hidden.get(), s.slot_y.get(), ctx);
  combine_slots(s.slot_y.get(), s.slot_weights.get(), rows, k, d_model, out, ctx.stream);
}

void CudaExperts::forward_grouped(const __half* h, int64_t rows, const float* router_logits, const MoeRouting& routing,
                                  __half* out, LinearContext& ctx, MoeScratch& s) const {
  const int k = routing.top_k + routing.n_shared;  // slots per token
  MARLIN_CHECK(routing.top_k >= 1 && k <= n_experts && k <= kMaxTopK, "cuda moe: {} experts per token out of {}", k,
               n_experts);
  MARLIN_CHECK(rows >= 1 && rows * k <= INT_MAX / 4, "cuda moe: {} rows", rows);
  const size_t slots = size_t(rows) * size_t(k);
  const size_t most = std::max(slots, size_t(std::max<int64_t>(ctx.max_rows, 1)) * size_t(k));
  grow(s.slot_ids, slots, most, ctx);
  grow(s.slot_weights, slots, most, ctx);
  grow(s.group_order, slots, most, ctx);
  grow(s.group_offsets, size_t(2 * (n_experts + 1)), size_t(2 * (n_experts + 1)), ctx);
  grow(s.slot_gate_up, slots * size_t(2 * d_ffn), most * size_t(2 * d_ffn), ctx);
  grow(s.slot_hidden, slots * size_t(d_ffn), most * size_t(d_ffn), ctx);
  grow(s.slot_y, slots * size_t(d_model), most * size_t(d_model), ctx);

  moe_route(router_logits, has_score_bias ? score_bias_.get() : nullptr, int(rows), n_experts - routing.n_shared,
            routing, s.slot_ids.get(), s.slot_weights.get(), ctx.stream);
  ExpertGroups groups;
  groups.order = s.group_order.get();
  groups.expert_begin = s.group_offsets.get();
  groups.chunk_begin = s.group_offsets.get() + n_experts + 1;
  groups.n_experts = n_experts;
  groups.slots = int(slots);
  groups.chunk = grouped_gemm_chunk(groups.slots, n_experts, chunks_);
  group_slots(s.slot_ids.get(), groups.slots, n_experts, groups.chunk, s.group_order.get(),
              s.group_offsets.get(), s.group_offsets.get() + n_experts + 1, ctx.stream);
  // gate|up of each slot's token (gathered), in grouped order; SwiGLU; the downs, scattered back
  // to slot order; each token's weighted sum of its slots in slot order.
  grouped_gemm(reinterpret_cast<const uint8_t* const*>(gate_up_table_.get()), gate_up_[0]->tiles()->shape, groups, h,
               k, s.slot_gate_up.get(), false, ctx.stream);
  silu_mul(s.slot_gate_up.get(), int64_t(slots), d_ffn, s.slot_hidden.get(), ctx.stream);
  grouped_gemm(reinterpret_cast<const uint8_t* const*>(down_table_.get()), down_[0]->tiles()->shape, groups,
               s.slot_hidden.get(), 0, s.slot_y.get(), true, ctx.stream);
  combine_slots(s.slot_y.get(), s.slot_weights.get(), rows, k, d_model, out, ctx.stream);
}

void CudaExperts::forward_on_host(const __half* h, int64_t rows, const float* router_logits,
                                  const MoeRouting& routing, __half* out, LinearContext& ctx, MoeScratch& s) const {
  const int routed = n_experts - routing.n_shared;
  const int k = routing.top_k + routing.n_shared;  // choices per token
  MARLIN_CHECK(routing.n_shared >= 0 && routed >= 1, "cuda moe: {} shared experts of {}", routing.n_shared, n_experts);
  s.host_logits.resize(size_t(rows * routed));
  check_cuda(cudaMemcpyAsync(s.host_logits.data(), router_logits, s.host_logits.size() * sizeof(float),
                             cudaMemcpyDeviceToHost, ctx.stream),
             "cudaMemcpyAsync(router logits)");
  check_cuda(cudaStreamSynchronize(ctx.stream), "sparse MLP routing");

  // Tokens grouped by expert: expert e's rows are host_rows[begin[e] .. begin[e + 1]).
  std::vector<cpu::ExpertChoice> choices(size_t(rows * k));
  for (int64_t t = 0; t < rows; ++t) {
    cpu::ExpertChoice* c = &choices[size_t(t * k)];
    cpu::route_token(&s.host_logits[size_t(t * routed)], has_score_bias ? host_score_bias_.data() : nullptr, routed,
                     routing, c);
    for (int j = 0; j < routing.n_shared; ++j) c[routing.top_k + j] = {routed + j, 1.0f};
  }
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
