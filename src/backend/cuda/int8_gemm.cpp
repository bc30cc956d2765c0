#include "backend/cuda/int8_gemm.h"

#include "backend/int8_tiles.h"
#include "core/error.h"

namespace marlin::cuda {

Int8DeviceWeights::Int8DeviceWeights(const QuantTensor& planar)
    : DeviceWeightTiles(pack_int8_tiles(planar), int8_tile_shape(planar.format, planar.rows, planar.cols)) {}

void int8_gemm(const TiledWeights& w, const __half* a, __half* c, int64_t m, GemmWorkspace& workspace,
               cudaStream_t stream, const GemmTuning& tuning) {
  MARLIN_CHECK(w.shape.codec == TileCodec::kInt8 || w.shape.codec == TileCodec::kFp8,
               "int8 gemm: the weights are {} tiles", tile_codec_name(w.shape.codec));
  tiled_gemm(w, a, c, m, workspace, stream, tuning);
}

}  // namespace marlin::cuda
