#include "quant/format.h"

#include <array>
#include <cctype>
#include <vector>

#include "core/checked_math.h"
#include "core/error.h"

namespace marlin {
namespace {

constexpr std::array kFormats = {
    //         kind                  name     bits scale             zp     group  2:4
    FormatInfo{FormatKind::kF32, "f32", 32, ScaleType::kNone, false, 0, false},
    FormatInfo{FormatKind::kF16, "f16", 16, ScaleType::kNone, false, 0, false},
    FormatInfo{FormatKind::kBF16, "bf16", 16, ScaleType::kNone, false, 0, false},
    FormatInfo{FormatKind::kGgml, "ggml", 0, ScaleType::kNone, false, 0, false},
    FormatInfo{FormatKind::kInt8, "int8", 8, ScaleType::kF16, true, 0, false},
    FormatInfo{FormatKind::kInt4, "int4", 4, ScaleType::kF16, true, 0, true},
    FormatInfo{FormatKind::kInt3, "int3", 3, ScaleType::kF16, true, 0, false},
    FormatInfo{FormatKind::kInt2, "int2", 2, ScaleType::kF16, true, 0, false},
    FormatInfo{FormatKind::kFp8E4M3, "fp8", 8, ScaleType::kF16, false, 0, false},
    FormatInfo{FormatKind::kFp4, "fp4", 4, ScaleType::kF16, false, 0, false},
    FormatInfo{FormatKind::kMxFp4, "mxfp4", 4, ScaleType::kE8M0, false, 32, false},
    FormatInfo{FormatKind::kNvFp4, "nvfp4", 4, ScaleType::kE4M3, false, 16, false},
    // Bits per weight are per tensor (TensorFormat::bits, in the name: "trellis4"); one scale per row.
    FormatInfo{FormatKind::kTrellis, "trellis", 0, ScaleType::kF16, false, 0, false},
};

// K of trellisK: the trellis decoder (quant/trellis.h) takes 1..8 bits per value.
constexpr int kTrellisMinBits = 1, kTrellisMaxBits = 8;

// Largest column count accepted: keeps every size computed from it far from overflow.
constexpr int64_t kMaxCols = int64_t(1) << 40;

bool valid_group_size(int g) {
  for (int allowed : kGroupSizes)
    if (g == allowed) return true;
  return false;
}

std::string lowercase(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::vector<std::string_view> split_dashes(std::string_view s) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t dash = s.find('-', start);
    parts.push_back(s.substr(start, dash == std::string_view::npos ? std::string_view::npos : dash - start));
    if (dash == std::string_view::npos) return parts;
    start = dash + 1;
  }
}

std::string known_names() {
  std::string out;
  for (const auto& info : kFormats) {
    if (info.kind == FormatKind::kGgml) continue;
    out += std::string(info.name) + (info.kind == FormatKind::kTrellis ? "1..8" : "") + ", ";
  }
  for (const auto& info : ggml_type_table())
    if (info.block_elements > 1) out += lowercase(info.name) + ", ";
  out.resize(out.size() - 2);
  return out;
}

// A kind named by the first part of a format name, or the ggml block type with that name.
bool parse_kind(std::string_view word, TensorFormat& f) {
  constexpr std::string_view kTrellisName = "trellis";
  if (word.starts_with(kTrellisName)) {
    const std::string_view k = word.substr(kTrellisName.size());
    MARLIN_CHECK(k.size() == 1 && k[0] >= '0' + kTrellisMinBits && k[0] <= '0' + kTrellisMaxBits,
                 "format '{}': trellis needs its bits per weight, 1 to 8 (e.g. trellis4)", word);
    f.kind = FormatKind::kTrellis;
    f.bits = k[0] - '0';
    return true;
  }
  for (const auto& info : kFormats) {
    if (info.kind != FormatKind::kGgml && info.kind != FormatKind::kTrellis && word == info.name) {
      f.kind = info.kind;
      return true;
    }
  }
  for (const auto& info : ggml_type_table()) {
    if (info.block_elements > 1 && word == lowercase(info.name)) {
      f.kind = FormatKind::kGgml;
      f.ggml = info.type;
      return true;
    }
  }
  return false;
}

int parse_group(std::string_view name, std::string_view digits) {
  int g = 0;
  for (char c : digits) {
    MARLIN_CHECK(c >= '0' && c <= '9' && g < 1000000, "format '{}': bad group size '-g{}'", name, digits);
    g = g * 10 + (c - '0');
  }
  MARLIN_CHECK(!digits.empty() && g > 0 && valid_group_size(g),
               "format '{}': group size '{}' is not one of 32, 64, 128 (or -pc for one scale per row)",
               name, digits);
  return g;
}

}  // namespace

const FormatInfo& format_info(FormatKind kind) {
  for (const auto& info : kFormats)
    if (info.kind == kind) return info;
  fail("unknown format kind {}", int(kind));
}

int scale_bytes(ScaleType type) {
  switch (type) {
    case ScaleType::kNone: return 0;
    case ScaleType::kF16: return 2;
    case ScaleType::kE8M0:
    case ScaleType::kE4M3: return 1;
  }
  fail("unknown scale type {}", int(type));
}

std::string TensorFormat::name() const {
  if (kind == FormatKind::kGgml) return lowercase(ggml_type_info(ggml).name);
  if (kind == FormatKind::kTrellis) return "trellis" + std::to_string(bits);
  const FormatInfo& info = format_info(kind);
  std::string out(info.name);
  if (!quantized()) return out;
  if (info.fixed_group == 0) out += group_size == 0 ? "-pc" : "-g" + std::to_string(group_size);
  if (asymmetric) out += "-asym";
  if (act_order) out += "-act";
  if (sparse_24) out += "-24";
  return out;
}

TensorFormat TensorFormat::parse(std::string_view name) {
  MARLIN_CHECK(!name.empty(), "empty format name");
  const std::string lower = lowercase(name);  // names are case-insensitive ("Q4_K", "INT4-G128")
  const std::vector<std::string_view> parts = split_dashes(lower);
  TensorFormat f;
  MARLIN_CHECK(parse_kind(parts[0], f), "unknown format '{}' (known: {})", name, known_names());
  const bool options_allowed = f.quantized() && f.kind != FormatKind::kGgml && f.kind != FormatKind::kTrellis;
  MARLIN_CHECK(options_allowed || parts.size() == 1, "format '{}': {} takes no options", name, parts[0]);
  if (!options_allowed) return f;

  const FormatInfo& info = format_info(f.kind);
  bool group_given = false;
  for (size_t i = 1; i < parts.size(); ++i) {
    const std::string_view part = parts[i];
    bool* flag = nullptr;
    if (part == "pc" || (part.size() > 1 && part[0] == 'g')) {
      MARLIN_CHECK(!group_given, "format '{}': group size given twice", name);
      group_given = true;
      f.group_size = part == "pc" ? 0 : parse_group(name, part.substr(1));
      continue;
    }
    if (part == "asym") flag = &f.asymmetric;
    else if (part == "act") flag = &f.act_order;
    else if (part == "24") flag = &f.sparse_24;
    else fail("format '{}': unknown option '{}' (expected -gN, -pc, -asym, -act or -24)", name, part);
    MARLIN_CHECK(!*flag, "format '{}': option '-{}' given twice", name, part);
    *flag = true;
  }
  if (info.fixed_group != 0) {
    MARLIN_CHECK(!group_given || f.group_size == info.fixed_group,
                 "format '{}': {} has a fixed group of {}", name, info.name, info.fixed_group);
    f.group_size = info.fixed_group;
  } else {
    MARLIN_CHECK(group_given, "format '{}': {} needs a group size (-g32, -g64, -g128) or -pc", name, info.name);
  }
  MARLIN_CHECK(!f.asymmetric || info.zero_points, "format '{}': {} has no asymmetric (zero-point) variant",
               name, info.name);
  MARLIN_CHECK(!f.sparse_24 || info.sparse_24, "format '{}': {} has no 2:4 sparse variant", name, info.name);
  return f;
}

void TensorFormat::validate() const {
  const FormatInfo& info = format_info(kind);
  if (kind == FormatKind::kTrellis) {
    MARLIN_CHECK(bits >= kTrellisMinBits && bits <= kTrellisMaxBits, "format trellis: {} bits per weight (1 to 8)",
                 bits);
    MARLIN_CHECK(group_size == 0 && !asymmetric && !act_order && !sparse_24,
                 "format trellis{} takes no group size, zero points, act-order or 2:4 (one scale per row)", bits);
    return;
  }
  MARLIN_CHECK(bits == 0, "format {}: bits {} (only trellis formats carry bits)", info.name, bits);
  if (kind == FormatKind::kGgml) {
    MARLIN_CHECK(ggml_type_info(ggml).block_elements > 1, "ggml format with non-block type {}",
                 ggml_type_info(ggml).name);
  }
  if (!quantized() || kind == FormatKind::kGgml) {
    MARLIN_CHECK(group_size == 0 && !asymmetric && !act_order && !sparse_24,
                 "format {} takes no group size, zero points, act-order or 2:4", info.name);
    return;
  }
  if (info.fixed_group != 0)
    MARLIN_CHECK(group_size == info.fixed_group, "format {}: group size {} (the format prescribes {})",
                 info.name, group_size, info.fixed_group);
  else
    MARLIN_CHECK(valid_group_size(group_size), "format {}: group size {} is not one of 32, 64, 128 or 0",
                 info.name, group_size);
  MARLIN_CHECK(!asymmetric || info.zero_points, "format {} has no asymmetric variant", info.name);
  MARLIN_CHECK(!sparse_24 || info.sparse_24, "format {} has no 2:4 sparse variant", info.name);
}

void TensorFormat::check_shape(int64_t rows, int64_t cols) const {
  validate();
  MARLIN_CHECK(rows > 0 && cols > 0 && rows < kMaxCols && cols < kMaxCols, "format {}: bad shape {} × {}", name(),
               rows, cols);
  if (kind == FormatKind::kGgml) {
    const auto& info = ggml_type_info(ggml);
    MARLIN_CHECK(cols % info.block_elements == 0, "format {}: {} columns are not a whole number of {}-value blocks",
                 name(), cols, info.block_elements);
  }
  if (kind == FormatKind::kTrellis)
    MARLIN_CHECK(rows % 16 == 0 && cols % 16 == 0, "format {}: {} × {} is not made of 16 × 16 tiles", name(), rows,
                 cols);
  if (sparse_24) MARLIN_CHECK(cols % 4 == 0, "format {}: {} columns are not a multiple of 4", name(), cols);
}

int64_t TensorFormat::groups(int64_t cols) const {
  if (!quantized() || kind == FormatKind::kGgml) return 0;
  return group_size == 0 ? 1 : (cols + group_size - 1) / group_size;
}

uint64_t TensorFormat::min_code_row_bytes(int64_t cols) const {
  if (kind == FormatKind::kGgml) {
    const auto bytes = ggml_row_bytes(ggml, uint64_t(cols));
    MARLIN_CHECK(bytes.has_value(), "format {}: {} columns are not a whole number of blocks", name(), cols);
    return *bytes;
  }
  if (kind == FormatKind::kTrellis) return (uint64_t(cols) * uint64_t(bits) + 7) / 8;
  const uint64_t stored = sparse_24 ? uint64_t(cols) / 2 : uint64_t(cols);
  return (stored * uint64_t(format_info(kind).code_bits) + 7) / 8;
}

double TensorFormat::bits_per_weight() const {
  if (kind == FormatKind::kGgml) {
    const auto& info = ggml_type_info(ggml);
    return 8.0 * info.block_bytes / info.block_elements;
  }
  if (kind == FormatKind::kTrellis) return bits;
  const FormatInfo& info = format_info(kind);
  if (!quantized()) return info.code_bits;
  // 2:4 stores half the codes plus 4 bits of metadata per 4 columns.
  double bits = sparse_24 ? info.code_bits / 2.0 + 1.0 : double(info.code_bits);
  if (group_size > 0) bits += (8.0 * scale_bytes(info.scale) + (asymmetric ? 8.0 : 0.0)) / group_size;
  return bits;
}

int64_t QuantTensor::groups() const { return format.groups(cols); }

uint64_t QuantTensor::stored_bytes() const {
  const auto r = uint64_t(rows), g = uint64_t(groups());
  uint64_t bytes = r * format.min_code_row_bytes(cols) + r * g * uint64_t(scale_bytes(format_info(format.kind).scale));
  if (format.asymmetric) bytes += r * g;
  if (format.act_order) bytes += uint64_t(cols) * 4;
  if (format.sparse_24) bytes += r * sparse_meta_row_bytes(cols);
  return bytes;
}

void QuantTensor::validate() const {
  format.check_shape(rows, cols);
  MARLIN_CHECK(codes != nullptr, "{} tensor without codes", format.name());
  MARLIN_CHECK(code_row_bytes >= format.min_code_row_bytes(cols),
               "{} tensor of {} columns: row stride {} bytes, needs at least {}", format.name(), cols,
               code_row_bytes, format.min_code_row_bytes(cols));
  MARLIN_CHECK(checked_mul(code_row_bytes, uint64_t(rows)).has_value(), "{} tensor: size overflows",
               format.name());
  if (!format.quantized() || format.kind == FormatKind::kGgml) return;
  MARLIN_CHECK(scales != nullptr, "{} tensor without scales", format.name());
  MARLIN_CHECK(!format.asymmetric || zeros != nullptr, "{} tensor without zero points", format.name());
  MARLIN_CHECK(!format.act_order || perm != nullptr, "{} tensor without its column permutation", format.name());
  MARLIN_CHECK(!format.sparse_24 || sparse_meta != nullptr, "{} tensor without 2:4 metadata", format.name());
}

TensorFormat format_of_ggml(GgmlType type) {
  TensorFormat f;
  switch (type) {
    case GgmlType::F32: f.kind = FormatKind::kF32; break;
    case GgmlType::F16: f.kind = FormatKind::kF16; break;
    case GgmlType::BF16: f.kind = FormatKind::kBF16; break;
    default:
      f.kind = FormatKind::kGgml;
      f.ggml = type;
  }
  return f;
}

}  // namespace marlin
