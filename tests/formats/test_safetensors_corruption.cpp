// Malformed safetensors files: each must raise marlin::Error with one line, prefixed
// "safetensors: ", naming what is wrong, quickly and without large allocations. Also every
// truncation of a small valid file and a deterministic mutation fuzz loop (parse or
// marlin::Error, never a crash; whatever parses satisfies the format's invariants).
#include <gtest/gtest.h>

#include <chrono>
#include <random>

#include "core/error.h"
#include "formats/safetensors.h"
#include "safetensors_test_util.h"

namespace marlin {
namespace {

using test::safetensors_bytes;

std::string rejection(const std::vector<uint8_t>& bytes) {
  try {
    parse_safetensors_header(bytes, "f.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "the file parsed";
  return "";
}

void expect_rejected(const std::vector<uint8_t>& bytes, const std::string& fragment) {
  const auto started = std::chrono::steady_clock::now();
  const std::string message = rejection(bytes);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_TRUE(message.starts_with("safetensors: f.safetensors: ")) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_NE(message.find(fragment), std::string::npos) << "message: " << message << "\nwanted: " << fragment;
  EXPECT_LT(seconds, 0.5) << "rejecting should be fast: " << message;
}

void expect_rejected(const std::string& header, const std::string& fragment, size_t data_bytes = 0) {
  expect_rejected(safetensors_bytes(header, std::vector<uint8_t>(data_bytes, 0x5a)), fragment);
}

// One tensor entry, for building headers.
std::string entry(const std::string& name, const std::string& dtype, const std::string& shape, uint64_t begin,
                  uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}";
}

TEST(SafetensorsCorruption, HeaderLength) {
  expect_rejected(std::vector<uint8_t>{}, "the file has 0 bytes, too few for the 8-byte header length");
  expect_rejected(std::vector<uint8_t>(7, 0), "the file has 7 bytes");
  auto bytes = safetensors_bytes("{}");
  bytes[0] = 3;  // says 3 bytes of header, only 2 follow
  expect_rejected(bytes, "header length 3 runs past the end of the file (10 bytes)");
  bytes = safetensors_bytes("{}");
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = 0xff;
  expect_rejected(bytes, "header length 18446744073709551615 exceeds the limit of 100000000 bytes");
  bytes = safetensors_bytes("{}");
  const uint64_t just_over = 100'000'001;
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = uint8_t(just_over >> (8 * i));
  expect_rejected(bytes, "header length 100000001 exceeds the limit");
}

TEST(SafetensorsCorruption, NotJson) {
  expect_rejected("", "header is not valid JSON");
  expect_rejected("{not json}", "header is not valid JSON (at byte 3): syntax error");
  expect_rejected("{\"a\":", "header is not valid JSON");
  expect_rejected("{} trailing", "header is not valid JSON");
  expect_rejected("{\"\xff\xfe\":1}", "header is not valid JSON");
  expect_rejected("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}\x01", "header is not valid JSON", 1);
}

TEST(SafetensorsCorruption, WrongTypes) {
  expect_rejected("[]", "header is an array, not a JSON object");
  expect_rejected("5", "header is a number, not a JSON object");
  expect_rejected("\"x\"", "header is a string, not a JSON object");
  expect_rejected("{\"a\":5}", "tensor 'a': entry is a number, not an object");
  expect_rejected("{\"a\":[1]}", "tensor 'a': entry is an array, not an object");
  expect_rejected("{\"__metadata__\":[]}", "__metadata__ is an array, not an object of strings");
  expect_rejected("{\"__metadata__\":{\"k\":1}}", "__metadata__ 'k': value is a number, not a string");
  expect_rejected("{\"__metadata__\":{\"k\":{}}}", "__metadata__ 'k': value is an object, not a string");
  expect_rejected("{\"a\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,1]}}",
                  "tensor 'a': dtype is a number, not a string", 1);
  expect_rejected("{\"a\":{\"dtype\":\"U8\",\"shape\":\"1\",\"data_offsets\":[0,1]}}",
                  "tensor 'a': shape is a string, not an array of integers", 1);
  expect_rejected("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":{}}}",
                  "tensor 'a': data_offsets is an object, not an array of integers", 1);
  expect_rejected("{\"a\":{\"dtype\":\"U8\",\"shape\":[[1]],\"data_offsets\":[0,1]}}",
                  "tensor 'a': shape holds an array, not an integer", 1);
  expect_rejected("{\"a\":{\"dtype\":\"U8\",\"shape\":[true],\"data_offsets\":[0,1]}}",
                  "tensor 'a': shape holds a boolean, not an integer", 1);
  expect_rejected("{\"a\":{\"dtype\":\"U8\",\"shape\":[1.5],\"data_offsets\":[0,1]}}",
                  "tensor 'a': shape holds '1.5', not an integer", 1);
  expect_rejected("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}",
                  "data_offsets holds '18446744073709551616', not an integer that fits 64 bits", 1);
}

TEST(SafetensorsCorruption, MissingAndBadFields) {
  expect_rejected("{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", "tensor 'a': 'dtype' is missing", 1);
  expect_rejected("{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", "tensor 'a': 'shape' is missing", 1);
  expect_rejected("{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", "tensor 'a': 'data_offsets' is missing", 1);
  expect_rejected("{" + entry("a", "F12", "[1]", 0, 1) + "}", "tensor 'a': unknown dtype 'F12'", 1);
  expect_rejected("{" + entry("a", "f32", "[1]", 0, 4) + "}", "unknown dtype 'f32'", 4);
  expect_rejected("{" + entry("a", "U8", "[-1]", 0, 1) + "}", "tensor 'a': shape has the negative value -1", 1);
  expect_rejected("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,1]}}",
                  "tensor 'a': data_offsets has the negative value -1", 1);
  expect_rejected("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1]}}",
                  "tensor 'a': data_offsets has 1 values, not [begin, end]", 1);
  expect_rejected("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}",
                  "tensor 'a': data_offsets has more than 2 values", 1);
  expect_rejected("{" + entry("a", "U8", "[0]", 1, 0) + "}", "tensor 'a': data_offsets [1, 0] end before they begin",
                  1);
  expect_rejected("{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
                  "tensor 'a': field 'dtype' appears twice", 1);
  std::string rank = "[";
  for (int i = 0; i < 65; ++i) rank += i ? ",1" : "1";
  expect_rejected("{" + entry("a", "U8", rank + "]", 0, 1) + "}", "tensor 'a': shape has more than 64 dimensions", 1);
}

TEST(SafetensorsCorruption, DuplicateNames) {
  expect_rejected("{" + entry("a", "U8", "[1]", 0, 1) + "," + entry("a", "U8", "[1]", 1, 2) + "}",
                  "tensor 'a' appears twice in the header", 2);
  expect_rejected("{\"__metadata__\":{},\"__metadata__\":{}}", "__metadata__ appears twice");
  expect_rejected("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", "__metadata__ 'k' appears twice");
}

TEST(SafetensorsCorruption, SizeMismatch) {
  expect_rejected("{" + entry("w", "F32", "[2,3]", 0, 20) + "}",
                  "tensor 'w': shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] span 20", 20);
  expect_rejected("{" + entry("w", "BF16", "[4]", 0, 4) + "}", "shape [4] of BF16 needs 8 bytes", 4);
  expect_rejected("{" + entry("w", "F4", "[3]", 0, 2) + "}",
                  "tensor 'w': shape [3] of F4 is not a whole number of bytes", 2);
  expect_rejected("{" + entry("w", "F6_E2M3", "[3]", 0, 3) + "}", "not a whole number of bytes", 3);
}

TEST(SafetensorsCorruption, HugeDimensions) {
  expect_rejected("{" + entry("w", "U8", "[4294967296,4294967296,16]", 0, 1) + "}",
                  "tensor 'w': shape [4294967296, 4294967296, 16] has more elements than 64 bits count", 1);
  expect_rejected("{" + entry("w", "F64", "[4611686018427387904]", 0, 8) + "}",
                  "tensor 'w': shape [4611686018427387904] of F64 is too large to address", 8);
  expect_rejected("{" + entry("w", "U8", "[2305843009213693951]", 0, 1) + "}",
                  "needs 2305843009213693951 bytes but data_offsets [0, 1] span 1", 1);
}

TEST(SafetensorsCorruption, OffsetsAndCoverage) {
  expect_rejected("{" + entry("w", "U8", "[4]", 0, 4) + "}",
                  "tensor 'w': data_offsets [0, 4] lie past the end of the data section (3 bytes)", 3);
  expect_rejected("{" + entry("w", "U8", "[4]", 1000000, 1000004) + "}", "lie past the end of the data section", 4);
  expect_rejected("{" + entry("a", "U8", "[4]", 0, 4) + "," + entry("b", "U8", "[4]", 2, 6) + "}",
                  "tensors 'a' and 'b' overlap (bytes [2, 4) of the data section)", 6);
  expect_rejected("{" + entry("a", "U8", "[4]", 0, 4) + "," + entry("b", "U8", "[4]", 0, 4) + "}", "overlap", 4);
  expect_rejected("{" + entry("a", "U8", "[4]", 0, 4) + "," + entry("b", "U8", "[2]", 6, 8) + "}",
                  "bytes [4, 6) of the data section belong to no tensor (before tensor 'b')", 8);
  expect_rejected("{" + entry("a", "U8", "[4]", 0, 4) + "}",
                  "the data section has 6 bytes but the tensors cover only 4", 6);
  expect_rejected("{}", "the data section has 1 bytes but the tensors cover only 0", 1);
}

TEST(SafetensorsCorruption, DeepNestingInUnknownFieldsIsSkipped) {
  // Unknown fields are ignored as the reference does; nesting must not recurse or blow up.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  auto bytes =
      safetensors_bytes("{\"a\":{\"x\":" + deep + ",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", {7});
  auto header = parse_safetensors_header(bytes, "f");
  ASSERT_EQ(header.tensors.size(), 1u);
  expect_rejected(std::string(100000, '['), "header is");
}

TEST(SafetensorsCorruption, NameWithControlBytesStaysOneLine) {
  expect_rejected("{\"a\\nb\":5}", "tensor 'a\\nb': entry is a number");
}

std::vector<uint8_t> small_valid_file() {
  const std::string header = "{\"__metadata__\":{\"format\":\"pt\"}," + entry("b", "F32", "[2,2]", 0, 16) + "," +
                             entry("a", "BF16", "[3]", 16, 22) + "," + entry("z", "I64", "[0]", 22, 22) + "," +
                             entry("c", "U8", "[2]", 22, 24) + "}";
  std::vector<uint8_t> data(24);
  for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i * 7);
  return safetensors_bytes(header, data);
}

TEST(SafetensorsCorruption, EveryTruncationIsRejected) {
  const auto bytes = small_valid_file();
  ASSERT_EQ(parse_safetensors_header(bytes, "f").tensors.size(), 4u);
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + long(n));
    const std::string message = rejection(cut);
    EXPECT_TRUE(message.starts_with("safetensors: ")) << n << ": " << message;
  }
}

// Whatever parses must describe spans that tile the data section inside the file.
void check_invariants(const SafetensorsHeader& header, size_t file_size) {
  uint64_t at = header.data_start;
  for (const auto& t : header.tensors) {
    ASSERT_EQ(t.offset, at);
    ASSERT_LE(t.offset + t.bytes, file_size);
    uint64_t bits = uint64_t(safetensors_dtype_bits(t.dtype));
    for (auto d : t.shape) bits *= d;
    ASSERT_EQ(bits / 8, t.bytes);
    at += t.bytes;
  }
  ASSERT_EQ(at, file_size);
}

TEST(SafetensorsCorruption, MutationFuzz) {
  const auto valid = small_valid_file();
  std::mt19937_64 rng(20261127);
  const char* tokens[] = {"{", "}", "[", "]", ",", ":", "\"", "-", "0", "9", "1e9", "null", "__metadata__", "F4"};
  int parsed = 0, rejected = 0;
  for (int iteration = 0; iteration < 20000; ++iteration) {
    auto bytes = valid;
    const int edits = 1 + int(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = size_t(rng() % bytes.size());
      switch (rng() % 5) {
        case 0:
          bytes[at] = uint8_t(rng());
          break;
        case 1:
          bytes[at] ^= uint8_t(1u << (rng() % 8));
          break;
        case 2:
          if (at > 8) bytes.erase(bytes.begin() + long(at));
          break;
        case 3: {
          const std::string token = tokens[rng() % std::size(tokens)];
          if (at >= 8) bytes.insert(bytes.begin() + long(at), token.begin(), token.end());
          break;
        }
        default:
          bytes.resize(size_t(rng() % (bytes.size() + 16)), 0x20);
          break;
      }
      if (bytes.empty()) break;
    }
    try {
      auto header = parse_safetensors_header(bytes, "fuzz");
      check_invariants(header, bytes.size());
      ++parsed;
    } catch (const Error& e) {
      ASSERT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 10000);
  EXPECT_GT(parsed, 0);  // some edits (inside data, metadata text) keep the file valid
}

}  // namespace
}  // namespace marlin
