// Malformed GGUF files: each must raise marlin::Error with one line, prefixed "gguf: ", naming
// what is wrong, quickly and without large allocations. Also every truncation of a small valid
// file and a deterministic byte-mutation fuzz loop (parse or marlin::Error, never a crash).
#include <gtest/gtest.h>

#include <chrono>
#include <random>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_text.h"
#include "gguf_test_writer.h"

namespace marlin {
namespace {

using test::array_value;
using test::Bytes;
using test::GgufSpec;
using test::scalar;
using test::small_valid_spec;
using test::string_value;

constexpr uint64_t kHuge = uint64_t(1) << 60;

// The message of the error that parsing `bytes` raises ("" and a test failure when it parses).
std::string rejection(const std::vector<uint8_t>& bytes) {
  try {
    test::open_bytes(bytes);
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
  EXPECT_TRUE(message.starts_with("gguf: ")) << message;
  EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  EXPECT_NE(message.find(fragment), std::string::npos) << "message: " << message << "\nwanted: " << fragment;
  EXPECT_LT(seconds, 0.5) << "rejecting should be fast: " << message;
}

void expect_rejected(const GgufSpec& spec, const std::string& fragment) {
  expect_rejected(spec.serialize(), fragment);
}

// Header of a file with the given counts, for hand-built bodies.
Bytes header(uint64_t tensors, uint64_t metadata, uint32_t version = 3) {
  return Bytes().u32(0x46554747).u32(version).u64(tensors).u64(metadata);
}

// One metadata entry "k" holding `value`, padded so that count checks are not what trips.
std::vector<uint8_t> single_entry(const Bytes& value, size_t padding = 64) {
  return header(0, 1).str("k").append(value).fill(padding, 0).data();
}

// --- header ---------------------------------------------------------------------------------

TEST(GgufCorruption, BadMagic) {
  auto spec = small_valid_spec();
  spec.magic = 0x58554747;  // "GGUX"
  expect_rejected(spec, "not a GGUF file: magic is 'GGUX'");
  expect_rejected(Bytes().raw("{\"not\": \"gguf\"}").data(), "magic is '{\"no'");
  expect_rejected(Bytes().raw("\x01\x02\x7f\x00").fill(40, 0).data(), "magic is '\\x01\\x02\\x7f\\x00'");
}

TEST(GgufCorruption, TooShortForAHeader) {
  expect_rejected(std::vector<uint8_t>{}, "header: magic needs 4 bytes at offset 0 but the file ends at 0");
  expect_rejected(Bytes().raw("GGU").data(), "magic needs 4 bytes");
  expect_rejected(Bytes().raw("GGUF").u32(3).u64(0).data(), "metadata count needs 8 bytes at offset 16");
}

TEST(GgufCorruption, BadVersion) {
  for (uint32_t version : {0u, 4u, 0xffffffffu}) {
    auto spec = small_valid_spec();
    spec.version = version;
    expect_rejected(spec, fmt::format("unsupported version {} (supported: 2, 3)", version));
  }
  auto v1 = small_valid_spec();
  v1.version = 1;
  expect_rejected(v1, "version 1 files (32-bit counts) are not supported");
  auto big_endian = small_valid_spec();
  big_endian.version = 0x03000000;
  expect_rejected(big_endian, "big-endian GGUF files are not supported");
}

TEST(GgufCorruption, HugeCounts) {
  auto spec = small_valid_spec();
  spec.tensor_count = kHuge;
  expect_rejected(spec, fmt::format("header: {} tensors and 18 metadata entries cannot fit", kHuge));
  spec = small_valid_spec();
  spec.metadata_count = ~uint64_t(0);  // the byte estimate itself overflows
  expect_rejected(spec, fmt::format("4 tensors and {} metadata entries cannot fit", ~uint64_t(0)));
  spec = small_valid_spec();
  spec.metadata_count = 30;  // plausible for the size: entries 18.. read tensor infos as metadata
  expect_rejected(spec, "gguf: metadata entry 19: key length 562949953421312 exceeds");
}

// --- metadata -------------------------------------------------------------------------------

TEST(GgufCorruption, HugeStringLengths) {
  auto key = header(0, 1).u64(kHuge).fill(64, 'a');
  expect_rejected(key.data(), fmt::format("metadata entry 0: key length {} exceeds the 64 bytes left", kHuge));
  expect_rejected(single_entry(Bytes().type(GgufType::STRING).u64(~uint64_t(0))),
                  "metadata key 'k': string length 18446744073709551615 exceeds the 64 bytes left");
  auto tensor_name = header(1, 0).u64(kHuge).fill(64, 0);
  expect_rejected(tensor_name.data(), "tensor info 0: name length");
}

TEST(GgufCorruption, HugeArrayLengths) {
  expect_rejected(single_entry(array_value(GgufType::STRING, kHuge)),
                  fmt::format("metadata key 'k': array of {} STRING needs at least {} bytes but only 64", kHuge,
                              kHuge * 8));
  expect_rejected(single_entry(array_value(GgufType::UINT64, uint64_t(1) << 62)), "needs at least 2^64 bytes");
  expect_rejected(single_entry(array_value(GgufType::ARRAY, kHuge)), "array of 1152921504606846976 ARRAY");
  // Nested: the inner array's count is checked against what is left, too.
  expect_rejected(single_entry(array_value(GgufType::ARRAY, 1).type(GgufType::INT32).u64(kHuge)),
                  "array of 1152921504606846976 INT32");
}

TEST(GgufCorruption, TooManyValuesInAll) {
  // 2^24 + 1 one-byte items fit in the file but exceed the metadata value budget.
  const uint64_t count = kGgufMaxMetadataValues + 1;
  expect_rejected(single_entry(array_value(GgufType::UINT8, count), count),
                  fmt::format("metadata key 'k': more than {} metadata values", kGgufMaxMetadataValues));
}

TEST(GgufCorruption, NestingDepthBomb) {
  for (int depth : {kGgufMaxArrayDepth + 1, 100000}) {
    Bytes value = Bytes().type(GgufType::ARRAY);
    for (int d = 1; d < depth; ++d) value.type(GgufType::ARRAY).u64(1);
    value.type(GgufType::UINT8).u64(1).u8(1);
    expect_rejected(single_entry(value), fmt::format("metadata key 'k': arrays nested more than {} deep",
                                                     kGgufMaxArrayDepth));
  }
}

TEST(GgufCorruption, UnknownValueTypes) {
  expect_rejected(single_entry(Bytes().u32(13).u32(0)), "metadata key 'k': unknown value type 13");
  expect_rejected(single_entry(Bytes().u32(0xffffffff)), "unknown value type 4294967295");
  expect_rejected(single_entry(Bytes().type(GgufType::ARRAY).u32(99).u64(1)), "unknown array element type 99");
}

TEST(GgufCorruption, BoolMustBeZeroOrOne) {
  expect_rejected(single_entry(scalar(GgufType::BOOL, uint8_t(2))), "'k': bool value 2 is neither 0 nor 1");
  expect_rejected(single_entry(array_value(GgufType::BOOL, 2).u8(1).u8(7)), "bool value 7");
}

TEST(GgufCorruption, EmptyNames) {
  expect_rejected(header(0, 1).str("").append(scalar(GgufType::UINT8, uint8_t(1))).fill(32, 0).data(),
                  "metadata entry 0: empty key");
  auto spec = small_valid_spec();
  spec.tensors[2].name = "";
  expect_rejected(spec, "tensor info 2: empty tensor name");
}

TEST(GgufCorruption, DuplicateKeys) {
  auto spec = small_valid_spec();
  spec.add("test.u8", scalar(GgufType::UINT8, uint8_t(1)));
  expect_rejected(spec, "duplicate metadata key 'test.u8'");
  // Control bytes in names are escaped so the message stays one line.
  GgufSpec odd;
  odd.add("a\nb", string_value("x")).add("a\nb", string_value("y"));
  expect_rejected(odd, "duplicate metadata key 'a\\nb'");
}

TEST(GgufCorruption, BadAlignment) {
  for (uint32_t alignment : {0u, 3u, 48u}) {
    auto spec = small_valid_spec();
    spec.metadata[1].second = scalar(GgufType::UINT32, alignment);
    expect_rejected(spec, fmt::format("general.alignment must be a nonzero power of two, got {}", alignment));
  }
  auto spec = small_valid_spec();
  spec.metadata[1].second = string_value("32");
  expect_rejected(spec, "metadata key 'general.alignment' is STRING, expected an integer");
  spec.metadata[1].second = scalar(GgufType::INT32, int32_t(-32));
  expect_rejected(spec, "'general.alignment' holds -32");
}

// --- tensor infos ---------------------------------------------------------------------------

TEST(GgufCorruption, DimensionCount) {
  auto spec = small_valid_spec();
  spec.tensors[3].shape = {8, 1, 1, 1, 2};
  expect_rejected(spec, "tensor 't.f16': 5 dimensions (supported: 1 to 4)");
  spec.tensors[3].shape = {};
  expect_rejected(spec, "tensor 't.f16': 0 dimensions");
  // n_dims 2^32-1 with the dims absent.
  expect_rejected(header(1, 0).str("t").u32(0xffffffff).fill(64, 0).data(), "tensor 't': 4294967295 dimensions");
}

TEST(GgufCorruption, BadDimensions) {
  auto spec = small_valid_spec();
  spec.tensors[0].shape = {4, 0};
  expect_rejected(spec, "tensor 't.f32': dimension 1 is 0");
  spec.tensors[0].shape = {4, ~uint64_t(0) - 3};  // -4 as int64
  spec.data_bytes = 1024;
  expect_rejected(spec, "tensor 't.f32': dimension 1 is 18446744073709551612 (negative as int64)");
  spec.tensors[0].shape = {uint64_t(1) << 32, uint64_t(1) << 31};
  expect_rejected(spec, "tensor 't.f32': element count of shape [4294967296, 2147483648] overflows int64");
  spec.tensors[0].shape = {uint64_t(1) << 62};  // 2^62 elements fit int64, 2^64 bytes do not
  expect_rejected(spec, "tensor 't.f32': data size of F32 shape [4611686018427387904] overflows");
}

TEST(GgufCorruption, TensorTypes) {
  auto spec = small_valid_spec();
  spec.tensors[1].type = 99;
  expect_rejected(spec, "tensor 't.q8_0': unknown ggml type id 99");
  spec.tensors[1].type = 16;  // IQ2_XXS in ggml: not in this build's table
  expect_rejected(spec, "tensor 't.q8_0': unknown ggml type id 16");
  spec = small_valid_spec();
  spec.tensors[1].shape = {33, 2};
  expect_rejected(spec, "tensor 't.q8_0': row of 33 elements is not a whole number of 32-element Q8_0 blocks");
  spec.tensors[1].shape = {64, 1};
  spec.tensors[2].shape = {128};
  expect_rejected(spec, "tensor 't.q4_k': row of 128 elements is not a whole number of 256-element Q4_K blocks");
}

TEST(GgufCorruption, DuplicateTensorNames) {
  auto spec = small_valid_spec();
  spec.tensors[3].name = "t.f32";
  expect_rejected(spec, "duplicate tensor name 't.f32'");
}

TEST(GgufCorruption, TensorOffsets) {
  auto spec = small_valid_spec();
  spec.tensors[2].offset += 16;
  expect_rejected(spec, "tensor 't.q4_k': data offset 144 is not a multiple of the alignment 32");
  spec = small_valid_spec();
  const auto last_end = spec.tensors[3].offset + GgufSpec::tensor_bytes(spec.tensors[3]);
  spec.tensors[3].offset = 1 << 20;
  spec.data_bytes = last_end;
  expect_rejected(spec, "tensor 't.f16': data [offset");
  expect_rejected(spec, "size 32] lies past the end of the file");
  spec.tensors[3].offset = ~uint64_t(0) - 31;  // aligned; data offset + it overflows
  expect_rejected(spec, "tensor 't.f16': data [offset overflow, size 32] lies past the end");
}

TEST(GgufCorruption, TruncatedData) {
  auto spec = small_valid_spec();
  const auto bytes = spec.serialize();
  spec.data_bytes = spec.tensors[3].offset + 31;  // one byte short of the last tensor's end
  expect_rejected(spec, fmt::format("tensor 't.f16': data [offset {}, size 32] lies past the end of the file ({} bytes)",
                                    bytes.size() - 32, bytes.size() - 1));
}

TEST(GgufCorruption, OverlappingTensors) {
  auto spec = small_valid_spec();
  spec.tensors[1].offset = 0;  // on top of t.f32
  expect_rejected(spec, "tensors 't.f32' [");
  expect_rejected(spec, "and 't.q8_0' [");
  expect_rejected(spec, "overlap");
  spec = small_valid_spec();
  spec.tensors[3].offset = spec.tensors[2].offset + 128;  // the tail of t.q4_k (144 bytes)
  expect_rejected(spec, "tensors 't.q4_k'");
}

// --- exhaustive truncation and fuzzing --------------------------------------------------------

TEST(GgufCorruption, EveryTruncationIsRejected) {
  const auto bytes = small_valid_spec().serialize();
  ASSERT_NO_THROW(test::open_bytes(bytes));
  for (size_t size = 0; size < bytes.size(); ++size) {
    SCOPED_TRACE(size);
    const std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + ptrdiff_t(size));
    const std::string message = rejection(prefix);
    ASSERT_TRUE(message.starts_with("gguf: ")) << message;
    ASSERT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

// Parses a mutated file: it must parse or raise marlin::Error. When it parses, touches every value
// and every tensor's data so that a bad bound would show (under sanitizers) as a fault.
bool parses(const std::vector<uint8_t>& bytes) {
  std::unique_ptr<GgufFile> file;
  try {
    file = test::open_bytes(bytes);
  } catch (const Error& e) {
    EXPECT_TRUE(std::string(e.what()).starts_with("gguf: ")) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << e.what();
    return false;
  }
  for (const auto& [key, value] : file->metadata()) EXPECT_FALSE(gguf_value_summary(value).empty());
  for (const auto& t : file->tensors()) {
    const auto data = file->tensor_data(t);
    unsigned sum = 0;
    for (uint8_t b : data) sum += b;
    EXPECT_LE(t.offset + t.bytes, file->file_size()) << t.name << sum;
  }
  return true;
}

TEST(GgufCorruption, ByteMutationFuzz) {
  const auto original = small_valid_spec().serialize();
  std::mt19937_64 rng(20261126);
  const uint64_t interesting[] = {0, 1, 0x7f, 0xff, uint64_t(1) << 31, uint64_t(1) << 32, uint64_t(1) << 63,
                                  ~uint64_t(0), ~uint64_t(0) - 31, 0x7fffffffffffffff};
  int parsed = 0, rejected = 0;
  for (int round = 0; round < 4000; ++round) {
    auto bytes = original;
    const int mutations = 1 + int(rng() % 4);
    for (int m = 0; m < mutations; ++m) {
      const size_t at = rng() % bytes.size();
      switch (rng() % 4) {
        case 0: bytes[at] ^= uint8_t(1u << (rng() % 8)); break;
        case 1: bytes[at] = uint8_t(rng()); break;
        case 2: {  // an extreme 1-, 4- or 8-byte little-endian value
          const uint64_t value = interesting[rng() % std::size(interesting)];
          const size_t width = size_t(1) << (rng() % 4);
          for (size_t b = 0; b < width && at + b < bytes.size(); ++b) bytes[at + b] = uint8_t(value >> (8 * b));
          break;
        }
        case 3: bytes.resize(at + rng() % 64, uint8_t(rng())); break;  // cut, maybe extend with junk
      }
      if (bytes.empty()) break;
    }
    (parses(bytes) ? parsed : rejected)++;
  }
  RecordProperty("parsed", parsed);
  RecordProperty("rejected", rejected);
  // Both outcomes must occur for the loop to be probing anything.
  EXPECT_GT(parsed, 100);
  EXPECT_GT(rejected, 1000);
}

}  // namespace
}  // namespace marlin
