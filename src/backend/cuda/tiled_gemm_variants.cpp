// The registry of compiled weight-tile GEMM variants: the tables of the per-codec translation units
// (gemm_variants_*.cu, gemv_variants_*.cu) numbered one after another.
#include <vector>

#include "backend/cuda/tiled_gemm_kernels.h"

namespace marlin::cuda::tiled_detail {

namespace {

template <typename Table, typename Config>
struct Registry {
  std::vector<Table> tables;
  std::vector<Config> configs;
  explicit Registry(std::vector<Table> t) : tables(std::move(t)) {
    for (const Table& table : tables) configs.insert(configs.end(), table.configs, table.configs + table.count);
  }
  // The table holding global index `index`, and the index within it; null when out of range.
  const Table* find(int& index) const {
    if (index < 0) return nullptr;
    for (const Table& table : tables) {
      if (index < table.count) return &table;
      index -= table.count;
    }
    return nullptr;
  }
};

const Registry<GemmVariantTable, KernelConfig>& gemm_registry() {
  static const Registry<GemmVariantTable, KernelConfig> registry(
      {gemm_variants_int4(), gemm_variants_int8(), gemm_variants_fp4(), gemm_variants_int2(), gemm_variants_int3()});
  return registry;
}

const Registry<GemvVariantTable, GemvConfig>& gemv_registry() {
  static const Registry<GemvVariantTable, GemvConfig> registry(
      {gemv_variants_int4(), gemv_variants_int8(), gemv_variants_fp4(), gemv_variants_int2(), gemv_variants_int3()});
  return registry;
}

}  // namespace

const KernelConfig* kernel_configs(int* count) {
  *count = int(gemm_registry().configs.size());
  return gemm_registry().configs.data();
}

const GemvConfig* gemv_configs(int* count) {
  *count = int(gemv_registry().configs.size());
  return gemv_registry().configs.data();
}

cudaError_t launch_gemm(int config, const GemmParams& params, int grid, int smem, bool pdl, cudaStream_t stream) {
  const GemmVariantTable* table = gemm_registry().find(config);
  return table ? table->launch(config, params, grid, smem, pdl, stream) : cudaErrorInvalidValue;
}

cudaError_t launch_gemv(int config, const GemvParams& params, int grid, bool pdl, cudaStream_t stream) {
  const GemvVariantTable* table = gemv_registry().find(config);
  return table ? table->launch(config, params, grid, pdl, stream) : cudaErrorInvalidValue;
}

}  // namespace marlin::cuda::tiled_detail
