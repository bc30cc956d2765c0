// Streaming safetensors writer: tensors go to disk one by one as they are added, so memory stays
// bounded by the caller's largest tensor; the header is written last into space reserved at the
// start of the file (when it outgrows the reservation, the data is moved up in bounded chunks).
//
//   SafetensorsWriter w("out.safetensors");
//   w.set_metadata("format", "pt");
//   w.add("x", SafetensorsDtype::kF32, {2, 3}, bytes);
//   w.finish();
//
// The file is written as PATH.partial and renamed into place by finish(); a writer destroyed
// before finish() removes it. The header is padded with spaces so the data section starts at a
// multiple of 8 bytes; tensors follow each other without gaps, as the format requires, so a
// tensor is 8-byte aligned only when everything before it is a multiple of 8 bytes long, unless
// Options::align_tensors inserts U8 padding tensors (named "__padding_N__") to make it so.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "formats/safetensors.h"

namespace marlin {

class SafetensorsWriter {
 public:
  struct Options {
    uint64_t header_reserve = 64 * 1024;  // bytes set aside for the header (a multiple of 8)
    bool align_tensors = false;           // start every tensor at a multiple of 8 bytes
  };

  explicit SafetensorsWriter(std::string path, Options options);
  explicit SafetensorsWriter(std::string path) : SafetensorsWriter(std::move(path), Options()) {}
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  // A "__metadata__" entry (replaces an earlier value of the same key). Any time before finish().
  void set_metadata(const std::string& key, std::string value);

  // Writes one tensor; `data` must hold exactly the bytes its shape and dtype need.
  void add(const std::string& name, SafetensorsDtype dtype, std::vector<uint64_t> shape, std::span<const uint8_t> data);

  // The same in pieces: begin(), any number of write()s adding up to the tensor's size, end().
  void begin(const std::string& name, SafetensorsDtype dtype, std::vector<uint64_t> shape);
  void write(std::span<const uint8_t> bytes);
  void end();

  // Bytes of tensor data written so far.
  uint64_t data_bytes() const { return data_bytes_; }
  const std::string& path() const { return path_; }

  // Writes the header, closes the file and renames it into place.
  void finish();

 private:
  struct Entry {
    std::string name;
    SafetensorsDtype dtype;
    std::vector<uint64_t> shape;
    uint64_t begin, end;
  };

  void write_at(uint64_t offset, std::span<const uint8_t> bytes);
  void read_at(uint64_t offset, std::span<uint8_t> bytes);
  void move_data(uint64_t from, uint64_t to);
  std::string header_text() const;

  std::string path_;
  std::string partial_path_;
  Options options_;
  int fd_ = -1;
  bool finished_ = false;
  uint64_t data_bytes_ = 0;
  std::vector<Entry> entries_;
  std::unordered_set<std::string> names_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  bool open_tensor_ = false;
  uint64_t open_remaining_ = 0;
  int padding_count_ = 0;
};

}  // namespace marlin
