// GGUF parsing: a bounds-checked cursor over the mapped bytes, then the header, metadata, tensor
// infos and the checks that tie every tensor's data to the file.
//
// Layout (little-endian): magic "GGUF", u32 version, u64 tensor count, u64 metadata count,
// metadata entries (string key, u32 value type, value), tensor infos (string name, u32 n_dims,
// u64 dims[n_dims], u32 ggml type, u64 offset relative to the data section), padding to the
// alignment, data section. Strings are a u64 byte length followed by the bytes; an array is
// u32 element type, u64 count, then the items (nested arrays repeat the element type + count).
#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/checked_math.h"
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_text.h"

namespace marlin {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kMaxDims = 4;
constexpr uint64_t kMaxSigned = uint64_t(std::numeric_limits<int64_t>::max());

// Fewest bytes one value of `type` occupies inside an array; bounds counts before allocating.
uint64_t min_encoded_bytes(GgufType type) {
  switch (type) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    case GgufType::STRING: return 8;   // the length
    case GgufType::ARRAY: return 12;   // element type + count
  }
  return 1;
}

// Smallest metadata entry (8-byte key length, 1-byte key, type, 1-byte value) and tensor info
// (8-byte name length, 1-byte name, n_dims, one dim, type, offset).
constexpr uint64_t kMinEntryBytes = 8 + 1 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;

}  // namespace

class GgufParser {
 public:
  explicit GgufParser(GgufFile& file) : file_(file), bytes_(file.file_->bytes()) {}

  void parse() {
    subject_ = "header";
    const auto [tensor_count, metadata_count] = read_header();
    read_metadata(metadata_count);
    read_alignment();
    read_tensor_infos(tensor_count);
    place_tensors();
    check_no_overlap();
  }

 private:
  uint64_t remaining() const { return bytes_.size() - pos_; }

  void need(uint64_t n, const char* field) const {
    if (n > remaining())
      fail("gguf: {}: {} needs {} bytes at offset {} but the file ends at {} (truncated?)", subject_,
           field, n, pos_, bytes_.size());
  }

  template <typename T>
  T read(const char* field) {
    need(sizeof(T), field);
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  std::string read_string(const char* field) {
    const uint64_t length = read<uint64_t>(field);
    if (length > remaining())
      fail("gguf: {}: {} length {} exceeds the {} bytes left in the file", subject_, field, length,
           remaining());
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), length);
    pos_ += length;
    return s;
  }

  GgufType read_type(const char* field) {
    const uint32_t id = read<uint32_t>(field);
    if (id > uint32_t(GgufType::FLOAT64)) fail("gguf: {}: unknown {} {}", subject_, field, id);
    return GgufType(id);
  }

  // Counts every value stored so that many tiny items cannot make memory explode.
  void charge_values(uint64_t count) {
    const auto total = checked_add(values_, count);
    if (!total || *total > kGgufMaxMetadataValues)
      fail("gguf: {}: more than {} metadata values in the file", subject_, kGgufMaxMetadataValues);
    values_ = *total;
  }

  std::pair<uint64_t, uint64_t> read_header() {
    const uint32_t magic = read<uint32_t>("magic");
    if (magic != kMagic)
      fail("gguf: not a GGUF file: magic is {} (expected \"GGUF\")",
           gguf_quote({reinterpret_cast<const char*>(bytes_.data()), 4}));
    const uint32_t version = read<uint32_t>("version");
    file_.version_ = version;
    if (version == 1)
      fail("gguf: version 1 files (32-bit counts) are not supported; re-convert the model");
    if (version != 2 && version != 3) {
      if (version == 0x02000000 || version == 0x03000000)
        fail("gguf: big-endian GGUF files are not supported");
      fail("gguf: unsupported version {} (supported: 2, 3)", version);
    }
    const uint64_t tensor_count = read<uint64_t>("tensor count");
    const uint64_t metadata_count = read<uint64_t>("metadata count");
    const auto tensor_min = checked_mul(tensor_count, kMinTensorInfoBytes);
    const auto metadata_min = checked_mul(metadata_count, kMinEntryBytes);
    const auto header_min = tensor_min && metadata_min ? checked_add(*tensor_min, *metadata_min) : std::nullopt;
    if (!header_min || *header_min > remaining())
      fail("gguf: header: {} tensors and {} metadata entries cannot fit in the {} bytes left in the file",
           tensor_count, metadata_count, remaining());
    return {tensor_count, metadata_count};
  }

  void read_metadata(uint64_t count) {
    file_.metadata_.reserve(count);
    file_.metadata_index_.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      subject_ = fmt::format("metadata entry {}", i);
      std::string key = read_string("key");
      if (key.empty()) fail("gguf: {}: empty key", subject_);
      subject_ = fmt::format("metadata key {}", gguf_quote(key));
      if (!file_.metadata_index_.emplace(key, file_.metadata_.size()).second)
        fail("gguf: duplicate metadata key {}", gguf_quote(key));
      const GgufType type = read_type("value type");
      charge_values(1);
      file_.metadata_.emplace_back(std::move(key), read_value(type, 0));
    }
  }

  // `depth` is how many arrays enclose the value.
  GgufValue read_value(GgufType type, int depth) {
    switch (type) {
      case GgufType::UINT8: return {type, uint64_t(read<uint8_t>("value"))};
      case GgufType::INT8: return {type, int64_t(read<int8_t>("value"))};
      case GgufType::UINT16: return {type, uint64_t(read<uint16_t>("value"))};
      case GgufType::INT16: return {type, int64_t(read<int16_t>("value"))};
      case GgufType::UINT32: return {type, uint64_t(read<uint32_t>("value"))};
      case GgufType::INT32: return {type, int64_t(read<int32_t>("value"))};
      case GgufType::UINT64: return {type, read<uint64_t>("value")};
      case GgufType::INT64: return {type, read<int64_t>("value")};
      case GgufType::FLOAT32: return {type, double(read<float>("value"))};
      case GgufType::FLOAT64: return {type, read<double>("value")};
      case GgufType::BOOL: {
        const uint8_t b = read<uint8_t>("value");
        if (b > 1) fail("gguf: {}: bool value {} is neither 0 nor 1", subject_, b);
        return {type, b == 1};
      }
      case GgufType::STRING: return {type, read_string("string")};
      case GgufType::ARRAY: return {type, read_array(depth + 1)};
    }
    fail("gguf: {}: unknown value type {}", subject_, uint32_t(type));
  }

  GgufArray read_array(int depth) {
    if (depth > kGgufMaxArrayDepth)
      fail("gguf: {}: arrays nested more than {} deep", subject_, kGgufMaxArrayDepth);
    const GgufType element_type = read_type("array element type");
    const uint64_t count = read<uint64_t>("array length");
    const auto min_bytes = checked_mul(count, min_encoded_bytes(element_type));
    if (!min_bytes || *min_bytes > remaining())
      fail("gguf: {}: array of {} {} needs at least {} bytes but only {} are left in the file", subject_,
           count, gguf_type_name(element_type),
           min_bytes ? fmt::format("{}", *min_bytes) : std::string("2^64"), remaining());
    charge_values(count);
    GgufArray array{element_type, {}};
    array.items.reserve(count);
    for (uint64_t i = 0; i < count; ++i) array.items.push_back(read_value(element_type, depth));
    return array;
  }

  void read_alignment() {
    const auto alignment = file_.get_uint("general.alignment");
    if (!alignment) return;
    if (*alignment == 0 || (*alignment & (*alignment - 1)) != 0)
      fail("gguf: general.alignment must be a nonzero power of two, got {}", *alignment);
    file_.alignment_ = *alignment;
  }

  void read_tensor_infos(uint64_t count) {
    file_.tensors_.reserve(count);
    file_.tensor_index_.reserve(count);
    for (uint64_t i = 0; i < count; ++i) {
      subject_ = fmt::format("tensor info {}", i);
      GgufTensorInfo tensor;
      tensor.name = read_string("name");
      if (tensor.name.empty()) fail("gguf: {}: empty tensor name", subject_);
      subject_ = fmt::format("tensor {}", gguf_quote(tensor.name));
      if (!file_.tensor_index_.emplace(tensor.name, file_.tensors_.size()).second)
        fail("gguf: duplicate tensor name {}", gguf_quote(tensor.name));
      read_tensor_shape(tensor);
      read_tensor_type(tensor);
      tensor.offset = read<uint64_t>("data offset");
      if (tensor.offset % file_.alignment_ != 0)
        fail("gguf: {}: data offset {} is not a multiple of the alignment {}", subject_, tensor.offset,
             file_.alignment_);
      file_.tensors_.push_back(std::move(tensor));
    }
  }

  void read_tensor_shape(GgufTensorInfo& tensor) {
    const uint32_t n_dims = read<uint32_t>("dimension count");
    if (n_dims == 0 || n_dims > kMaxDims)
      fail("gguf: {}: {} dimensions (supported: 1 to {})", subject_, n_dims, kMaxDims);
    need(uint64_t(n_dims) * 8, "dimensions");
    tensor.shape.resize(n_dims);
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t dim = read<uint64_t>("dimension");
      if (dim == 0) fail("gguf: {}: dimension {} is 0", subject_, d);
      if (dim > kMaxSigned) fail("gguf: {}: dimension {} is {} (negative as int64)", subject_, d, dim);
      tensor.shape[d] = dim;
      const auto product = checked_mul(elements, dim);
      if (!product || *product > kMaxSigned)
        fail("gguf: {}: element count of shape {} overflows int64", subject_,
             gguf_shape_text({tensor.shape.data(), d + 1}));
      elements = *product;
    }
    tensor.elements = elements;
  }

  void read_tensor_type(GgufTensorInfo& tensor) {
    const uint32_t type_id = read<uint32_t>("type");
    const auto info = ggml_type_info(type_id);
    if (!info) fail("gguf: {}: unknown ggml type id {}", subject_, type_id);
    tensor.type = info->type;
    if (tensor.shape[0] % info->block_elements != 0)
      fail("gguf: {}: row of {} elements is not a whole number of {}-element {} blocks", subject_,
           tensor.shape[0], info->block_elements, info->name);
    const auto row_bytes = ggml_row_bytes(tensor.type, tensor.shape[0]);
    const auto bytes = row_bytes ? checked_mul(*row_bytes, tensor.elements / tensor.shape[0]) : std::nullopt;
    if (!bytes)
      fail("gguf: {}: data size of {} shape {} overflows", subject_, info->name, gguf_shape_text(tensor.shape));
    tensor.bytes = *bytes;
  }

  // Moves offsets from data-section-relative to file-absolute and checks each range lies inside.
  void place_tensors() {
    const auto data_offset = checked_align_up(pos_, file_.alignment_);
    if (!data_offset) fail("gguf: data section offset overflows (alignment {})", file_.alignment_);
    file_.data_offset_ = *data_offset;
    const uint64_t size = bytes_.size();
    for (auto& tensor : file_.tensors_) {
      const auto begin = checked_add(file_.data_offset_, tensor.offset);
      const auto end = begin ? checked_add(*begin, tensor.bytes) : std::nullopt;
      if (!end || *end > size)
        fail("gguf: tensor {}: data [offset {}, size {}] lies past the end of the file ({} bytes)",
             gguf_quote(tensor.name), begin ? fmt::format("{}", *begin) : std::string("overflow"), tensor.bytes, size);
      tensor.offset = *begin;
    }
  }

  void check_no_overlap() const {
    const auto& tensors = file_.tensors_;
    std::vector<size_t> order(tensors.size());
    std::iota(order.begin(), order.end(), size_t(0));
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return tensors[a].offset < tensors[b].offset; });
    for (size_t i = 1; i < order.size(); ++i) {
      const auto& prev = tensors[order[i - 1]];
      const auto& next = tensors[order[i]];
      if (prev.offset + prev.bytes > next.offset)
        fail("gguf: tensors {} [{}, {}) and {} [{}, {}) overlap", gguf_quote(prev.name), prev.offset,
             prev.offset + prev.bytes, gguf_quote(next.name), next.offset, next.offset + next.bytes);
    }
  }

  GgufFile& file_;
  std::span<const uint8_t> bytes_;
  uint64_t pos_ = 0;
  uint64_t values_ = 0;
  std::string subject_;  // what is being read, for error messages
};

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<GgufFile> file(new GgufFile());
  try {
    file->file_ = std::make_unique<MappedFile>(path);
  } catch (const Error& e) {
    fail("gguf: {}", e.what());
  }
  GgufParser(*file).parse();
  return file;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> GgufFile::tensor_data(const GgufTensorInfo& tensor) const {
  const auto end = checked_add(tensor.offset, tensor.bytes);
  MARLIN_CHECK(end && *end <= file_->size(), "gguf: tensor {}: data [offset {}, size {}] lies outside {}",
               gguf_quote(tensor.name), tensor.offset, tensor.bytes, path());
  return {file_->data() + tensor.offset, tensor.bytes};
}

}  // namespace marlin
