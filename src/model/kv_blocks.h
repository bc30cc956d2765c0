// Paged KV cache bookkeeping, the same for every backend: a pool of blocks of `block_size`
// positions shared by all sequences of a cache, a free list, a reference count per block and one
// page table per sequence (its i-th entry is the physical block holding positions
// [i·block_size, (i+1)·block_size)). Several sequences may map the same block (a common prompt
// prefix); a shared block is copied before it is written (copy-on-write). The backends store keys
// and values by physical block and perform the copies this table asks for.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace marlin {

// Copy block `from` into block `to` (every layer's keys and values).
struct BlockCopy {
  int32_t from;
  int32_t to;
};

class KvBlockTable {
 public:
  // `blocks` blocks shared by `sequences` sequences of at most `capacity` positions each.
  KvBlockTable(int64_t blocks, int block_size, int sequences, int64_t capacity);

  int block_size() const { return block_size_; }
  int64_t total_blocks() const { return int64_t(refs_.size()); }
  int64_t free_blocks() const { return int64_t(free_.size()); }
  int sequences() const { return int(tables_.size()); }
  // Page table entries a sequence may have (its capacity in blocks).
  int max_pages() const { return max_pages_; }
  // Blocks that hold `positions` positions.
  int64_t blocks_for(int64_t positions) const { return (positions + block_size_ - 1) / block_size_; }

  std::span<const int32_t> page_table(int seq) const { return tables_[index(seq)]; }
  // The physical block and its slot of position `pos` of sequence `seq` (which must be mapped).
  int32_t block_of(int seq, int64_t pos) const;
  int references(int32_t block) const { return refs_[size_t(block)]; }
  // Blocks allocated for sequence `seq` so far (fresh blocks and copies), never decreasing.
  int64_t allocated(int seq) const { return allocated_[index(seq)]; }

  // Fresh blocks make_writable(seq, begin, end) would take from the pool.
  int64_t blocks_needed(int seq, int64_t begin, int64_t end) const;
  // Makes positions [begin, end) of `seq` writable: maps fresh blocks where the page table has
  // none and replaces blocks shared with another sequence by private copies, returned in the
  // order to perform them. Throws, changing nothing, when the pool has too few free blocks.
  std::vector<BlockCopy> make_writable(int seq, int64_t begin, int64_t end);
  // Keeps the blocks holding positions [0, length) of `seq` and releases the rest (0: all).
  void keep(int seq, int64_t length);
  // Maps the blocks holding positions [0, length) of `src` into the empty page table of `dst`.
  void share(int dst, int src, int64_t length);

  // Blocks mapped by at least one sequence s with selected[s].
  int64_t blocks_mapped_by(const std::vector<bool>& selected) const;
  // Changes whenever a page table changes (backends that mirror the tables re-upload them).
  uint64_t version() const { return version_; }

 private:
  size_t index(int seq) const;
  void release(int32_t block);

  int block_size_;
  int max_pages_;
  std::vector<int> refs_;                    // by block
  std::vector<int32_t> free_;                // a stack: the last freed block is reused first
  std::vector<std::vector<int32_t>> tables_;  // by sequence
  std::vector<int64_t> allocated_;           // by sequence
  uint64_t version_ = 0;
};

}  // namespace marlin
