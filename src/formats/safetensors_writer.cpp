#include "formats/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/checked_math.h"
#include "core/error.h"
#include "formats/gguf_text.h"
#include "tokenizer/utf8.h"

namespace marlin {
namespace {

uint64_t byte_size(const std::string& name, SafetensorsDtype dtype, const std::vector<uint64_t>& shape) {
  uint64_t bits = uint64_t(safetensors_dtype_bits(dtype));
  for (uint64_t d : shape) {
    auto product = checked_mul(bits, d);
    MARLIN_CHECK(product, "safetensors writer: tensor {}: shape {} is too large", gguf_quote(name),
                 safetensors_shape_text(shape));
    bits = *product;
  }
  MARLIN_CHECK(bits % 8 == 0, "safetensors writer: tensor {}: shape {} of {} is not a whole number of bytes",
               gguf_quote(name), safetensors_shape_text(shape), safetensors_dtype_name(dtype));
  return bits / 8;
}

constexpr uint64_t kAlignment = 8;
constexpr size_t kMoveChunk = size_t(4) << 20;

}  // namespace

SafetensorsWriter::SafetensorsWriter(std::string path, Options options)
    : path_(std::move(path)), partial_path_(path_ + ".partial"), options_(options) {
  MARLIN_CHECK(options_.header_reserve >= 16 && options_.header_reserve % kAlignment == 0,
               "safetensors writer: header_reserve {} is not a multiple of 8 of at least 16", options_.header_reserve);
  fd_ = ::open(partial_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail("safetensors writer: cannot create '{}': {}", partial_path_, std::strerror(errno));
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_) ::unlink(partial_path_.c_str());
}

void SafetensorsWriter::set_metadata(const std::string& key, std::string value) {
  MARLIN_CHECK(!finished_, "safetensors writer: '{}' is already finished", path_);
  MARLIN_CHECK(tok::utf8_is_valid(key) && tok::utf8_is_valid(value),
               "safetensors writer: metadata {} is not valid UTF-8", gguf_quote(key));
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

void SafetensorsWriter::add(const std::string& name, SafetensorsDtype dtype, std::vector<uint64_t> shape,
                            std::span<const uint8_t> data) {
  begin(name, dtype, std::move(shape));
  MARLIN_CHECK(data.size() == open_remaining_, "safetensors writer: tensor {}: {} bytes given, its shape needs {}",
               gguf_quote(name), data.size(), open_remaining_);
  write(data);
  end();
}

void SafetensorsWriter::begin(const std::string& name, SafetensorsDtype dtype, std::vector<uint64_t> shape) {
  MARLIN_CHECK(!finished_, "safetensors writer: '{}' is already finished", path_);
  MARLIN_CHECK(!open_tensor_, "safetensors writer: tensor {} begun before the previous one ended", gguf_quote(name));
  MARLIN_CHECK(!name.empty() && name != "__metadata__" && tok::utf8_is_valid(name),
               "safetensors writer: {} is not a usable tensor name", gguf_quote(name));
  MARLIN_CHECK(!names_.contains(name), "safetensors writer: tensor {} is added twice", gguf_quote(name));
  const uint64_t bytes = byte_size(name, dtype, shape);
  if (options_.align_tensors && data_bytes_ % kAlignment != 0) {
    const uint64_t pad = kAlignment - data_bytes_ % kAlignment;
    const uint8_t zeros[kAlignment] = {};
    std::string pad_name;
    do {
      pad_name = fmt::format("__padding_{}__", padding_count_++);
    } while (names_.contains(pad_name));
    names_.insert(pad_name);
    write_at(options_.header_reserve + data_bytes_, {zeros, size_t(pad)});
    entries_.push_back({pad_name, SafetensorsDtype::kU8, {pad}, data_bytes_, data_bytes_ + pad});
    data_bytes_ += pad;
  }
  names_.insert(name);
  entries_.push_back({name, dtype, std::move(shape), data_bytes_, data_bytes_ + bytes});
  open_tensor_ = true;
  open_remaining_ = bytes;
}

void SafetensorsWriter::write(std::span<const uint8_t> bytes) {
  MARLIN_CHECK(open_tensor_, "safetensors writer: write() outside begin()/end()");
  MARLIN_CHECK(bytes.size() <= open_remaining_,
               "safetensors writer: tensor {}: more bytes written than its shape holds",
               gguf_quote(entries_.back().name));
  write_at(options_.header_reserve + data_bytes_, bytes);
  data_bytes_ += bytes.size();
  open_remaining_ -= bytes.size();
}

void SafetensorsWriter::end() {
  MARLIN_CHECK(open_tensor_, "safetensors writer: end() without begin()");
  MARLIN_CHECK(open_remaining_ == 0, "safetensors writer: tensor {}: {} bytes short of its shape",
               gguf_quote(entries_.back().name), open_remaining_);
  open_tensor_ = false;
}

std::string SafetensorsWriter::header_text() const {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    auto& meta = header["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata_) meta[k] = v;
  }
  for (const auto& e : entries_) {
    header[e.name] = {
        {"dtype", safetensors_dtype_name(e.dtype)}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
  }
  return header.dump();
}

void SafetensorsWriter::finish() {
  MARLIN_CHECK(!finished_, "safetensors writer: '{}' is already finished", path_);
  MARLIN_CHECK(!open_tensor_, "safetensors writer: tensor {} was not ended", gguf_quote(entries_.back().name));
  std::string header = header_text();
  MARLIN_CHECK(header.size() <= kSafetensorsMaxHeaderBytes - kAlignment,
               "safetensors writer: '{}': the header would take {} bytes, over the {}-byte limit", path_, header.size(),
               kSafetensorsMaxHeaderBytes);
  uint64_t data_start = options_.header_reserve;
  if (8 + header.size() > data_start) {
    data_start = *checked_align_up(8 + header.size(), kAlignment);
    move_data(options_.header_reserve, data_start);
  }
  header.resize(size_t(data_start - 8), ' ');
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
  write_at(0, length);
  write_at(8, {reinterpret_cast<const uint8_t*>(header.data()), header.size()});
  if (::ftruncate(fd_, off_t(data_start + data_bytes_)) != 0) {
    fail("safetensors writer: cannot size '{}': {}", partial_path_, std::strerror(errno));
  }
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail("safetensors writer: cannot close '{}': {}", partial_path_, std::strerror(errno));
  if (std::rename(partial_path_.c_str(), path_.c_str()) != 0) {
    fail("safetensors writer: cannot rename '{}' to '{}': {}", partial_path_, path_, std::strerror(errno));
  }
  finished_ = true;
}

void SafetensorsWriter::write_at(uint64_t offset, std::span<const uint8_t> bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::pwrite(fd_, bytes.data() + done, bytes.size() - done, off_t(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("safetensors writer: cannot write '{}': {}", partial_path_, std::strerror(errno));
    done += size_t(n);
  }
}

void SafetensorsWriter::read_at(uint64_t offset, std::span<uint8_t> bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::pread(fd_, bytes.data() + done, bytes.size() - done, off_t(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail("safetensors writer: cannot read back '{}': {}", partial_path_, std::strerror(errno));
    done += size_t(n);
  }
}

// Moves the data section from offset `from` up to `to` (> from), last chunk first.
void SafetensorsWriter::move_data(uint64_t from, uint64_t to) {
  std::vector<uint8_t> buffer(size_t(std::min<uint64_t>(kMoveChunk, std::max<uint64_t>(data_bytes_, 1))));
  uint64_t remaining = data_bytes_;
  while (remaining > 0) {
    const uint64_t n = std::min<uint64_t>(remaining, buffer.size());
    remaining -= n;
    std::span<uint8_t> chunk(buffer.data(), size_t(n));
    read_at(from + remaining, chunk);
    write_at(to + remaining, chunk);
  }
}

}  // namespace marlin
