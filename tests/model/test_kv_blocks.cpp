// The paged KV cache's bookkeeping (model/kv_blocks.h): allocation, release, sharing, copy-on-write
// and exhaustion, with every block back in the pool at the end.
#include <gtest/gtest.h>

#include <set>
#include <vector>

#include "core/error.h"
#include "model/kv_blocks.h"

namespace marlin {
namespace {

// Every block is either free or mapped exactly as often as its reference count says.
void expect_consistent(const KvBlockTable& t) {
  std::vector<int> mapped(size_t(t.total_blocks()), 0);
  for (int s = 0; s < t.sequences(); ++s)
    for (const int32_t b : t.page_table(s)) mapped[size_t(b)]++;
  int64_t unreferenced = 0;
  for (int32_t b = 0; b < int32_t(t.total_blocks()); ++b) {
    EXPECT_EQ(t.references(b), mapped[size_t(b)]) << "block " << b;
    unreferenced += mapped[size_t(b)] == 0;
  }
  EXPECT_EQ(unreferenced, t.free_blocks());
}

TEST(KvBlocks, AllocatesAsPositionsGrowAndFreesOnKeep) {
  KvBlockTable t(8, 4, 2, 16);
  EXPECT_EQ(t.max_pages(), 4);
  EXPECT_EQ(t.blocks_needed(0, 0, 5), 2);
  EXPECT_TRUE(t.make_writable(0, 0, 5).empty());
  EXPECT_EQ(t.page_table(0).size(), 2u);
  EXPECT_EQ(t.free_blocks(), 6);
  // Writing within mapped, unshared blocks takes nothing.
  EXPECT_EQ(t.blocks_needed(0, 5, 8), 0);
  EXPECT_TRUE(t.make_writable(0, 5, 8).empty());
  EXPECT_EQ(t.free_blocks(), 6);
  EXPECT_TRUE(t.make_writable(0, 8, 9).empty());
  EXPECT_EQ(t.page_table(0).size(), 3u);
  EXPECT_EQ(t.block_of(0, 8), t.page_table(0)[2]);
  EXPECT_THROW(t.block_of(0, 12), Error);
  t.keep(0, 5);  // positions 0..4: two blocks
  EXPECT_EQ(t.page_table(0).size(), 2u);
  EXPECT_EQ(t.free_blocks(), 6);
  expect_consistent(t);
  t.keep(0, 0);
  EXPECT_EQ(t.free_blocks(), 8);
  EXPECT_EQ(t.allocated(0), 3);
  expect_consistent(t);
}

TEST(KvBlocks, DistinctSequencesGetDistinctBlocks) {
  KvBlockTable t(12, 4, 3, 16);
  for (int s = 0; s < 3; ++s) t.make_writable(s, 0, 16);
  std::set<int32_t> seen;
  for (int s = 0; s < 3; ++s)
    for (const int32_t b : t.page_table(s)) EXPECT_TRUE(seen.insert(b).second) << "block " << b << " mapped twice";
  EXPECT_EQ(t.free_blocks(), 0);
  expect_consistent(t);
}

TEST(KvBlocks, SharedBlocksAreCopiedBeforeTheyAreWritten) {
  KvBlockTable t(8, 4, 3, 16);
  t.make_writable(0, 0, 10);  // three blocks, the last partly filled
  const std::vector<int32_t> source(t.page_table(0).begin(), t.page_table(0).end());
  t.share(1, 0, 7);  // positions 0..6: blocks 0 and 1, the second shared mid-way
  EXPECT_EQ(t.page_table(1).size(), 2u);
  EXPECT_EQ(t.references(source[0]), 2);
  EXPECT_EQ(t.references(source[1]), 2);
  EXPECT_EQ(t.references(source[2]), 1);
  expect_consistent(t);

  // Writing nothing copies nothing.
  EXPECT_EQ(t.blocks_needed(1, 7, 7), 0);
  EXPECT_TRUE(t.make_writable(1, 7, 7).empty());
  EXPECT_EQ(t.page_table(1)[1], source[1]);
  // Sequence 1 writes position 7, inside the shared second block: it gets a copy.
  const uint64_t version = t.version();
  EXPECT_EQ(t.blocks_needed(1, 7, 8), 1);
  const auto copies = t.make_writable(1, 7, 8);
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].from, source[1]);
  EXPECT_EQ(copies[0].to, t.page_table(1)[1]);
  EXPECT_NE(t.page_table(1)[1], source[1]);
  EXPECT_EQ(t.page_table(1)[0], source[0]);  // the first block stays shared
  EXPECT_EQ(t.references(source[1]), 1);
  EXPECT_NE(t.version(), version);
  expect_consistent(t);

  // A third sequence shares the first block; the source ends: the shared block survives it.
  t.share(2, 0, 4);
  EXPECT_EQ(t.references(source[0]), 3);
  t.keep(0, 0);
  EXPECT_EQ(t.references(source[0]), 2);
  EXPECT_EQ(t.page_table(2)[0], source[0]);
  expect_consistent(t);
  t.keep(1, 0);
  t.keep(2, 0);
  EXPECT_EQ(t.free_blocks(), 8);
  expect_consistent(t);
}

TEST(KvBlocks, ExhaustionThrowsAndChangesNothing) {
  KvBlockTable t(3, 4, 2, 16);
  t.make_writable(0, 0, 8);
  t.share(1, 0, 6);
  EXPECT_EQ(t.free_blocks(), 1);
  // Sequence 1 writing positions 6..12 needs a copy of the shared block and two fresh blocks.
  EXPECT_EQ(t.blocks_needed(1, 6, 13), 3);
  const std::vector<int32_t> before(t.page_table(1).begin(), t.page_table(1).end());
  EXPECT_THROW(t.make_writable(1, 6, 13), Error);
  EXPECT_EQ(std::vector<int32_t>(t.page_table(1).begin(), t.page_table(1).end()), before);
  EXPECT_EQ(t.free_blocks(), 1);
  expect_consistent(t);
  EXPECT_EQ(t.make_writable(1, 6, 8).size(), 1u);  // the copy alone fits
  EXPECT_EQ(t.free_blocks(), 0);
  t.keep(0, 0);
  t.keep(1, 0);
  EXPECT_EQ(t.free_blocks(), 3);
  expect_consistent(t);
}

TEST(KvBlocks, RejectsBadArguments) {
  EXPECT_THROW(KvBlockTable(0, 16, 1, 16), Error);
  EXPECT_THROW(KvBlockTable(4, 0, 1, 16), Error);
  EXPECT_THROW(KvBlockTable(4, 16, 0, 16), Error);
  KvBlockTable t(4, 4, 2, 8);
  EXPECT_THROW(t.make_writable(0, 0, 9), Error);  // beyond the capacity
  EXPECT_THROW(t.make_writable(2, 0, 1), Error);  // no such sequence
  EXPECT_THROW(t.make_writable(0, 4, 5), Error);  // a gap before position 4
  t.make_writable(0, 0, 4);
  EXPECT_THROW(t.share(0, 0, 4), Error);          // onto itself
  EXPECT_THROW(t.share(1, 0, 5), Error);          // more than the source holds
  t.make_writable(1, 0, 1);
  EXPECT_THROW(t.share(1, 0, 4), Error);          // the destination is not empty
}

TEST(KvBlocks, CountsBlocksMappedBySelectedSequences) {
  KvBlockTable t(8, 4, 3, 16);
  t.make_writable(0, 0, 8);
  t.share(1, 0, 8);
  t.make_writable(1, 8, 9);
  t.make_writable(2, 0, 4);
  EXPECT_EQ(t.blocks_mapped_by({true, false, false}), 2);
  EXPECT_EQ(t.blocks_mapped_by({false, true, false}), 3);
  EXPECT_EQ(t.blocks_mapped_by({true, true, false}), 3);
  EXPECT_EQ(t.blocks_mapped_by({true, true, true}), 4);
  EXPECT_EQ(t.blocks_mapped_by({false, false, false}), 0);
}

}  // namespace
}  // namespace marlin
