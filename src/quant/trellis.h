// Trellis-coded quantization of 16×16 tiles (QTIP, Tseng et al. 2024; EXL3): 256 values become a
// circular bitstream of 256·K bits (K = 1..8 bits per value) in which every K-bit step shifts a
// 16-bit state, and each value is the procedural codebook's value of its state
// (quant/trellis_code.h). The encoder is a Viterbi search (quant/trellis_viterbi.h).
//
// Bitstream layout (what a GPU kernel decodes):
//   - stream bit i (0 ≤ i < 256·K) is bit 15 − (i mod 16) of word i / 16 of the tile's 16·K
//     uint16_t words (most significant bit first);
//   - value t (t = 0..255, in the caller's order within the tile) owns stream bits [t·K, t·K + K),
//     its "new bits";
//   - the state of value t is the 16 bits ending with its new bits, read circularly: stream bits
//     (t·K + K − 16 + j) mod 256·K for j = 0..15, the first one most significant. The stream wraps
//     around (tail-biting): there is no start state, the states of values 0..⌈16/K⌉−2 take their
//     high bits from the end of the stream.
//   - decoding value t: start = (t·K + K − 16) mod 256·K, w = start / 16, o = start mod 16,
//     window = (word[w] << 16) | word[(w + 1) mod 16·K], state = (window >> (16 − o)) & 0xffff,
//     value = trellis_value(state) (see trellis_tile_state).
//
// Tail-biting: an exact circular Viterbi would need one constrained search per value of the
// 16 − K overlapping bits. Instead (the usual two-pass approximation): pass 1 runs an unconstrained
// Viterbi on the sequence rotated by half a tile (values 128..255, 0..127; a circle shorter than
// 64 values is repeated to 32 values each side), so that the wrap point (after value 255) lies in
// the middle of the path, and reads the low 16 − K bits of the state of value 255; pass 2 runs an
// exact Viterbi on the tile in order with s_0's high 16 − K bits and s_255's low 16 − K bits both
// constrained to those bits. The result is always a valid circular stream, the best one among
// those that share pass 1's overlap bits. Measured (tests/quant/test_trellis.cpp): at 256 values
// with L = 8..10 it reached the exact circular optimum in 60 of 60 cases; on circles of 3..16
// values (T·K ≤ 2L) in 2 of 3. A shorter pass 1 costs quality at L = 16 (half-windows of 64:
// +0.5% error at K = 2), so it spans the whole tile.
//
// Targets are in the codebook's unit (unit variance); callers scale them. Errors are reported as
// Σ_t (target_t − decoded_t)², summed in double in the order t = 0..255, over the values the
// decoder returns, so they are exactly what decode(encode(x)) gives.
#pragma once

#include <cstdint>

namespace marlin {

class ThreadPool;

constexpr int kTrellisTileValues = 256;
constexpr int kTrellisStateBits = 16;

// uint16_t words of one packed tile with k bits per value.
constexpr int trellis_tile_words(int k) { return kTrellisTileValues * k / 16; }

// The 16-bit state of value t (0..255) of a packed tile: two 16-bit loads, a shift, a mask.
inline uint32_t trellis_tile_state(const uint16_t* packed, int k, int t) {
  const int stream_bits = kTrellisTileValues * k;
  const int start = (t * k + k - kTrellisStateBits + stream_bits) % stream_bits;
  const int word = start >> 4, offset = start & 15;
  const uint32_t window = (uint32_t(packed[word]) << 16) | packed[(word + 1) % trellis_tile_words(k)];
  return (window >> (16 - offset)) & 0xffffu;
}

// Decodes one packed tile into 256 floats. Throws marlin::Error for k outside 1..8 or null pointers.
void trellis_decode_tile(const uint16_t* packed, int k, float* out);

// Encodes 256 finite targets with k bits each into trellis_tile_words(k) words; returns the squared
// error of the reconstruction, which it also writes to `decoded` when that is not null.
// Throws marlin::Error for k outside 1..8, null pointers or a non-finite target.
double trellis_encode_tile(const float* target, int k, uint16_t* packed, float* decoded = nullptr);

// Packs a tile's path (the states of values 0..255, whose low k bits are each value's new bits)
// into trellis_tile_words(k) words and returns the squared error of its reconstruction, which it
// also writes to `decoded` when that is not null: the encoders' last step (also for a search that
// ran elsewhere, such as the GPU's).
double pack_tile_states(const uint32_t* states, const float* target, int k, uint16_t* packed, float* decoded);

// Encodes `tiles` consecutive tiles (256 targets each; tile i's words at packed + i·16·k, its error
// in errors[i], its reconstruction at decoded + 256·i when decoded is not null), spread over the
// pool (null: this thread). The results do not depend on the pool's size.
void trellis_encode_tiles(const float* targets, int64_t tiles, int k, uint16_t* packed, double* errors,
                          ThreadPool* pool, float* decoded = nullptr);

// The same trellis at any size, for tests and experiments: `values` values, `bits` (K) bits each,
// a `state_bits` (L) state, 2K ≤ L ≤ 16. A circular stream is given as one K-bit symbol per value
// (the value's new bits); the state of value t is the L stream bits ending with symbol t, read
// circularly (circular streams need values·K ≥ L).
struct TrellisShape {
  int values = kTrellisTileValues;
  int bits = 2;
  int state_bits = kTrellisStateBits;
};

uint32_t trellis_circular_state(const uint8_t* symbols, const TrellisShape& shape, int t);

// The two-pass tail-biting encoder described above; returns Σ (target − value)² in double.
double trellis_encode_circular(const float* target, const TrellisShape& shape, uint8_t* symbols);

// Exact Viterbi without tail-biting: any start state s_0 (all L bits free), then K new bits per
// value. Writes the states of the best path; returns its Σ (target − value)² in double.
double trellis_encode_free(const float* target, const TrellisShape& shape, uint32_t* states);

}  // namespace marlin
