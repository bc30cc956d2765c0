#include "formats/marlin_checkpoint.h"

#include <filesystem>

#include "core/error.h"

namespace marlin {
namespace {

SafetensorsDtype scale_dtype(ScaleType type) {
  switch (type) {
    case ScaleType::kF16:
      return SafetensorsDtype::kF16;
    case ScaleType::kE8M0:
      return SafetensorsDtype::kF8E8M0;
    case ScaleType::kE4M3:
      return SafetensorsDtype::kF8E4M3;
    default:
      fail("marlin checkpoint: scale type {} has no stored dtype", int(type));
  }
}

}  // namespace

uint64_t MarlinPart::bytes() const {
  uint64_t n = uint64_t(safetensors_dtype_bits(dtype)) / 8;
  for (uint64_t d : shape) n *= d;
  return n;
}

std::vector<MarlinPart> marlin_parts(const TensorFormat& format, int64_t rows, int64_t cols,
                                     const std::vector<uint64_t>& logical_shape) {
  format.check_shape(rows, cols);
  const auto r = uint64_t(rows), c = uint64_t(cols);
  switch (format.kind) {
    case FormatKind::kF32:
      return {{"codes", SafetensorsDtype::kF32, logical_shape, ""}};
    case FormatKind::kF16:
      return {{"codes", SafetensorsDtype::kF16, logical_shape, ""}};
    case FormatKind::kBF16:
      return {{"codes", SafetensorsDtype::kBF16, logical_shape, ""}};
    default:
      break;
  }
  std::vector<MarlinPart> parts = {{"codes", SafetensorsDtype::kU8, {r, format.min_code_row_bytes(cols)}, ".codes"}};
  if (format.kind == FormatKind::kGgml) return parts;
  const auto groups = uint64_t(format.groups(cols));
  parts.push_back({"scales", scale_dtype(format_info(format.kind).scale), {r, groups}, ".scales"});
  if (format.asymmetric) parts.push_back({"zeros", SafetensorsDtype::kU8, {r, groups}, ".zeros"});
  if (format.act_order) parts.push_back({"perm", SafetensorsDtype::kI32, {c}, ".perm"});
  if (format.sparse_24) {
    parts.push_back({"sparse_meta", SafetensorsDtype::kU8, {r, sparse_meta_row_bytes(cols)}, ".sparse_meta"});
  }
  return parts;
}

std::string marlin_seed_text(uint64_t seed) { return fmt::format("0x{:016x}", seed); }

std::optional<uint64_t> parse_marlin_seed(std::string_view text) {
  if (text.size() != 18 || !text.starts_with("0x")) return std::nullopt;
  uint64_t seed = 0;
  for (char c : text.substr(2)) {
    int digit;
    if (c >= '0' && c <= '9') digit = c - '0';
    else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    else return std::nullopt;
    seed = seed << 4 | uint64_t(digit);
  }
  return seed;
}

std::string marlin_shard_name(const std::string& path, int index, int count) {
  std::string base = path;
  if (base.size() > 7 && base.ends_with(".marlin")) base.resize(base.size() - 7);
  return fmt::format("{}-{:05d}-of-{:05d}.marlin", base, index + 1, count);
}

std::optional<std::string> marlin_first_shard(const std::string& path) {
  // NAME-kkkkk-of-nnnnn.marlin: 5 digits, "-of-", 5 digits, ".marlin" (22 characters).
  const std::string file = std::filesystem::path(path).filename().string();
  if (file.size() <= 22 || !file.ends_with(".marlin")) return std::nullopt;
  const std::string_view tail = std::string_view(file).substr(file.size() - 22);
  auto digits = [](std::string_view d) { return d.find_first_not_of("0123456789") == std::string_view::npos; };
  if (tail[0] != '-' || !digits(tail.substr(1, 5)) || tail.substr(6, 4) != "-of-" || !digits(tail.substr(10, 5)) ||
      tail.substr(1, 5) == "00001") {
    return std::nullopt;
  }
  const std::string first =
      file.substr(0, file.size() - 22) + "-00001-of-" + std::string(tail.substr(10, 5)) + ".marlin";
  return (std::filesystem::path(path).parent_path() / first).string();
}

}  // namespace marlin
