#include "quant/pack.h"

#include <cstring>

#include "core/error.h"

namespace marlin {

void pack_codes(const uint8_t* codes, int64_t n, int bits, uint8_t* out) {
  MARLIN_CHECK(bits >= 1 && bits <= 8, "cannot pack {}-bit codes", bits);
  if (bits == 8) {
    std::memcpy(out, codes, size_t(n));
    return;
  }
  const uint32_t limit = 1u << bits;
  uint64_t acc = 0;  // pending bits, least significant first
  int filled = 0;
  uint8_t* dst = out;
  for (int64_t k = 0; k < n; ++k) {
    MARLIN_CHECK(codes[k] < limit, "code {} at index {} does not fit in {} bits", codes[k], k, bits);
    acc |= uint64_t(codes[k]) << filled;
    filled += bits;
    while (filled >= 8) {
      *dst++ = uint8_t(acc);
      acc >>= 8;
      filled -= 8;
    }
  }
  if (filled > 0) *dst = uint8_t(acc);
}

void unpack_codes(const uint8_t* packed, int64_t n, int bits, uint8_t* codes) {
  MARLIN_CHECK(bits >= 1 && bits <= 8, "cannot unpack {}-bit codes", bits);
  if (bits == 8) {
    std::memcpy(codes, packed, size_t(n));
    return;
  }
  const uint64_t mask = (1u << bits) - 1;
  uint64_t acc = 0;
  int filled = 0;
  const uint8_t* src = packed;
  for (int64_t k = 0; k < n; ++k) {
    if (filled < bits) {
      acc |= uint64_t(*src++) << filled;
      filled += 8;
    }
    codes[k] = uint8_t(acc & mask);
    acc >>= bits;
    filled -= bits;
  }
}

}  // namespace marlin
