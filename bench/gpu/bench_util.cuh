// Shared pieces of the weight-tile GEMM scratchpad (tiled_gemm.cu): random planar weights of any
// tile codec, the v0 reference kernels, cuBLAS, error measures, graph timing and JSON output.
#pragma once

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/half.h"
#include "quant/format.h"

#define CK(x) bench::check_cuda((x), #x, __LINE__)
#define CB(x) bench::check_cublas((x), #x, __LINE__)

namespace bench {

using namespace marlin;

inline void check_cuda(cudaError_t e, const char* what, int line) {
  if (e != cudaSuccess) {
    fprintf(stderr, "CUDA error %s at line %d: %s\n", cudaGetErrorString(e), line, what);
    exit(1);
  }
}

inline void check_cublas(cublasStatus_t s, const char* what, int line) {
  if (s != CUBLAS_STATUS_SUCCESS) {
    fprintf(stderr, "cuBLAS error %d at line %d: %s\n", int(s), line, what);
    exit(1);
  }
}

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

// Planar weights (quant/format.h) on the host, of any format a tile codec takes.
struct Planar {
  TensorFormat format;
  int64_t n = 0, k = 0;
  std::vector<uint8_t> codes, zeros;
  std::vector<uint8_t> scales;  // n × groups entries of the format's scale type
  float tensor_scale = 1.0f;    // nvfp4
  int bits() const { return format_info(format.kind).code_bits; }
  int64_t row_bytes() const { return int64_t(format.min_code_row_bytes(k)); }
  int64_t groups() const { return format.groups(k); }
  QuantTensor view() const {
    QuantTensor t;
    t.format = format;
    t.rows = n;
    t.cols = k;
    t.codes = codes.data();
    t.code_row_bytes = uint64_t(row_bytes());
    t.scales = scales.data();
    t.zeros = format.asymmetric ? zeros.data() : nullptr;
    t.tensor_scale = tensor_scale;
    return t;
  }
};

// Random codes (no fp8 NaN codes) and scales chosen so every format's weights are of the same
// magnitude (|w| ≲ 0.2): fp16 scales from `unit`, mxfp4 exponents 2^-6 or 2^-5, nvfp4 E4M3 scales
// 8 .. 120 times a tensor scale of 2.7e-4.
inline Planar random_planar(const std::string& format, int64_t n, int64_t k, Rng& rng) {
  Planar p;
  p.format = TensorFormat::parse(format);
  p.n = n;
  p.k = k;
  p.codes.resize(size_t(n * p.row_bytes()));
  for (size_t i = 0; i < p.codes.size(); i += 8) {
    const uint64_t r = rng.next();
    for (size_t j = 0; j < 8 && i + j < p.codes.size(); ++j) p.codes[i + j] = uint8_t(r >> (8 * j));
  }
  const FormatKind kind = p.format.kind;
  const bool fp8 = kind == FormatKind::kFp8E4M3;
  const bool e2m1 = kind == FormatKind::kFp4 || kind == FormatKind::kMxFp4 || kind == FormatKind::kNvFp4;
  if (fp8)
    for (auto& c : p.codes)
      if ((c & 0x7f) == 0x7f) c ^= 1;
  const float unit = fp8 ? 0.02f / 64 : e2m1 ? 0.02f * 8 / 6 : 0.02f * 8 / float(1 << (p.bits() - 1));
  const int64_t entries = n * p.groups();
  const ScaleType type = format_info(kind).scale;
  p.scales.resize(size_t(entries * scale_bytes(type)));
  for (int64_t i = 0; i < entries; ++i) {
    if (type == ScaleType::kE8M0) {
      p.scales[size_t(i)] = uint8_t(121 + rng.next() % 2);
    } else if (type == ScaleType::kE4M3) {
      p.scales[size_t(i)] = uint8_t(0x50 + rng.next() % 0x20);
    } else {
      const uint16_t h = fp32_to_fp16((0.5f + rng.uniform()) * unit);
      std::memcpy(&p.scales[size_t(2 * i)], &h, 2);
    }
  }
  if (kind == FormatKind::kNvFp4) p.tensor_scale = 2.7e-4f;
  if (p.format.asymmetric) {
    p.zeros.resize(size_t(entries));
    for (auto& z : p.zeros) z = uint8_t(rng.next() % (1u << p.bits()));
  }
  return p;
}

template <typename T>
T* to_device(const std::vector<T>& v) {
  T* d = nullptr;
  CK(cudaMalloc(&d, std::max<size_t>(v.size(), 1) * sizeof(T)));
  if (!v.empty()) CK(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

// Device pointers to planar weights, as the reference kernels take them (trivially copyable).
struct PlanarView {
  const uint8_t* codes = nullptr;
  const uint8_t* scales = nullptr;
  const uint8_t* zeros = nullptr;  // null: symmetric
  int bits = 4;
  FormatKind kind = FormatKind::kInt4;
  ScaleType scale_type = ScaleType::kF16;
  float tensor_scale = 1.0f;
  int group = 0;  // 0: per channel
  int groups = 0;
  long long row_bytes = 0;
};

class DevicePlanar {
 public:
  explicit DevicePlanar(const Planar& p)
      : codes_(to_device(p.codes)),
        scales_(to_device(p.scales)),
        zeros_(p.format.asymmetric ? to_device(p.zeros) : nullptr),
        view_{codes_, scales_, zeros_, p.bits(), p.format.kind, format_info(p.format.kind).scale, p.tensor_scale,
              p.format.group_size, int(p.groups()), p.row_bytes()} {}
  ~DevicePlanar() {
    cudaFree(codes_);
    cudaFree(scales_);
    cudaFree(zeros_);
  }
  DevicePlanar(const DevicePlanar&) = delete;
  DevicePlanar& operator=(const DevicePlanar&) = delete;
  const PlanarView& view() const { return view_; }

 private:
  uint8_t* codes_;
  uint8_t* scales_;
  uint8_t* zeros_;
  PlanarView view_;
};

// E4M3 value of a (non-NaN) code, exactly.
__device__ inline float e4m3_value(int q) {
  const int e = (q >> 3) & 15, mant = q & 7;
  const float magnitude = e == 0 ? float(mant) * 0.001953125f : ldexpf(1.0f + float(mant) / 8.0f, e - 7);
  return (q & 0x80) ? -magnitude : magnitude;
}

__device__ inline float e2m1_value(int q) {
  const int e = (q >> 1) & 3, mant = q & 1;
  const float magnitude = e == 0 ? 0.5f * float(mant) : ldexpf(1.0f + 0.5f * float(mant), e - 1);
  return (q & 8) ? -magnitude : magnitude;
}

// w[row][col] as quant/format.h defines it, in fp32 as dequantize_row computes it (exact but for
// nvfp4's (t·e4m3(s))·e2m1(q)).
__device__ inline float planar_weight(const PlanarView& w, int row, int col) {
  const uint8_t* r = w.codes + row * w.row_bytes;
  const long long bit = (long long)col * w.bits;
  const uint32_t window = r[bit / 8] | (bit % 8 + w.bits > 8 ? uint32_t(r[bit / 8 + 1]) << 8 : 0u);
  const int q = int((window >> (bit % 8)) & ((1u << w.bits) - 1));
  const int g = w.group ? col / w.group : 0;
  const long long entry = (long long)row * w.groups + g;
  float s;
  if (w.scale_type == ScaleType::kE8M0) s = ldexpf(1.0f, int(w.scales[entry]) - 127);
  else if (w.scale_type == ScaleType::kE4M3) s = w.tensor_scale * e4m3_value(w.scales[entry]);
  else s = __half2float(reinterpret_cast<const __half*>(w.scales)[entry]);
  if (w.kind == FormatKind::kFp8E4M3) return s * e4m3_value(q);
  if (w.kind == FormatKind::kFp4 || w.kind == FormatKind::kMxFp4 || w.kind == FormatKind::kNvFp4)
    return s * e2m1_value(q);
  const int z = w.zeros ? w.zeros[entry] : 1 << (w.bits - 1);
  return s * float(q - z);
}

// v0 reference: one block per (weight row, 8 tokens); 128 threads stride over k; fp32 throughout.
__global__ void reference_gemm(PlanarView w, const __half* a, float* c, int m, int n, int k) {
  __shared__ float partial[8][128];
  const int row = blockIdx.x, tok0 = blockIdx.y * 8;
  float acc[8] = {};
  for (int col = threadIdx.x; col < k; col += 128) {
    const float x = planar_weight(w, row, col);
    for (int j = 0; j < 8; ++j)
      if (tok0 + j < m) acc[j] += x * __half2float(a[(long long)(tok0 + j) * k + col]);
  }
  for (int j = 0; j < 8; ++j) partial[j][threadIdx.x] = acc[j];
  __syncthreads();
  if (threadIdx.x < 8 && tok0 + threadIdx.x < m) {
    float s = 0.0f;
    for (int i = 0; i < 128; ++i) s += partial[threadIdx.x][i];
    c[(long long)(tok0 + threadIdx.x) * n + row] = s;
  }
}

__global__ void dequantize_to_fp16(PlanarView w, __half* out, int n, int k) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long long)n * k) return;
  out[i] = __float2half_rn(planar_weight(w, int(i / k), int(i % k)));
}

__global__ void random_fp16(__half* x, long long count, uint64_t seed) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= count) return;
  uint64_t z = seed + uint64_t(i) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  // Sum of 4 uniforms: roughly normal, mean 0.
  float s = 0.0f;
  for (int j = 0; j < 4; ++j) s += float((z >> (16 * j)) & 0xffff) / 65536.0f - 0.5f;
  x[i] = __float2half_rn(s * 1.7f);
}

inline void fill_random(__half* x, long long count, uint64_t seed) {
  random_fp16<<<int((count + 255) / 256), 256>>>(x, count, seed);
  CK(cudaGetLastError());
}

inline void run_reference(const DevicePlanar& w, const __half* a, float* c, int m, int n, int k) {
  reference_gemm<<<dim3(n, (m + 7) / 8), 128>>>(w.view(), a, c, m, n, k);
  CK(cudaGetLastError());
}

// The planar weights dequantized to fp16 (n × k, row-major) in new device memory.
inline __half* dequantized_copy(const DevicePlanar& w, int n, int k) {
  __half* w16 = nullptr;
  CK(cudaMalloc(&w16, size_t(n) * k * 2));
  dequantize_to_fp16<<<int(((long long)n * k + 255) / 256), 256>>>(w.view(), w16, n, k);
  CK(cudaGetLastError());
  return w16;
}

// cuBLAS: C (m × n, row-major) = A (m × k) · W16ᵀ (W16 n × k row-major), i.e. column-major
// Cᵀ (n × m) = W16ᵀᵀ (n × k) · Aᵀ (k × m).
inline void run_cublas(cublasHandle_t h, const __half* w16, const __half* a, __half* c, int m, int n, int k) {
  const float one = 1.0f, zero = 0.0f;
  CB(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w16, CUDA_R_16F, k, a, CUDA_R_16F, k, &zero, c,
                  CUDA_R_16F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// ‖out − ref‖ / ‖ref‖ in fp64 (NaN if any output is NaN).
inline double rel_error(const __half* d_out, const float* d_ref, long long count) {
  std::vector<uint16_t> out(static_cast<size_t>(count));
  std::vector<float> ref(static_cast<size_t>(count));
  CK(cudaMemcpy(out.data(), d_out, count * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(ref.data(), d_ref, count * 4, cudaMemcpyDeviceToHost));
  double num = 0.0, den = 0.0;
  for (long long i = 0; i < count; ++i) {
    const double o = fp16_to_fp32(out[size_t(i)]), r = ref[size_t(i)];
    if (std::isnan(o)) return NAN;
    num += (o - r) * (o - r);
    den += r * r;
  }
  return std::sqrt(num / den);
}

inline bool same_bits(const __half* x, const __half* y, long long count) {
  std::vector<uint16_t> a(static_cast<size_t>(count)), b(static_cast<size_t>(count));
  CK(cudaMemcpy(a.data(), x, count * 2, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(b.data(), y, count * 2, cudaMemcpyDeviceToHost));
  return a == b;
}

// Median time of one launch (µs): a graph of `launches` calls launch(i) is replayed `reps` times.
inline double time_graph(cudaStream_t stream, int launches, int reps, const std::function<void(int)>& launch) {
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

// JSON array of records, flushed record by record (a run cut short keeps what it measured).
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
    fflush(f);
    first = false;
  }
  void close() {
    if (f) fprintf(f, "\n]\n"), fclose(f);
    f = nullptr;
  }
};

}  // namespace bench
