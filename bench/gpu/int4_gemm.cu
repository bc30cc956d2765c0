// int4 × fp16 GEMM scratchpad (in the spirit of llm.c's dev/cuda): a reference, the kernel
// variants of backend/cuda/int4_gemm_kernels.cu, a correctness sweep over awkward sizes and every
// weight format, and timings against cuBLAS FP16 and the copy bandwidth measured in the same run.
//
//   v0  reference: fp32 on the GPU, straight from the planar format (one block per weight row and
//       8 tokens), checked against fp64 on the CPU at small sizes.
//   v1+ the fused kernel, one entry per compiled variant: R = 64-row tiles per block, FN = 16-row
//       strips per consumer warp, FM = 8-token fragments per pass, g = group size, a = asymmetric.
//
// Timing: CUDA graph of many launches cycling through enough copies of the weights to exceed the
// L2 several times; median over replays. cuBLAS: cublasGemmEx fp16 in/out, fp32 compute, on the
// dequantized weights (same m, k, n). Bytes: the int4 tile stream (codes + scales) per launch.
//
// Build: bench/gpu/build.sh OUT_DIR. Run: int4_gemm [--json FILE] [--quick] [--skip-check] [--smoke]
// [--no-wgmma] (--smoke: a few small checks only, for compute-sanitizer; --no-wgmma: without the
// wgmma variants).
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdarg>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "backend/cuda/int4_gemm.h"
#include "backend/cuda/int4_gemm_kernels.h"
#include "backend/int4_tiles.h"
#include "core/half.h"

using namespace marlin;
using marlin::cuda::int4_detail::KernelConfig;

#define CK(x) check_cuda((x), #x, __LINE__)
static void check_cuda(cudaError_t e, const char* what, int line) {
  if (e != cudaSuccess) {
    fprintf(stderr, "CUDA error %s at line %d: %s\n", cudaGetErrorString(e), line, what);
    exit(1);
  }
}
#define CB(x) check_cublas((x), #x, __LINE__)
static void check_cublas(cublasStatus_t s, const char* what, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    fprintf(stderr, "cuBLAS error %d at line %d: %s\n", int(s), line, what);
    exit(1);
  }
}

// ---------------------------------------------------------------------------------------------
// Random planar int4 weights (host) and their device copies.

struct Rng {
  uint64_t s;
  uint64_t next() {
    s += 0x9e3779b97f4a7c15ull;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  float uniform() { return float(next() >> 40) / float(1 << 24); }
};

struct Planar {
  TensorFormat format;
  int64_t n = 0, k = 0;
  std::vector<uint8_t> codes, zeros;
  std::vector<uint16_t> scales;
  int64_t groups() const { return format.groups(k); }
  QuantTensor view() const {
    QuantTensor t;
    t.format = format;
    t.rows = n;
    t.cols = k;
    t.codes = codes.data();
    t.code_row_bytes = uint64_t(k / 2);
    t.scales = reinterpret_cast<const uint8_t*>(scales.data());
    t.zeros = format.asymmetric ? zeros.data() : nullptr;
    return t;
  }
};

static Planar random_planar(const std::string& format, int64_t n, int64_t k, Rng& rng) {
  Planar p;
  p.format = TensorFormat::parse(format);
  p.n = n;
  p.k = k;
  p.codes.resize(size_t(n * k / 2));
  for (size_t i = 0; i < p.codes.size(); i += 8) {
    const uint64_t r = rng.next();
    for (size_t j = 0; j < 8 && i + j < p.codes.size(); ++j) p.codes[i + j] = uint8_t(r >> (8 * j));
  }
  const int64_t entries = n * p.groups();
  p.scales.resize(size_t(entries));
  for (auto& s : p.scales) s = fp32_to_fp16((0.5f + rng.uniform()) * 0.02f);
  if (p.format.asymmetric) {
    p.zeros.resize(size_t(entries));
    for (auto& z : p.zeros) z = uint8_t(rng.next() & 15);
  }
  return p;
}

template <typename T>
static T* to_device(const std::vector<T>& v) {
  T* d = nullptr;
  CK(cudaMalloc(&d, std::max<size_t>(v.size(), 1) * sizeof(T)));
  if (!v.empty()) CK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// Device pointers to planar weights, as the reference kernels take them (trivially copyable).
struct PlanarView {
  const uint8_t* codes = nullptr;
  const __half* scales = nullptr;
  const uint8_t* zeros = nullptr;  // null: symmetric (z = 8)
  int group = 0;                   // 0: per channel
  int groups = 0;
};

// Owns the device copy of planar weights.
class DevicePlanar {
 public:
  explicit DevicePlanar(const Planar& p)
      : codes_(to_device(p.codes)),
        scales_(to_device(p.scales)),
        zeros_(p.format.asymmetric ? to_device(p.zeros) : nullptr),
        group_(p.format.group_size),
        groups_(int(p.groups())) {}
  ~DevicePlanar() {
    cudaFree(codes_);
    cudaFree(scales_);
    cudaFree(zeros_);
  }
  DevicePlanar(const DevicePlanar&) = delete;
  DevicePlanar& operator=(const DevicePlanar&) = delete;
  PlanarView view() const { return {codes_, reinterpret_cast<const __half*>(scales_), zeros_, group_, groups_}; }

 private:
  uint8_t* codes_;
  uint16_t* scales_;
  uint8_t* zeros_;
  int group_, groups_;
};

// ---------------------------------------------------------------------------------------------
// v0: reference kernels.

__device__ float planar_weight(const PlanarView& w, int k, int row, int col) {
  const uint8_t byte = w.codes[int64_t(row) * (k / 2) + col / 2];
  const int q = (col & 1) ? byte >> 4 : byte & 15;
  const int g = w.group ? col / w.group : 0;
  const float s = __half2float(w.scales[int64_t(row) * w.groups + g]);
  const int z = w.zeros ? w.zeros[int64_t(row) * w.groups + g] : 8;
  return s * float(q - z);
}

// One block per (weight row, 8 tokens); 128 threads stride over k; fp32 throughout.
__global__ void reference_gemm(PlanarView w, const __half* a, float* c, int m, int n, int k) {
  __shared__ float partial[8][128];
  const int row = blockIdx.x, tok0 = blockIdx.y * 8;
  float acc[8] = {};
  for (int col = threadIdx.x; col < k; col += 128) {
    const float x = planar_weight(w, k, row, col);
    for (int j = 0; j < 8; ++j)
      if (tok0 + j < m) acc[j] += x * __half2float(a[int64_t(tok0 + j) * k + col]);
  }
  for (int j = 0; j < 8; ++j) partial[j][threadIdx.x] = acc[j];
  __syncthreads();
  if (threadIdx.x < 8 && tok0 + threadIdx.x < m) {
    float s = 0.0f;
    for (int i = 0; i < 128; ++i) s += partial[threadIdx.x][i];
    c[int64_t(tok0 + threadIdx.x) * n + row] = s;
  }
}

__global__ void dequantize_to_fp16(PlanarView w, __half* out, int n, int k) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= int64_t(n) * k) return;
  out[i] = __float2half_rn(planar_weight(w, k, int(i / k), int(i % k)));
}

__global__ void random_fp16(__half* x, int64_t count, uint64_t seed) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  uint64_t z = seed + uint64_t(i) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  // Sum of 4 uniforms: roughly normal, mean 0, variance 1/3 · 4 / 4.
  float s = 0.0f;
  for (int j = 0; j < 4; ++j) s += float((z >> (16 * j)) & 0xffff) / 65536.0f - 0.5f;
  x[i] = __float2half_rn(s * 1.7f);
}

static void run_reference(const DevicePlanar& w, const __half* a, float* c, int m, int n, int k) {
  reference_gemm<<<dim3(n, (m + 7) / 8), 128>>>(w.view(), a, c, m, n, k);
  CK(cudaGetLastError());
}

// cuBLAS: C (m × n, row-major) = A (m × k) · W16ᵀ (W16 n × k row-major) as column-major
// Cᵀ = W16ᵀᵀ... i.e. (n × m) = (k × n)ᵀ · (k × m).
static void run_cublas(cublasHandle_t h, const __half* w16, const __half* a, __half* c, int m, int n, int k) {
  const float one = 1.0f, zero = 0.0f;
  CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w16, CUDA_R_16F, k, a, CUDA_R_16F, k, &zero, c,
                  CUDA_R_16F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// ---------------------------------------------------------------------------------------------
// Error and timing helpers.

// ‖out − ref‖ / ‖ref‖ in fp64 (NaN if any output is NaN).
static double rel_error(const __half* d_out, const float* d_ref, int64_t count) {
  std::vector<uint16_t> out(static_cast<size_t>(count));
  std::vector<float> ref(static_cast<size_t>(count));
  CK(cudaMemcpy(out.data(), d_out, count * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(ref.data(), d_ref, count * 4, cudaMemcpyDeviceToHost));
  double num = 0.0, den = 0.0;
  for (int64_t i = 0; i < count; ++i) {
    const double o = fp16_to_fp32(out[size_t(i)]), r = ref[size_t(i)];
    if (std::isnan(o)) return NAN;
    num += (o - r) * (o - r);
    den += r * r;
  }
  return std::sqrt(num / den);
}

static bool same_bits(const __half* x, const __half* y, int64_t count) {
  std::vector<uint16_t> a(static_cast<size_t>(count)), b(static_cast<size_t>(count));
  CK(cudaMemcpy(a.data(), x, count * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(b.data(), y, count * 2, cudaMemcpyDeviceToHost));
  return a == b;
}

// Median time of one launch (µs): a graph of `launches` calls launch(i) is replayed `reps` times.
static double time_graph(cudaStream_t stream, int launches, int reps, const std::function<void(int)>& launch) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  for (int i = 0; i < launches; ++i) launch(i);
  CK(cudaStreamEndCapture(stream, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t start, stop;
  CK(cudaEventCreate(&start));
  CK(cudaEventCreate(&stop));
  for (int i = 0; i < 2; ++i) CK(cudaGraphLaunch(exec, stream));
  std::vector<double> us;
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(start, stream));
    CK(cudaGraphLaunch(exec, stream));
    CK(cudaEventRecord(stop, stream));
    CK(cudaEventSynchronize(stop));
    float ms = 0.0f;
    CK(cudaEventElapsedTime(&ms, start, stop));
    us.push_back(1000.0 * ms / launches);
  }
  CK(cudaGetLastError());
  CK(cudaEventDestroy(start));
  CK(cudaEventDestroy(stop));
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(graph));
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

static std::string variant_name(const KernelConfig& c) {
  static const char* const kPaths[] = {"stream", "mma", "wgmma"};
  char buf[96];
  snprintf(buf, sizeof buf, "%s-R%d-FN%d-FM%d-g%d%s", kPaths[c.path], c.row_tiles, c.frags_n, c.frags_m,
           128 / c.groups_per_tile, c.asymmetric ? "-asym" : "");
  return buf;
}

// ---------------------------------------------------------------------------------------------

struct Json {
  FILE* f = nullptr;
  bool first = true;
  void open(const char* path) {
    f = fopen(path, "w");
    if (!f) {
      fprintf(stderr, "cannot write %s\n", path);
      exit(1);
    }
    fprintf(f, "[\n");
  }
  void record(const char* fmt, ...) __attribute__((format(printf, 2, 3))) {
    if (!f) return;
    va_list args;
    va_start(args, fmt);
    fprintf(f, first ? "  " : ",\n  ");
    vfprintf(f, fmt, args);
    va_end(args);
    first = false;
  }
  void close() {
    if (f) fprintf(f, "\n]\n"), fclose(f);
  }
};

static Json json;
static int failures = 0;
static bool no_wgmma = false;  // --no-wgmma: leave the wgmma variants out (to salvage a run)
static cublasHandle_t blas;
static cudaStream_t stream;
static cuda::Int4GemmWorkspace workspace;

static std::vector<int> variants_for_format(const Int4TileShape& s) {
  int count = 0;
  const KernelConfig* configs = cuda::int4_detail::kernel_configs(&count);
  std::vector<int> out;
  for (int i = 0; i < count; ++i)
    if (configs[i].path != cuda::int4_detail::kPathStream && !(no_wgmma && configs[i].path == cuda::int4_detail::kPathWgmma) &&
        configs[i].groups_per_tile == s.groups_per_tile && configs[i].asymmetric == s.asymmetric &&
        s.rows % configs[i].block_rows() == 0)
      out.push_back(i);
  return out;
}

static std::string gemv_name(const cuda::int4_detail::GemvConfig& c) {
  char buf[96];
  snprintf(buf, sizeof buf, "gemv-W%d-S%d-FM%d-g%d%s", c.warps, c.strips_per_warp, c.frags_m, 128 / c.groups_per_tile,
           c.asymmetric ? "-asym" : "");
  return buf;
}

// Few-token variants for the format that take m tokens.
static std::vector<int> gemv_variants_for_format(const Int4TileShape& s, int m) {
  int count = 0;
  const cuda::int4_detail::GemvConfig* configs = cuda::int4_detail::gemv_configs(&count);
  std::vector<int> out;
  for (int i = 0; i < count; ++i)
    if (configs[i].groups_per_tile == s.groups_per_tile && configs[i].asymmetric == s.asymmetric &&
        m <= 8 * configs[i].frags_m)
      out.push_back(i);
  return out;
}

// fp64 CPU product of the planar weights and fp16 activations, against the v0 reference.
static void check_reference_small() {
  Rng rng{7};
  const int m = 3, n = 128, k = 384;
  const Planar p = random_planar("int4-g32-asym", n, k, rng);
  DevicePlanar dp(p);
  __half* a = nullptr;
  float* c = nullptr;
  CK(cudaMalloc(&a, m * k * 2));
  CK(cudaMalloc(&c, m * n * 4));
  random_fp16<<<(m * k + 255) / 256, 256>>>(a, m * k, 11);
  run_reference(dp, a, c, m, n, k);
  std::vector<uint16_t> ha(m * k);
  std::vector<float> hc(m * n);
  CK(cudaMemcpy(ha.data(), a, m * k * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hc.data(), c, m * n * 4, cudaMemcpyDeviceToHost));
  double num = 0, den = 0;
  for (int t = 0; t < m; ++t)
    for (int r = 0; r < n; ++r) {
      double s = 0;
      for (int col = 0; col < k; ++col) {
        const int q = (p.codes[r * k / 2 + col / 2] >> (4 * (col & 1))) & 15;
        const int64_t e = r * p.groups() + col / 32;
        s += double(fp16_to_fp32(p.scales[e])) * (q - p.zeros[e]) * fp16_to_fp32(ha[t * k + col]);
      }
      num += (s - hc[t * n + r]) * (s - hc[t * n + r]);
      den += s * s;
    }
  const double err = std::sqrt(num / den);
  const bool ok = err < 1e-5;
  failures += !ok;
  printf("reference v0 vs fp64 CPU (m %d n %d k %d int4-g32-asym): rel err %.2e %s\n", m, n, k, err,
         ok ? "ok" : "FAIL");
  json.record("{\"kind\":\"reference_check\",\"rel_err\":%.3e,\"ok\":%s}", err, ok ? "true" : "false");
  cudaFree(a);
  cudaFree(c);
}

// Every variant of the format against v0 at awkward m, with poisoned outputs; tolerance: twice the
// error of cuBLAS FP16 on the fp16-rounded weights (same precision class), and a bitwise rerun.
static void check_format(const std::string& format, const std::vector<std::pair<int, int>>& shapes,
                         const std::vector<int>& ms, Rng& rng) {
  for (auto [k, n] : shapes) {
    const Planar p = random_planar(format, n, k, rng);
    DevicePlanar dp(p);
    cuda::Int4DeviceWeights tiles(p.view());
    const cuda::Int4Weights w = tiles.view();
    __half* w16 = nullptr;
    CK(cudaMalloc(&w16, size_t(n) * k * 2));
    dequantize_to_fp16<<<int((int64_t(n) * k + 255) / 256), 256>>>(dp.view(), w16, n, k);
    CK(cudaGetLastError());
    for (int m : ms) {
      __half *a = nullptr, *c = nullptr, *c2 = nullptr;
      float* ref = nullptr;
      CK(cudaMalloc(&a, size_t(m) * k * 2));
      CK(cudaMalloc(&c, size_t(m) * n * 2));
      CK(cudaMalloc(&c2, size_t(m) * n * 2));
      CK(cudaMalloc(&ref, size_t(m) * n * 4));
      random_fp16<<<int((int64_t(m) * k + 255) / 256), 256>>>(a, int64_t(m) * k, rng.next());
      run_reference(dp, a, ref, m, n, k);
      CK(cudaMemset(c, 0xff, size_t(m) * n * 2));
      CB(cublasSetStream(blas, stream));
      run_cublas(blas, w16, a, c, m, n, k);
      CK(cudaStreamSynchronize(stream));
      const double blas_err = rel_error(c, ref, int64_t(m) * n);
      const double tol = 2.0 * blas_err;
      // Striped-kernel variants at two pipeline depths, then the few-token variants that take m.
      std::vector<std::pair<std::string, cuda::Int4GemmTuning>> runs;
      for (int v : variants_for_format(w.shape)) {
        int count = 0;
        const KernelConfig& cfg = cuda::int4_detail::kernel_configs(&count)[v];
        for (int stages : {0, 2}) runs.push_back({variant_name(cfg), {v, -1, stages, true}});
      }
      for (int v : gemv_variants_for_format(w.shape, m)) {
        int count = 0;
        runs.push_back({gemv_name(cuda::int4_detail::gemv_configs(&count)[v]), {-1, v, 0, true}});
      }
      for (const auto& [name, tuning] : runs) {
        const int stages = tuning.stages;
        {
          CK(cudaMemset(c, 0xff, size_t(m) * n * 2));
          CK(cudaMemset(c2, 0xff, size_t(m) * n * 2));
          cuda::int4_gemm(w, a, c, m, workspace, stream, tuning);
          cuda::int4_gemm(w, a, c2, m, workspace, stream, tuning);
          CK(cudaStreamSynchronize(stream));
          const double err = rel_error(c, ref, int64_t(m) * n);
          const bool same = same_bits(c, c2, int64_t(m) * n);
          const bool ok = err <= tol && same;
          failures += !ok;
          if (!ok || &name == &runs.front().first)
            printf("check %-16s k %5d n %5d m %4d %-26s stages %2d: err %.2e (cuBLAS %.2e) %s%s\n", format.c_str(),
                   k, n, m, name.c_str(), stages, err, blas_err, ok ? "ok" : "FAIL", same ? "" : " (reruns differ)");
          json.record(
              "{\"kind\":\"check\",\"format\":\"%s\",\"k\":%d,\"n\":%d,\"m\":%d,\"variant\":\"%s\",\"stages\":%d,"
              "\"rel_err\":%.3e,\"cublas_rel_err\":%.3e,\"deterministic\":%s,\"ok\":%s}",
              format.c_str(), k, n, m, name.c_str(), stages, err, blas_err, same ? "true" : "false",
              ok ? "true" : "false");
        }
      }
      cudaFree(a);
      cudaFree(c);
      cudaFree(c2);
      cudaFree(ref);
    }
    cudaFree(w16);
  }
}

static double copy_bandwidth() {
  const size_t bytes = size_t(1) << 30;
  void *x = nullptr, *y = nullptr;
  CK(cudaMalloc(&x, bytes));
  CK(cudaMalloc(&y, bytes));
  CK(cudaMemset(x, 1, bytes));
  const double us = time_graph(stream, 4, 10, [&](int) { CK(cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice, stream)); });
  cudaFree(x);
  cudaFree(y);
  return 2.0 * bytes / (us * 1e-6) / 1e12;
}

struct Shape {
  int k, n;
};
static const Shape kLayer[] = {{4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}};

struct LayerTimes {
  double blas[4] = {}, best[4] = {}, best_serial[4] = {}, picked[4] = {}, stream_only[4] = {}, read[4] = {};
  std::string best_name[4];
};

// A kernel that only reads `bytes` (16-byte loads, grid-stride) and keeps the sum: the best time
// any kernel can stream that much in.
__global__ void read_only(const uint4* x, int64_t count, uint32_t* sink) {
  uint32_t acc = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
    const uint4 v = __ldcs(x + i);
    acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) *sink = acc;  // keeps the loads; practically never true
}

__global__ void empty_kernel() {}

static double time_read(const std::vector<uint8_t*>& bufs, size_t bytes, uint32_t* sink, int sms) {
  const int copies = int(bufs.size());
  const int launches = std::max(copies, 24) / copies * copies;
  return time_graph(stream, launches, 10, [&](int i) {
    read_only<<<sms * 4, 512, 0, stream>>>(reinterpret_cast<const uint4*>(bufs[size_t(i % copies)]),
                                            int64_t(bytes / 16), sink);
  });
}

// Times cuBLAS, the g128 variants that suit m (stage depths and PDL on/off for the small-m ones),
// the library's pick, the stream-only diagnostic and a read-only kernel, for each layer shape.
static void time_layer(int m, bool quick, double l2_bytes, int sms, uint32_t* sink, LayerTimes& out) {
  Rng rng{uint64_t(1000 + m)};
  int count = 0;
  const KernelConfig* configs = cuda::int4_detail::kernel_configs(&count);
  for (int si = 0; si < 4; ++si) {
    const int k = kLayer[si].k, n = kLayer[si].n;
    const Planar p = random_planar("int4-g128", n, k, rng);
    const Int4TileShape shape = int4_tile_shape(p.format, n, k);
    const std::vector<uint8_t> packed = pack_int4_tiles(p.view());
    const int copies = int(std::ceil(3.0 * l2_bytes / double(packed.size())));
    const int launches = std::max(copies, 24) / copies * copies;
    std::vector<uint8_t*> tiles(static_cast<size_t>(copies));
    for (auto& t : tiles) {
      CK(cudaMalloc(&t, packed.size()));
      CK(cudaMemcpy(t, packed.data(), packed.size(), cudaMemcpyHostToDevice));
    }
    DevicePlanar dp(p);
    const size_t w16_bytes = size_t(n) * k * 2;
    const int copies16 = int(std::ceil(3.0 * l2_bytes / double(w16_bytes)));
    std::vector<__half*> w16(static_cast<size_t>(copies16));
    for (auto& w : w16) {
      CK(cudaMalloc(&w, w16_bytes));
      dequantize_to_fp16<<<int((int64_t(n) * k + 255) / 256), 256>>>(dp.view(), w, n, k);
    }
    __half *a = nullptr, *c = nullptr;
    CK(cudaMalloc(&a, size_t(m) * k * 2));
    CK(cudaMalloc(&c, size_t(m) * n * 2));
    random_fp16<<<int((int64_t(m) * k + 255) / 256), 256>>>(a, int64_t(m) * k, rng.next());
    workspace.reserve(n, m);
    const int reps = quick ? 5 : 10;
    CB(cublasSetStream(blas, stream));
    const int launches16 = std::max(copies16, 24) / copies16 * copies16;
    out.blas[si] = time_graph(stream, launches16, reps, [&](int i) { run_cublas(blas, w16[i % copies16], a, c, m, n, k); });
    const double wbytes = double(packed.size());
    auto report = [&](const std::string& name, int stages, bool pdl, double us) {
      json.record(
          "{\"kind\":\"time\",\"k\":%d,\"n\":%d,\"m\":%d,\"variant\":\"%s\",\"stages\":%d,\"pdl\":%s,\"us\":%.3f,"
          "\"weight_tbps\":%.3f,\"cublas_us\":%.3f,\"speedup\":%.3f}",
          k, n, m, name.c_str(), stages, pdl ? "true" : "false", us, wbytes / (us * 1e-6) / 1e12, out.blas[si],
          out.blas[si] / us);
    };
    auto time_tuning = [&](const cuda::Int4GemmTuning& tuning) {
      return time_graph(stream, launches, reps, [&](int i) {
        cuda::int4_gemm({tiles[size_t(i % copies)], shape}, a, c, m, workspace, stream, tuning);
      });
    };
    auto time_variant = [&](int v, int stages, bool pdl) { return time_tuning({v, -1, stages, pdl}); };
    report("cublas_fp16", 0, false, out.blas[si]);
    out.best[si] = out.best_serial[si] = 1e30;
    const int chunk_goal = std::min(m, 64);
    for (int v = 0; v < count; ++v) {
      const KernelConfig& cfg = configs[v];
      if (cfg.groups_per_tile != 1 || cfg.asymmetric || n % cfg.block_rows() != 0) continue;
      // Chunks as small as fit m and the next size up (and every chunk of 64+ for m > 64).
      const int chunk = cfg.chunk_tokens();
      if (chunk < chunk_goal || (m <= 64 && chunk > 2 * std::max(chunk_goal, 8))) continue;
      const bool stream_only = cfg.path == cuda::int4_detail::kPathStream;
      if (no_wgmma && cfg.path == cuda::int4_detail::kPathWgmma) continue;
      if (stream_only && m > 16) continue;
      std::vector<std::pair<int, bool>> runs = {{0, true}, {0, false}};  // (stages, pdl); 0: default depth
      if (!quick && (m <= 16 || cfg.path == cuda::int4_detail::kPathWgmma))
        for (int stages : {3, 4, 6}) runs.push_back({stages, true});
      for (auto [stages, pdl] : runs) {
        const double us = time_variant(v, stages, pdl);
        report(variant_name(cfg), stages, pdl, us);
        if (stream_only) {
          if (pdl) out.stream_only[si] = out.stream_only[si] > 0 ? std::min(out.stream_only[si], us) : us;
          continue;
        }
        double& best = pdl ? out.best[si] : out.best_serial[si];
        if (us < best) {
          best = us;
          if (pdl) out.best_name[si] = variant_name(cfg) + "-s" + std::to_string(stages);
        }
      }
    }
    if (m <= 32) {
      int gemv_count = 0;
      const auto* gemv = cuda::int4_detail::gemv_configs(&gemv_count);
      for (int v : gemv_variants_for_format(shape, m)) {
        if (gemv[v].frags_m > 1 && m <= 8 * (gemv[v].frags_m / 2)) continue;  // a smaller one fits
        for (bool pdl : {true, false}) {
          const double us = time_tuning({-1, v, 0, pdl});
          report(gemv_name(gemv[v]), 0, pdl, us);
          double& best = pdl ? out.best[si] : out.best_serial[si];
          if (us < best) {
            best = us;
            if (pdl) out.best_name[si] = gemv_name(gemv[v]);
          }
        }
      }
    }
    const cuda::Int4GemmTuning pick = cuda::int4_gemm_pick(shape, m);
    out.picked[si] = no_wgmma && pick.variant >= 0 && configs[pick.variant].path == cuda::int4_detail::kPathWgmma
                         ? out.best[si]
                         : time_graph(stream, launches, reps, [&](int i) {
                             cuda::int4_gemm({tiles[size_t(i % copies)], shape}, a, c, m, workspace, stream);
                           });
    report("picked", 0, true, out.picked[si]);
    out.read[si] = time_read(tiles, packed.size(), sink, sms);
    report("read_only", 0, false, out.read[si]);
    for (auto t : tiles) cudaFree(t);
    for (auto w : w16) cudaFree(w);
    cudaFree(a);
    cudaFree(c);
  }
}

// Launch floor of a graph of kernels, with and without programmatic dependent launch.
static void time_empty_kernel() {
  for (bool pdl : {false, true}) {
    const double us = time_graph(stream, 48, 10, [&](int) {
      cudaLaunchConfig_t config = {};
      config.gridDim = dim3(132);
      config.blockDim = dim3(128);
      config.stream = stream;
      cudaLaunchAttribute attribute = {};
      attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
      attribute.val.programmaticStreamSerializationAllowed = 1;
      config.attrs = &attribute;
      config.numAttrs = pdl ? 1 : 0;
      CK(cudaLaunchKernelEx(&config, empty_kernel));
    });
    printf("empty kernel in a graph%s: %.2f µs per launch\n", pdl ? " (PDL)" : "", us);
    json.record("{\"kind\":\"empty_kernel\",\"pdl\":%s,\"us\":%.3f}", pdl ? "true" : "false", us);
  }
}

int main(int argc, char** argv) {
  const char* json_path = nullptr;
  bool quick = false, skip_check = false, smoke = false;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--json") && i + 1 < argc)
      json_path = argv[++i];
    else if (!strcmp(argv[i], "--quick"))
      quick = true;
    else if (!strcmp(argv[i], "--skip-check"))
      skip_check = true;
    else if (!strcmp(argv[i], "--smoke"))
      smoke = true;
    else if (!strcmp(argv[i], "--no-wgmma"))
      no_wgmma = true;
    else {
      fprintf(stderr, "usage: %s [--json FILE] [--quick] [--skip-check] [--smoke] [--no-wgmma]\n", argv[0]);
      return 2;
    }
  }
  if (json_path) json.open(json_path);
  cudaDeviceProp prop{};
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s, %d SMs, L2 %.0f MB, %zu KB shared per block (opt-in)\n", prop.name, prop.multiProcessorCount,
         prop.l2CacheSize / 1e6, prop.sharedMemPerBlockOptin / 1024);
  json.record("{\"kind\":\"device\",\"name\":\"%s\",\"sms\":%d,\"l2_bytes\":%d}", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize);
  CK(cudaStreamCreate(&stream));
  CB(cublasCreate(&blas));
  void* blas_ws = nullptr;
  CK(cudaMalloc(&blas_ws, 64 << 20));
  CB(cublasSetWorkspace(blas, blas_ws, 64 << 20));
  CB(cublasSetStream(blas, stream));
  workspace.reserve(28672, 1024);

  try {
    if (smoke) {  // a few small checks, e.g. under compute-sanitizer
      check_reference_small();
      Rng rng{5};
      check_format("int4-g128", {{384, 512}}, {1, 17}, rng);
      check_format("int4-g32-asym", {{384, 256}}, {3}, rng);
      printf("%s\n", failures ? "FAILED" : "OK");
      return failures ? 1 : 0;
    }
    if (!skip_check) {
      check_reference_small();
      Rng rng{42};
      const std::vector<int> ms = {1, 3, 16, 17, 64, 130};
      check_format("int4-g128", {{128, 256}, {384, 512}, {1152, 768}, {4096, 4096}, {4096, 6144}, {14336, 4096}, {4096, 28672}}, ms, rng);
      check_format("int4-g128", {{256, 128}, {640, 384}}, ms, rng);
      for (const char* f : {"int4-g64", "int4-g32", "int4-g128-asym", "int4-g32-asym", "int4-pc"})
        check_format(f, {{384, 256}, {4096, 4096}}, {1, 17, 130}, rng);
      printf("correctness: %s\n", failures ? "FAILURES" : "all ok");
    }

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
      const double us = time_read(big, bytes, sink, prop.multiProcessorCount);
      printf("read-only kernel, 1 GiB: %.2f TB/s\n", bytes / (us * 1e-6) / 1e12);
      json.record("{\"kind\":\"read\",\"bytes\":%zu,\"tbps\":%.3f}", bytes, bytes / (us * 1e-6) / 1e12);
      cudaFree(big[0]);
    }
    time_empty_kernel();

    const std::vector<int> ms = quick ? std::vector<int>{1, 16, 64, 256} : std::vector<int>{1, 4, 8, 16, 32, 64, 128, 256, 1024};
    std::vector<LayerTimes> all(ms.size());
    for (size_t i = 0; i < ms.size(); ++i)
      time_layer(ms[i], quick, double(prop.l2CacheSize), prop.multiProcessorCount, sink, all[i]);

    double layer_bytes = 0;
    for (const Shape& s : kLayer) layer_bytes += double(int4_tile_shape(TensorFormat::parse("int4-g128"), s.n, s.k).total_bytes());
    printf("\nbest variant per GEMM (k4096 n6144 | k4096 n4096 | k4096 n28672 | k14336 n4096), PDL on:\n");
    for (size_t i = 0; i < ms.size(); ++i)
      printf("  m %4d: %s | %s | %s | %s\n", ms[i], all[i].best_name[0].c_str(), all[i].best_name[1].c_str(),
             all[i].best_name[2].c_str(), all[i].best_name[3].c_str());
    printf("\nLlama-3.1-8B layer (4 GEMMs, int4-g128 %.1f MB), %s, µs per layer:\n", layer_bytes / 1e6, prop.name);
    printf("%5s | %8s | %8s %8s %8s | %8s %8s | %6s %6s %6s\n", "m", "cuBLAS", "best", "no-PDL", "picked", "stream", "read",
           "TB/s", "x", "x-noPDL");
    for (size_t i = 0; i < ms.size(); ++i) {
      const LayerTimes& t = all[i];
      double sum[6] = {};
      for (int s = 0; s < 4; ++s) {
        sum[0] += t.blas[s];
        sum[1] += t.best[s];
        sum[2] += t.best_serial[s];
        sum[3] += t.picked[s];
        sum[4] += t.stream_only[s];
        sum[5] += t.read[s];
      }
      printf("%5d | %8.1f | %8.1f %8.1f %8.1f | %8.1f %8.1f | %6.2f %6.2f %6.2f\n", ms[i], sum[0], sum[1], sum[2], sum[3],
             sum[4], sum[5], layer_bytes / (sum[1] * 1e-6) / 1e12, sum[0] / sum[1], sum[0] / sum[2]);
      json.record(
          "{\"kind\":\"layer\",\"m\":%d,\"cublas_us\":%.3f,\"best_us\":%.3f,\"best_no_pdl_us\":%.3f,\"picked_us\":%.3f,"
          "\"stream_only_us\":%.3f,\"read_only_us\":%.3f,\"weight_tbps\":%.3f,\"speedup_best\":%.3f,"
          "\"speedup_no_pdl\":%.3f,\"speedup_picked\":%.3f}",
          ms[i], sum[0], sum[1], sum[2], sum[3], sum[4], sum[5], layer_bytes / (sum[1] * 1e-6) / 1e12, sum[0] / sum[1],
          sum[0] / sum[2], sum[0] / sum[3]);
    }
  } catch (const std::exception& e) {
    fprintf(stderr, "error: %s\n", e.what());
    failures++;
  }
  json.close();
  printf("%s\n", failures ? "FAILED" : "OK");
  return failures ? 1 : 0;
}
