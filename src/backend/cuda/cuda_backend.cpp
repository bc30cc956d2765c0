#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "backend/cuda/cuda_experts.h"
#include "backend/cuda/cuda_linear.h"
#include "backend/cuda/cuda_mla.h"
#include "backend/cuda/device_info.h"
#include "backend/cuda/device_memory.h"
#include "backend/cuda/op_profiler.h"
#include "backend/cuda/ops.h"
#include "core/thread_pool.h"
#include "model/rope.h"

namespace marlin {
namespace {

using cuda::check_cuda;
using cuda::DeviceArray;

// Positions per KV page unless the cache's layout names another block size (16, 32 or 64).
constexpr int kPageSize = 32;
// Prompt chunk: the many-row products run as cuBLAS GEMMs, which get faster up to about this size.
constexpr int64_t kMaxStepTokens = 2048;
// cuBLAS's workspace, given up front so that its calls can be captured into graphs.
constexpr size_t kCublasWorkspaceBytes = size_t(32) << 20;

struct CudaVector final : BackendTensor {
  DeviceArray<float> values;
};

struct CudaEmbedding final : BackendTensor {
  DeviceArray<__half> table;
};

// The CUDA backend's KV cache: the blocks of the shared pool (model/kv_blocks.h) are its pages,
// every layer's in one allocation (page numbers are block numbers in every layer), fp16 rows of
// the model's kv_geometry: keys and values of each KV head, or for multi-head latent attention one
// row [c_kv | k_pe] per position and no values (ops.h's MlaGeometry). The device
// block table mirrors the page tables (row b: sequence b's pages, unmapped entries 0) and is
// uploaded when they change; a cache slot of (sequence, position) is its block · page size +
// position in block. A decode step reads the rows of its sequences from a step table (row i: the
// step's i-th sequence), uploaded when the step's sequences or the page tables change.
class CudaKvCache final : public KvCache {
 public:
  CudaKvCache(const KvGeometry& geometry, int64_t capacity, int sequences, const KvCacheLayout& layout, uint64_t id,
              cudaStream_t stream)
      : KvCache(capacity, sequences, layout.block_size > 0 ? layout.block_size : kPageSize, layout.blocks),
        id_(id), stream_(stream), pages_(blocks().max_pages()), geometry_(geometry),
        key_block_elems_(size_t(geometry.heads) * size_t(block_size()) * size_t(geometry.key_width)),
        value_block_elems_(size_t(geometry.heads) * size_t(block_size()) * size_t(geometry.value_width)),
        keys_(size_t(blocks().total_blocks()) * key_block_elems_ * size_t(geometry.layers)),
        values_(size_t(blocks().total_blocks()) * value_block_elems_ * size_t(geometry.layers)),
        block_table_(size_t(sequences) * size_t(pages_)), step_table_(block_table_.size()) {}
  uint64_t id() const { return id_; }
  int64_t bytes_per_token() const override { return geometry_.values_per_token() * int64_t(sizeof(__half)); }
  int pages() const { return pages_; }  // per sequence
  int32_t slot(int seq, int64_t pos) const {
    return int32_t(int64_t(blocks().block_of(seq, pos)) * block_size() + pos % block_size());
  }
  const int32_t* block_table(int seq) const { return block_table_.get() + size_t(seq) * size_t(pages_); }
  const int32_t* step_table() const { return step_table_.get(); }
  // Uploads the block table on `stream_` when the page tables changed since the last upload.
  void sync_block_table() {
    if (uploaded_version_ == blocks().version()) return;
    const std::vector<int32_t> rows = table_rows(every_sequence());
    check_cuda(cudaMemcpyAsync(block_table_.get(), rows.data(), rows.size() * sizeof(int32_t),
                               cudaMemcpyHostToDevice, stream_),
               "cudaMemcpyAsync(block table)");
    uploaded_version_ = blocks().version();
  }
  // Makes row i of the step table sequence seqs[i]'s row (an upload on `stream_` when they or the
  // page tables changed).
  void set_step_sequences(const std::vector<int32_t>& seqs) {
    if (seqs == step_seqs_ && step_version_ == blocks().version()) return;
    const std::vector<int32_t> rows = table_rows(seqs);
    check_cuda(cudaMemcpyAsync(step_table_.get(), rows.data(), rows.size() * sizeof(int32_t), cudaMemcpyHostToDevice,
                               stream_),
               "cudaMemcpyAsync(step table)");
    step_seqs_ = seqs;
    step_version_ = blocks().version();
  }
  // Layer l's keys and values (values null without them).
  cuda::KvLayer layer(int l) const {
    const size_t blocks_total = size_t(blocks().total_blocks());
    return {keys_.get() + size_t(l) * blocks_total * key_block_elems_,
            value_block_elems_ > 0 ? values_.get() + size_t(l) * blocks_total * value_block_elems_ : nullptr};
  }

 protected:
  // One strided copy per array: the block's elements in every layer.
  void copy_block(int32_t from, int32_t to) override {
    const size_t blocks_total = size_t(blocks().total_blocks());
    const std::pair<__half*, size_t> arrays[] = {{keys_.get(), key_block_elems_}, {values_.get(), value_block_elems_}};
    for (const auto& [base, block_elems] : arrays) {
      if (block_elems == 0) continue;
      const size_t pitch = blocks_total * block_elems * sizeof(__half), width = block_elems * sizeof(__half);
      check_cuda(cudaMemcpy2DAsync(base + size_t(to) * block_elems, pitch, base + size_t(from) * block_elems, pitch,
                                   width, size_t(geometry_.layers), cudaMemcpyDeviceToDevice, stream_),
                 "cudaMemcpy2DAsync(kv block)");
    }
  }

 private:
  std::vector<int32_t> every_sequence() const {
    std::vector<int32_t> seqs(static_cast<size_t>(sequences()));
    for (size_t s = 0; s < seqs.size(); ++s) seqs[s] = int32_t(s);
    return seqs;
  }
  std::vector<int32_t> table_rows(const std::vector<int32_t>& seqs) const {
    std::vector<int32_t> rows(seqs.size() * size_t(pages_), 0);
    for (size_t i = 0; i < seqs.size(); ++i) {
      const auto table = blocks().page_table(seqs[i]);
      std::copy(table.begin(), table.end(), rows.begin() + std::ptrdiff_t(i * size_t(pages_)));
    }
    return rows;
  }

  uint64_t id_;
  cudaStream_t stream_;
  int pages_;
  KvGeometry geometry_;
  size_t key_block_elems_, value_block_elems_;  // per block and layer
  DeviceArray<__half> keys_, values_;
  DeviceArray<int32_t> block_table_, step_table_;
  uint64_t uploaded_version_ = ~uint64_t(0), step_version_ = ~uint64_t(0);
  std::vector<int32_t> step_seqs_;  // whose rows the step table holds
};

__half* f16(const Act& a) { return static_cast<__half*>(a.data); }
float* f32(const Act& a) { return static_cast<float*>(a.data); }

class CudaBackend final : public Backend {
 public:
  CudaBackend() {
    MARLIN_CHECK(cuda::device_count() > 0, "no CUDA device is available (use --device cpu)");
    check_cuda(cudaGetDevice(&device_), "cudaGetDevice");
    name_ = cuda::device_name(device_);
    check_cuda(cudaStreamCreateWithFlags(&ctx_.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    MARLIN_CHECK(cublasCreate(&ctx_.cublas) == CUBLAS_STATUS_SUCCESS, "cublas: cannot create a handle");
    cublas_workspace_ = DeviceArray<uint8_t>(kCublasWorkspaceBytes);
    cublasSetStream(ctx_.cublas, ctx_.stream);
    cublasSetWorkspace(ctx_.cublas, cublas_workspace_.get(), kCublasWorkspaceBytes);
    ctx_.pool = &upload_pool_;
    const char* graphs = std::getenv("MARLIN_CUDA_GRAPHS");  // "0": run every step directly (debugging)
    graphs_enabled_ = (graphs == nullptr || std::string(graphs) != "0") && !profiler_.enabled();
  }
  ~CudaBackend() override {
    if (profiler_.enabled() && cudaStreamSynchronize(ctx_.stream) == cudaSuccess) {
      profiler_.collect();  // ops since the last copy to the host (device-side sampling copies none)
      std::fputs(profiler_.report().c_str(), stderr);
    }
    for (auto& [key, graph] : graphs_) cudaGraphExecDestroy(graph);
    cublasDestroy(ctx_.cublas);
    cudaStreamDestroy(ctx_.stream);
  }

  DeviceKind kind() const override { return DeviceKind::kCuda; }
  std::string description() const override { return name_; }

  int64_t max_step_tokens() const override { return kMaxStepTokens; }

  // Device-to-device copies of 1 GiB on the backend's stream; the best of several counts.
  double copy_bandwidth() override {
    const size_t bytes = size_t(1) << 30;
    DeviceArray<uint8_t> from(bytes), to(bytes);
    cudaEvent_t start = nullptr, stop = nullptr;
    check_cuda(cudaEventCreate(&start), "cudaEventCreate");
    check_cuda(cudaEventCreate(&stop), "cudaEventCreate");
    float best = 1e30f;
    for (int rep = 0; rep < 6; ++rep) {  // the first is a warm-up
      cudaEventRecord(start, ctx_.stream);
      cudaMemcpyAsync(to.get(), from.get(), bytes, cudaMemcpyDeviceToDevice, ctx_.stream);
      cudaEventRecord(stop, ctx_.stream);
      check_cuda(cudaEventSynchronize(stop), "copy bandwidth");
      float ms = 0;
      cudaEventElapsedTime(&ms, start, stop);
      if (rep > 0) best = std::min(best, ms);
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    return 2.0 * double(bytes) / (double(best) * 1e-3);
  }

  void configure(const ModelConfig& config) override {
    config_ = config;
    rope_ = std::make_unique<Rope>(config.rope, config.head_dim);
    if (config.sliding_rope) sliding_rope_ = std::make_unique<Rope>(*config.sliding_rope, config.head_dim);
    geometry_ = {config.n_heads, config.n_kv_heads, config.head_dim, rope_->rotary_dim(),
                 config.rope.pairing == RopePairing::kHalfSplit, kPageSize};  // page size: per cache
    const MlaConfig& m = config.mla;
    mla_ = {config.n_heads, m.qk_nope_head_dim, m.qk_rope_head_dim, m.kv_lora_rank, m.v_head_dim,
            config.rope.pairing == RopePairing::kHalfSplit, kPageSize};
    MARLIN_CHECK(!m.enabled() || rope_->rotary_dim() == m.qk_rope_head_dim,
                 "cuda backend: MLA rotates all {} qk_rope_head_dim values, not {}", m.qk_rope_head_dim,
                 rope_->rotary_dim());
    ctx_.max_rows = kMaxStepTokens;
    ids_ = DeviceArray<int32_t>(size_t(kMaxStepTokens));
    positions_ = DeviceArray<int32_t>(size_t(kMaxStepTokens));
    slots_ = DeviceArray<int32_t>(size_t(kMaxStepTokens));
    seq_len_ = DeviceArray<int32_t>(size_t(kMaxStepTokens));
  }

  std::unique_ptr<BackendLinear> linear(std::span<const QuantTensor> parts) override {
    return cuda::CudaLinear::upload(parts, ctx_);
  }

  std::unique_ptr<BackendExperts> experts(std::span<const ExpertWeights> experts,
                                          std::span<const float> score_bias) override {
    auto x = cuda::CudaExperts::upload(experts, score_bias, ctx_);
    has_experts_ = true;
    host_routed_experts_ = host_routed_experts_ || !x->device_routed(1);
    long_steps_host_routed_ = long_steps_host_routed_ || !x->grouped();
    return x;
  }

  std::unique_ptr<BackendTensor> vector(std::span<const float> values) override {
    auto v = std::make_unique<CudaVector>();
    v->values = DeviceArray<float>(values.size());
    v->values.upload(values.data(), values.size());
    return v;
  }

  std::unique_ptr<BackendTensor> mla_kv_up(std::span<const float> values) override {
    return cuda::upload_mla_up_projection(values);
  }

  std::unique_ptr<BackendTensor> embedding(const QuantTensor& table) override {
    auto e = std::make_unique<CudaEmbedding>();
    e->table = cuda::upload_as_half(std::span(&table, 1));
    return e;
  }

  std::unique_ptr<KvCache> new_cache(int64_t capacity, int sequences, const KvCacheLayout& layout) override {
    const int page_size = layout.block_size > 0 ? layout.block_size : kPageSize;
    MARLIN_CHECK(page_size == 16 || page_size == 32 || page_size == 64,
                 "cuda backend: KV block size must be 16, 32 or 64, got {}", page_size);
    const int64_t pages = (capacity + page_size - 1) / page_size;
    const int64_t blocks = layout.blocks > 0 ? layout.blocks : pages * sequences;
    MARLIN_CHECK(blocks * page_size <= INT32_MAX / 2 && pages * sequences <= INT32_MAX / 2,
                 "{} sequences of {} tokens in {} blocks are too many for the CUDA backend", sequences, capacity,
                 blocks);
    if (capacity > rope_positions_) {  // angles of every position the cache can hold
      upload_rope_table(*rope_, capacity, rope_table_);
      if (sliding_rope_) upload_rope_table(*sliding_rope_, capacity, sliding_rope_table_);
      rope_positions_ = capacity;
    }
    size_t floats = 0;  // a decode step may carry any number of the cache's sequences
    for (int b = 1; b <= sequences; ++b)
      floats = std::max(floats, size_t(config_.mla.enabled()
                                           ? cuda::mla_attention_workspace_floats(b, 1, capacity, mla_geometry(page_size))
                                           : cuda::attention_decode_workspace_floats(b, capacity, geometry(page_size))));
    if (floats > decode_workspace_.size()) replace(decode_workspace_, DeviceArray<float>(floats));
    return std::make_unique<CudaKvCache>(kv_geometry(config_), capacity, sequences, KvCacheLayout{page_size, blocks},
                                         next_cache_id_++, ctx_.stream);
  }

  Act activations(int slot, int64_t rows, int64_t cols, ActType type) override {
    MARLIN_CHECK(rows <= ctx_.max_rows, "cuda backend: {} rows in one step (at most {})", rows, ctx_.max_rows);
    if (size_t(slot) >= buffers_.size()) buffers_.resize(size_t(slot) + 1);
    auto& b = buffers_[size_t(slot)];
    const size_t bytes = size_t(rows * cols) * (type == ActType::kF32 ? 4 : 2);
    if (b.size() < bytes) replace(b, DeviceArray<uint8_t>(bytes));
    return {b.get(), rows, cols, type};
  }
  float* host_data(const Act&) override { return nullptr; }

  void begin_step(const StepTokens& step, KvCache& cache) override {
    const auto n = int64_t(step.ids.size());
    MARLIN_CHECK(n <= ctx_.max_rows, "cuda backend: {} tokens in one step (at most {})", n, ctx_.max_rows);
    step_rows_ = n;
    pos0_ = step.pos0;
    step_seq_ = step.seq;
    cache_ = static_cast<CudaKvCache*>(&cache);
    // A decode step (one token per sequence) runs the decode attention over the step table.
    decode_step_ = step.several() || n == 1;
    host_positions_.resize(size_t(n));
    host_slots_.resize(size_t(n));
    host_lengths_.resize(decode_step_ ? size_t(n) : 1);
    host_seqs_.resize(decode_step_ ? size_t(n) : 1);
    for (int64_t t = 0; t < n; ++t) {
      host_positions_[size_t(t)] = int32_t(step.position(t));
      host_slots_[size_t(t)] = cache_->slot(step.sequence(t), host_positions_[size_t(t)]);
      if (decode_step_) {
        host_lengths_[size_t(t)] = host_positions_[size_t(t)] + 1;
        host_seqs_[size_t(t)] = step.sequence(t);
      }
    }
    if (!decode_step_) host_lengths_[0] = int32_t(step.pos0 + n);
    if (decode_step_) {
      cache_->set_step_sequences(host_seqs_);
    } else {
      cache_->sync_block_table();
    }
    const OpTimer timer(*this, "begin_step (4 uploads)");
    // Pageable sources: each copy returns once the source has been read, so the host vectors may
    // change right after.
    copy_to_device(ids_.get(), step.ids.data(), n);
    copy_to_device(positions_.get(), host_positions_.data(), n);
    copy_to_device(slots_.get(), host_slots_.data(), n);
    copy_to_device(seq_len_.get(), host_lengths_.data(), int64_t(host_lengths_.size()));
  }

  void embed(const BackendTensor& table, Act x) override {
    const OpTimer timer(*this, "embed");
    cuda::embed(static_cast<const CudaEmbedding&>(table).table.get(), x.cols, ids_.get(), x.rows,
                config_.embedding_scale, f32(x), ctx_.stream);
  }

  void rms_norm(Act x, const BackendTensor& weight, float eps, Act out) override {
    const OpTimer timer(*this, "rms_norm");
    cuda::rms_norm(f32(x), static_cast<const CudaVector&>(weight).values.get(), eps, x.rows, x.cols, f16(out),
                   ctx_.stream);
  }

  void rms_norm_rows(Act a, const BackendTensor& weight, float eps) override {
    const OpTimer timer(*this, "rms_norm_rows");
    MARLIN_CHECK(a.type == ActType::kF16, "cuda backend: rms_norm_rows normalizes fp16 activations");
    cuda::rms_norm_half(f16(a), static_cast<const CudaVector&>(weight).values.get(), eps, a.rows, a.cols, ctx_.stream);
  }

  void qk_norm(Act qkv, const BackendTensor& q_weight, const BackendTensor& k_weight, float eps) override {
    const OpTimer timer(*this, "qk_norm");
    cuda::qk_norm(f16(qkv), qkv.rows, qkv.cols, geometry_.n_heads, geometry_.n_kv_heads, geometry_.head_dim,
                  static_cast<const CudaVector&>(q_weight).values.get(),
                  static_cast<const CudaVector&>(k_weight).values.get(), eps, ctx_.stream);
  }

  void add_rms_norm(Act x, Act delta, const BackendTensor& weight, float eps, Act out) override {
    const OpTimer timer(*this, "add_rms_norm");
    cuda::add_rms_norm(f32(x), f16(delta), static_cast<const CudaVector&>(weight).values.get(), eps, x.rows, x.cols,
                       f16(out), ctx_.stream);
  }

  void add(Act x, Act delta) override {
    const OpTimer timer(*this, "add");
    cuda::add_residual(f32(x), f16(delta), x.rows * x.cols, ctx_.stream);
  }

  void matmul(const BackendLinear& w, Act in, Act out) override {
    const OpTimer timer(*this, profiler_.enabled() ? fmt::format("matmul {}x{} m={}", w.rows, w.cols, in.rows) : "");
    static_cast<const cuda::CudaLinear&>(w).forward(f16(in), in.rows, out.data, out.type == ActType::kF32, ctx_);
  }

  void rope_store_kv(Act qkv, KvCache& cache, int layer) override {
    const OpTimer timer(*this, "rope_store_kv");
    rope_store_kv(qkv, cache, layer, {});
  }

  void qk_norm_rope_store_kv(Act qkv, const BackendTensor& q_weight, const BackendTensor& k_weight, float eps,
                             KvCache& cache, int layer) override {
    const OpTimer timer(*this, "qk_norm_rope_store_kv");
    rope_store_kv(qkv, cache, layer,
                  {static_cast<const CudaVector&>(q_weight).values.get(),
                   static_cast<const CudaVector&>(k_weight).values.get(), eps});
  }

  void attention(Act qkv, KvCache& cache, int layer, Act out) override {
    const OpTimer timer(*this, decode_step_ ? "attention_decode" : "attention_prefill");
    const auto& kv = static_cast<const CudaKvCache&>(cache);
    const float scale = config_.query_scale();
    cuda::AttentionGeometry g = geometry(kv.block_size());
    g.window = config_.window(layer);
    if (decode_step_) {  // one new token per sequence
      cuda::attention_decode(f16(qkv), int(qkv.rows), seq_len_.get(), kv.step_table(), kv.pages(), kv.capacity(), g,
                             kv.layer(layer), scale, f16(out), decode_workspace_.get(), ctx_.stream);
    } else {
      cuda::attention_prefill(f16(qkv), qkv.rows, pos0_, kv.block_table(step_seq_), g, kv.layer(layer), scale,
                              f16(out), ctx_.stream);
    }
  }

  void moe(const BackendExperts& experts, Act h, Act router_logits, const MoeRouting& routing, Act out,
           const ExpertInputObserver* observer) override {
    MARLIN_CHECK(observer == nullptr, "cuda backend: calibration runs on the CPU backend only");
    const auto& x = static_cast<const cuda::CudaExperts&>(experts);
    MARLIN_CHECK(h.cols == x.d_model && out.cols == x.d_model && router_logits.cols == x.n_experts - routing.n_shared &&
                     router_logits.rows == h.rows && out.rows == h.rows && router_logits.type == ActType::kF32,
                 "cuda moe: activations do not fit {} experts of width {}", x.n_experts, x.d_model);
    MARLIN_CHECK(!x.has_score_bias || x.score_bias_size() == router_logits.cols,
                 "cuda moe: {} score biases for {} routed experts", x.score_bias_size(), router_logits.cols);
    const OpTimer timer(*this, "moe");
    x.forward(f16(h), h.rows, f32(router_logits), routing, f16(out), ctx_, moe_scratch_);
  }

  void mla_store_kv(Act kv_a, const BackendTensor& kv_norm, float eps, KvCache& cache, int layer) override {
    const OpTimer timer(*this, "mla_store_kv");
    MARLIN_CHECK(config_.mla.enabled() && kv_a.cols == mla_.row_width() && kv_a.type == ActType::kF16,
                 "cuda mla_store_kv: rows of {} values, expected fp16 kv_lora_rank + qk_rope_head_dim", kv_a.cols);
    const auto& kv = static_cast<const CudaKvCache&>(cache);
    cuda::mla_store_kv(f16(kv_a), kv_a.rows, static_cast<const CudaVector&>(kv_norm).values.get(), eps,
                       positions_.get(), slots_.get(), rope_table_.get(), mla_geometry(kv.block_size()),
                       kv.layer(layer).keys, ctx_.stream);
  }

  // Absorbed queries (cuBLAS per head, then the rotated q_pe), the latent kernel, the output
  // projection (cuBLAS per head). Rounded to fp16 on the way: the absorbed queries and the
  // weighted latent sums.
  void mla_attention(Act q, const BackendTensor& kv_up, KvCache& cache, int layer, Act out) override {
    const OpTimer timer(*this, decode_step_ ? "mla_attention_decode" : "mla_attention_prefill");
    const cuda::MlaGeometry& g = mla_;
    MARLIN_CHECK(config_.mla.enabled() && q.cols == int64_t(g.n_heads) * (g.qk_nope + g.qk_rope) &&
                     out.cols == int64_t(g.n_heads) * g.v_dim && out.rows == q.rows && q.type == ActType::kF16 &&
                     out.type == ActType::kF16,
                 "cuda mla_attention: q of {} and out of {} columns do not fit the model", q.cols, out.cols);
    const auto& up = static_cast<const cuda::MlaUpProjection&>(kv_up);
    const auto& kv = static_cast<const CudaKvCache&>(cache);
    const size_t heads = size_t(q.rows) * size_t(g.n_heads);
    if (mla_queries_.size() < heads * size_t(g.row_width())) {
      replace(mla_queries_, DeviceArray<__half>(heads * size_t(g.row_width())));
      replace(mla_latents_, DeviceArray<__half>(heads * size_t(g.kv_lora)));
    }
    cuda::mla_absorb_queries(ctx_.cublas, f16(q), q.rows, up, g, mla_queries_.get());
    cuda::mla_rope_queries(f16(q), q.rows, positions_.get(), rope_table_.get(), g, mla_queries_.get(), ctx_.stream);
    if (decode_step_) {  // one new token per sequence
      cuda::mla_attention_latent(mla_queries_.get(), int(q.rows), 1, seq_len_.get(), kv.step_table(), kv.pages(),
                                 kv.capacity(), mla_geometry(kv.block_size()), kv.layer(layer).keys,
                                 config_.mla.softmax_scale, mla_latents_.get(), decode_workspace_.get(), ctx_.stream);
    } else {
      cuda::mla_attention_latent(mla_queries_.get(), 1, int(q.rows), seq_len_.get(), kv.block_table(step_seq_),
                                 kv.pages(), pos0_ + q.rows, mla_geometry(kv.block_size()), kv.layer(layer).keys,
                                 config_.mla.softmax_scale, mla_latents_.get(), nullptr, ctx_.stream);
    }
    cuda::mla_project_outputs(ctx_.cublas, mla_latents_.get(), q.rows, up, g, f16(out));
  }

  void silu_mul(Act gate_up, Act out) override {
    const OpTimer timer(*this, "silu_mul");
    cuda::silu_mul(f16(gate_up), gate_up.rows, out.cols, f16(out), ctx_.stream);
  }

  void gelu_tanh_mul(Act gate_up, Act out) override {
    const OpTimer timer(*this, "gelu_tanh_mul");
    cuda::gelu_tanh_mul(f16(gate_up), gate_up.rows, out.cols, f16(out), ctx_.stream);
  }

  void to_host(Act a, float* out) override {
    MARLIN_CHECK(a.type == ActType::kF32, "cuda backend: only fp32 activations are copied to the host");
    {
      const OpTimer timer(*this, "to_host");
      check_cuda(cudaMemcpyAsync(out, a.data, size_t(a.rows * a.cols) * sizeof(float), cudaMemcpyDeviceToHost,
                                 ctx_.stream),
                 "cudaMemcpyAsync(to host)");
    }
    check_cuda(cudaStreamSynchronize(ctx_.stream), "forward pass");
    profiler_.collect();
  }

  void sample(Act logits, std::span<const SampleRow> rows, std::span<const TokenCount> penalties,
              int32_t* tokens) override {
    MARLIN_CHECK(logits.type == ActType::kF32, "cuda backend: sampling reads fp32 logits");
    MARLIN_CHECK(int64_t(rows.size()) == logits.rows, "sample: {} requests for {} rows", rows.size(), logits.rows);
    check_sample_batch(rows, penalties, logits.cols);
    // Sampling runs outside recorded graphs, so its buffers may grow freely (after the stream drains).
    auto fit = [&](auto& buffer, size_t count) {
      if (buffer.size() >= count) return;
      check_cuda(cudaStreamSynchronize(ctx_.stream), "cudaStreamSynchronize");
      buffer = std::remove_reference_t<decltype(buffer)>(std::max<size_t>(count, 2 * buffer.size()));
    };
    fit(sample_rows_, rows.size());
    fit(sample_penalties_, std::max<size_t>(penalties.size(), 1));
    fit(sampled_, rows.size());
    copy_to_device(sample_rows_.get(), rows.data(), int64_t(rows.size()));
    copy_to_device(sample_penalties_.get(), penalties.data(), int64_t(penalties.size()));
    cuda::sample_rows(f32(logits), int(logits.rows), logits.cols, sample_rows_.get(), sample_penalties_.get(),
                      sampled_.get(), ctx_.stream);
    check_cuda(cudaMemcpyAsync(tokens, sampled_.get(), rows.size() * sizeof(int32_t), cudaMemcpyDeviceToHost,
                               ctx_.stream),
               "cudaMemcpyAsync(sampled tokens)");
    check_cuda(cudaStreamSynchronize(ctx_.stream), "sampling");
    for (size_t r = 0; r < rows.size(); ++r)
      MARLIN_CHECK(tokens[r] >= 0 && tokens[r] < logits.cols, "cuda sampling: row {} gave token {} (internal error)", r,
                   tokens[r]);
  }

  // A step shape runs directly the first time (sizing every buffer it needs), is recorded into
  // a graph the second time, and replays that graph afterwards (until a buffer it uses is replaced).
  void run(int64_t shape_key, const std::function<void()>& ops) override {
    if (graph_generation_ != generation()) drop_graphs();
    // Steps whose sparse MLPs route on the host synchronize with it: never recorded. Steps of more
    // than kDeviceRows tokens route on the device when every sparse MLP takes the grouped path.
    const bool host_routed =
        has_experts_ && (host_routed_experts_ ||
                         (shape_key > cuda::CudaExperts::kDeviceRows && long_steps_host_routed_));
    if (shape_key < 0 || !graphs_enabled_ || host_routed) return ops();
    const std::pair<int64_t, uint64_t> key{shape_key, cache_->id()};
    auto it = graphs_.find(key);
    if (it == graphs_.end()) {
      if (seen_.insert(key).second) return ops();
      it = graphs_.emplace(key, record(ops)).first;
    }
    check_cuda(cudaGraphLaunch(it->second, ctx_.stream), "cudaGraphLaunch");
  }

 private:
  void rope_store_kv(Act qkv, KvCache& cache, int layer, const cuda::HeadNorm& norm) {
    const auto& kv = static_cast<const CudaKvCache&>(cache);
    const bool sliding = sliding_rope_ && config_.window(layer) > 0;
    cuda::rope_store_kv(f16(qkv), qkv.rows, positions_.get(), slots_.get(),
                        sliding ? sliding_rope_table_.get() : rope_table_.get(), geometry(kv.block_size()),
                        kv.layer(layer), ctx_.stream, norm);
  }

  // Brackets one op for the profiler (when MARLIN_PROFILE_OPS is on).
  class OpTimer {
   public:
    OpTimer(CudaBackend& b, std::string label) : b_(b), label_(std::move(label)) { b_.profiler_.begin(b_.ctx_.stream); }
    ~OpTimer() { b_.profiler_.end(b_.ctx_.stream, std::move(label_)); }

   private:
    CudaBackend& b_;
    std::string label_;
  };

  // The attention geometry of a cache whose pages hold `page_size` positions.
  cuda::AttentionGeometry geometry(int page_size) const {
    cuda::AttentionGeometry g = geometry_;
    g.page_size = page_size;
    return g;
  }

  cuda::MlaGeometry mla_geometry(int page_size) const {
    cuda::MlaGeometry g = mla_;
    g.page_size = page_size;
    return g;
  }

  // The angles of positions [0, positions) of `rope`, uploaded into `table`.
  void upload_rope_table(const Rope& rope, int64_t positions, DeviceArray<float>& table) {
    const int rd = rope.rotary_dim();
    std::vector<float> host(size_t(positions) * size_t(rd));
    for (int64_t p = 0; p < positions; ++p) rope.angles(p, &host[size_t(p) * size_t(rd)]);
    replace(table, DeviceArray<float>(host.size()));
    table.upload(host.data(), host.size());
  }

  template <typename T>
  void copy_to_device(T* dst, const T* src, int64_t count) {
    check_cuda(cudaMemcpyAsync(dst, src, size_t(count) * sizeof(T), cudaMemcpyHostToDevice, ctx_.stream),
               "cudaMemcpyAsync(step)");
  }

  cudaGraphExec_t record(const std::function<void()>& ops) {
    cudaGraph_t graph = nullptr;
    check_cuda(cudaStreamBeginCapture(ctx_.stream, cudaStreamCaptureModeRelaxed), "cudaStreamBeginCapture");
    try {
      ops();
    } catch (...) {
      cudaStreamEndCapture(ctx_.stream, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    check_cuda(cudaStreamEndCapture(ctx_.stream, &graph), "cudaStreamEndCapture");
    cudaGraphExec_t exec = nullptr;
    const cudaError_t err = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    check_cuda(err, "cudaGraphInstantiate");
    graph_generation_ = generation();
    return exec;
  }

  void drop_graphs() {
    for (auto& [key, graph] : graphs_) cudaGraphExecDestroy(graph);
    graphs_.clear();
    graph_generation_ = generation();
  }

  // Changes whenever a buffer a recorded graph may use is replaced.
  int64_t generation() const { return own_generation_ + ctx_.generation; }

  // Buffers are replaced once the stream is idle; recorded graphs that used them go stale.
  template <typename T>
  void replace(DeviceArray<T>& buffer, DeviceArray<T>&& fresh) {
    check_cuda(cudaStreamSynchronize(ctx_.stream), "cudaStreamSynchronize");
    buffer = std::move(fresh);
    ++own_generation_;
  }

  int device_ = 0;
  std::string name_;
  ThreadPool upload_pool_;  // one thread per core, for laying weights out in tiles at upload
  cuda::LinearContext ctx_;
  cuda::MoeScratch moe_scratch_;
  bool has_experts_ = false;             // a sparse MLP was uploaded (cuda_experts.h)
  bool host_routed_experts_ = false;     // one of them always routes on the host
  bool long_steps_host_routed_ = false;  // one of them routes steps of over kDeviceRows tokens on the host
  DeviceArray<uint8_t> cublas_workspace_;
  ModelConfig config_;
  std::unique_ptr<Rope> rope_, sliding_rope_;  // sliding_rope_: of sliding-window layers, when it differs
  cuda::AttentionGeometry geometry_;
  cuda::MlaGeometry mla_;  // multi-head latent attention (unused without it)
  DeviceArray<__half> mla_queries_, mla_latents_;  // the absorbed queries and latent sums of a step
  DeviceArray<float> rope_table_, sliding_rope_table_;
  int64_t rope_positions_ = 0;
  DeviceArray<float> decode_workspace_;
  uint64_t next_cache_id_ = 1;
  std::vector<DeviceArray<uint8_t>> buffers_;
  // The current step.
  DeviceArray<int32_t> ids_, positions_, slots_, seq_len_;
  std::vector<int32_t> host_positions_, host_slots_, host_lengths_, host_seqs_;  // staging for the step buffers
  DeviceArray<SampleRow> sample_rows_;  // the sampling request of the step
  DeviceArray<TokenCount> sample_penalties_;
  DeviceArray<int32_t> sampled_;
  int64_t step_rows_ = 0, pos0_ = 0;
  int step_seq_ = 0;
  bool decode_step_ = false;
  CudaKvCache* cache_ = nullptr;
  bool graphs_enabled_ = true;
  std::map<std::pair<int64_t, uint64_t>, cudaGraphExec_t> graphs_;
  std::set<std::pair<int64_t, uint64_t>> seen_;  // step shapes run once directly
  cuda::OpProfiler profiler_;
  int64_t own_generation_ = 0, graph_generation_ = 0;
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() { return std::make_unique<CudaBackend>(); }

}  // namespace marlin
