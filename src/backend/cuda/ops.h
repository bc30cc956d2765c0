// Transformer ops on the GPU, besides the weight matmuls (int4_gemm.h, dense_matmul.h).
//
// Activations: the residual stream is fp32 (rows × d_model); everything a matmul reads or writes
// is fp16. Every op launches on `stream` and returns at once: it never synchronizes, allocates
// nothing and reads per-step values (token ids, positions, sequence lengths, cache slots) from
// device memory, so a decode step can be captured into a CUDA graph and replayed. Pointers are
// device pointers; fp16 rows are 16-byte aligned (their lengths are multiples of 8).
//
// The KV cache is paged: a layer's keys (and, alike, its values) live in a pool of pages of
// `page_size` positions, page p at element p · n_kv_heads · page_size · head_dim, laid out
// [kv_head][position in page][head_dim]. Page numbers are the same in every layer. A sequence's
// block table row lists its pages in order; a cache slot is page · page_size + position in page.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "backend/sampling_rule.h"
#include "model/config.h"

namespace marlin::cuda {

// out[r] = fp16(x[r] / sqrt(mean(x[r]²) + eps) · weight), for rows × n values (x fp32).
void rms_norm(const float* x, const float* weight, float eps, int64_t rows, int64_t n, __half* out,
              cudaStream_t stream);

// The residual add fused with the following norm: x[r] += delta[r]; out[r] = rms_norm(x[r]).
void add_rms_norm(float* x, const __half* delta, const float* weight, float eps, int64_t rows, int64_t n,
                  __half* out, cudaStream_t stream);

// Per-head RMSNorm in place: for each of `rows` qkv rows (row stride `stride` values), the first
// n_q_heads heads of head_dim values are normalized and scaled by q_weight, the next n_k_heads by
// k_weight (fp32, head_dim values each); head_dim is a multiple of 8 and at most 256.
void qk_norm(__half* qkv, int64_t rows, int64_t stride, int n_q_heads, int n_k_heads, int head_dim,
             const float* q_weight, const float* k_weight, float eps, cudaStream_t stream);

// x[i] += fp32(delta[i]) for count values (the residual add when no norm follows).
void add_residual(float* x, const __half* delta, int64_t count, cudaStream_t stream);

// In place: a[r] = fp16(a[r] / sqrt(mean(a[r]²) + eps) · weight), for rows × n fp16 values
// (computed in fp32; n a multiple of 8).
void rms_norm_half(__half* a, const float* weight, float eps, int64_t rows, int64_t n, cudaStream_t stream);

// gate_up holds rows × 2f values, each row [gate (f) | up (f)]; out[r][i] = silu(gate) · up.
void silu_mul(const __half* gate_up, int64_t rows, int64_t f, __half* out, cudaStream_t stream);
// The same with GELU in its tanh approximation: out = 0.5·g·(1 + tanh(sqrt(2/π)·(g + 0.044715·g³))) · up.
void gelu_tanh_mul(const __half* gate_up, int64_t rows, int64_t f, __half* out, cudaStream_t stream);

// x[t] = fp32(table[tokens[t]]) · scale for t < n; table is vocab × d fp16. Ids are checked on the host.
void embed(const __half* table, int64_t d, const int32_t* tokens, int64_t n, float scale, float* x,
           cudaStream_t stream);

// fp16 → fp32, count values (logits).
void half_to_float(const __half* in, int64_t count, float* out, cudaStream_t stream);

// fp32 → fp16 (round to nearest), count values.
void float_to_half(const float* in, int64_t count, __half* out, cudaStream_t stream);

// out (m × rows, fp32 or fp16) = in (m × cols) · Wᵀ for fp16 W (rows × cols, cols a multiple of
// 8) and 1 ≤ m ≤ kDenseGemvRows activation rows, fp32 sums (dense_gemv.cu).
constexpr int kDenseGemvRows = 16;
void dense_gemv(const __half* w, int64_t rows, int64_t cols, const __half* in, int64_t m, void* out, bool out_f32,
                cudaStream_t stream);

// Sparse MLPs (moe_ops.cu). Routing on the device, by Backend::moe's rule (backend/cpu/moe.h):
// for each of `rows` tokens, from its n_experts ≤ 256 routed experts' fp32 router logits and the
// optional score bias (n_experts values or nullptr), ids[row · s + j] (s = top_k + n_shared ≤ 32)
// are the chosen experts, best first, then the shared experts n_experts, n_experts + 1, ...;
// weights the slots' weights (times routing.scale; 1 for the shared experts).
void moe_route(const float* logits, const float* score_bias, int rows, int n_experts, const MoeRouting& routing,
               int32_t* ids, float* weights, cudaStream_t stream);
// For fp16 experts: c[slot] = a[slot / slot_div] · W_eᵀ, e = ids[slot], W_e (rows × cols, cols a
// multiple of 8) at weights[e] (a device array of device pointers); c is slots × rows.
void routed_dense_gemv(const __half* const* weights, const int32_t* ids, int slots, int slot_div, const __half* a,
                       int64_t rows, int64_t cols, __half* c, cudaStream_t stream);
// out[t] = Σ_j weights[t·top_k + j] · y[t·top_k + j] for `rows` tokens of `cols` values (fp32 sum
// in slot order, rounded once).
void combine_slots(const __half* y, const float* weights, int64_t rows, int top_k, int64_t cols, __half* out,
                   cudaStream_t stream);
// Groups the `slots` (token, expert) slots of a step by expert, on the device (no host sync):
// ids[slot] < n_experts ≤ 256 (moe_route's output). Writes order[i] (slots entries): the slot at
// grouped position i, expert by expert and, within an expert, by slot index;
// expert_begin[e] (n_experts + 1 entries): the first position of expert e (the last entry: slots);
// chunk_begin[e] (n_experts + 1): the number of `chunk`-position chunks of the experts before e.
// One block.
void group_slots(const int32_t* ids, int slots, int n_experts, int chunk, int32_t* order, int32_t* expert_begin,
                 int32_t* chunk_begin, cudaStream_t stream);
// out[i] = in[rows[i]] for n rows of `cols` fp16 values (cols a multiple
// of 8, both 16-byte aligned; row indices in device memory, valid rows of `in`).
void gather_rows(const __half* in, int64_t cols, const int32_t* rows, int64_t n, __half* out, cudaStream_t stream);
// sums[rows[i]] += weights[i] · y[i] for n rows of `cols` values (sums fp32, y fp16); each row
// index at most once per call.
void add_weighted_rows(const __half* y, int64_t cols, const int32_t* rows, const float* weights, int64_t n, float* sums,
                       cudaStream_t stream);

struct AttentionGeometry {
  int n_heads = 0;
  int n_kv_heads = 0;  // divides n_heads; query head h reads KV head h / (n_heads / n_kv_heads)
  int head_dim = 0;    // 64, 128 or 256
  int rotary_dim = 0;  // even, ≤ head_dim: the first rotary_dim values of a head are rotated
  bool rope_half_split = true;  // pair i with i + rotary_dim/2 (Hugging Face); else 2i with 2i+1
  int page_size = 0;   // positions per KV page (16, 32 or 64)
  int window = 0;      // > 0: a query at position p attends only to keys (p - window, p]
};

struct KvLayer {
  __half* keys = nullptr;
  __half* values = nullptr;
};

// For each of `rows` tokens: rotates the q and k heads of its qkv row in place (qkv rows are
// [q: n_heads·head_dim | k: n_kv_heads·head_dim | v: n_kv_heads·head_dim]) with the angles of
// positions[t] from cos_sin (per position rotary_dim/2 cosines then rotary_dim/2 sines, already
// scaled: see Rope::angles), then writes k and v to cache slot slots[t] (a negative slot: a padding
// row, rotated but not stored). With `norm` weights, each q and k head is first normalized as
// qk_norm does it (the same bits; one launch instead of two).
struct HeadNorm {
  const float* q_weight = nullptr;
  const float* k_weight = nullptr;
  float eps = 0;
};
void rope_store_kv(__half* qkv, int64_t rows, const int32_t* positions, const int32_t* slots,
                   const float* cos_sin, const AttentionGeometry& g, KvLayer cache, cudaStream_t stream,
                   const HeadNorm& norm = {});

// Causal attention of one sequence's `rows` new tokens (positions pos0 .. pos0+rows-1, already in
// the cache) over its cache: token t attends to positions [0, pos0 + t], or to the last g.window
// of them when set. q comes from the qkv rows (row stride (n_heads + 2·n_kv_heads)·head_dim); out
// is rows × n_heads·head_dim. Scores are scaled by `scale`; softmax in fp32. For prompts
// (flash-attention style, tensor cores).
void attention_prefill(const __half* qkv, int64_t rows, int64_t pos0, const int32_t* block_table,
                       const AttentionGeometry& g, KvLayer cache, float scale, __half* out, cudaStream_t stream);

// One new token for each of `batch` sequences: query b (qkv row b) attends to positions
// [0, seq_lens[b]) of sequence b (the last g.window of them when set), whose pages are
// block_tables[b · max_pages ...]. The grid is sized by max_len (an upper bound of every seq_lens[b], e.g. the cache capacity) so the launch
// does not depend on the current lengths; long contexts are split across blocks (flash-decoding)
// and combined through `workspace` (attention_decode_workspace_floats(...) floats; when that is 0,
// workspace may be null). A sequence of length 0 gets zeros.
void attention_decode(const __half* qkv, int batch, const int32_t* seq_lens, const int32_t* block_tables,
                      int max_pages, int64_t max_len, const AttentionGeometry& g, KvLayer cache, float scale,
                      __half* out, float* workspace, cudaStream_t stream);
int64_t attention_decode_workspace_floats(int batch, int64_t max_len, const AttentionGeometry& g);

// Multi-head latent attention (DeepSeek-V2/V3, GLM-4.7-Flash; mla_store.cu, mla_attention.cu).
// A layer's cache holds per position one row of `row_width()` fp16 values, [c_kv: kv_lora |
// k_pe: qk_rope], page p at element p · page_size · row_width(), so cache slot s (ops.h) is the row
// at s · row_width(). The attention runs with kv_b_proj absorbed: the queries meet the cached rows
// as [W_UKᵀ·q_nope | rope(q_pe)] ("absorbed queries", row_width() values per head) and the output
// is Σ_j p_j c_kv_j per head (kv_lora values), which W_UV turns into the head's output.
struct MlaGeometry {
  int n_heads = 0;
  int qk_nope = 0;    // per head: query values without position
  int qk_rope = 0;    // per head: rotated values (the shared key's width), even
  int kv_lora = 0;    // latent width
  int v_dim = 0;      // per head: output values
  bool rope_half_split = true;  // pair i with i + qk_rope/2 (Hugging Face); else 2i with 2i+1
  int page_size = 0;  // positions per KV page, a power of two
  int row_width() const { return kv_lora + qk_rope; }
};

// For each of `rows` rows of kv_a ([latent: kv_lora | k_pe: qk_rope], fp16): writes
// fp16(rms_norm(latent) · kv_norm) (fp32 arithmetic, epsilon `eps`) and fp16(k_pe rotated by the
// angles of positions[t] from cos_sin (rope_store_kv's table)) as the cache row of slot slots[t]
// (a negative slot: a padding row, not stored). kv_lora and qk_rope are multiples of 8.
void mla_store_kv(const __half* kv_a, int64_t rows, const float* kv_norm, float eps, const int32_t* positions,
                  const int32_t* slots, const float* cos_sin, const MlaGeometry& g, __half* cache,
                  cudaStream_t stream);

// For each of `rows` query rows (n_heads × [q_nope | q_pe], fp16) and head h: q_abs[t][h] (rows of
// row_width() values, rows · n_heads of them) gets q_pe rotated by the angles of positions[t] in
// its last qk_rope values; its first kv_lora values (W_UKᵀ·q_nope) are left to the caller.
void mla_rope_queries(const __half* q, int64_t rows, const int32_t* positions, const float* cos_sin,
                      const MlaGeometry& g, __half* q_abs, cudaStream_t stream);

// The softmax-weighted sum of cached latents, for `batch` sequences of `rows_per_seq` new tokens
// each (already in the cache; a prompt: batch 1, a decode step: rows_per_seq 1). Query row i of
// sequence b is q_abs row (b · rows_per_seq · n_heads + i) (row_width() values; i = token ·
// n_heads + head); its token t = i / n_heads sits at position seq_lens[b] - rows_per_seq + t and
// attends to positions [0, that]. score_j = scale · (q_abs · cache row j); o_lat row (same index,
// kv_lora values, fp16) = Σ_j softmax_j · c_kv_j. Sequence b's pages are block_tables[b ·
// max_pages ...]; max_len bounds every seq_lens[b] and, with the batch, alone decides the launch
// (CUDA-graph replays stay valid): long contexts of a decode step are split into chunks merged
// through `workspace` (mla_attention_workspace_floats floats; null when that is 0). Tensor cores,
// fp32 softmax. kv_lora ≤ 512 and row_width() ≤ 768, both multiples of 8.
void mla_attention_latent(const __half* q_abs, int batch, int rows_per_seq, const int32_t* seq_lens,
                          const int32_t* block_tables, int max_pages, int64_t max_len, const MlaGeometry& g,
                          const __half* cache, float scale, __half* o_lat, float* workspace, cudaStream_t stream);
int64_t mla_attention_workspace_floats(int batch, int rows_per_seq, int64_t max_len, const MlaGeometry& g);

// Greedy sampling: tokens[b] = argmax of logits row b (vocab fp32 values; lowest index on ties).
void argmax(const float* logits, int batch, int64_t vocab, int32_t* tokens, cudaStream_t stream);

// tokens[r] = the token sampled from logits row r (vocab fp32 values, modified: penalties) by
// params[r], whose penalty pairs index `penalties` (backend/sampling.h; checked on the host by
// check_sample_batch). The same choice as the CPU's sample_row; vocab ≤ kMaxSampleVocab.
void sample_rows(float* logits, int rows, int64_t vocab, const SampleRow* params, const TokenCount* penalties,
                 int32_t* tokens, cudaStream_t stream);

}  // namespace marlin::cuda
