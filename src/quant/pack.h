// Bit packing of k-bit codes (k = 1..8) into a row's little-endian bit stream, as format.h lays
// out codes: value k occupies bits [k·bits, (k+1)·bits), so int4 keeps value 2j in the low nibble
// of byte j and int3 packs 8 values into 3 bytes. Also the 4-bit patterns of 2:4 metadata.
#pragma once

#include <cstdint>

namespace marlin {

// Bytes taken by n packed codes of `bits` bits.
inline uint64_t packed_bytes(int64_t n, int bits) { return (uint64_t(n) * uint64_t(bits) + 7) / 8; }

// Writes the n codes to packed_bytes(n, bits) bytes at `out` (the last byte's unused high bits are
// 0). Throws marlin::Error for bits outside 1..8 or a code that does not fit in `bits` bits.
void pack_codes(const uint8_t* codes, int64_t n, int bits, uint8_t* out);

// Inverse of pack_codes; reads exactly packed_bytes(n, bits) bytes.
void unpack_codes(const uint8_t* packed, int64_t n, int bits, uint8_t* codes);

// Code k of a packed stream (random access; reads only the bytes holding it).
inline uint8_t packed_code(const uint8_t* packed, int64_t k, int bits) {
  const uint64_t bit = uint64_t(k) * uint64_t(bits);
  const uint64_t byte = bit / 8;
  const unsigned shift = unsigned(bit % 8);
  uint32_t window = packed[byte];
  if (shift + unsigned(bits) > 8) window |= uint32_t(packed[byte + 1]) << 8;
  return uint8_t((window >> shift) & ((1u << bits) - 1));
}

// The 4-bit 2:4 pattern keeping columns `first` < `second` of a group of 4 (format.h).
inline uint8_t sparse_pattern(int first, int second) { return uint8_t(first | (second << 2)); }

// Positions kept by a 2:4 pattern; false when the pattern is malformed (first >= second).
inline bool sparse_positions(uint8_t pattern, int& first, int& second) {
  first = pattern & 3;
  second = (pattern >> 2) & 3;
  return first < second;
}

}  // namespace marlin
