#include "backend/cuda/int4_unpack.h"


namespace marlin::cuda {
namespace {

// The tile geometry of backend/weight_tiles.h and int4_tiles.h.
constexpr int kTileRows = 64, kTileCols = 128, kCodeBytes = kTileRows * kTileCols / 2;

// One thread per 32-bit code word: 8 weights of one lane's m16n8k16 fragment (layout in
// backend/int4_tiles.h).
__global__ void unpack_kernel(const uint8_t* tiles, int64_t col_blocks, int tile_bytes, int groups_per_tile,
                              bool asymmetric, int64_t k, __half* out) {
  const int64_t word = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;  // over all tiles
  const int64_t tile = word / (kCodeBytes / 4);
  const int in_tile = int(word % (kCodeBytes / 4));
  const int64_t nb = tile / col_blocks, kt = tile % col_blocks;
  const uint8_t* base = tiles + tile * tile_bytes;
  const auto* scales = reinterpret_cast<const __half*>(base);
  const uint8_t* zeros = base + groups_per_tile * kTileRows * 2;
  const uint8_t* codes = zeros + (asymmetric ? groups_per_tile * kTileRows : 0);
  // Byte offset 4·in_tile = 1024·strip + 512·(ks/4) + 16·lane + 4·(ks%4).
  const int byte = in_tile * 4;
  const int strip = byte / 1024, rest = byte % 1024;
  const int lane = (rest % 512) / 16, ks = (rest / 512) * 4 + (rest % 16) / 4;
  const uint32_t w = *reinterpret_cast<const uint32_t*>(codes + byte);
  const int g = lane / 4, c = 16 * ks + 2 * (lane % 4);
  const int rows[8] = {g, g + 8, g, g + 8, g, g + 8, g, g + 8};
  const int cols[8] = {c, c, c + 8, c + 8, c + 1, c + 1, c + 9, c + 9};
  const int group_cols = kTileCols / groups_per_tile;
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int r = strip * 16 + rows[i], col = cols[i], j = col / group_cols;
    const float q = float((w >> (4 * i)) & 0xf);
    const float z = asymmetric ? float(zeros[j * kTileRows + r]) : 8.0f;
    const float s = __half2float(scales[j * kTileRows + r]);
    const int64_t column = kt * kTileCols + col;  // K is padded to whole tiles with zero weights
    if (column < k) out[(nb * kTileRows + r) * k + column] = __float2half_rn(s * (q - z));
  }
}

}  // namespace

cudaError_t int4_tiles_to_half(const uint8_t* tiles, int64_t rows, int64_t cols, int groups_per_tile, bool asymmetric,
                               __half* out, cudaStream_t stream) {
  const int64_t col_blocks = (cols + kTileCols - 1) / kTileCols;
  const int tile_bytes = groups_per_tile * kTileRows * (asymmetric ? 3 : 2) + kCodeBytes;
  const int64_t words = rows / kTileRows * col_blocks * (kCodeBytes / 4);
  const int threads = 256;  // a tile's 1024 words fill whole blocks
  unpack_kernel<<<unsigned(words / threads), threads, 0, stream>>>(tiles, col_blocks, tile_bytes, groups_per_tile,
                                                                   asymmetric, cols, out);
  return cudaGetLastError();
}

}  // namespace marlin::cuda
