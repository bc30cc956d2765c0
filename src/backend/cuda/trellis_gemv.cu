// Trellis decode straight into tensor-core fragments (trellis_kernels.h).
//
// A 16 × 16 tile is exactly the A operand of one mma.sync m16n8k16: the weight rows are its M and
// the tile's columns its K. The K order inside one product is free (a dot product does not care in
// which order it adds), so lane (g, q) = (lane / 4, lane % 4) takes columns 4q..4q+3 of rows g and
// g + 8 — four values in a row of the stream, whose states all lie in one 32-bit window of it
// (3K + 16 ≤ 32 bits for K ≤ 5; two windows above) — and the B fragment it meets is
// x[c0 + 4q .. c0 + 4q + 3]. Each value: its state by a byte permute (or a shift and a mask), a
// multiply-add and a lop3 for the two fp16 pieces of its code (quant/trellis_code.h); that
// register, (lo, hi), fills a k-slot pair whose activation partner is (x, x) (x arrives as
// (value, value) pairs, one 16-byte load per tile), so the tensor core adds the two pieces and no
// instruction pairs two codes up, for the price of two products per tile instead of one. The
// tensor core multiplies the pieces' exact sum, where the format rounds it to fp16: each weight is
// within half an fp16 ulp of its stored value (an HADD2 a value would round it exactly, 6 % more
// time at m = 1; the fp16 decoder below does round).
//
// Work: one block of 16 warps per 16-row strip; warp w takes the w-th sixteenth of its tiles,
// copies them into its own shared-memory ring with cp.async (no block barrier in the loop), decodes
// a full stage of 8 tiles unrolled (their chains interleave; B fragments loaded first), and the 16
// partial sums are added in warp order (deterministic) before the row scales multiply them. (A
// persistent grid, each block streaming many strips through one ring, measured 8 % slower.)
#include "backend/cuda/pdl_launch.cuh"
#include "backend/cuda/ptx.cuh"
#include "backend/cuda/trellis_kernels.h"
#include "quant/trellis_code.h"

namespace marlin::cuda {
namespace {

constexpr int kWarps = 16;  // per 16-row strip (8 and 4 measured slower in total: too few blocks for the wide shapes)
constexpr int kTilesPerStage = 8;

template <int K>
__host__ __device__ constexpr int tile_words() {
  return 8 * K;  // uint32 words per tile
}

// Stages of a warp's ring: 2–3 KB of codes in flight per warp whatever K.
template <int K>
__host__ __device__ constexpr int ring_stages() {
  return K <= 2 ? 6 : K <= 4 ? 4 : 3;
}

// The 32 stream bits ending at bit `end` (1 ≤ end ≤ 256·K) of a tile, circularly: word offsets and
// shift, fixed per lane.
struct Window {
  int hi, lo, shift;
};

template <int K>
__device__ __forceinline__ Window window_ending_at(int end) {
  constexpr int kWords = tile_words<K>();
  const int start = end - 32;  // may be negative: the stream wraps around (tail-biting)
  const int hi = ((start >> 5) % kWords + kWords) % kWords;
  return {hi, (hi + 1) % kWords, start & 31};
}

__device__ __forceinline__ uint32_t read_window(const uint32_t* tile, const Window& w) {
  return __funnelshift_l(tile[w.lo], tile[w.hi], w.shift);
}

// The two fp16 pieces of a state's code (low piece in the low half): the multiply-add and the lop3.
__device__ __forceinline__ uint32_t code_pieces(uint32_t state) {
  return and_or(kTrellisMul * state + kTrellisAdd, kTrellisPieceMask, kTrellisPieceBits);
}

// The fp16 code of a state, exactly as trellis_code_fp16, in both halves: the pieces and one HADD2
// adding the low piece to the high one.
__device__ __forceinline__ uint32_t code_twice(uint32_t state) {
  const uint32_t p = code_pieces(state);
  const __half2 pieces = *reinterpret_cast<const __half2*>(&p);
  const __half2 sum = __hadd2(__low2half2(pieces), __high2half2(pieces));
  return *reinterpret_cast<const uint32_t*>(&sum);
}

// The 16 bits of `w` starting `kShift` bits up, zero-extended: a byte permute where the field is
// byte-aligned in w or in w4 = w << 4 (a multiply, so off the integer pipe that the permutes, the
// lop3s and the window shifts keep busy), else a shift and a mask.
template <int kShift>
__device__ __forceinline__ uint32_t field16(uint32_t w, uint32_t w4) {
  if constexpr (kShift == 16) return w >> 16;
  if constexpr (kShift % 8 == 0) return __byte_perm(w, 0, 0x4400 | (kShift / 8) | (kShift / 8 + 1) << 4);
  if constexpr (kShift % 8 == 4 && kShift <= 12)
    return __byte_perm(w4, 0, 0x4400 | (kShift / 8 + 1) | (kShift / 8 + 2) << 4);
  return (w >> kShift) & 0xffff;
}

// w << 4 as a multiply (field16's w4).
__device__ __forceinline__ uint32_t times16(uint32_t w) {
  uint32_t r;
  asm("mul.lo.u32 %0, %1, 16;" : "=r"(r) : "r"(w));
  return r;
}

// Where lane (g, q) finds its states in any tile: windows of rows g and g + 8.
template <int K>
struct LaneWindows {
  static constexpr bool kOneWindow = 3 * K + 16 <= 32;
  Window w[2][2];  // [row g / g + 8][window]; the second only for K ≥ 6

  __device__ __forceinline__ explicit LaneWindows(int lane) {
    const int g = lane / 4, q = lane % 4;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int end = (16 * (g + 8 * half) + 4 * q + 4) * K;  // end of value 4q + 3's bits
      if constexpr (kOneWindow) {
        w[half][0] = window_ending_at<K>(end);
      } else {
        w[half][0] = window_ending_at<K>(end - 2 * K);  // values 4q, 4q + 1
        w[half][1] = window_ending_at<K>(end);          // values 4q + 2, 4q + 3
      }
    }
  }

  // The codes of one tile, each twice (or, with kPieces, as its two pieces): c[j] for j < 4 is row
  // g's column 4q + j, c[4 + j] row g + 8's.
  template <bool kPieces = false>
  __device__ __forceinline__ void decode(const uint32_t* tile, uint32_t (&c)[8]) const {
    const auto code = [](uint32_t state) { return kPieces ? code_pieces(state) : code_twice(state); };
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      uint32_t* out = c + 4 * half;
      if constexpr (kOneWindow) {
        const uint32_t v = read_window(tile, w[half][0]), v4 = times16(v);
        out[0] = code(field16<3 * K>(v, v4));
        out[1] = code(field16<2 * K>(v, v4));
        out[2] = code(field16<K>(v, v4));
        out[3] = code(field16<0>(v, v4));
      } else {
        const uint32_t v0 = read_window(tile, w[half][0]), v1 = read_window(tile, w[half][1]);
        out[0] = code(field16<K>(v0, times16(v0)));
        out[1] = code(field16<0>(v0, times16(v0)));
        out[2] = code(field16<K>(v1, times16(v1)));
        out[3] = code(field16<0>(v1, times16(v1)));
      }
    }
  }
};

struct GemvArgs {
  TrellisWeights w;
  const __half* x;
  float* out;
  int m;
};

template <int K>
constexpr int ring_bytes() {
  return kWarps * ring_stages<K>() * tile_words<K>() * kTilesPerStage * 4;
}

// Two blocks per SM up to two token fragments: at 64 registers (a few bytes spilled at two
// fragments; above 64, one block per SM made m = 16 23 % slower).
template <int K, int kFragsM>
__global__ void __launch_bounds__(kWarps * 32, kFragsM <= 2 ? 2 : 1)
    trellis_gemv_kernel(const __grid_constant__ GemvArgs p) {
  allow_dependent_launch();
  constexpr int kWords = tile_words<K>();
  constexpr int kStages = ring_stages<K>();
  constexpr int kStageWords = kWords * kTilesPerStage;
  extern __shared__ __align__(16) uint32_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int strip = blockIdx.x, tiles = p.w.cols / 16;
  const int t_begin = warp * tiles / kWarps, t_end = (warp + 1) * tiles / kWarps;
  const int stages = (t_end - t_begin + kTilesPerStage - 1) / kTilesPerStage;
  const uint32_t* src = p.w.words + (static_cast<long long>(strip) * tiles + t_begin) * kWords;
  uint32_t* ring = smem + warp * kStages * kStageWords;

  // Stage s: tiles t_begin + s·kTilesPerStage.. (fewer in the last), 16-byte pieces over the lanes.
  // A full stage is a fixed number of pieces per lane, copied without a loop: the copies are a
  // fifth of the instructions otherwise.
  constexpr int kStagePieces = kStageWords / 4;
  const int full_stages = (t_end - t_begin) / kTilesPerStage;
  const uint32_t ring_lane = smem_addr(ring) + 16 * lane;
  auto issue = [&](int s) {
    const uint32_t* from = src + s * kStageWords + 4 * lane;
    const uint32_t to = ring_lane + (s % kStages) * kStageWords * 4;
    if (s < full_stages) {
#pragma unroll
      for (int j = 0; j < (kStagePieces + 31) / 32; ++j)
        if (kStagePieces % 32 == 0 || lane + 32 * j < kStagePieces) cp_async16(to + 512 * j, from + 128 * j);
    } else if (s < stages) {
      const int n = (t_end - t_begin - s * kTilesPerStage) * kWords / 4;
      for (int i = 0; lane + i < n; i += 32) cp_async16(to + 16 * i, from + 4 * i);
    }
    cp_async_commit();
  };
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) issue(s);
  grid_dependency_wait();  // the codes above do not depend on the previous kernel; x does

  const LaneWindows<K> windows(lane);
  const int g = lane / 4, q = lane % 4;
  // Two accumulator sets for one token fragment (even and odd tiles), so that consecutive tensor
  // core products do not wait on each other.
  constexpr int kSets = kFragsM == 1 ? 2 : 1;
  float acc[kSets][kFragsM][4] = {};
  // Each code's pieces fill a k-slot pair and meet (x, x) there: two products per tile, one for
  // columns 4q, 4q + 1 and one for 4q + 2, 4q + 3 (a byte permute per pair of codes saved for one
  // mma).
  auto product = [&](const uint32_t* tile, const uint4 (&b)[kFragsM], float (&sum)[kFragsM][4]) {
    uint32_t c[8];
    windows.template decode<true>(tile, c);
    const uint32_t a0[4] = {c[0], c[4], c[1], c[5]}, a1[4] = {c[2], c[6], c[3], c[7]};
#pragma unroll
    for (int fm = 0; fm < kFragsM; ++fm) {
      mma_16816(sum[fm], a0, b[fm].x, b[fm].y);
      mma_16816(sum[fm], a1, b[fm].z, b[fm].w);
    }
  };
  // B fragments of tile t: x[tok][16t + 4q .. + 3], each value twice: 16 bytes, the
  // (4t)-th uint4 from x_frag[fm] (so that a stage's loads differ by immediate offsets only). A
  // token past m reads token m − 1 instead: its column of the product is never stored, and no
  // branch is needed.
  const uint4* x_frag[kFragsM];
#pragma unroll
  for (int fm = 0; fm < kFragsM; ++fm) {
    const int tok = min(fm * 8 + g, p.m - 1);
    x_frag[fm] = reinterpret_cast<const uint4*>(p.x) + static_cast<long long>(tok) * (p.w.cols / 4) + q;
  }
  // B fragments of tile `first + i` (i a constant where the stage is unrolled: immediate offsets).
  auto load_b = [&](int first, int i, uint4 (&b)[kFragsM]) {
#pragma unroll
    for (int fm = 0; fm < kFragsM; ++fm) b[fm] = __ldg(x_frag[fm] + 4 * first + 4 * i);
  };
  for (int s = 0; s < stages; ++s) {
    cp_async_wait<kStages - 2>();
    __syncwarp();  // every lane's pieces of stage s have landed; stage s − 1's slot is free
    issue(s + kStages - 1);
    const uint32_t* stage = ring + (s % kStages) * kStageWords;
    const int first = t_begin + s * kTilesPerStage, count = min(kTilesPerStage, t_end - first);
    if (count == kTilesPerStage) {  // unrolled: the tiles' decodes interleave
      // One token fragment: all B fragments of the stage first; more: tile by tile (registers).
      constexpr int kAhead = kFragsM == 1 ? kTilesPerStage : 1;
      uint4 b[kAhead][kFragsM];
#pragma unroll
      for (int i = 0; i < kTilesPerStage; ++i) {
        if (i % kAhead == 0)
#pragma unroll
          for (int j = 0; j < kAhead; ++j) load_b(first, i + j, b[j]);
        product(stage + i * kWords, b[i % kAhead], acc[i % kSets]);
      }
    } else {
      for (int i = 0; i < count; ++i) {
        uint4 b[kFragsM];
        load_b(first, i, b);
        product(stage + i * kWords, b, acc[0]);
      }
    }
  }
  cp_async_wait<0>();

  // The warps' partial sums, added in warp order by warp 0.
  __syncthreads();  // every warp is done with its ring: the reduction reuses the shared memory
  float* red = reinterpret_cast<float*>(smem);
#pragma unroll
  for (int fm = 0; fm < kFragsM; ++fm)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float sum = acc[0][fm][i];
      if constexpr (kSets == 2) sum += acc[1][fm][i];
      red[((warp * kFragsM + fm) * 4 + i) * 32 + lane] = sum;
    }
  __syncthreads();
  if (warp != 0) return;
  const int row = strip * 16 + g;
  const float top = p.w.row_scales[row], bottom = p.w.row_scales[row + 8];
#pragma unroll
  for (int fm = 0; fm < kFragsM; ++fm) {
    float sum[4] = {};
    for (int other = 0; other < kWarps; ++other)
#pragma unroll
      for (int i = 0; i < 4; ++i) sum[i] += red[((other * kFragsM + fm) * 4 + i) * 32 + lane];
    const int tok = fm * 8 + 2 * q;
    float* c = p.out + static_cast<long long>(tok) * p.w.rows + row;
    if (tok < p.m) {
      c[0] = sum[0] * top;
      c[8] = sum[2] * bottom;
    }
    if (tok + 1 < p.m) {
      c[p.w.rows] = sum[1] * top;
      c[p.w.rows + 8] = sum[3] * bottom;
    }
  }
}

template <int K, int kFragsM>
cudaError_t launch_gemv(const GemvArgs& args, cudaStream_t stream) {
  constexpr int red_bytes = kWarps * kFragsM * 4 * 32 * 4;
  constexpr int bytes = ring_bytes<K>() > red_bytes ? ring_bytes<K>() : red_bytes;
  auto kernel = trellis_gemv_kernel<K, kFragsM>;
  if (bytes > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
    if (err != cudaSuccess) return err;
  }
  return launch_pdl(kernel, dim3(args.w.rows / 16), dim3(kWarps * 32), bytes, stream, args);
}

template <int K>
cudaError_t launch_gemv_frags(const GemvArgs& args, cudaStream_t stream) {
  if (args.m <= 8) return launch_gemv<K, 1>(args, stream);
  if (args.m <= 16) return launch_gemv<K, 2>(args, stream);
  return launch_gemv<K, 4>(args, stream);
}

// One warp per tile: lane (g, q) writes its eight values of rows g and g + 8 as fp16.
template <int K>
__global__ void __launch_bounds__(256) trellis_decode_kernel(const TrellisWeights w, __half* out) {
  pdl_prologue();
  const long long tile = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int tiles = w.cols / 16, lane = threadIdx.x % 32;
  if (tile >= static_cast<long long>(w.rows / 16) * tiles) return;
  const uint32_t* words = w.words + tile * tile_words<K>();
  uint32_t c[8];
  LaneWindows<K>(lane).decode(words, c);
  const int g = lane / 4, q = lane % 4;
  const long long strip = tile / tiles;
  const int col = int(tile % tiles) * 16 + 4 * q;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const long long row = strip * 16 + g + 8 * half;
    const float scale = __half2float(__ushort_as_half(w.half_scales[row]));
    __half v[4];
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint16_t code = uint16_t(c[4 * half + j] & 0xffff);
      v[j] = __float2half_rn(__fmul_rn(scale, __fmul_rn(trellis_code_to_float(code), kTrellisScale)));
    }
    *reinterpret_cast<uint2*>(out + row * w.cols + col) = *reinterpret_cast<const uint2*>(v);
  }
}

template <int K>
cudaError_t launch_decode(const TrellisWeights& w, __half* out, cudaStream_t stream) {
  const long long threads = static_cast<long long>(w.rows / 16) * (w.cols / 16) * 32;
  return launch_pdl(trellis_decode_kernel<K>, dim3(unsigned((threads + 255) / 256)), dim3(256), 0, stream, w, out);
}

// f<1>..f<8>(args...) by the tensor's K.
template <template <int> class F, typename... Args>
cudaError_t by_bits(int bits, Args&&... args) {
  switch (bits) {
    case 1: return F<1>::run(args...);
    case 2: return F<2>::run(args...);
    case 3: return F<3>::run(args...);
    case 4: return F<4>::run(args...);
    case 5: return F<5>::run(args...);
    case 6: return F<6>::run(args...);
    case 7: return F<7>::run(args...);
    case 8: return F<8>::run(args...);
    default: return cudaErrorInvalidValue;
  }
}

template <int K>
struct Gemv {
  static cudaError_t run(const GemvArgs& args, cudaStream_t stream) { return launch_gemv_frags<K>(args, stream); }
};
template <int K>
struct Decode {
  static cudaError_t run(const TrellisWeights& w, __half* out, cudaStream_t stream) {
    return launch_decode<K>(w, out, stream);
  }
};

}  // namespace

cudaError_t trellis_gemv(const TrellisWeights& w, const __half* x, int m, float* out, cudaStream_t stream) {
  if (m < 1 || m > kTrellisGemvRows || w.rows % 16 || w.cols % 16 || w.rows <= 0 || w.cols <= 0)
    return cudaErrorInvalidValue;
  return by_bits<Gemv>(w.bits, GemvArgs{w, x, out, m}, stream);
}

cudaError_t trellis_decode_half(const TrellisWeights& w, __half* out, cudaStream_t stream) {
  if (w.rows % 16 || w.cols % 16 || w.rows <= 0 || w.cols <= 0) return cudaErrorInvalidValue;
  return by_bits<Decode>(w.bits, w, out, stream);
}

}  // namespace marlin::cuda
