#include "backend/cuda/int4_unpack.h"

namespace marlin::cuda {
namespace {

// The tile geometry of backend/weight_tiles.h and int4_tiles.h.
constexpr int kTileRows = 64, kTileCols = 128, kCodeBytes = kTileRows * kTileCols / 2;
constexpr int kTileColAlign = 64;  // K is a multiple of this

constexpr int kThreads = kCodeBytes / 16;  // one 16-byte piece of codes each
constexpr int kMaxGroups = 4;  // a tile's groups: the formats' groups are 32, 64 or 128 columns, or the row
constexpr int kMaxHeaderBytes = kMaxGroups * kTileRows * 3;  // scales and zero points
constexpr int kRowPad = 8;  // halves after each staged row: 272-byte rows keep the stores conflict-free

// One block per tile. The fragment layout (backend/int4_tiles.h) scatters a code word's 8 weights
// over 2 rows and 4 column pairs, so the weights are decoded into shared memory first, a column
// pair (one half2) at a time, and then written out a row piece of 16 bytes per thread. (Written
// straight out from the fragments, a warp's stores touched 8 rows at once and the unpack ran at a
// quarter of the write bandwidth: ≈ 0.5 ms per Llama-3.1-8B layer on an H200.)
__global__ void __launch_bounds__(kThreads) unpack_kernel(const uint8_t* tiles, int col_blocks, int tile_bytes,
                                                          int groups_per_tile, bool asymmetric, int64_t k, __half* out) {
  __shared__ __align__(16) __half staged[kTileRows][kTileCols + kRowPad];
  __shared__ __align__(16) uint8_t header[kMaxHeaderBytes];  // the tile's scales (and zero points)
  const int tile = blockIdx.x, nb = tile / col_blocks, kt = tile % col_blocks;  // 32-bit: a grid's blocks
  const uint8_t* base = tiles + static_cast<int64_t>(tile) * tile_bytes;
  const int header_bytes = tile_bytes - kCodeBytes;  // a multiple of 16 (groups × 64 rows × 2 or 3 bytes)
  // Thread t's 16 code bytes are the four words ks % 4 = 0..3 of one lane: byte offset
  // 16·t = 1024·strip + 512·(ks/4) + 16·lane.
  const int strip = threadIdx.x / 64, lane = threadIdx.x % 32, ks0 = 4 * (threadIdx.x % 64 / 32);
  const uint4 words = reinterpret_cast<const uint4*>(base + header_bytes)[threadIdx.x];
  for (int i = threadIdx.x; i < header_bytes / 16; i += kThreads)
    reinterpret_cast<uint4*>(header)[i] = reinterpret_cast<const uint4*>(base)[i];
  const auto* scales = reinterpret_cast<const __half*>(header);
  const uint8_t* zeros = header + groups_per_tile * kTileRows * 2;
  const int group_cols = kTileCols / groups_per_tile;  // even: a column pair shares its group
  __syncthreads();  // the header is in
  const int g = lane / 4;
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    const uint32_t w = kk == 0 ? words.x : kk == 1 ? words.y : kk == 2 ? words.z : words.w;
    const int c = 16 * (ks0 + kk) + 2 * (lane % 4);
    // Nibble i and i + 4 are columns col and col + 1 of one row.
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int r = strip * 16 + g + 8 * (i % 2), col = c + 8 * (i / 2), j = col / group_cols;
      const float z = asymmetric ? float(zeros[j * kTileRows + r]) : 8.0f;
      const float s = __half2float(scales[j * kTileRows + r]);
      const float lo = float((w >> (4 * i)) & 0xf), hi = float((w >> (4 * i + 16)) & 0xf);
      *reinterpret_cast<__half2*>(&staged[r][col]) = __floats2half2_rn(s * (lo - z), s * (hi - z));
    }
  }
  __syncthreads();
  // k is a multiple of kTileColAlign, so every row piece is whole and 16-byte aligned.
  for (int piece = threadIdx.x; piece < kTileRows * kTileCols / 8; piece += kThreads) {
    const int r = piece / (kTileCols / 8), c = piece % (kTileCols / 8) * 8;
    const int64_t column = kt * kTileCols + c;  // K is padded to whole tiles with zero weights
    if (column >= k) continue;
    __half* to = out + (static_cast<int64_t>(nb) * kTileRows + r) * k + column;
    *reinterpret_cast<uint4*>(to) = *reinterpret_cast<const uint4*>(&staged[r][c]);
  }
}

}  // namespace

cudaError_t int4_tiles_to_half(const uint8_t* tiles, int64_t rows, int64_t cols, int groups_per_tile, bool asymmetric,
                               __half* out, cudaStream_t stream) {
  if (groups_per_tile < 1 || groups_per_tile > kMaxGroups || kTileCols % groups_per_tile || cols % kTileColAlign)
    return cudaErrorInvalidValue;
  const int64_t col_blocks = (cols + kTileCols - 1) / kTileCols;
  const int tile_bytes = groups_per_tile * kTileRows * (asymmetric ? 3 : 2) + kCodeBytes;
  const int64_t blocks = rows / kTileRows * col_blocks;  // one per tile
  if (blocks > INT32_MAX) return cudaErrorInvalidValue;
  unpack_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(tiles, int(col_blocks), tile_bytes, groups_per_tile,
                                                           asymmetric, cols, out);
  return cudaGetLastError();
}

}  // namespace marlin::cuda
