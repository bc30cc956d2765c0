#include "model/kv_blocks.h"

#include <algorithm>
#include <climits>

#include "core/error.h"

namespace marlin {

KvBlockTable::KvBlockTable(int64_t blocks, int block_size, int sequences, int64_t capacity)
    : block_size_(block_size) {
  MARLIN_CHECK(block_size >= 1, "kv cache: block size must be >= 1, got {}", block_size);
  MARLIN_CHECK(blocks >= 1 && blocks <= INT32_MAX, "kv cache: {} blocks (1 to {})", blocks, INT32_MAX);
  MARLIN_CHECK(sequences >= 1, "kv cache: {} sequences (at least 1)", sequences);
  MARLIN_CHECK(capacity >= 1 && capacity <= INT32_MAX, "kv cache: {} positions per sequence (1 to {})", capacity,
               INT32_MAX);
  max_pages_ = int(blocks_for(capacity));
  refs_.assign(size_t(blocks), 0);
  free_.resize(size_t(blocks));
  for (size_t i = 0; i < free_.size(); ++i) free_[i] = int32_t(free_.size() - 1 - i);  // block 0 on top
  tables_.resize(size_t(sequences));
  allocated_.assign(size_t(sequences), 0);
}

size_t KvBlockTable::index(int seq) const {
  MARLIN_CHECK(seq >= 0 && seq < sequences(), "kv cache: no sequence {} (it holds {})", seq, sequences());
  return size_t(seq);
}

int32_t KvBlockTable::block_of(int seq, int64_t pos) const {
  const auto& table = tables_[index(seq)];
  const int64_t page = pos / block_size_;
  MARLIN_CHECK(pos >= 0 && page < int64_t(table.size()), "kv cache: position {} of sequence {} has no block", pos,
               seq);
  return table[size_t(page)];
}

int64_t KvBlockTable::blocks_needed(int seq, int64_t begin, int64_t end) const {
  const auto& table = tables_[index(seq)];
  int64_t needed = 0;
  if (begin >= end) return 0;  // nothing is written
  for (int64_t page = begin / block_size_; page < blocks_for(end); ++page)
    if (page >= int64_t(table.size()) || refs_[size_t(table[size_t(page)])] > 1) needed++;
  return needed;
}

std::vector<BlockCopy> KvBlockTable::make_writable(int seq, int64_t begin, int64_t end) {
  auto& table = tables_[index(seq)];
  MARLIN_CHECK(begin >= 0 && begin <= end && blocks_for(end) <= max_pages_,
               "kv cache: positions {} to {} are outside a sequence of {} blocks", begin, end, max_pages_);
  MARLIN_CHECK(begin / block_size_ <= int64_t(table.size()),
               "kv cache: sequence {} writes at {} past its {} blocks (internal error)", seq, begin, table.size());
  const int64_t needed = blocks_needed(seq, begin, end);
  MARLIN_CHECK(needed <= free_blocks(), "kv cache: out of blocks ({} needed, {} free of {})", needed, free_blocks(),
               total_blocks());
  std::vector<BlockCopy> copies;
  if (begin == end) return copies;
  for (int64_t page = begin / block_size_; page < blocks_for(end); ++page) {
    const bool mapped = page < int64_t(table.size());
    if (mapped && refs_[size_t(table[size_t(page)])] == 1) continue;
    const int32_t fresh = free_.back();
    free_.pop_back();
    refs_[size_t(fresh)] = 1;
    allocated_[size_t(seq)]++;
    if (mapped) {  // shared: this sequence writes into its own copy
      copies.push_back({table[size_t(page)], fresh});
      refs_[size_t(table[size_t(page)])]--;
      table[size_t(page)] = fresh;
    } else {
      table.push_back(fresh);
    }
  }
  if (needed > 0) version_++;
  return copies;
}

void KvBlockTable::release(int32_t block) {
  if (--refs_[size_t(block)] == 0) free_.push_back(block);
}

void KvBlockTable::keep(int seq, int64_t length) {
  auto& table = tables_[index(seq)];
  const auto pages = size_t(std::max<int64_t>(blocks_for(std::max<int64_t>(length, 0)), 0));
  if (pages >= table.size()) return;
  for (size_t page = table.size(); page-- > pages;) release(table[page]);  // the last block first
  table.resize(pages);
  version_++;
}

void KvBlockTable::share(int dst, int src, int64_t length) {
  auto& to = tables_[index(dst)];
  const auto& from = tables_[index(src)];
  MARLIN_CHECK(dst != src && to.empty(), "kv cache: sequence {} must be empty to share another's blocks", dst);
  const auto pages = size_t(blocks_for(length));
  MARLIN_CHECK(length >= 0 && pages <= from.size(), "kv cache: sequence {} has no {} positions to share", src, length);
  to.assign(from.begin(), from.begin() + std::ptrdiff_t(pages));
  for (const int32_t block : to) refs_[size_t(block)]++;
  if (pages > 0) version_++;
}

int64_t KvBlockTable::blocks_mapped_by(const std::vector<bool>& selected) const {
  std::vector<bool> mapped(refs_.size(), false);
  for (size_t s = 0; s < tables_.size() && s < selected.size(); ++s)
    if (selected[s])
      for (const int32_t block : tables_[s]) mapped[size_t(block)] = true;
  return int64_t(std::count(mapped.begin(), mapped.end(), true));
}

}  // namespace marlin
