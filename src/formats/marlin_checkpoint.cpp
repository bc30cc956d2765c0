#include "formats/marlin_checkpoint.h"

#include <filesystem>
#include <regex>

#include "core/error.h"

namespace marlin {
namespace {

SafetensorsDtype scale_dtype(ScaleType type) {
  switch (type) {
    case ScaleType::kF16: return SafetensorsDtype::kF16;
    case ScaleType::kE8M0: return SafetensorsDtype::kF8E8M0;
    case ScaleType::kE4M3: return SafetensorsDtype::kF8E4M3;
    default: fail("marlin checkpoint: scale type {} has no stored dtype", int(type));
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
    case FormatKind::kF32: return {{"codes", SafetensorsDtype::kF32, logical_shape, ""}};
    case FormatKind::kF16: return {{"codes", SafetensorsDtype::kF16, logical_shape, ""}};
    case FormatKind::kBF16: return {{"codes", SafetensorsDtype::kBF16, logical_shape, ""}};
    default: break;
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

std::string marlin_shard_name(const std::string& path, int index, int count) {
  std::string base = path;
  if (base.size() > 7 && base.ends_with(".marlin")) base.resize(base.size() - 7);
  return fmt::format("{}-{:05d}-of-{:05d}.marlin", base, index + 1, count);
}

std::optional<std::string> marlin_first_shard(const std::string& path) {
  static const std::regex pattern(R"((.*)-(\d{5})-of-(\d{5})\.marlin)");
  const std::string name = std::filesystem::path(path).filename().string();
  std::smatch m;
  if (!std::regex_match(name, m, pattern) || m[2] == "00001") return std::nullopt;
  const std::string first = fmt::format("{}-00001-of-{}.marlin", m[1].str(), m[3].str());
  return (std::filesystem::path(path).parent_path() / first).string();
}

}  // namespace marlin
