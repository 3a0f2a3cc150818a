// ErasureCode (compute/erasure_code.h): for several (k, m) and block lengths,
// every set of at most m lost blocks is rebuilt byte for byte from the rest
// (in shuffled order); m + 1 lost is refused as kDataLoss; bad configurations
// and indices are refused as kInvalidArgument; UpdateParity equals a full
// re-encode. Prints one line of encode throughput (no timing assertion).
#include "compute/erasure_code.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace sharry::compute {
namespace {

using Block = std::vector<uint8_t>;

struct Config {
  int k, m;
};
constexpr Config kConfigs[] = {{2, 1}, {3, 1}, {4, 2}, {2, 2}, {6, 3}};
constexpr size_t kLengths[] = {1, 17, 4096, 65536 + 3};

// A stripe: k random data blocks and their m parity blocks.
struct Stripe {
  std::vector<Block> blocks;  // k + m, data first

  Stripe(const ErasureCode& ec, size_t len, std::mt19937_64& rng) : blocks(ec.k() + ec.m(), Block(len)) {
    for (int i = 0; i < ec.k(); ++i)
      for (uint8_t& b : blocks[i]) b = static_cast<uint8_t>(rng());
    Encode(ec);
  }
  void Encode(const ErasureCode& ec) {
    std::vector<const uint8_t*> data;
    std::vector<uint8_t*> parity;
    for (int i = 0; i < ec.k(); ++i) data.push_back(blocks[i].data());
    for (int i = 0; i < ec.m(); ++i) parity.push_back(blocks[ec.k() + i].data());
    ec.Encode(blocks[0].size(), data, parity);
  }
};

// Every subset of {0..n-1} with 1..max_size members, as index lists.
std::vector<std::vector<int>> Subsets(int n, int max_size) {
  std::vector<std::vector<int>> out;
  for (uint32_t mask = 1; mask < (uint32_t{1} << n); ++mask) {
    if (std::popcount(mask) > max_size) continue;
    std::vector<int> s;
    for (int b = 0; b < n; ++b)
      if (mask & (uint32_t{1} << b)) s.push_back(b);
    out.push_back(std::move(s));
  }
  return out;
}

// Reconstructs `lost` from every other block of `stripe`, given in shuffled
// order, into fresh buffers.
Status Rebuild(const ErasureCode& ec, const Stripe& stripe, const std::vector<int>& lost, std::vector<Block>* out,
               std::mt19937_64& rng) {
  const size_t len = stripe.blocks[0].size();
  std::vector<int> present_idx;
  for (int b = 0; b < ec.k() + ec.m(); ++b)
    if (std::find(lost.begin(), lost.end(), b) == lost.end()) present_idx.push_back(b);
  std::shuffle(present_idx.begin(), present_idx.end(), rng);
  std::vector<const uint8_t*> present;
  for (int b : present_idx) present.push_back(stripe.blocks[b].data());
  out->assign(lost.size(), Block(len, 0xA5));
  std::vector<uint8_t*> out_ptrs;
  for (Block& b : *out) out_ptrs.push_back(b.data());
  return ec.Reconstruct(len, present_idx, present, lost, out_ptrs);
}

TEST(ErasureCodeTest, AnyKBlocksRebuildTheLostOnes) {
  std::mt19937_64 rng(12);
  for (const Config c : kConfigs) {
    auto ec = ErasureCode::Create(c.k, c.m);
    ASSERT_TRUE(ec.ok()) << ec.status();
    for (const size_t len : kLengths) {
      Stripe stripe(*ec, len, rng);
      // Each set of at most m lost blocks; those of exactly m leave exactly k,
      // so every k x k submatrix of the generator is inverted once.
      int rebuilt = 0;
      for (std::vector<int> lost : Subsets(c.k + c.m, c.m)) {
        std::shuffle(lost.begin(), lost.end(), rng);
        std::vector<Block> out;
        Status s = Rebuild(*ec, stripe, lost, &out, rng);
        ASSERT_TRUE(s.ok()) << s << " k=" << c.k << " m=" << c.m << " len=" << len;
        for (size_t i = 0; i < lost.size(); ++i) {
          ASSERT_EQ(out[i], stripe.blocks[lost[i]])
              << "block " << lost[i] << " k=" << c.k << " m=" << c.m << " len=" << len << " lost " << lost.size();
        }
        ++rebuilt;
      }
      int expected = 0;  // sum over s = 1..m of C(k+m, s)
      for (int s = 1, binom = 1; s <= c.m; ++s) {
        binom = binom * (c.k + c.m - s + 1) / s;
        expected += binom;
      }
      EXPECT_EQ(rebuilt, expected);
    }
  }
}

TEST(ErasureCodeTest, AWantedBlockThatIsPresentComesBackAsIs) {
  std::mt19937_64 rng(7);
  auto ec = ErasureCode::Create(4, 2);
  ASSERT_TRUE(ec.ok());
  Stripe stripe(*ec, 1000, rng);
  const std::vector<int> present_idx = {5, 1, 2, 3};
  std::vector<const uint8_t*> present;
  for (int b : present_idx) present.push_back(stripe.blocks[b].data());
  const std::vector<int> want = {2, 0, 4, 5};  // present, lost data, lost parity, present parity
  std::vector<Block> out(want.size(), Block(1000));
  std::vector<uint8_t*> out_ptrs;
  for (Block& b : out) out_ptrs.push_back(b.data());
  ASSERT_TRUE(ec->Reconstruct(1000, present_idx, present, want, out_ptrs).ok());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(out[i], stripe.blocks[want[i]]) << "block " << want[i];
}

TEST(ErasureCodeTest, MoreThanMLostIsDataLoss) {
  std::mt19937_64 rng(3);
  for (const Config c : kConfigs) {
    auto ec = ErasureCode::Create(c.k, c.m);
    ASSERT_TRUE(ec.ok());
    Stripe stripe(*ec, 64, rng);
    int refused = 0;
    for (const std::vector<int>& lost : Subsets(c.k + c.m, c.m + 1)) {
      if (static_cast<int>(lost.size()) != c.m + 1) continue;
      std::vector<Block> out;
      Status s = Rebuild(*ec, stripe, lost, &out, rng);
      ASSERT_EQ(s.code(), StatusCode::kDataLoss) << s;
      EXPECT_NE(s.message().find("stripe has " + std::to_string(c.k - 1) + " of " + std::to_string(c.k) +
                                 " needed blocks"),
                std::string::npos)
          << s;
      for (const Block& b : out) EXPECT_EQ(b, Block(64, 0xA5)) << "out was written";
      ++refused;
    }
    EXPECT_GT(refused, 0);
  }
  // The example of the contract: 1 of 3.
  auto ec = ErasureCode::Create(3, 1);
  ASSERT_TRUE(ec.ok());
  Stripe stripe(*ec, 8, rng);
  std::vector<Block> out;
  Status s = Rebuild(*ec, stripe, {0, 1, 3}, &out, rng);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("stripe has 1 of 3 needed blocks"), std::string::npos) << s;
}

TEST(ErasureCodeTest, BadConfigurationsAreRefused) {
  struct Bad {
    int k, m;
    const char* names;
  };
  for (const Bad b : {Bad{0, 1, "k=0"}, Bad{-1, 2, "k=-1"}, Bad{1, 0, "m=0"}, Bad{3, -4, "m=-4"},
                      Bad{30, 3, "k=30 + m=3"}, Bad{1, 32, "k=1 + m=32"}, Bad{2147483647, 1, "k=2147483647 + m=1"}}) {
    auto ec = ErasureCode::Create(b.k, b.m);
    ASSERT_FALSE(ec.ok()) << "k=" << b.k << " m=" << b.m;
    EXPECT_EQ(ec.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(ec.status().message().find(b.names), std::string::npos) << ec.status();
    EXPECT_NE(ec.status().message().find("k + m <= 32"), std::string::npos) << ec.status();
  }
  for (const Config ok : {Config{1, 1}, Config{31, 1}, Config{1, 31}, Config{16, 16}}) {
    auto ec = ErasureCode::Create(ok.k, ok.m);
    ASSERT_TRUE(ec.ok()) << ec.status();
    EXPECT_EQ(ec->k(), ok.k);
    EXPECT_EQ(ec->m(), ok.m);
  }
}

TEST(ErasureCodeTest, BadIndicesAreRefused) {
  auto ec = ErasureCode::Create(3, 2);
  ASSERT_TRUE(ec.ok());
  Block b0(16, 1), b1(16, 2), b2(16, 3), b3(16, 4), o(16, 0xA5);
  const std::vector<const uint8_t*> three = {b0.data(), b1.data(), b2.data()};
  const std::vector<const uint8_t*> four = {b0.data(), b1.data(), b2.data(), b3.data()};
  std::vector<uint8_t*> one = {o.data()};
  struct Case {
    std::vector<int> present_idx;
    const std::vector<const uint8_t*>* present;
    std::vector<int> want;
    const char* message;
  };
  const Case cases[] = {
      {{0, 1, 5}, &three, {2}, "present_idx[2]=5 is not a block of the stripe: allowed [0, 4]"},
      {{-1, 1, 2}, &three, {0}, "present_idx[0]=-1 is not a block"},
      {{0, 1, 2}, &three, {7}, "want_idx[0]=7 is not a block"},
      {{0, 2, 2, 1}, &four, {3}, "present_idx[2]=2 is listed twice"},
      {{0, 1, 2}, &three, {3, 3}, "want_idx[1]=3 is listed twice"},
      {{0, 1, 2}, &four, {3}, "3 present indices for 4 blocks"},
  };
  for (const Case& c : cases) {
    std::vector<uint8_t*> out = one;
    if (c.want.size() == 2) out.push_back(o.data());
    Status s = ec->Reconstruct(16, c.present_idx, *c.present, c.want, out);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find(c.message), std::string::npos) << s;
    EXPECT_EQ(o, Block(16, 0xA5)) << "out was written: " << c.message;
  }
  // want and out of different sizes.
  std::vector<int> present_idx = {0, 1, 2};
  std::vector<int> want = {3, 4};
  Status s = ec->Reconstruct(16, present_idx, three, want, one);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("2 wanted indices for 1 outputs"), std::string::npos) << s;
  // Nothing wanted from enough blocks: nothing to do.
  EXPECT_TRUE(ec->Reconstruct(16, present_idx, three, {}, {}).ok());
}

TEST(ErasureCodeTest, UpdateParityEqualsReEncode) {
  std::mt19937_64 rng(5);
  for (const Config c : kConfigs) {
    auto ec = ErasureCode::Create(c.k, c.m);
    ASSERT_TRUE(ec.ok());
    for (const size_t len : kLengths) {
      Stripe stripe(*ec, len, rng);
      for (int i = 0; i < c.k; ++i) {
        // Replaced by new bytes, then zeroed (a member leaving the stripe).
        Block replaced(len);
        for (uint8_t& b : replaced) b = static_cast<uint8_t>(rng());
        for (const Block& next : {replaced, Block(len, 0)}) {
          std::vector<uint8_t*> parity;
          for (int p = 0; p < c.m; ++p) parity.push_back(stripe.blocks[c.k + p].data());
          ec->UpdateParity(len, i, stripe.blocks[i].data(), next.data(), parity);
          const std::vector<Block> updated(stripe.blocks.begin() + c.k, stripe.blocks.end());
          stripe.blocks[i] = next;
          stripe.Encode(*ec);
          for (int p = 0; p < c.m; ++p) {
            ASSERT_EQ(updated[p], stripe.blocks[c.k + p])
                << "parity " << p << " after data " << i << " changed, k=" << c.k << " m=" << c.m << " len=" << len;
          }
        }
      }
      // No change: the parity stays.
      const std::vector<Block> before = stripe.blocks;
      std::vector<uint8_t*> parity;
      for (int p = 0; p < c.m; ++p) parity.push_back(stripe.blocks[c.k + p].data());
      ec->UpdateParity(len, 0, stripe.blocks[0].data(), stripe.blocks[0].data(), parity);
      EXPECT_EQ(stripe.blocks, before);
    }
  }
}

TEST(ErasureCodeTest, EncodeThroughput) {
  constexpr int kK = 6, kM = 3;
  constexpr size_t kLen = 64 << 10;
  constexpr int kRounds = 2000;
  auto ec = ErasureCode::Create(kK, kM);
  ASSERT_TRUE(ec.ok());
  std::mt19937_64 rng(1);
  Stripe stripe(*ec, kLen, rng);
  std::vector<const uint8_t*> data;
  std::vector<uint8_t*> parity;
  for (int i = 0; i < kK; ++i) data.push_back(stripe.blocks[i].data());
  for (int i = 0; i < kM; ++i) parity.push_back(stripe.blocks[kK + i].data());
  const auto start = std::chrono::steady_clock::now();
  for (int r = 0; r < kRounds; ++r) ec->Encode(kLen, data, parity);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("erasure code encode k=%d m=%d block=%zu: %.0f MB/s of data (%d stripes in %.3f s)\n", kK, kM, kLen,
              kRounds * kK * static_cast<double>(kLen) / s / 1e6, kRounds, s);
  // The last encode is still a valid one: block 0 rebuilt from the others.
  std::vector<Block> out;
  ASSERT_TRUE(Rebuild(*ec, stripe, {0}, &out, rng).ok());
  EXPECT_EQ(out[0], stripe.blocks[0]);
}

}  // namespace
}  // namespace sharry::compute
