// PageOwnerMap (memnode/page_owners.h): pins succeed only on the owner's
// pages; a revoke waits for pins, clears the owner and zeroes the pages.
#include "memnode/page_owners.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace sharry {
namespace {

constexpr uint64_t kPage = uint64_t{1} << PageOwnerMap::kPageShift;

TEST(PageOwnerMapTest, PinsOnlyTheOwnersPages) {
  std::vector<uint8_t> region(16 * kPage, 0xAB);
  PageOwnerMap m(region.data(), region.size());
  m.OnGrant(1, 0, 2 * kPage);
  m.OnGrant(2, 2 * kPage, kPage);
  EXPECT_EQ(m.GrantedPages(), 3u);
  EXPECT_EQ(m.OwnerOf(kPage + 5), 1u);
  EXPECT_EQ(m.OwnerOf(2 * kPage), 2u);
  EXPECT_EQ(m.OwnerOf(3 * kPage), PageOwnerMap::kNone);
  EXPECT_EQ(m.OwnerOf(100 * kPage), PageOwnerMap::kNone);

  EXPECT_TRUE(PagePin(&m, 1, 100, 2 * kPage - 100).ok());        // both of 1's pages
  EXPECT_FALSE(PagePin(&m, 1, 100, 2 * kPage).ok());             // one byte into 2's page
  EXPECT_FALSE(PagePin(&m, 2, 0, 1).ok());                       // 1's page
  EXPECT_FALSE(PagePin(&m, 1, 3 * kPage, 1).ok());               // nobody's
  EXPECT_FALSE(PagePin(&m, 1, 0, 0).ok());                       // empty
  EXPECT_FALSE(PagePin(&m, 1, 16 * kPage, 1).ok());              // past the region
  EXPECT_FALSE(PagePin(&m, 1, 1, UINT64_MAX).ok());              // wraps
  EXPECT_FALSE(PagePin(&m, PageOwnerMap::kNone, 3 * kPage, 1).ok());
  // A failed pin left nothing pinned: the revoke does not wait.
  m.OnRevoke(1, 0, 2 * kPage);
  m.OnRevoke(2, 2 * kPage, kPage);
  EXPECT_EQ(m.GrantedPages(), 0u);
}

TEST(PageOwnerMapTest, RevokeZeroesThePagesAndOldOwnerLosesAccess) {
  std::vector<uint8_t> region(8 * kPage, 0x5A);
  PageOwnerMap m(region.data(), region.size());
  m.OnGrant(7, 2 * kPage, 2 * kPage);
  m.OnRevoke(7, 2 * kPage, 2 * kPage);
  for (uint64_t i = 0; i < region.size(); ++i) {
    const bool in = i >= 2 * kPage && i < 4 * kPage;
    ASSERT_EQ(region[i], in ? 0 : 0x5A) << "byte " << i;
  }
  EXPECT_EQ(m.zeroed_bytes(), 2 * kPage);
  EXPECT_FALSE(PagePin(&m, 7, 2 * kPage, 8).ok());
  m.OnGrant(8, 2 * kPage, kPage);  // the next owner
  EXPECT_TRUE(PagePin(&m, 8, 2 * kPage, 8).ok());
  EXPECT_FALSE(PagePin(&m, 7, 2 * kPage, 8).ok());
}

// A revoke waits for a pin taken before it, and no pin succeeds after the
// page changed hands: a copy never sees the next owner's page.
TEST(PageOwnerMapTest, RevokeWaitsForPinsAndNoPinSurvivesIt) {
  std::vector<uint8_t> region(4 * kPage, 1);
  PageOwnerMap m(region.data(), region.size());
  m.OnGrant(1, 0, 4 * kPage);
  ASSERT_TRUE(m.Pin(1, kPage, 2 * kPage));
  std::atomic<bool> revoked{false};
  std::thread revoker([&] {
    m.OnRevoke(1, 0, 4 * kPage);
    revoked = true;
  });
  // The pinned bytes stay the owner's until the pin goes: the revoker cannot
  // have zeroed them while the pin is held.
  for (int i = 0; i < 1000 && !revoked; ++i) std::this_thread::yield();
  EXPECT_FALSE(revoked.load());
  EXPECT_EQ(region[kPage], 1);
  m.Unpin(kPage, 2 * kPage);
  revoker.join();
  EXPECT_EQ(region[kPage], 0);
  EXPECT_FALSE(m.Pin(1, 0, 1));

  // Many pinners racing one revoke: every successful pin sees owner 1's
  // bytes (never zeros), and after the revoke no pin succeeds.
  m.OnGrant(1, 0, 4 * kPage);
  std::fill(region.begin(), region.end(), 1);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> pins{0}, bad{0};
  std::vector<std::thread> pinners;
  for (int t = 0; t < 2; ++t) {
    pinners.emplace_back([&] {
      while (!stop) {
        PagePin pin(&m, 1, 0, 4 * kPage);
        if (!pin.ok()) continue;
        ++pins;
        if (region[0] != 1 || region[4 * kPage - 1] != 1) ++bad;
      }
    });
  }
  while (pins < 100) std::this_thread::yield();
  m.OnRevoke(1, 0, 4 * kPage);
  const uint64_t after = pins.load();
  for (int i = 0; i < 1000; ++i) std::this_thread::yield();
  stop = true;
  for (auto& t : pinners) t.join();
  EXPECT_EQ(bad.load(), 0u);
  EXPECT_EQ(pins.load(), after) << "a pin succeeded after the revoke returned";
  EXPECT_EQ(m.GrantedPages(), 0u);
}

}  // namespace
}  // namespace sharry
