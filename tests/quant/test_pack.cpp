// k-bit code packing: layout against hand-written bytes, round trips, bad input.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "core/error.h"
#include "quant/pack.h"

namespace marlin {
namespace {

TEST(Pack, LayoutIsTheLittleEndianBitStream) {
  const uint8_t four[] = {0x1, 0x2, 0x3, 0xf, 0x7};
  uint8_t out[3] = {0xaa, 0xaa, 0xaa};
  pack_codes(four, 5, 4, out);
  EXPECT_EQ(out[0], 0x21);
  EXPECT_EQ(out[1], 0xf3);
  EXPECT_EQ(out[2], 0x07);  // unused high nibble cleared

  // int3: 8 values in 3 bytes; value k at bits [3k, 3k+3).
  const uint8_t three[] = {1, 2, 3, 4, 5, 6, 7, 0};
  uint8_t out3[3] = {};
  pack_codes(three, 8, 3, out3);
  uint32_t stream = 0;
  for (int k = 0; k < 8; ++k) stream |= uint32_t(three[k]) << (3 * k);
  EXPECT_EQ(out3[0], stream & 0xff);
  EXPECT_EQ(out3[1], (stream >> 8) & 0xff);
  EXPECT_EQ(out3[2], (stream >> 16) & 0xff);

  const uint8_t two[] = {3, 0, 1, 2};
  uint8_t out2 = 0;
  pack_codes(two, 4, 2, &out2);
  EXPECT_EQ(out2, 0b10010011);
}

TEST(Pack, RoundTripsEveryWidth) {
  std::mt19937 rng(7);
  for (int bits = 1; bits <= 8; ++bits) {
    for (int64_t n : {1, 2, 3, 7, 8, 9, 31, 64, 1001}) {
      std::vector<uint8_t> codes(static_cast<size_t>(n)), back(static_cast<size_t>(n));
      for (auto& c : codes) c = uint8_t(rng() & ((1u << bits) - 1));
      std::vector<uint8_t> packed(packed_bytes(n, bits));
      pack_codes(codes.data(), n, bits, packed.data());
      unpack_codes(packed.data(), n, bits, back.data());
      EXPECT_EQ(back, codes) << bits << " bits, n " << n;
      for (int64_t k = 0; k < n; ++k) ASSERT_EQ(packed_code(packed.data(), k, bits), codes[size_t(k)]);
    }
  }
}

TEST(Pack, RejectsBadInput) {
  const uint8_t codes[] = {4};
  uint8_t out[2];
  EXPECT_THROW(pack_codes(codes, 1, 2, out), Error);
  EXPECT_THROW(pack_codes(codes, 1, 0, out), Error);
  EXPECT_THROW(pack_codes(codes, 1, 9, out), Error);
  EXPECT_THROW(unpack_codes(codes, 1, 0, out), Error);
}

TEST(Pack, SparsePatterns) {
  int first, second;
  for (int a = 0; a < 4; ++a) {
    for (int b = 0; b < 4; ++b) {
      EXPECT_EQ(sparse_positions(sparse_pattern(a, b), first, second), a < b);
      EXPECT_EQ(first, a);
      EXPECT_EQ(second, b);
    }
  }
}

}  // namespace
}  // namespace marlin
