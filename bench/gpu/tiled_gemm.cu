// Weight-tile × fp16 GEMM scratchpad (in the spirit of llm.c's dev/cuda): a reference, the kernel
// variants of backend/cuda/gemm_variants_*.cu and gemv_variants_*.cu for every tile codec (int4,
// int8, fp8, fp4 / mxfp4 / nvfp4, int3, int2), a correctness sweep over awkward sizes and every
// weight format, and timings against cuBLAS FP16 and the read bandwidth measured in the same run.
//
//   v0  reference: fp32 on the GPU, straight from the planar format (one block per weight row and
//       8 tokens), checked against fp64 on the CPU (quant/dequant.h's dequantize_row) at small sizes.
//   v1+ the fused kernels, one entry per compiled variant: codec, path (mma / wgmma / gemv),
//       R = 64-row tiles per block, FN = 16-row strips per consumer warp, FM = 8-token fragments
//       per pass, W = warps, S = strips per warp and D = depth of the GEMV, g = group size,
//       a = asymmetric.
//
// Timing: CUDA graph of many launches cycling through enough copies of the weights to exceed the
// L2 several times; median over replays. cuBLAS: cublasGemmEx fp16 in/out, fp32 compute, on
// dequantized weights (same m, k, n), timed once per shape and m for every format. Bytes: the
// weight-tile stream (codes + scales) per launch.
//
// Build: bench/gpu/build.sh OUT_DIR. Run: tiled_gemm [--json FILE] [--formats F1,F2,..]
// [--ms M1,M2,..] [--skip-check] [--skip-time] [--smoke] [--no-wgmma] [--sweep]
//   --smoke      a few small checks only (for compute-sanitizer)
//   --no-wgmma   leave the wgmma variants out (to salvage a run)
//   --sweep      also time every variant at 3, 4 and 6 stages and without PDL
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cuda/int4_gemm.h"
#include "backend/cuda/int8_gemm.h"
#include "backend/cuda/pdl_launch.cuh"
#include "backend/cuda/tiled_gemm.h"
#include "backend/cuda/tiled_gemm_kernels.h"
#include "backend/weight_tiles.h"
#include "bench_util.cuh"
#include "quant/dequant.h"

using namespace bench;
using marlin::cuda::GemmTuning;
using marlin::cuda::tiled_detail::GemvConfig;
using marlin::cuda::tiled_detail::KernelConfig;
namespace td = marlin::cuda::tiled_detail;

static Json json;
static int failures = 0;
static bool no_wgmma = false;
static bool sweep = false;
static int sms = 0;
static cublasHandle_t blas;
static cudaStream_t stream;
static marlin::cuda::GemmWorkspace workspace;

static const char* codec_name(int codec) { return tile_codec_name(TileCodec(codec)); }

static std::string variant_name(const KernelConfig& c) {
  static const char* const kPaths[] = {"stream", "mma", "wgmma"};
  char buf[96];
  snprintf(buf, sizeof buf, "%s-%s-R%d-FN%d-FM%d-g%d%s", codec_name(c.codec), kPaths[c.path], c.row_tiles, c.frags_n,
           c.frags_m, 128 / c.groups_per_tile, c.asymmetric ? "-asym" : "");
  return buf;
}

static std::string gemv_name(const GemvConfig& c) {
  char buf[96];
  snprintf(buf, sizeof buf, "%s-gemv-W%d-S%d-FM%d-D%d-g%d%s", codec_name(c.codec), c.warps, c.strips_per_warp,
           c.frags_m, c.depth, 128 / c.groups_per_tile, c.asymmetric ? "-asym" : "");
  return buf;
}

static bool same_format(int codec, int gpt, bool asym, const WeightTileShape& s) {
  return codec == int(s.codec) && gpt == s.groups_per_tile && asym == s.asymmetric;
}

static const KernelConfig& striped_config(int v) {
  int count = 0;
  return td::kernel_configs(&count)[v];
}

static const GemvConfig& gemv_config(int v) {
  int count = 0;
  return td::gemv_configs(&count)[v];
}

// Striped variants for the weights (stream-only diagnostics when `stream_only`).
static std::vector<int> striped_variants(const WeightTileShape& s, bool stream_only = false) {
  int count = 0;
  const KernelConfig* configs = td::kernel_configs(&count);
  std::vector<int> out;
  for (int i = 0; i < count; ++i) {
    const KernelConfig& c = configs[i];
    if ((c.path == td::kPathStream) != stream_only || (no_wgmma && c.path == td::kPathWgmma)) continue;
    if (same_format(c.codec, c.groups_per_tile, c.asymmetric, s) && s.rows % c.block_rows() == 0) out.push_back(i);
  }
  return out;
}

static std::vector<int> gemv_variants(const WeightTileShape& s) {
  int count = 0;
  const GemvConfig* configs = td::gemv_configs(&count);
  std::vector<int> out;
  for (int i = 0; i < count; ++i)
    if (same_format(configs[i].codec, configs[i].groups_per_tile, configs[i].asymmetric, s)) out.push_back(i);
  return out;
}

static std::string tuning_name(const GemmTuning& t) {
  return t.gemv_variant >= 0 ? gemv_name(gemv_config(t.gemv_variant)) : variant_name(striped_config(t.variant));
}

// Tiles of the planar weights on the device.
static marlin::cuda::DeviceWeightTiles upload_tiles(const Planar& p) {
  return marlin::cuda::DeviceWeightTiles(pack_weight_tiles(p.view()), weight_tile_shape(p.format, p.n, p.k));
}

// ---------------------------------------------------------------------------------------------
// Correctness.

// v0 against an fp64 CPU product of dequantize_row's weights.
static void check_reference_small(const char* format) {
  Rng rng{7};
  const int m = 3, n = 128, k = 384;
  const Planar p = random_planar(format, n, k, rng);
  DevicePlanar dp(p);
  __half* a = nullptr;
  float* c = nullptr;
  CK(cudaMalloc(&a, m * k * 2));
  CK(cudaMalloc(&c, m * n * 4));
  fill_random(a, m * k, 11);
  run_reference(dp, a, c, m, n, k);
  std::vector<uint16_t> ha(m * k);
  std::vector<float> hc(m * n), row(k);
  CK(cudaMemcpy(ha.data(), a, m * k * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hc.data(), c, m * n * 4, cudaMemcpyDeviceToHost));
  double num = 0, den = 0;
  for (int r = 0; r < n; ++r) {
    dequantize_row(p.view(), r, row.data());
    for (int t = 0; t < m; ++t) {
      double s = 0;
      for (int col = 0; col < k; ++col) s += double(row[col]) * fp16_to_fp32(ha[t * k + col]);
      num += (s - hc[t * n + r]) * (s - hc[t * n + r]);
      den += s * s;
    }
  }
  const double err = std::sqrt(num / den);
  const bool ok = err < 1e-5;
  failures += !ok;
  printf("reference v0 vs fp64 CPU (m %d n %d k %d %s): rel err %.2e %s\n", m, n, k, format, err, ok ? "ok" : "FAIL");
  json.record("{\"kind\":\"reference_check\",\"format\":\"%s\",\"rel_err\":%.3e,\"ok\":%s}", format, err,
              ok ? "true" : "false");
  cudaFree(a);
  cudaFree(c);
}

// Every variant of the format (and the pick) against v0 at awkward m, with poisoned outputs;
// tolerance: twice the error of cuBLAS FP16 on the fp16-rounded weights (same precision class), and
// a bitwise rerun.
static void check_format(const std::string& format, const std::vector<std::pair<int, int>>& shapes,
                         const std::vector<int>& ms, Rng& rng) {
  for (auto [k, n] : shapes) {
    const Planar p = random_planar(format, n, k, rng);
    DevicePlanar dp(p);
    const auto tiles = upload_tiles(p);
    const marlin::cuda::TiledWeights w = tiles.view();
    __half* w16 = dequantized_copy(dp, n, k);
    for (int m : ms) {
      __half *a = nullptr, *c = nullptr, *c2 = nullptr;
      float* ref = nullptr;
      CK(cudaMalloc(&a, size_t(m) * k * 2));
      CK(cudaMalloc(&c, size_t(m) * n * 2));
      CK(cudaMalloc(&c2, size_t(m) * n * 2));
      CK(cudaMalloc(&ref, size_t(m) * n * 4));
      fill_random(a, (long long)m * k, rng.next());
      run_reference(dp, a, ref, m, n, k);
      CK(cudaMemset(c, 0xff, size_t(m) * n * 2));
      run_cublas(blas, w16, a, c, m, n, k);
      CK(cudaStreamSynchronize(stream));
      const double blas_err = rel_error(c, ref, (long long)m * n);
      const double tol = 2.0 * blas_err;
      std::vector<std::pair<std::string, GemmTuning>> runs = {{"picked", {}}};
      for (int v : striped_variants(w.shape)) runs.push_back({variant_name(striped_config(v)), {v, -1, 0, true}});
      for (int v : gemv_variants(w.shape)) runs.push_back({gemv_name(gemv_config(v)), {-1, v, 0, true}});
      for (const auto& [name, tuning] : runs) {
        CK(cudaMemset(c, 0xff, size_t(m) * n * 2));
        CK(cudaMemset(c2, 0xff, size_t(m) * n * 2));
        marlin::cuda::tiled_gemm(w, a, c, m, workspace, stream, tuning);
        marlin::cuda::tiled_gemm(w, a, c2, m, workspace, stream, tuning);
        CK(cudaStreamSynchronize(stream));
        const double err = rel_error(c, ref, (long long)m * n);
        const bool same = same_bits(c, c2, (long long)m * n);
        const bool ok = err <= tol && same;
        failures += !ok;
        const std::string label =
            name == "picked" ? "picked " + tuning_name(marlin::cuda::tiled_gemm_pick(w.shape, m, sms)) : name;
        if (!ok || name == "picked")
          printf("check %-14s k %5d n %5d m %4d %-36s err %.2e (cuBLAS %.2e) %s%s\n", format.c_str(), k, n, m,
                 label.c_str(), err, blas_err, ok ? "ok" : "FAIL", same ? "" : " (reruns differ)");
        json.record(
            "{\"kind\":\"check\",\"format\":\"%s\",\"k\":%d,\"n\":%d,\"m\":%d,\"variant\":\"%s\",\"rel_err\":%.3e,"
            "\"cublas_rel_err\":%.3e,\"deterministic\":%s,\"ok\":%s}",
            format.c_str(), k, n, m, label.c_str(), err, blas_err, same ? "true" : "false", ok ? "true" : "false");
      }
      cudaFree(a);
      cudaFree(c);
      cudaFree(c2);
      cudaFree(ref);
    }
    cudaFree(w16);
  }
}

// ---------------------------------------------------------------------------------------------
// Timing.

struct Shape {
  int k, n;
};
static const Shape kLayer[] = {{4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}};
constexpr int kShapes = 4;

// One format's times, per m and layer shape.
struct FormatTimes {
  std::string format;
  double bytes[kShapes] = {}, read[kShapes] = {};
  std::vector<std::array<double, kShapes>> best, picked, stream_only;
  std::vector<std::array<std::string, kShapes>> best_name, picked_name;
};

// A kernel that only reads `bytes` (16-byte loads, grid-stride) and keeps the sum: the best time
// any kernel can stream that much in.
__global__ void read_only(const uint4* x, long long count, uint32_t* sink) {
  uint32_t acc = 0;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (long long)gridDim.x * blockDim.x) {
    const uint4 v = __ldcs(x + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) *sink = acc;  // keeps the loads; practically never true
}

__global__ void empty_kernel() {}

static double time_read(const std::vector<uint8_t*>& bufs, size_t bytes, uint32_t* sink) {
  const int copies = int(bufs.size());
  const int launches = std::max(copies, 24) / copies * copies;
  return time_graph(stream, launches, 10, [&](int i) {
    read_only<<<sms * 4, 512, 0, stream>>>(reinterpret_cast<const uint4*>(bufs[size_t(i % copies)]),
                                            (long long)(bytes / 16), sink);
  });
}

// Copies of `bytes` of data, enough to exceed the L2 three times over (so every launch reads HBM).
static int copies_for(double bytes, double l2_bytes) { return std::max(1, int(std::ceil(3.0 * l2_bytes / bytes))); }

// cuBLAS FP16 on each layer shape for every m: blas[mi][si].
static std::vector<std::array<double, kShapes>> time_cublas(const std::vector<int>& ms, double l2_bytes, int reps) {
  std::vector<std::array<double, kShapes>> blas_us(ms.size());
  const int max_m = *std::max_element(ms.begin(), ms.end());
  Rng rng{99};
  for (int si = 0; si < kShapes; ++si) {
    const int k = kLayer[si].k, n = kLayer[si].n;
    const Planar p = random_planar("int4-g128", n, k, rng);
    DevicePlanar dp(p);
    const int copies = copies_for(double(n) * k * 2, l2_bytes);
    std::vector<__half*> w16(static_cast<size_t>(copies));
    for (auto& w : w16) w = dequantized_copy(dp, n, k);
    __half *a = nullptr, *c = nullptr;
    CK(cudaMalloc(&a, size_t(max_m) * k * 2));
    CK(cudaMalloc(&c, size_t(max_m) * n * 2));
    fill_random(a, (long long)max_m * k, rng.next());
    const int launches = std::max(copies, 24) / copies * copies;
    for (size_t mi = 0; mi < ms.size(); ++mi) {
      const int m = ms[mi];
      blas_us[mi][si] = time_graph(stream, launches, reps, [&](int i) { run_cublas(blas, w16[i % copies], a, c, m, n, k); });
      json.record("{\"kind\":\"time\",\"format\":\"f16\",\"k\":%d,\"n\":%d,\"m\":%d,\"variant\":\"cublas_fp16\",\"us\":%.3f}", k,
                  n, m, blas_us[mi][si]);
    }
    for (auto w : w16) cudaFree(w);
    cudaFree(a);
    cudaFree(c);
  }
  return blas_us;
}

// Times the format's variants that suit each m (default stages, PDL; --sweep: more), the pick and
// a read-only kernel, on each layer shape.
static FormatTimes time_format(const std::string& format, const std::vector<int>& ms,
                               const std::vector<std::array<double, kShapes>>& blas_us, double l2_bytes, int reps,
                               uint32_t* sink) {
  FormatTimes out;
  out.format = format;
  out.best.assign(ms.size(), {});
  out.picked.assign(ms.size(), {});
  out.stream_only.assign(ms.size(), {});
  out.best_name.assign(ms.size(), {});
  out.picked_name.assign(ms.size(), {});
  const int max_m = *std::max_element(ms.begin(), ms.end());
  Rng rng{uint64_t(std::hash<std::string>()(format))};
  for (int si = 0; si < kShapes; ++si) {
    const int k = kLayer[si].k, n = kLayer[si].n;
    const Planar p = random_planar(format, n, k, rng);
    const WeightTileShape shape = weight_tile_shape(p.format, n, k);
    const std::vector<uint8_t> packed = pack_weight_tiles(p.view());
    out.bytes[si] = double(packed.size());
    const int copies = copies_for(double(packed.size()), l2_bytes);
    const int launches = std::max(copies, 24) / copies * copies;
    std::vector<uint8_t*> tiles(static_cast<size_t>(copies));
    for (auto& t : tiles) {
      CK(cudaMalloc(&t, packed.size()));
      CK(cudaMemcpy(t, packed.data(), packed.size(), cudaMemcpyHostToDevice));
    }
    __half *a = nullptr, *c = nullptr;
    CK(cudaMalloc(&a, size_t(max_m) * k * 2));
    CK(cudaMalloc(&c, size_t(max_m) * n * 2));
    fill_random(a, (long long)max_m * k, rng.next());
    workspace.reserve(n, max_m);
    for (size_t mi = 0; mi < ms.size(); ++mi) {
      const int m = ms[mi];
      auto time_tuning = [&](const GemmTuning& tuning) {
        return time_graph(stream, launches, reps, [&](int i) {
          marlin::cuda::tiled_gemm({tiles[size_t(i % copies)], shape}, a, c, m, workspace, stream, tuning);
        });
      };
      auto report = [&](const std::string& name, int stages, bool pdl, double us) {
        json.record(
            "{\"kind\":\"time\",\"format\":\"%s\",\"k\":%d,\"n\":%d,\"m\":%d,\"variant\":\"%s\",\"stages\":%d,"
            "\"pdl\":%s,\"us\":%.3f,\"weight_gbps\":%.1f,\"cublas_us\":%.3f,\"speedup\":%.3f}",
            format.c_str(), k, n, m, name.c_str(), stages, pdl ? "true" : "false", us, out.bytes[si] / (us * 1e3),
            blas_us[mi][si], blas_us[mi][si] / us);
      };
      double& best = out.best[mi][si];
      best = 1e30;
      auto consider = [&](const std::string& name, const GemmTuning& tuning) {
        std::vector<std::pair<int, bool>> runs = {{0, true}};
        if (sweep) runs = {{0, true}, {0, false}, {3, true}, {4, true}, {6, true}};
        for (auto [stages, pdl] : runs) {
          if (tuning.gemv_variant >= 0 && stages != 0) continue;
          GemmTuning t = tuning;
          t.stages = stages;
          t.overlap_previous_kernel = pdl;
          const double us = time_tuning(t);
          report(name, stages, pdl, us);
          if (pdl && us < best) {
            best = us;
            out.best_name[mi][si] = name + (stages ? "-s" + std::to_string(stages) : "");
          }
        }
      };
      const int chunk_goal = std::min(m, 64);
      for (int v : striped_variants(shape)) {
        // Chunks as small as fit m and the next size up (and every chunk of 64+ for m > 64).
        const int chunk = striped_config(v).chunk_tokens();
        if (chunk < chunk_goal || (m <= 64 && chunk > 2 * std::max(chunk_goal, 8))) continue;
        consider(variant_name(striped_config(v)), {v, -1, 0, true});
      }
      if (m <= 16)
        for (int v : gemv_variants(shape))
          if (gemv_config(v).frags_m == (m <= 8 ? 1 : 2)) consider(gemv_name(gemv_config(v)), {-1, v, 0, true});
      if (m <= 16) {
        double& s = out.stream_only[mi][si];
        for (int v : striped_variants(shape, true)) {
          if (striped_config(v).chunk_tokens() < m) continue;
          const double us = time_tuning({v, -1, 0, true});
          report(variant_name(striped_config(v)), 0, true, us);
          s = s > 0 ? std::min(s, us) : us;
        }
      }
      out.picked[mi][si] = time_tuning({});
      out.picked_name[mi][si] = tuning_name(marlin::cuda::tiled_gemm_pick(shape, m, sms));
      report("picked " + out.picked_name[mi][si], 0, true, out.picked[mi][si]);
    }
    out.read[si] = time_read(tiles, packed.size(), sink);
    json.record("{\"kind\":\"time\",\"format\":\"%s\",\"k\":%d,\"n\":%d,\"variant\":\"read_only\",\"us\":%.3f}",
                format.c_str(), k, n, out.read[si]);
    for (auto t : tiles) cudaFree(t);
    cudaFree(a);
    cudaFree(c);
  }
  return out;
}

static void print_format(const FormatTimes& t, const std::vector<int>& ms,
                         const std::vector<std::array<double, kShapes>>& blas_us, const char* card) {
  double layer_bytes = 0, read = 0;
  for (int s = 0; s < kShapes; ++s) layer_bytes += t.bytes[s], read += t.read[s];
  printf("\n%s: best variant per GEMM (k4096 n6144 | k4096 n4096 | k4096 n28672 | k14336 n4096), picked where different:\n",
         t.format.c_str());
  for (size_t i = 0; i < ms.size(); ++i) {
    printf("  m %4d:", ms[i]);
    for (int s = 0; s < kShapes; ++s) {
      const bool same = t.picked_name[i][s] == t.best_name[i][s];
      printf(" %s%s%s%s", s ? "| " : "", t.best_name[i][s].c_str(), same ? "" : " (picked ",
             same ? "" : (t.picked_name[i][s] + ")").c_str());
    }
    printf("\n");
  }
  printf("\n%s, Llama-3.1-8B layer (4 GEMMs, %.1f MB of tiles), %s, µs per layer (read-only kernel on the same bytes: %.1f µs):\n",
         t.format.c_str(), layer_bytes / 1e6, card, read);
  printf("%5s | %8s | %8s %8s | %8s | %7s | %6s %6s\n", "m", "cuBLAS", "best", "picked", "stream", "GB/s", "x best",
         "x pick");
  for (size_t i = 0; i < ms.size(); ++i) {
    double sum[4] = {};
    for (int s = 0; s < kShapes; ++s) {
      sum[0] += blas_us[i][s];
      sum[1] += t.best[i][s];
      sum[2] += t.picked[i][s];
      sum[3] += t.stream_only[i][s];
    }
    const double gbps = layer_bytes / (sum[2] * 1e3);
    printf("%5d | %8.1f | %8.1f %8.1f | %8.1f | %7.0f | %6.2f %6.2f\n", ms[i], sum[0], sum[1], sum[2], sum[3], gbps,
           sum[0] / sum[1], sum[0] / sum[2]);
    json.record(
        "{\"kind\":\"layer\",\"format\":\"%s\",\"card\":\"%s\",\"m\":%d,\"cublas_us\":%.3f,\"best_us\":%.3f,"
        "\"picked_us\":%.3f,\"stream_only_us\":%.3f,\"read_only_us\":%.3f,\"layer_bytes\":%.0f,\"weight_gbps\":%.1f,"
        "\"speedup_best\":%.3f,\"speedup_picked\":%.3f}",
        t.format.c_str(), card, ms[i], sum[0], sum[1], sum[2], sum[3], read, layer_bytes, gbps, sum[0] / sum[1],
        sum[0] / sum[2]);
  }
}

static double copy_bandwidth() {
  const size_t bytes = size_t(1) << 30;
  void *x = nullptr, *y = nullptr;
  CK(cudaMalloc(&x, bytes));
  CK(cudaMalloc(&y, bytes));
  CK(cudaMemset(x, 1, bytes));
  const double us =
      time_graph(stream, 4, 10, [&](int) { CK(cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice, stream)); });
  cudaFree(x);
  cudaFree(y);
  return 2.0 * bytes / (us * 1e-6) / 1e12;
}

// Launch floor of a graph of kernels, with and without programmatic dependent launch.
static void time_empty_kernel() {
  for (bool pdl : {false, true}) {
    const double us = time_graph(stream, 48, 10, [&](int) {
      CK(marlin::cuda::launch_overlapping(pdl, empty_kernel, dim3(sms), dim3(128), 0, stream));
    });
    printf("empty kernel in a graph%s: %.2f µs per launch\n", pdl ? " (PDL)" : "", us);
    json.record("{\"kind\":\"empty_kernel\",\"pdl\":%s,\"us\":%.3f}", pdl ? "true" : "false", us);
  }
}

// ---------------------------------------------------------------------------------------------

static std::vector<std::string> split_list(const char* s) {
  std::vector<std::string> out;
  std::string cur;
  for (const char* c = s;; ++c) {
    if (*c == ',' || *c == 0) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
      if (*c == 0) break;
    } else {
      cur += *c;
    }
  }
  return out;
}

// The SmolLM2-135M shapes (k, n): q/o, k/v, gate/up, down, lm_head — K = 576 is not a multiple of
// 128 (padded tiles), N = 576 and 192 are not multiples of 128 (GEMV only).
static const std::vector<std::pair<int, int>> kSmallModel = {{576, 576}, {576, 192}, {576, 1536}, {1536, 576}};

static void run_checks(bool smoke) {
  Rng rng{42};
  if (smoke) {
    check_reference_small("int4-g32-asym");
    check_format("int4-g128", {{384, 512}}, {1, 17}, rng);
    check_format("int4-g32-asym", {{384, 256}}, {3}, rng);
    check_format("int8-g128", {{384, 256}}, {1, 17}, rng);
    check_format("fp8-pc", {{576, 192}}, {3, 20}, rng);
    check_format("nvfp4", {{384, 256}}, {1, 17}, rng);
    check_format("int3-g128-asym", {{576, 192}}, {3}, rng);
    check_format("int2-g64", {{384, 256}}, {1, 17}, rng);
    return;
  }
  for (const char* f : {"int4-g32-asym", "int8-g64", "fp8-pc", "fp4-g32", "mxfp4", "nvfp4", "int3-g128-asym", "int2-g64"})
    check_reference_small(f);
  const std::vector<int> ms = {1, 3, 16, 17, 64, 130};
  check_format("int4-g128", {{384, 512}, {4096, 4096}, {14336, 4096}, {4096, 28672}, {640, 384}}, ms, rng);
  check_format("int4-g128", kSmallModel, {1, 5, 16, 40}, rng);
  for (const char* f : {"int4-g64", "int4-g32", "int4-g128-asym", "int4-g64-asym", "int4-g32-asym", "int4-pc"})
    check_format(f, {{384, 256}, {576, 192}}, {1, 17, 130}, rng);
  for (const char* f : {"int8-pc", "int8-g128", "fp8-pc"})
    check_format(f, {{384, 256}, {4096, 4096}, {14336, 4096}, {576, 576}, {1536, 576}}, {1, 3, 16, 17, 130}, rng);
  for (const char* f : {"int8-g64", "int8-g32", "fp8-g128"}) check_format(f, {{384, 256}, {576, 192}}, {1, 17, 130}, rng);
  // fp4 family, int3, int2: the formats with every kernel on real layer shapes, all of them small.
  for (const char* f : {"nvfp4", "mxfp4", "fp4-g128", "int3-g128", "int3-g128-asym", "int2-g64-asym", "int2-g128"})
    check_format(f, {{4096, 4096}, {14336, 4096}, {576, 576}}, {1, 3, 16, 17, 130}, rng);
  for (const char* f : {"fp4-g64", "fp4-g32", "fp4-pc", "int3-g64", "int3-g32-asym", "int3-pc", "int2-g64",
                        "int2-g128-asym", "int2-g32", "int2-pc-asym"})
    check_format(f, {{384, 256}, {576, 192}}, {1, 17, 130}, rng);
  printf("correctness: %s\n", failures ? "FAILURES" : "all ok");
}

int main(int argc, char** argv) {
  const char* json_path = nullptr;
  bool skip_check = false, skip_time = false, smoke = false;
  std::vector<std::string> formats = {"int4-g128", "int8-pc", "int8-g128", "fp8-pc", "nvfp4",        "mxfp4",
                                      "fp4-g128",  "int3-g128", "int2-g64-asym", "int2-g128"};
  std::vector<int> ms = {1, 2, 4, 8, 16, 32, 64, 128, 256, 1024};
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--json") && i + 1 < argc)
      json_path = argv[++i];
    else if (!strcmp(argv[i], "--formats") && i + 1 < argc)
      formats = split_list(argv[++i]);
    else if (!strcmp(argv[i], "--ms") && i + 1 < argc) {
      ms.clear();
      for (const auto& s : split_list(argv[++i])) ms.push_back(std::max(1, atoi(s.c_str())));
    } else if (!strcmp(argv[i], "--skip-check"))
      skip_check = true;
    else if (!strcmp(argv[i], "--skip-time"))
      skip_time = true;
    else if (!strcmp(argv[i], "--smoke"))
      smoke = true;
    else if (!strcmp(argv[i], "--no-wgmma"))
      no_wgmma = true;
    else if (!strcmp(argv[i], "--sweep"))
      sweep = true;
    else {
      fprintf(stderr,
              "usage: %s [--json FILE] [--formats F1,F2] [--ms M1,M2] [--skip-check] [--skip-time] [--smoke] "
              "[--no-wgmma] [--sweep]\n",
              argv[0]);
      return 2;
    }
  }
  if (json_path) json.open(json_path);
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  sms = prop.multiProcessorCount;
  printf("device: %s, %d SMs, L2 %.0f MB, %zu KB shared per block (opt-in)\n", prop.name, sms, prop.l2CacheSize / 1e6,
         prop.sharedMemPerBlockOptin / 1024);
  json.record("{\"kind\":\"device\",\"name\":\"%s\",\"sms\":%d,\"l2_bytes\":%d}", prop.name, sms, prop.l2CacheSize);
  CK(cudaStreamCreate(&stream));
  CB(cublasCreate(&blas));
  void* blas_ws = nullptr;
  CK(cudaMalloc(&blas_ws, 64 << 20));
  CB(cublasSetWorkspace(blas, blas_ws, 64 << 20));
  CB(cublasSetStream(blas, stream));
  workspace.reserve(28672, 1024);

  try {
    if (smoke || !skip_check) run_checks(smoke);
    if (!smoke && !skip_time) {
      const double copy_tbps = copy_bandwidth();
      printf("device-to-device copy (cudaMemcpyAsync): %.2f TB/s (read + write)\n", copy_tbps);
      json.record("{\"kind\":\"copy\",\"tbps\":%.3f}", copy_tbps);
      uint32_t* sink = nullptr;
      CK(cudaMalloc(&sink, 4));
      {
        const size_t bytes = size_t(1) << 30;
        std::vector<uint8_t*> big(1);
        CK(cudaMalloc(&big[0], bytes));
        CK(cudaMemset(big[0], 1, bytes));
        const double us = time_read(big, bytes, sink);
        printf("read-only kernel, 1 GiB: %.2f TB/s\n", bytes / (us * 1e-6) / 1e12);
        json.record("{\"kind\":\"read\",\"bytes\":%zu,\"tbps\":%.3f}", bytes, bytes / (us * 1e-6) / 1e12);
        cudaFree(big[0]);
      }
      time_empty_kernel();
      const int reps = 7;
      const double l2 = double(prop.l2CacheSize);
      const auto blas_us = time_cublas(ms, l2, reps);
      for (const std::string& f : formats) {
        const FormatTimes t = time_format(f, ms, blas_us, l2, reps, sink);
        print_format(t, ms, blas_us, prop.name);
      }
    }
  } catch (const std::exception& e) {
    fprintf(stderr, "error: %s\n", e.what());
    failures++;
  }
  json.close();
  printf("%s\n", failures ? "FAILED" : "OK");
  return failures ? 1 : 0;
}
