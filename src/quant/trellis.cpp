#include "quant/trellis.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "quant/parallel.h"
#include "quant/trellis_code.h"
#include "quant/trellis_gpu_search.h"
#include "quant/trellis_viterbi.h"

namespace marlin {
namespace {

void check_bits(int k) { MARLIN_CHECK(k >= 1 && k <= 8, "trellis: {} bits per value is outside 1..8", k); }

void check_shape(const TrellisShape& shape, bool circular) {
  check_bits(shape.bits);
  MARLIN_CHECK(shape.state_bits >= 2 * shape.bits && shape.state_bits <= 16,
               "trellis: state width {} is outside {}..16 for {} bits per value", shape.state_bits, 2 * shape.bits,
               shape.bits);
  MARLIN_CHECK(shape.values >= 1, "trellis: {} values", shape.values);
  MARLIN_CHECK(!circular || int64_t(shape.values) * shape.bits >= shape.state_bits,
               "trellis: {} values of {} bits are fewer bits than one {}-bit state", shape.values, shape.bits,
               shape.state_bits);
}

void check_targets(const float* target, int n) {
  MARLIN_CHECK(target, "trellis: null target pointer");
  for (int t = 0; t < n; ++t) MARLIN_CHECK(std::isfinite(target[t]), "trellis: target {} is not finite", t);
}

double squared_error(const float* target, const float* decoded, int n) {
  double sum = 0.0;
  for (int t = 0; t < n; ++t) {
    const double d = double(target[t]) - double(decoded[t]);
    sum += d * d;
  }
  return sum;
}

// Pass 1 runs over at least this many values (the circle repeated when it is shorter), so the
// state at the wrap point is chosen in the middle of a long path even for short circles.
constexpr int kMinimumWarmup = 32;

// The two-pass tail-biting search (see trellis.h); writes the circular path's states.
void encode_circular_states(TrellisViterbi& viterbi, const float* target, const TrellisShape& shape,
                            std::vector<float>& rotated, std::vector<uint32_t>& states) {
  const int n = shape.values, k = shape.bits, l = shape.state_bits;
  const int half = std::max(n / 2, kMinimumWarmup);
  rotated.resize(size_t(2 * half));
  states.resize(size_t(std::max(n, 2 * half)));
  for (int t = 0; t < 2 * half; ++t) rotated[size_t(t)] = target[(t + n - half % n) % n];
  viterbi.solve(rotated.data(), 2 * half, k, l, -1, -1, states.data());
  // rotated[half − 1] is target[n − 1], the value before the wrap point.
  const int64_t overlap = states[size_t(half - 1)] & ((uint32_t(1) << (l - k)) - 1);
  viterbi.solve(target, n, k, l, overlap, overlap, states.data());
}

struct TileWorkspace {
  TrellisViterbi viterbi;
  std::vector<float> rotated;
  std::vector<uint32_t> states;
};

double encode_tile_with(TileWorkspace& work, const float* target, int k, uint16_t* packed, float* decoded) {
  const TrellisShape shape{kTrellisTileValues, k, kTrellisStateBits};
  encode_circular_states(work.viterbi, target, shape, work.rotated, work.states);
  return pack_tile_states(work.states.data(), target, k, packed, decoded);
}

}  // namespace

void trellis_decode_tile(const uint16_t* packed, int k, float* out) {
  check_bits(k);
  MARLIN_CHECK(packed && out, "trellis: null pointer passed to trellis_decode_tile");
  for (int t = 0; t < kTrellisTileValues; ++t) out[t] = trellis_value(trellis_tile_state(packed, k, t));
}

double pack_tile_states(const uint32_t* states, const float* target, int k, uint16_t* packed, float* decoded) {
  std::memset(packed, 0, sizeof(uint16_t) * size_t(trellis_tile_words(k)));
  for (int t = 0; t < kTrellisTileValues; ++t) {
    const uint32_t symbol = states[t] & ((1u << k) - 1);
    for (int b = 0; b < k; ++b) {
      const int bit = t * k + b;
      packed[bit >> 4] = uint16_t(packed[bit >> 4] | (((symbol >> (k - 1 - b)) & 1u) << (15 - (bit & 15))));
    }
  }
  float values[kTrellisTileValues];
  trellis_decode_tile(packed, k, values);
  if (decoded) std::memcpy(decoded, values, sizeof values);
  return squared_error(target, values, kTrellisTileValues);
}

double trellis_encode_tile(const float* target, int k, uint16_t* packed, float* decoded) {
  check_bits(k);
  MARLIN_CHECK(packed, "trellis: null output pointer passed to trellis_encode_tile");
  check_targets(target, kTrellisTileValues);
  TileWorkspace work;
  return encode_tile_with(work, target, k, packed, decoded);
}

void trellis_encode_tiles(const float* targets, int64_t tiles, int k, uint16_t* packed, double* errors,
                          ThreadPool* pool, float* decoded) {
  check_bits(k);
  MARLIN_CHECK(tiles >= 0, "trellis: {} tiles", tiles);
  if (tiles == 0) return;
  MARLIN_CHECK(targets && packed && errors, "trellis: null pointer passed to trellis_encode_tiles");
  for (int64_t i = 0; i < tiles; ++i) check_targets(targets + i * kTrellisTileValues, kTrellisTileValues);
  const int64_t words = trellis_tile_words(k);
  std::vector<uint32_t> gpu_states;  // the paths, where the GPU searched them
  const bool on_gpu = trellis_search_on_gpu(targets, tiles, k, gpu_states);
  parallel_ranges(pool, tiles, 1, [&](int64_t begin, int64_t end) {
    TileWorkspace work;
    for (int64_t i = begin; i < end; ++i) {
      const float* target = targets + i * kTrellisTileValues;
      float* out = decoded ? decoded + i * kTrellisTileValues : nullptr;
      uint16_t* words_out = packed + i * words;
      errors[i] = on_gpu ? pack_tile_states(&gpu_states[size_t(i) * kTrellisTileValues], target, k, words_out, out)
                         : encode_tile_with(work, target, k, words_out, out);
    }
  });
}

uint32_t trellis_circular_state(const uint8_t* symbols, const TrellisShape& shape, int t) {
  check_shape(shape, true);
  MARLIN_CHECK(symbols, "trellis: null symbols pointer");
  MARLIN_CHECK(t >= 0 && t < shape.values, "trellis: value {} is outside 0..{}", t, shape.values - 1);
  const int64_t k = shape.bits, stream_bits = int64_t(shape.values) * k;
  uint32_t state = 0;
  for (int j = 0; j < shape.state_bits; ++j) {
    const int64_t bit = ((t + 1) * k - shape.state_bits + j + stream_bits) % stream_bits;
    state = (state << 1) | ((symbols[bit / k] >> (k - 1 - bit % k)) & 1u);
  }
  return state;
}

double trellis_encode_circular(const float* target, const TrellisShape& shape, uint8_t* symbols) {
  check_shape(shape, true);
  check_targets(target, shape.values);
  MARLIN_CHECK(symbols, "trellis: null symbols pointer");
  TrellisViterbi viterbi;
  std::vector<float> rotated;
  std::vector<uint32_t> states;
  encode_circular_states(viterbi, target, shape, rotated, states);
  std::vector<float> values(size_t(shape.values));
  for (int t = 0; t < shape.values; ++t) symbols[t] = uint8_t(states[size_t(t)] & ((1u << shape.bits) - 1));
  for (int t = 0; t < shape.values; ++t) values[size_t(t)] = trellis_value(trellis_circular_state(symbols, shape, t));
  return squared_error(target, values.data(), shape.values);
}

double trellis_encode_free(const float* target, const TrellisShape& shape, uint32_t* states) {
  check_shape(shape, false);
  check_targets(target, shape.values);
  MARLIN_CHECK(states, "trellis: null states pointer");
  TrellisViterbi viterbi;
  viterbi.solve(target, shape.values, shape.bits, shape.state_bits, -1, -1, states);
  std::vector<float> values(size_t(shape.values));
  for (int t = 0; t < shape.values; ++t) values[size_t(t)] = trellis_value(states[t]);
  return squared_error(target, values.data(), shape.values);
}

}  // namespace marlin
