#include "formats/safetensors.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "core/checked_math.h"
#include "core/error.h"
#include "formats/gguf_text.h"

namespace marlin {
namespace {

struct DtypeRow {
  SafetensorsDtype dtype;
  std::string_view name;
  int bits;
};

constexpr std::array<DtypeRow, 22> kDtypes = {{
    {SafetensorsDtype::kBool, "BOOL", 8},
    {SafetensorsDtype::kU8, "U8", 8},
    {SafetensorsDtype::kI8, "I8", 8},
    {SafetensorsDtype::kF8E4M3, "F8_E4M3", 8},
    {SafetensorsDtype::kF8E4M3Fnuz, "F8_E4M3FNUZ", 8},
    {SafetensorsDtype::kF8E5M2, "F8_E5M2", 8},
    {SafetensorsDtype::kF8E5M2Fnuz, "F8_E5M2FNUZ", 8},
    {SafetensorsDtype::kF8E8M0, "F8_E8M0", 8},
    {SafetensorsDtype::kF4, "F4", 4},
    {SafetensorsDtype::kF6E2M3, "F6_E2M3", 6},
    {SafetensorsDtype::kF6E3M2, "F6_E3M2", 6},
    {SafetensorsDtype::kI16, "I16", 16},
    {SafetensorsDtype::kU16, "U16", 16},
    {SafetensorsDtype::kF16, "F16", 16},
    {SafetensorsDtype::kBF16, "BF16", 16},
    {SafetensorsDtype::kI32, "I32", 32},
    {SafetensorsDtype::kU32, "U32", 32},
    {SafetensorsDtype::kF32, "F32", 32},
    {SafetensorsDtype::kI64, "I64", 64},
    {SafetensorsDtype::kU64, "U64", 64},
    {SafetensorsDtype::kF64, "F64", 64},
    {SafetensorsDtype::kC64, "C64", 64},
}};

const DtypeRow& dtype_row(SafetensorsDtype dtype) {
  for (const auto& row : kDtypes)
    if (row.dtype == dtype) return row;
  fail("safetensors: dtype id {} is not in the table", int(dtype));
}

using Json = nlohmann::json;

// Builds the tensor list straight from the parser's events (no JSON tree: a 100 MB header of
// tiny entries would otherwise cost ~1 GB), rejecting anything but the documented structure.
class HeaderHandler : public nlohmann::json_sax<Json> {
 public:
  // No real tensor has more dimensions; the cap bounds memory for hostile headers.
  static constexpr size_t kMaxRank = 64;

  explicit HeaderHandler(std::string prefix) : prefix_(std::move(prefix)) {}

  std::vector<SafetensorsTensor> tensors;
  std::vector<std::pair<std::string, std::string>> metadata;
  // data_offsets of each tensor, parallel to `tensors`.
  std::vector<std::pair<uint64_t, uint64_t>> spans;

  bool null() override { return scalar("null"); }
  bool boolean(bool) override { return scalar("a boolean"); }
  bool number_integer(number_integer_t value) override {
    if (state_ == State::kShape || state_ == State::kOffsets) {
      fail("{}{}: {} has the negative value {}", prefix_, entry_name(), field_name(), value);
    }
    return scalar("a number");
  }
  bool number_unsigned(number_unsigned_t value) override {
    if (state_ == State::kShape) {
      if (tensor_.shape.size() == kMaxRank) {
        fail("{}{}: shape has more than {} dimensions", prefix_, entry_name(), kMaxRank);
      }
      tensor_.shape.push_back(value);
      return true;
    }
    if (state_ == State::kOffsets) {
      if (offsets_.size() == 2) fail("{}{}: data_offsets has more than 2 values", prefix_, entry_name());
      offsets_.push_back(value);
      return true;
    }
    return scalar("a number");
  }
  bool number_float(number_float_t, const string_t& text) override {
    if (state_ == State::kShape || state_ == State::kOffsets) {
      fail("{}{}: {} holds {}, not an integer that fits 64 bits", prefix_, entry_name(), field_name(),
           gguf_quote(text, 40));
    }
    return scalar("a number");
  }
  bool string(string_t& value) override {
    switch (state_) {
      case State::kMetadataValue:
        if (!metadata_keys_.insert(key_).second) {
          fail("{}__metadata__ {} appears twice", prefix_, gguf_quote(key_));
        }
        metadata.emplace_back(std::move(key_), std::move(value));
        state_ = State::kMetadata;
        return true;
      case State::kTensorValue:
        if (field_ == Field::kDtype) {
          auto dtype = parse_safetensors_dtype(value);
          if (!dtype) fail("{}{}: unknown dtype {}", prefix_, entry_name(), gguf_quote(value, 40));
          tensor_.dtype = *dtype;
          state_ = State::kTensor;
          return true;
        }
        if (field_ == Field::kOther) {
          state_ = State::kTensor;
          return true;
        }
        break;
      default:
        break;
    }
    return scalar("a string");
  }
  bool binary(binary_t&) override { return scalar("binary data"); }

  bool start_object(std::size_t) override {
    switch (state_) {
      case State::kStart:
        state_ = State::kTop;
        return true;
      case State::kTopValue:
        if (key_ == "__metadata__") {
          state_ = State::kMetadata;
        } else {
          tensor_ = SafetensorsTensor{};
          tensor_.name = std::move(key_);
          seen_fields_ = 0;
          state_ = State::kTensor;
        }
        return true;
      case State::kTensorValue:
        if (field_ == Field::kOther) return skip_nested();
        break;
      case State::kSkipping:
        ++skip_depth_;
        return true;
      default:
        break;
    }
    return scalar("an object");
  }
  bool key(string_t& key) override {
    switch (state_) {
      case State::kTop:
        if (!names_.insert(key).second) {
          fail("{}{} appears twice in the header", prefix_,
               key == "__metadata__" ? std::string("__metadata__") : "tensor " + gguf_quote(key));
        }
        key_ = std::move(key);
        state_ = State::kTopValue;
        return true;
      case State::kMetadata:
        key_ = std::move(key);
        state_ = State::kMetadataValue;
        return true;
      case State::kTensor:
        return tensor_key(key);
      case State::kSkipping:
        return true;
      default:
        fail("{}header: unexpected key {}", prefix_, gguf_quote(key));
    }
  }
  bool end_object() override {
    switch (state_) {
      case State::kTop:
        state_ = State::kDone;
        return true;
      case State::kMetadata:
        state_ = State::kTop;
        return true;
      case State::kTensor:
        finish_tensor();
        state_ = State::kTop;
        return true;
      case State::kSkipping:
        return end_nested();
      default:
        fail("{}header: unexpected end of object", prefix_);
    }
  }
  bool start_array(std::size_t) override {
    if (state_ == State::kTensorValue) {
      if (field_ == Field::kShape) {
        state_ = State::kShape;
        return true;
      }
      if (field_ == Field::kOffsets) {
        state_ = State::kOffsets;
        return true;
      }
      if (field_ == Field::kOther) return skip_nested();
    }
    if (state_ == State::kSkipping) {
      ++skip_depth_;
      return true;
    }
    return scalar("an array");
  }
  bool end_array() override {
    if (state_ == State::kShape || state_ == State::kOffsets) {
      state_ = State::kTensor;
      return true;
    }
    if (state_ == State::kSkipping) return end_nested();
    fail("{}header: unexpected end of array", prefix_);
  }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& error) override {
    std::string what = error.what();
    // nlohmann prefixes "[json.exception.parse_error.101] parse error at line 1, column 5: ".
    if (auto colon = what.find(": "); colon != std::string::npos) what = what.substr(colon + 2);
    fail("{}header is not valid JSON (at byte {}): {}", prefix_, position, gguf_escape(what.substr(0, 240)));
  }

 private:
  enum class State {
    kStart,
    kTop,
    kTopValue,
    kMetadata,
    kMetadataValue,
    kTensor,
    kTensorValue,
    kShape,
    kOffsets,
    kSkipping,
    kDone,
  };
  enum class Field { kDtype, kShape, kOffsets, kOther };

  std::string entry_name() const { return "tensor " + gguf_quote(tensor_.name); }
  std::string field_name() const { return state_ == State::kShape ? "shape" : "data_offsets"; }

  // A value (scalar, or the start of a container) where the structure does not allow one.
  bool scalar(const char* what) {
    switch (state_) {
      case State::kStart:
        fail("{}header is {}, not a JSON object", prefix_, what);
      case State::kTopValue:
        if (key_ == "__metadata__") {
          if (std::strcmp(what, "null") == 0) {  // the reference accepts "__metadata__": null
            state_ = State::kTop;
            return true;
          }
          fail("{}__metadata__ is {}, not an object of strings", prefix_, what);
        }
        fail("{}tensor {}: entry is {}, not an object", prefix_, gguf_quote(key_), what);
      case State::kMetadataValue:
        fail("{}__metadata__ {}: value is {}, not a string", prefix_, gguf_quote(key_), what);
      case State::kTensorValue:
        if (field_ == Field::kOther) {
          state_ = State::kTensor;
          return true;
        }
        fail("{}{}: {} is {}, not {}", prefix_, entry_name(), field_text(field_), what,
             field_ == Field::kDtype ? "a string" : "an array of integers");
      case State::kShape:
      case State::kOffsets:
        fail("{}{}: {} holds {}, not an integer", prefix_, entry_name(), field_name(), what);
      case State::kSkipping:
        return true;
      default:
        fail("{}header: unexpected {}", prefix_, what);
    }
  }

  static const char* field_text(Field field) {
    switch (field) {
      case Field::kDtype:
        return "dtype";
      case Field::kShape:
        return "shape";
      case Field::kOffsets:
        return "data_offsets";
      default:
        return "field";
    }
  }

  bool tensor_key(const std::string& key) {
    if (key == "dtype")
      field_ = Field::kDtype;
    else if (key == "shape")
      field_ = Field::kShape;
    else if (key == "data_offsets")
      field_ = Field::kOffsets;
    else
      field_ = Field::kOther;
    if (field_ != Field::kOther) {
      const unsigned bit = 1u << unsigned(field_);
      if (seen_fields_ & bit) fail("{}{}: field '{}' appears twice", prefix_, entry_name(), key);
      seen_fields_ |= bit;
    }
    state_ = State::kTensorValue;
    return true;
  }

  bool skip_nested() {
    state_ = State::kSkipping;
    skip_depth_ = 1;
    return true;
  }
  bool end_nested() {
    if (--skip_depth_ == 0) state_ = State::kTensor;
    return true;
  }

  void finish_tensor() {
    for (Field f : {Field::kDtype, Field::kShape, Field::kOffsets}) {
      if (!(seen_fields_ & (1u << unsigned(f)))) fail("{}{}: '{}' is missing", prefix_, entry_name(), field_text(f));
    }
    if (offsets_.size() != 2) {
      fail("{}{}: data_offsets has {} values, not [begin, end]", prefix_, entry_name(), offsets_.size());
    }
    const auto [begin, end] = std::pair(offsets_[0], offsets_[1]);
    if (end < begin) fail("{}{}: data_offsets [{}, {}] end before they begin", prefix_, entry_name(), begin, end);
    uint64_t elements = 1;
    for (uint64_t d : tensor_.shape) {
      auto product = checked_mul(elements, d);
      if (!product) {
        fail("{}{}: shape {} has more elements than 64 bits count", prefix_, entry_name(),
             safetensors_shape_text(tensor_.shape));
      }
      elements = *product;
    }
    const int bits = safetensors_dtype_bits(tensor_.dtype);
    auto total_bits = checked_mul(elements, uint64_t(bits));
    if (!total_bits) {
      fail("{}{}: shape {} of {} is too large to address", prefix_, entry_name(), safetensors_shape_text(tensor_.shape),
           safetensors_dtype_name(tensor_.dtype));
    }
    if (*total_bits % 8 != 0) {
      fail("{}{}: shape {} of {} is not a whole number of bytes", prefix_, entry_name(),
           safetensors_shape_text(tensor_.shape), safetensors_dtype_name(tensor_.dtype));
    }
    tensor_.elements = elements;
    tensor_.offset = begin;
    tensor_.bytes = *total_bits / 8;
    if (tensor_.bytes != end - begin) {
      fail("{}{}: shape {} of {} needs {} bytes but data_offsets [{}, {}] span {}", prefix_, entry_name(),
           safetensors_shape_text(tensor_.shape), safetensors_dtype_name(tensor_.dtype), tensor_.bytes, begin, end,
           end - begin);
    }
    spans.emplace_back(begin, end);
    tensors.push_back(std::move(tensor_));
    offsets_.clear();
  }

  std::string prefix_;
  State state_ = State::kStart;
  Field field_ = Field::kOther;
  unsigned seen_fields_ = 0;
  int64_t skip_depth_ = 0;
  std::string key_;
  SafetensorsTensor tensor_;
  std::vector<uint64_t> offsets_;
  std::unordered_set<std::string> names_;
  std::unordered_set<std::string> metadata_keys_;
};

// The spans must tile [0, data_size) exactly: sorted by begin, each starts where the previous
// ended (zero-byte tensors may sit anywhere on that line).
void check_spans(std::vector<SafetensorsTensor>& tensors, std::vector<std::pair<uint64_t, uint64_t>>& spans,
                 uint64_t data_size, const std::string& prefix) {
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (spans[i].second > data_size) {
      fail("{}tensor {}: data_offsets [{}, {}] lie past the end of the data section ({} bytes)", prefix,
           gguf_quote(tensors[i].name), spans[i].first, spans[i].second, data_size);
    }
  }
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return spans[a] < spans[b]; });
  uint64_t covered = 0;
  const SafetensorsTensor* previous = nullptr;
  for (size_t i : order) {
    const auto [begin, end] = spans[i];
    if (begin < covered) {
      fail("{}tensors {} and {} overlap (bytes [{}, {}) of the data section)", prefix, gguf_quote(previous->name),
           gguf_quote(tensors[i].name), begin, std::min(covered, end));
    }
    if (begin > covered) {
      fail("{}bytes [{}, {}) of the data section belong to no tensor (before tensor {})", prefix, covered, begin,
           gguf_quote(tensors[i].name));
    }
    if (end > begin) previous = &tensors[i];
    covered = end;
  }
  if (covered != data_size) {
    fail("{}the data section has {} bytes but the tensors cover only {}", prefix, data_size, covered);
  }
  std::vector<SafetensorsTensor> sorted;
  sorted.reserve(tensors.size());
  for (size_t i : order) sorted.push_back(std::move(tensors[i]));
  tensors = std::move(sorted);
}

}  // namespace

std::string_view safetensors_dtype_name(SafetensorsDtype dtype) { return dtype_row(dtype).name; }

int safetensors_dtype_bits(SafetensorsDtype dtype) { return dtype_row(dtype).bits; }

std::optional<SafetensorsDtype> parse_safetensors_dtype(std::string_view name) {
  for (const auto& row : kDtypes)
    if (row.name == name) return row.dtype;
  return std::nullopt;
}

std::string safetensors_shape_text(std::span<const uint64_t> shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

SafetensorsHeader parse_safetensors_header(std::span<const uint8_t> file, std::string_view source) {
  const std::string prefix = fmt::format("safetensors: {}: ", source);
  MARLIN_CHECK(file.size() >= 8, "{}the file has {} bytes, too few for the 8-byte header length", prefix, file.size());
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | file[size_t(i)];
  MARLIN_CHECK(header_bytes <= kSafetensorsMaxHeaderBytes, "{}header length {} exceeds the limit of {} bytes", prefix,
               header_bytes, kSafetensorsMaxHeaderBytes);
  MARLIN_CHECK(header_bytes <= file.size() - 8, "{}header length {} runs past the end of the file ({} bytes)", prefix,
               header_bytes, file.size());

  const auto* text = reinterpret_cast<const char*>(file.data() + 8);
  HeaderHandler handler(prefix);
  nlohmann::json::sax_parse(text, text + header_bytes, &handler);

  SafetensorsHeader header;
  header.data_start = 8 + header_bytes;
  check_spans(handler.tensors, handler.spans, file.size() - header.data_start, prefix);
  for (auto& t : handler.tensors) t.offset += header.data_start;
  header.tensors = std::move(handler.tensors);
  header.metadata = std::move(handler.metadata);
  return header;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  header_ = parse_safetensors_header(file_.bytes(), path);
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_.emplace(header_.tensors[i].name, i);
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  return std::unique_ptr<SafetensorsFile>(new SafetensorsFile(path));
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

std::optional<std::string_view> SafetensorsFile::metadata(std::string_view key) const {
  for (const auto& [k, v] : header_.metadata)
    if (k == key) return v;
  return std::nullopt;
}

}  // namespace marlin
