#include "backend/cuda/int4_gemm.h"

#include "backend/int4_tiles.h"
#include "core/error.h"

namespace marlin::cuda {

Int4DeviceWeights::Int4DeviceWeights(const QuantTensor& planar)
    : DeviceWeightTiles(pack_int4_tiles(planar), int4_tile_shape(planar.format, planar.rows, planar.cols)) {}

void int4_gemm(const TiledWeights& w, const __half* a, __half* c, int64_t m, GemmWorkspace& workspace,
               cudaStream_t stream, const GemmTuning& tuning) {
  MARLIN_CHECK(w.shape.codec == TileCodec::kInt4, "int4 gemm: the weights are {} tiles", tile_codec_name(w.shape.codec));
  tiled_gemm(w, a, c, m, workspace, stream, tuning);
}

}  // namespace marlin::cuda
