// Sampling on the GPU.
//
// argmax: greedy choice per row, the lowest index among equal maxima.
//
// sample_rows: the rule of backend/sampling.h (penalties, temperature, top-k, top-p, min-p, one
// draw per row), with the arithmetic of the CPU's sample_row, so both pick the same token. Blocks
// of 1024 threads, one launch for the batch. While rows × 2 ≤ SMs (sm_90) each row gets a thread
// block cluster of 8, 4 or 2 blocks (the most that still fit the GPU at once): every rank handles
// one slice of the row in A, B's fast path, C and E, and the ranks merge their sums and histograms
// through distributed shared memory; the radix descents of B and D (which histogram only the keys
// under one prefix) run in every rank over the whole row, alike. With more rows, one block per
// row does everything. The row (fp32, in L2 after
// the first read) is read a few times and never sorted:
//  A. Penalties in place. One pass: the maximum (temperature 0 stops here with the argmax) and a
//     count histogram of the top 11 bits of every logit's 32-bit order key (each rank its slice,
//     then summed over the cluster).
//  B. top-k (when set): radix select on the order keys, digits of 11, 11 and 10 bits, counts only
//     (two more passes): the k-th key θk and how many keys lie above it. Fast path: when the
//     first-digit bins at and above θk's hold ≤ 2048 tokens (usual for top-k in the tens or
//     hundreds), one pass gathers them into shared memory (each rank from its slice, collected
//     by rank 0), a bitonic sort orders them by σ, and C–E below happen on that list instead: two
//     passes over the row in all.
//  C. One pass for the fixed-point weights of the top-k set (only those are computed): its mass W,
//     the min-p count (x ≥ ln min_p) and the mass histogram of the first digit.
//  D. The cut: a radix descent on the same digits by (count, mass) to the first position of σ
//     (logit descending, id ascending) where the prefix holds min(top-k, min-p count) tokens or
//     reaches top_p·W (two more passes; skipped when top-p is off and min-p cuts nothing): the key
//     θ* of the last kept token and how many of the tokens at θ* (lowest ids first) are kept.
//  E. The draw: a block-wide scan in id order of the kept weights, tile by tile, stopping at the
//     first token whose running sum exceeds ⌊total·U/2^53⌋. In a cluster each rank first sums
//     its slice; only the rank whose slice holds that token scans, from the lower ranks' sums.
// Every sum is an integer (fixed-point weights), so reductions are exact in any order: the result
// is deterministic and equal to the CPU's, however the row is split.
// Speed: a block streams its part of the row from L2, so each thread keeps several tiles' loads
// in flight (one at a time leaves it waiting on latency), and the histograms' atomics are
// aggregated per warp and per bin (the logits crowd a few bins). C computes the first-digit
// masses only when D can run (top-p or min-p on).
#include <cooperative_groups.h>

#include <climits>
#include <cmath>

#include "backend/cuda/ops.h"
#include "backend/cuda/ops_check.h"

namespace marlin::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

struct Candidate {
  float value;
  int index;  // INT_MAX: none yet
};

// NaN never wins; equal values go to the lower index.
__device__ __forceinline__ void keep_better(Candidate& best, float value, int index) {
  if (value > best.value || (value == best.value && index < best.index)) best = {value, index};
}

__device__ Candidate warp_best(Candidate best) {
  for (int offset = 16; offset > 0; offset /= 2)
    keep_better(best, __shfl_xor_sync(0xffffffffu, best.value, offset), __shfl_xor_sync(0xffffffffu, best.index, offset));
  return best;
}

constexpr int kItems = 4;                    // consecutive values per thread per tile
constexpr int kTile = kThreads * kItems;
// Tiles each thread loads before using any: a single SM reads the row, and with one load in
// flight per thread it waits on L2 latency. Two in the radix descent and the candidate gather,
// where four would spill registers (1024 threads: 64 each).
constexpr int kMaxTilesInFlight = 4;
constexpr int kLeanTilesInFlight = 2;

// The kItems values at i0, i0 + 1, ... (0 past the end). vec4: the row starts 16-byte aligned
// and vocab is a multiple of 4.
__device__ __forceinline__ void load_items(const float* row, int64_t end, bool vec4, int64_t i0, float (&v)[kItems]) {
  if (vec4 && i0 + kItems <= end) {
    const float4 q = *reinterpret_cast<const float4*>(row + i0);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  } else {
#pragma unroll
    for (int j = 0; j < kItems; ++j) v[j] = i0 + j < end ? row[i0 + j] : 0.0f;
  }
}

// The indices of tile t of the batch at `base` that this thread holds start here.
__device__ __forceinline__ int64_t first_item(int64_t base, int t) {
  return base + int64_t(t) * kTile + int64_t(threadIdx.x) * kItems;
}

// Calls f(index, value, valid) for every value of row[begin, end) (begin a multiple of kItems),
// kTilesInFlight tiles per batch; every thread makes the same number of calls (valid false past
// the end), so f may use warp-wide primitives. The order of the calls is unspecified.
template <int kTilesInFlight, typename F>
__device__ __forceinline__ void for_each_raw(const float* row, int64_t begin, int64_t end, bool vec4, F&& f) {
  for (int64_t base = begin; base < end; base += kTilesInFlight * kTile) {
    float v[kTilesInFlight][kItems];
#pragma unroll
    for (int t = 0; t < kTilesInFlight; ++t) load_items(row, end, vec4, first_item(base, t), v[t]);
#pragma unroll
    for (int t = 0; t < kTilesInFlight; ++t) {
      const int64_t i0 = first_item(base, t);
#pragma unroll
      for (int j = 0; j < kItems; ++j) f(i0 + j, v[t][j], i0 + j < end);
    }
  }
}

// One block per row.
__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* logits, int64_t vocab, bool vec4,
                                                          int32_t* tokens) {
  const float* row = logits + blockIdx.x * vocab;
  Candidate best{-INFINITY, INT_MAX};
  for_each_raw<kMaxTilesInFlight>(row, 0, vocab, vec4, [&](int64_t i, float l, bool valid) {
    if (valid) keep_better(best, l, int(i));
  });
  best = warp_best(best);
  __shared__ Candidate warp_bests[kWarps];
  if (threadIdx.x % 32 == 0) warp_bests[threadIdx.x / 32] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kWarps; ++w) keep_better(best, warp_bests[w].value, warp_bests[w].index);
    tokens[blockIdx.x] = best.index == INT_MAX ? 0 : best.index;  // a row of NaNs gives token 0
  }
}

// --- sample_rows ---------------------------------------------------------------------------

constexpr int kMaxBins = 2048;

// The blocks that share a row: a thread block cluster on sm_90 (launched with one when rows are
// few), each rank reading one slice of the row in the passes that every path makes; one block
// below sm_90.
struct RowSplit {
  unsigned rank, ranks;
};
constexpr unsigned kRowCluster = 8;  // most ranks per row (the portable cluster size)

__device__ __forceinline__ RowSplit row_split() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  const auto cluster = cooperative_groups::this_cluster();
  return {cluster.block_rank(), cluster.num_blocks()};
#else
  return {0, 1};
#endif
}

// Every thread of every block of the cluster arrives; memory written before (global and shared)
// is visible to all of them after.
__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  cooperative_groups::this_cluster().sync();
#else
  __syncthreads();
#endif
}

// The same shared variable in the block of the given rank.
template <typename T>
__device__ __forceinline__ T* rank_shared(T* p, unsigned rank) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  return cooperative_groups::this_cluster().map_shared_rank(p, rank);
#else
  return rank == 0 ? p : nullptr;
#endif
}

// Digits of the order key, most significant first.
__device__ __forceinline__ int digit_shift(int level) { return level == 0 ? 21 : level == 1 ? 10 : 0; }
__device__ __forceinline__ int digit_bits(int level) { return level == 2 ? 10 : 11; }

struct Sums {
  unsigned count;
  unsigned long long mass;
};

// row[begin, end): the whole row or one cluster rank's slice of it.
struct RowState {
  const float* row;
  int64_t begin, end;
  bool vec4;
};

// for_each_raw with cleaned logits.
template <int kTilesInFlight = kMaxTilesInFlight, typename F>
__device__ __forceinline__ void for_each_value(const RowState& s, F&& f) {
  for_each_raw<kTilesInFlight>(s.row, s.begin, s.end, s.vec4, [&](int64_t i, float l, bool valid) { f(i, sampling::clean(l), valid); });
}

// counts[bin] += 1 for every lane with bin ≥ 0, one atomic per distinct bin of the warp. Every
// lane of the warp calls it.
__device__ __forceinline__ void count_in_bin(unsigned* counts, int bin) {
  const unsigned active = __ballot_sync(0xffffffffu, bin >= 0);
  if (bin < 0) return;
  const unsigned peers = __match_any_sync(active, bin);
  if (int(threadIdx.x % 32) == __ffs(peers) - 1) atomicAdd(&counts[bin], unsigned(__popc(peers)));
}

// masses[bin] += q for every lane with bin ≥ 0 and q > 0, one atomic per distinct bin of the
// warp (a few bins hold most of a row: per-lane 64-bit atomics on them serialize). The warp
// handles one bin at a time; q ≤ 2^40, so it sums the 20-bit halves in 32-bit integers, exactly.
// Every lane of the warp calls it.
__device__ __forceinline__ void add_in_bin(unsigned long long* masses, int bin, uint64_t q) {
  const bool adds = bin >= 0 && q > 0;
  for (unsigned pending = __ballot_sync(0xffffffffu, adds); pending != 0;) {
    const int leader = __ffs(pending) - 1;
    const int leader_bin = __shfl_sync(0xffffffffu, bin, leader);
    const bool peer = adds && bin == leader_bin;
    const unsigned low = __reduce_add_sync(0xffffffffu, peer ? unsigned(q & 0xfffffu) : 0u);
    const unsigned high = __reduce_add_sync(0xffffffffu, peer ? unsigned(q >> 20) : 0u);
    if (int(threadIdx.x % 32) == leader)
      atomicAdd(&masses[bin], (static_cast<unsigned long long>(high) << 20) + low);
    pending &= ~__ballot_sync(0xffffffffu, peer);
  }
}

// Exclusive prefix sums over the block in thread order; `total` gets the block's sum. Ends with
// the scratch free for reuse.
__device__ Sums exclusive_scan(Sums v, Sums& total) {
  __shared__ Sums warp_sums[kWarps];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  Sums inc = v;
  for (int offset = 1; offset < 32; offset *= 2) {
    const unsigned c = __shfl_up_sync(0xffffffffu, inc.count, offset);
    const unsigned long long m = __shfl_up_sync(0xffffffffu, inc.mass, offset);
    if (lane >= offset) inc.count += c, inc.mass += m;
  }
  if (lane == 31) warp_sums[warp] = inc;
  __syncthreads();
  if (warp == 0) {
    Sums w = warp_sums[lane];
    for (int offset = 1; offset < 32; offset *= 2) {
      const unsigned c = __shfl_up_sync(0xffffffffu, w.count, offset);
      const unsigned long long m = __shfl_up_sync(0xffffffffu, w.mass, offset);
      if (lane >= offset) w.count += c, w.mass += m;
    }
    warp_sums[lane] = w;  // inclusive over warps
  }
  __syncthreads();
  const Sums before = warp == 0 ? Sums{0, 0} : warp_sums[warp - 1];
  total = warp_sums[kWarps - 1];
  __syncthreads();
  return {before.count + inc.count - v.count, before.mass + inc.mass - v.mass};
}

__device__ unsigned long long block_sum(unsigned long long v, unsigned& count) {
  Sums total;
  exclusive_scan({count, v}, total);
  count = total.count;
  return total.mass;
}

// Sums `mine` (each block's, every thread alike) over the cluster's ranks; `before` gets the sum
// over the lower ranks. Every thread of every rank calls it.
__device__ Sums cluster_sums(Sums mine, RowSplit split, Sums& before) {
  __shared__ Sums shared_sums;
  before = {0, 0};
  if (split.ranks == 1) return mine;
  if (threadIdx.x == 0) shared_sums = mine;
  cluster_sync();
  Sums total{0, 0};
  for (unsigned r = 0; r < split.ranks; ++r) {
    const Sums theirs = *rank_shared(&shared_sums, r);
    if (r == split.rank) before = total;
    total.count += theirs.count;
    total.mass += theirs.mass;
  }
  cluster_sync();  // every rank has read shared_sums
  return total;
}

// Replaces each rank's bin masses by their sum over the cluster. Every thread of every rank calls it.
__device__ void cluster_merge(unsigned long long* masses, RowSplit split) {
  if (split.ranks == 1) return;
  constexpr int kBinsPerThread = kMaxBins / kThreads;
  unsigned long long sums[kBinsPerThread] = {};
  cluster_sync();  // every rank's histogram is complete
  for (int k = 0; k < kBinsPerThread; ++k)
    for (unsigned r = 0; r < split.ranks; ++r) sums[k] += rank_shared(masses, r)[int(threadIdx.x) + k * kThreads];
  cluster_sync();  // every rank has read the others'
  for (int k = 0; k < kBinsPerThread; ++k) masses[int(threadIdx.x) + k * kThreads] = sums[k];
  __syncthreads();
}

// The first bin, from the highest down, whose running (count, mass) — on top of `base`, bins
// included — satisfies `stop`; returns it and the sums of the bins above it (with `base`).
// `stop` is false at `base` and true after the last bin. masses may be null (all zero).
template <typename Stop>
__device__ int pick_bin(const unsigned* counts, const unsigned long long* masses, int bins, Sums& base, Stop stop) {
  __shared__ int picked;
  __shared__ Sums picked_above;
  const int per_thread = bins / kThreads;  // 1 or 2
  const int top = bins - 1 - int(threadIdx.x) * per_thread;
  if (threadIdx.x == 0) {  // replaced below unless stop never turns true (it does, by construction)
    picked = 0;
    picked_above = base;
  }
  Sums mine{0, 0};
  for (int j = 0; j < per_thread; ++j) {
    mine.count += counts[top - j];
    mine.mass += masses ? masses[top - j] : 0;
  }
  Sums total;
  Sums run = exclusive_scan(mine, total);
  run.count += base.count;
  run.mass += base.mass;
  for (int j = 0; j < per_thread; ++j) {
    const Sums next{run.count + counts[top - j], run.mass + (masses ? masses[top - j] : 0)};
    if (!stop(run) && stop(next)) {
      picked = top - j;
      picked_above = run;
    }
    run = next;
  }
  __syncthreads();
  base = picked_above;
  const int bin = picked;
  __syncthreads();
  return bin;
}

__device__ void clear_bins(unsigned* counts, unsigned long long* masses) {
  for (int b = threadIdx.x; b < kMaxBins; b += kThreads) {
    if (counts) counts[b] = 0;
    if (masses) masses[b] = 0;
  }
  __syncthreads();
}

// Descends levels 1 and 2 from the level-0 bin in `prefix`: each level histograms the keys that
// share the prefix (masses of the keys at or above `mass_floor` when masses is set) and picks a
// bin. Returns the full 32-bit key.
template <typename Stop>
__device__ uint32_t descend(const RowState& s, uint32_t prefix, Sums& base, unsigned* counts,
                            unsigned long long* masses, uint32_t mass_floor, float max_logit, float temperature, Stop stop) {
  for (int level = 1; level < 3; ++level) {
    const int shift = digit_shift(level), bits = digit_bits(level);
    clear_bins(counts, masses);
    for_each_value<kLeanTilesInFlight>(s, [&](int64_t, float l, bool valid) {
      const uint32_t key = sampling::order_key(l);
      const bool match = valid && (key >> (shift + bits)) == prefix;
      const int bin = match ? int((key >> shift) & ((1u << bits) - 1)) : -1;
      count_in_bin(counts, bin);
      if (masses) {
        const bool weighed = match && key >= mass_floor;
        add_in_bin(masses, weighed ? bin : -1,
                   weighed ? sampling::fixed_weight(sampling::scaled_logit(l, max_logit, temperature)) : 0);
      }
    });
    __syncthreads();
    prefix = (prefix << bits) | uint32_t(pick_bin(counts, masses, 1 << bits, base, stop));
  }
  return prefix;
}

// Bitonic sort of v[0, n) in shared memory, n a power of two; descending or ascending.
__device__ void bitonic_sort(unsigned long long* v, int n, bool descending) {
  for (int k = 2; k <= n; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < n; i += kThreads) {
        const int partner = i ^ j;
        if (partner <= i) continue;
        const bool ascending = ((i & k) == 0) != descending;
        const unsigned long long a = v[i], b = v[partner];
        if ((a > b) == ascending) v[i] = b, v[partner] = a;
      }
      __syncthreads();
    }
  }
}

__device__ int pow2_at_least(unsigned n) {
  int p = 1;
  while (p < int(n)) p <<= 1;
  return p;
}

constexpr int kFastCandidates = 2048;          // at most this many: the fast path
constexpr int kPerThread = kFastCandidates / kThreads;
constexpr unsigned long long kWeightMask = (1ull << 41) - 1;  // fixed-point weights ≤ 2^40

// The fast path for top-k rows whose first-digit bins at and above the k-th key's hold at most
// kFastCandidates tokens: one pass gathers them (each rank from its slice, then rank 0 collects
// them), a bitonic sort in shared memory orders them by σ, and the cut and the draw work on that
// list (same rule, same result as the passes below). `order` and `weights` hold kFastCandidates
// values each. Returns the token (every thread of rank 0; −1 on the other ranks).
__device__ int32_t sample_candidates(const RowState& slice, RowSplit split, uint32_t first_bin, unsigned count,
                                     unsigned top_k, const SampleRow& p, float max_logit, float t,
                                     unsigned long long* order, unsigned long long* weights) {
  __shared__ unsigned filled, kept_shared;
  __shared__ int32_t token;
  if (threadIdx.x == 0) filled = 0, token = -1;
  __syncthreads();
  // (key, inverted id): descending order of these is σ.
  for_each_value<kLeanTilesInFlight>(slice, [&](int64_t i, float l, bool valid) {
    const uint32_t key = sampling::order_key(l);
    if (valid && (key >> 21) >= first_bin)
      order[atomicAdd(&filled, 1u)] = (static_cast<unsigned long long>(key) << 32) | (0xffffffffu - uint32_t(i));
  });
  if (split.ranks > 1) {
    cluster_sync();  // every rank's candidates gathered
    if (split.rank == 0) {
      unsigned offset = filled;
      for (unsigned r = 1; r < split.ranks; ++r) {
        const unsigned n = *rank_shared(&filled, r);
        const unsigned long long* theirs = rank_shared(order, r);
        for (unsigned i = threadIdx.x; i < n; i += kThreads) order[offset + i] = theirs[i];
        offset += n;
      }
    }
    cluster_sync();  // rank 0 has read them: the others may exit
    if (split.rank != 0) return -1;
  }
  const int padded = pow2_at_least(count);
  for (int i = int(count) + int(threadIdx.x); i < padded; i += kThreads) order[i] = 0;
  __syncthreads();
  bitonic_sort(order, padded, true);

  // Weights of the top-k set, its mass and its min-p count.
  unsigned long long mass = 0;
  unsigned min_p_count = 0;
  for (int j = threadIdx.x; j < int(top_k); j += kThreads) {
    const float x = sampling::scaled_logit(sampling::key_logit(uint32_t(order[j] >> 32)), max_logit, t);
    weights[j] = sampling::fixed_weight(x);
    mass += weights[j];
    min_p_count += x >= p.log_min_p;
  }
  mass = block_sum(mass, min_p_count);
  const unsigned limit = min(top_k, min_p_count);
  const double threshold = sampling::top_p_threshold(p.top_p, mass);

  // The shortest prefix reaching the top-p mass, else `limit` tokens.
  const int first = int(threadIdx.x) * kPerThread;
  Sums mine{0, 0};
  for (int j = first; j < first + kPerThread; ++j)
    if (j < int(limit)) mine.mass += weights[j];
  if (threadIdx.x == 0) kept_shared = limit;
  Sums all;
  Sums run = exclusive_scan(mine, all);
  for (int j = first; j < first + kPerThread && j < int(limit); ++j) {
    const unsigned long long before = run.mass;
    run.mass += weights[j];
    if (sampling::reaches(run.mass, threshold) && !sampling::reaches(before, threshold)) kept_shared = unsigned(j + 1);
  }
  __syncthreads();
  const unsigned kept = kept_shared;

  // The kept tokens as (id, weight), sorted by id; the draw walks them.
  unsigned long long total = 0;
  for (int j = threadIdx.x; j < int(kept); j += kThreads) {
    const uint32_t id = 0xffffffffu - uint32_t(order[j] & 0xffffffffu);
    total += weights[j];
    order[j] = (static_cast<unsigned long long>(id) << 41) | weights[j];
  }
  unsigned unused = 0;
  total = block_sum(total, unused);
  const int padded_kept = pow2_at_least(kept);
  for (int i = int(kept) + int(threadIdx.x); i < padded_kept; i += kThreads) order[i] = ~0ull;
  __syncthreads();
  bitonic_sort(order, padded_kept, false);
  const uint64_t target = sampling::draw_target(total, p.draw);
  mine = {0, 0};
  for (int j = first; j < first + kPerThread && j < int(kept); ++j) mine.mass += order[j] & kWeightMask;
  run = exclusive_scan(mine, all);
  for (int j = first; j < first + kPerThread && j < int(kept); ++j) {
    const unsigned long long before = run.mass;
    run.mass += order[j] & kWeightMask;
    if (before <= target && run.mass > target) token = int32_t(order[j] >> 41);
  }
  __syncthreads();
  return token;
}

__global__ void __launch_bounds__(kThreads) sample_kernel(float* logits, int64_t vocab, bool vec4,
                                                          const SampleRow* rows, const TokenCount* penalties,
                                                          int32_t* tokens) {
  // first_counts | counts | masses, or the fast path's weights | order.
  __shared__ unsigned long long pool[2 * kMaxBins];
  unsigned* const first_counts = reinterpret_cast<unsigned*>(pool);
  unsigned* const counts = first_counts + kMaxBins;
  unsigned long long* const masses = pool + kMaxBins;
  __shared__ Candidate warp_bests[kWarps];
  __shared__ Candidate block_best;
  __shared__ int found;
  const RowSplit split = row_split();
  const int64_t row_index = blockIdx.x / split.ranks;
  const SampleRow p = rows[row_index];
  float* row = logits + row_index * vocab;
  const int64_t slice_size = (vocab + split.ranks * kItems - 1) / (split.ranks * kItems) * kItems;
  const int64_t begin = min(vocab, split.rank * slice_size), end = min(vocab, begin + slice_size);
  const RowState whole{row, 0, vocab, vec4}, slice{row, begin, end, vec4};
  const bool greedy = p.temperature == 0.0f;

  // A. Penalties (distinct tokens: no two threads touch the same logit), maximum, first digit;
  // each rank on its slice, then merged.
  for (int i = threadIdx.x; i < p.penalty_count; i += kThreads) {
    const TokenCount tc = penalties[p.penalty_begin + i];
    if (tc.token >= begin && tc.token < end)
      row[tc.token] = sampling::penalize(row[tc.token], tc.count, p.repetition_penalty, p.presence_penalty,
                                         p.frequency_penalty);
  }
  if (!greedy) clear_bins(first_counts, nullptr);
  __syncthreads();
  Candidate best{-INFINITY, INT_MAX};
  for_each_value(slice, [&](int64_t i, float l, bool valid) {
    if (valid) keep_better(best, l, int(i));
    if (!greedy) count_in_bin(first_counts, valid ? int(sampling::order_key(l) >> 21) : -1);
  });
  best = warp_best(best);
  if (threadIdx.x % 32 == 0) warp_bests[threadIdx.x / 32] = best;
  __syncthreads();
  for (int w = 0; w < kWarps; ++w) keep_better(best, warp_bests[w].value, warp_bests[w].index);
  if (split.ranks > 1) {
    if (threadIdx.x == 0) block_best = best;
    cluster_sync();  // every rank's maximum and histogram done (and its penalties written)
    for (unsigned r = 0; r < split.ranks; ++r) {
      const Candidate theirs = *rank_shared(&block_best, r);
      keep_better(best, theirs.value, theirs.index);
    }
    if (!greedy) {
      for (int b = threadIdx.x; b < kMaxBins; b += kThreads) {
        unsigned sum = 0;
        for (unsigned r = 0; r < split.ranks; ++r) sum += rank_shared(first_counts, r)[b];
        counts[b] = sum;
      }
    }
    cluster_sync();  // no rank reads another's shared memory any more
    if (!greedy) {
      for (int b = threadIdx.x; b < kMaxBins; b += kThreads) first_counts[b] = counts[b];
      __syncthreads();
    }
  }
  if (greedy) {
    if (split.rank == 0 && threadIdx.x == 0) tokens[row_index] = best.index == INT_MAX ? 0 : best.index;
    return;
  }
  const float max_logit = best.value, t = p.temperature;

  // B. top-k threshold.
  const bool top_k_on = p.top_k > 0 && p.top_k < vocab;
  const unsigned top_k = top_k_on ? unsigned(p.top_k) : unsigned(vocab);
  uint32_t top_k_key = 0;  // every cleaned logit's key is above 0
  unsigned above_top_k = 0;
  auto enough = [top_k](const Sums& run) { return run.count >= top_k; };
  Sums above_bin{0, 0};
  uint32_t top_k_bin = 0;
  if (top_k_on) {
    top_k_bin = uint32_t(pick_bin(first_counts, nullptr, kMaxBins, above_bin, enough));
    const unsigned candidates = above_bin.count + first_counts[top_k_bin];
    if (candidates <= kFastCandidates) {
      const int32_t token =
          sample_candidates(slice, split, top_k_bin, candidates, top_k, p, max_logit, t, masses, pool);
      if (split.rank == 0 && threadIdx.x == 0) tokens[row_index] = token;
      return;
    }
  }
  // The rest: the radix descents (histograms of the few keys under one prefix) run in every rank
  // over the whole row, alike; C and E are split by slice.
  if (top_k_on) {
    top_k_key = descend(whole, top_k_bin, above_bin, counts, nullptr, 0, max_logit, t, enough);
    above_top_k = above_bin.count;
  }

  // C. Mass of the top-k set, min-p count, first-digit masses (needed only where D may run:
  // top-p on, or min-p on; with min-p off every valid x counts, as x ≥ −inf).
  const bool may_cut = p.top_p < 1.0f || !(p.log_min_p == -INFINITY);
  if (may_cut) clear_bins(nullptr, masses);
  unsigned long long top_k_mass = 0;
  unsigned min_p_count = 0;
  for_each_value(slice, [&](int64_t, float l, bool valid) {
    const float x = sampling::scaled_logit(l, max_logit, t);
    const uint32_t key = sampling::order_key(l);
    const bool in_top_k = valid && key >= top_k_key;
    const uint64_t q = in_top_k ? sampling::fixed_weight(x) : 0;
    if (valid && x >= p.log_min_p) ++min_p_count;
    if (in_top_k && key > top_k_key) top_k_mass += q;
    if (may_cut) add_in_bin(masses, in_top_k ? int(key >> 21) : -1, q);
  });
  __syncthreads();
  top_k_mass = block_sum(top_k_mass, min_p_count);
  {
    Sums lower_ranks;
    const Sums all = cluster_sums({min_p_count, top_k_mass}, split, lower_ranks);
    min_p_count = all.count;
    top_k_mass = all.mass;
  }
  if (may_cut) cluster_merge(masses, split);
  const uint64_t top_k_tie_weight =
      top_k_on ? sampling::fixed_weight(sampling::scaled_logit(sampling::key_logit(top_k_key), max_logit, t)) : 0;
  if (top_k_on) top_k_mass += uint64_t(top_k - above_top_k) * top_k_tie_weight;

  // D. The cut.
  const unsigned count_limit = min(top_k, min_p_count);
  uint32_t last_key = top_k_key;
  uint64_t tie_weight = top_k_tie_weight, total = top_k_mass;
  unsigned kept_ties = top_k - above_top_k;  // with top-k off: no key equals 0, so none
  if (p.top_p < 1.0f || count_limit < top_k) {
    const double threshold = sampling::top_p_threshold(p.top_p, top_k_mass);
    auto stop = [count_limit, threshold](const Sums& run) {
      return run.count >= count_limit || sampling::reaches(run.mass, threshold);
    };
    Sums base{0, 0};
    const uint32_t bin = uint32_t(pick_bin(first_counts, masses, kMaxBins, base, stop));
    last_key = descend(whole, bin, base, counts, masses, top_k_key, max_logit, t, stop);
    tie_weight = sampling::fixed_weight(sampling::scaled_logit(sampling::key_logit(last_key), max_logit, t));
    // The fewest tokens at last_key (≥ 1) that make the prefix stop.
    kept_ties = count_limit - base.count;
    if (tie_weight > 0) {
      auto reached = [&](unsigned r) { return sampling::reaches(base.mass + uint64_t(r) * tie_weight, threshold); };
      const double need = threshold - double(base.mass);
      unsigned r = need <= 0 ? 1u : unsigned(min(ceil(need / double(tie_weight)), double(kept_ties)));
      r = max(r, 1u);
      while (r > 1 && reached(r - 1)) --r;
      while (r < kept_ties && !reached(r)) ++r;
      kept_ties = r;
    }
    total = base.mass + uint64_t(kept_ties) * tie_weight;
  }

  // E. The draw, in id order: with several ranks, each first sums its slice (the kept mass above
  // last_key and the ties at it); only the rank whose slice holds the first crossing scans.
  const uint64_t target = sampling::draw_target(total, p.draw);
  auto cumulative = [&](const Sums& run) { return run.mass + uint64_t(min(run.count, kept_ties)) * tie_weight; };
  Sums slice_sums{0, 0};
  if (split.ranks > 1) {
    for_each_value(slice, [&](int64_t, float l, bool valid) {
      const uint32_t key = sampling::order_key(l);
      if (valid && key > last_key) slice_sums.mass += sampling::fixed_weight(sampling::scaled_logit(l, max_logit, t));
      slice_sums.count += valid && key == last_key;
    });
    slice_sums.mass = block_sum(slice_sums.mass, slice_sums.count);
  }
  Sums done;  // ties at last_key and other kept mass before this tile
  const Sums row_sums = cluster_sums(slice_sums, split, done);
  if (split.ranks > 1) {
    const Sums after{done.count + slice_sums.count, done.mass + slice_sums.mass};
    if (split.rank == 0 && threadIdx.x == 0 && cumulative(row_sums) <= target)
      tokens[row_index] = best.index;  // cannot happen
    if (!(cumulative(done) <= target && cumulative(after) > target)) return;
  }
  if (threadIdx.x == 0) found = INT_MAX;
  bool drawn = false;  // found is set (read after a barrier, so every thread agrees)
  for (int64_t base = slice.begin; base < slice.end && !drawn; base += kMaxTilesInFlight * kTile) {
    float v[kMaxTilesInFlight][kItems];
#pragma unroll
    for (int tile_in_batch = 0; tile_in_batch < kMaxTilesInFlight; ++tile_in_batch)
      load_items(row, slice.end, vec4, first_item(base, tile_in_batch), v[tile_in_batch]);
#pragma unroll
    for (int tile_in_batch = 0; tile_in_batch < kMaxTilesInFlight; ++tile_in_batch) {
      const int64_t i0 = first_item(base, tile_in_batch);
      uint32_t keys[kItems];
      uint64_t q[kItems];
      Sums mine{0, 0};
#pragma unroll
      for (int j = 0; j < kItems; ++j) {
        const bool valid = i0 + j < slice.end;
        const float l = valid ? sampling::clean(v[tile_in_batch][j]) : -INFINITY;
        keys[j] = valid ? sampling::order_key(l) : 0;
        q[j] = keys[j] > last_key ? sampling::fixed_weight(sampling::scaled_logit(l, max_logit, t)) : 0;
        mine.count += keys[j] == last_key && valid;
        mine.mass += q[j];
      }
      Sums tile;
      Sums run = exclusive_scan(mine, tile);
      run.count += done.count;
      run.mass += done.mass;
#pragma unroll
      for (int j = 0; j < kItems; ++j) {
        run.count += keys[j] == last_key && i0 + j < slice.end;
        run.mass += q[j];
        if (cumulative(run) > target) {
          atomicMin(&found, int(i0 + j));
          break;
        }
      }
      __syncthreads();
      drawn = found != INT_MAX;
      if (drawn) break;
      done.count += tile.count;
      done.mass += tile.mass;
    }
  }
  if (threadIdx.x == 0) tokens[row_index] = found == INT_MAX ? best.index : found;  // INT_MAX: cannot happen
}

}  // namespace

void argmax(const float* logits, int batch, int64_t vocab, int32_t* tokens, cudaStream_t stream) {
  using ops_detail::require;
  require(batch >= 0 && batch < 65536, "argmax", "batch out of range", batch);
  require(vocab > 0 && vocab < INT_MAX, "argmax", "vocab out of range", vocab);
  if (batch == 0) return;
  const bool vec4 = ops_detail::aligned16(logits) && vocab % 4 == 0;
  argmax_kernel<<<unsigned(batch), kThreads, 0, stream>>>(logits, vocab, vec4, tokens);
  ops_detail::check_launch("argmax");
}

void sample_rows(float* logits, int rows, int64_t vocab, const SampleRow* params, const TokenCount* penalties,
                 int32_t* tokens, cudaStream_t stream) {
  using ops_detail::require;
  require(rows >= 0 && rows < 65536, "sample_rows", "rows out of range", rows);
  require(vocab > 0 && vocab <= kMaxSampleVocab, "sample_rows", "vocab out of range", vocab);
  if (rows == 0) return;
  const bool vec4 = ops_detail::aligned16(logits) && vocab % 4 == 0;
  // Clusters of as many blocks per row (8, 4 or 2) as fit on the GPU at once (sm_90). H100, 32
  // rows, top-p 0.9: one block per row took 795 µs, 8-block clusters 246 µs for 8 rows.
  int device = 0, major = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  unsigned ranks = major >= 9 ? kRowCluster : 1;
  while (ranks > 1 && int64_t(rows) * ranks > sms) ranks /= 2;
  cudaLaunchAttribute cluster{};
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = ranks;
  cluster.val.clusterDim.y = 1;
  cluster.val.clusterDim.z = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(unsigned(rows) * ranks);
  config.blockDim = dim3(kThreads);
  config.stream = stream;
  config.attrs = &cluster;
  config.numAttrs = ranks > 1 ? 1 : 0;
  cudaLaunchKernelEx(&config, sample_kernel, logits, vocab, vec4, params, penalties, tokens);
  ops_detail::check_launch("sample_rows");
}

}  // namespace marlin::cuda
