// Host side of the one-launch decode step of a sparse MLP (tiled_gemm.h's moe_decode): entry checks,
// the blocks per slot, and the launch.
#include <algorithm>

#include "backend/cuda/tiled_gemm.h"
#include "backend/cuda/tiled_routed_gemv.h"
#include "core/error.h"

namespace marlin::cuda {
namespace {

void check_cuda(cudaError_t err, const char* what) {
  MARLIN_CHECK(err == cudaSuccess, "moe decode: {}: {}", what, cudaGetErrorString(err));
}

// The routed variant of both shapes' format, or -1.
int decode_variant(const WeightTileShape& gate_up, const WeightTileShape& down) {
  const int variant = tiled_detail::routed_variant(gate_up);
  return variant == tiled_detail::routed_variant(down) ? variant : -1;
}

// Whether the shapes are one expert's stacked gate|up and down: 16-row strips, and K a multiple of
// 64 (a half-k-tile is wholly inside K or wholly padding).
bool expert_shapes(const WeightTileShape& gate_up, const WeightTileShape& down) {
  const int64_t d_ffn = gate_up.rows / 2, d_model = down.rows;
  return d_ffn % 16 == 0 && d_model % 16 == 0 && gate_up.rows == 2 * d_ffn && gate_up.cols == d_model &&
         down.cols == d_ffn && d_model % 64 == 0 && d_ffn % 64 == 0 && d_model <= (1 << 20) && d_ffn <= (1 << 20);
}

// Dynamic shared memory: the warps' partial sums, a token's row (fp16), then a share's gate|up
// values (fp16); staged weights after that.
size_t decode_smem(const tiled_detail::GemvConfig& cfg, int64_t d_model, int64_t d_ffn, int blocks_per_slot) {
  const int64_t share = (d_ffn / 16 + blocks_per_slot - 1) / blocks_per_slot;  // strips, at most
  const size_t bytes = size_t(cfg.smem_bytes()) + size_t(std::max(d_model, d_ffn) * 2) + size_t(share * 2 * 16 * 2);
  return (bytes + 15) / 16 * 16;
}

// Bytes of a block's staged weights: its shares of the gate|up and down strips, every tile of
// each (a strip holds a quarter of a tile).
size_t staged_bytes(const WeightTileShape& gate_up, const WeightTileShape& down, int blocks_per_slot) {
  const int64_t gate_up_share = (gate_up.rows / 32 + blocks_per_slot - 1) / blocks_per_slot;
  const int64_t down_share = (down.rows / 16 + blocks_per_slot - 1) / blocks_per_slot;
  return size_t(2 * gate_up_share * gate_up.col_blocks() + down_share * down.col_blocks()) *
         size_t(gate_up.tile_bytes() / 4);
}

int sm_count() {
  int device = 0, sms = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "cudaDeviceGetAttribute");
  return sms;
}

}  // namespace

MoeDecodeLimits moe_decode_limits(const WeightTileShape& gate_up, const WeightTileShape& down) {
  const int variant = decode_variant(gate_up, down);
  if (!tiled_gemm_supported() || variant < 0 || !expert_shapes(gate_up, down)) return {};
  MoeDecodeLimits limits;
  int blocks_per_sm = 0;
  check_cuda(tiled_detail::raise_moe_decode_smem(variant, &limits.max_smem, &blocks_per_sm), "shared memory limit");
  int count = 0;
  const tiled_detail::GemvConfig& cfg = tiled_detail::routed_gemv_configs(&count)[variant];
  if (decode_smem(cfg, down.rows, gate_up.rows / 2, 1) > size_t(limits.max_smem)) return {};
  limits.resident_blocks = blocks_per_sm * sm_count();
  return limits;
}

int64_t moe_decode_counters(int slots, int resident_blocks) { return int64_t(slots) + resident_blocks + 1; }

void moe_decode(const MoeDecodeStep& s, cudaStream_t stream) {
  const int k = s.routing.top_k + s.routing.n_shared;
  MARLIN_CHECK(s.rows >= 1 && k >= 1 && k <= 32 && s.rows * k <= 65535, "moe decode: {} tokens of {} slots", s.rows,
               k);
  const int slots = int(s.rows) * k;
  const int variant = decode_variant(s.gate_up_shape, s.down_shape);
  MARLIN_CHECK(variant >= 0 && expert_shapes(s.gate_up_shape, s.down_shape), "moe decode: no kernel for these experts");
  MARLIN_CHECK(s.n_experts >= 1 && s.n_experts <= tiled_detail::kMaxExperts, "moe decode: {} experts", s.n_experts);
  MARLIN_CHECK(slots <= s.limits.resident_blocks, "moe decode: {} slots in one launch of at most {} blocks", slots,
               s.limits.resident_blocks);
  // As many blocks per slot as are resident at once, but no more than a slot has strips to share.
  const int per_slot = int(std::min({int64_t(s.limits.resident_blocks / slots), s.down_shape.rows / 16,
                                     s.down_shape.cols / 16}));
  MARLIN_CHECK(s.gate_up && s.down && s.h && s.out && s.logits && s.hidden && s.y && s.counters,
               "moe decode: a missing buffer");
  int count = 0;
  const tiled_detail::GemvConfig& cfg = tiled_detail::routed_gemv_configs(&count)[variant];
  tiled_detail::MoeDecodeParams p;
  p.gate_up_tiles = s.gate_up;
  p.down_tiles = s.down;
  p.gate_up_tiles_bytes = static_cast<long long>(s.gate_up_shape.tiles_bytes());
  p.down_tiles_bytes = static_cast<long long>(s.down_shape.tiles_bytes());
  p.gate_up_k_tiles = int(s.gate_up_shape.col_blocks());
  p.down_k_tiles = int(s.down_shape.col_blocks());
  p.d_model = int(s.down_shape.rows);
  p.d_ffn = int(s.down_shape.cols);
  p.h = s.h;
  p.out = s.out;
  p.hidden = s.hidden;
  p.y = s.y;
  p.counters = s.counters;
  p.n_experts = s.n_experts;
  p.rows = int(s.rows);
  p.slots = slots;
  p.slot_div = k;
  p.blocks_per_slot = per_slot;
  p.route = route_params("moe decode", int(s.rows), s.n_routed, s.routing);
  p.route_logits = s.logits;
  p.route_bias = s.score_bias;
  size_t smem = decode_smem(cfg, p.d_model, p.d_ffn, per_slot);
  const size_t staged = staged_bytes(s.gate_up_shape, s.down_shape, per_slot);
  if (smem + staged <= size_t(s.limits.max_smem)) {
    p.staged_offset = int(smem);
    smem += staged;
  }
  check_cuda(tiled_detail::launch_moe_decode(variant, p, slots * per_slot, smem, stream), "launch");
}

}  // namespace marlin::cuda
