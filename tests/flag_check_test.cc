// base/flag_check: the checked flag layer of every binary.
#include "base/flag_check.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace sharry::flags {
namespace {

TEST(FlagCheck, RangeNamesFlagValueAndRange) {
  EXPECT_TRUE(CheckRange("port", 0, 0, 65535).ok());
  EXPECT_TRUE(CheckRange("port", 65535, 0, 65535).ok());
  Status s = CheckRange("port", 70000, 0, 65535);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "--port=70000 is out of range: allowed 0..65535");
  EXPECT_EQ(CheckRange("port", -1, 0, 65535).message(), "--port=-1 is out of range: allowed 0..65535");
}

TEST(FlagCheck, UnsignedRangeHasNoWrapAround) {
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  EXPECT_TRUE(CheckRangeU("uma_mb", kMaxFlagMiB, 1, kMaxFlagMiB).ok());
  EXPECT_FALSE(CheckRangeU("uma_mb", kMaxFlagMiB + 1, 1, kMaxFlagMiB).ok());
  EXPECT_FALSE(CheckRangeU("uma_mb", max, 1, kMaxFlagMiB).ok());
  EXPECT_FALSE(CheckRangeU("uma_mb", 0, 1, kMaxFlagMiB).ok());
  // Everything in range converts to bytes without wrapping.
  EXPECT_EQ(kMaxFlagMiB << 20, kMaxFlagBytes);
}

TEST(FlagCheck, DoublesMustBeFinite) {
  EXPECT_TRUE(CheckRangeF("local_pct", 0, 0, 100).ok());
  EXPECT_TRUE(CheckRangeF("local_pct", 100, 0, 100).ok());
  EXPECT_FALSE(CheckRangeF("local_pct", -10, 0, 100).ok());
  EXPECT_FALSE(CheckRangeF("local_pct", 100.5, 0, 100).ok());
  EXPECT_FALSE(CheckRangeF("local_pct", std::nan(""), 0, 100).ok());
  EXPECT_FALSE(CheckRangeF("local_pct", std::numeric_limits<double>::infinity(), 0, 100).ok());
  EXPECT_NE(CheckRangeF("local_pct", std::nan(""), 0, 100).message().find("--local_pct=nan"), std::string::npos);
}

TEST(FlagCheck, OneOfListsTheAllowedSet) {
  EXPECT_TRUE(CheckOneOf("pattern", "scan", {"random", "scan"}).ok());
  EXPECT_EQ(CheckOneOf("pattern", "foo", {"random", "scan"}).message(),
            "--pattern=foo is not allowed: use random or scan");
  EXPECT_EQ(CheckOneOf("transport", "udp", {"verbs", "rdma", "tcp"}).message(),
            "--transport=udp is not allowed: use verbs, rdma or tcp");
  EXPECT_TRUE(CheckListOf("tests", "scan,random", {"scan", "random"}).ok());
  EXPECT_FALSE(CheckListOf("tests", "scan,x", {"scan", "random"}).ok());
  EXPECT_FALSE(CheckListOf("tests", "", {"scan", "random"}).ok());
}

TEST(FlagCheck, CoreLists) {
  auto empty = ParseCoreList("section_cores", "");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  auto one = ParseCoreList("section_cores", "0,-1");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, (std::vector<int>{0, -1}));
  for (const char* bad : {"abc", "1,x", "0,,0", ",", "-2", "1.5", " 0", "99999999999999999999"})
    EXPECT_FALSE(ParseCoreList("section_cores", bad).ok()) << bad;
  EXPECT_FALSE(ParseCoreList("section_cores", std::to_string(NumCores())).ok());
  EXPECT_TRUE(ParseCoreList("section_cores", std::to_string(NumCores() - 1)).ok());
  EXPECT_NE(ParseCoreList("poller_cores", "1,x").status().message().find("--poller_cores=1,x"), std::string::npos);
}

TEST(FlagCheck, NumberLists) {
  auto v = ParseU64List("batches", "1,16", 1, 4096);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, (std::vector<uint64_t>{1, 16}));
  for (const char* bad : {"", "0", "1,x", "-1", "4097", "18446744073709551616"})
    EXPECT_FALSE(ParseU64List("batches", bad, 1, 4096).ok()) << bad;
}

TEST(FlagCheck, FirstErrorIsTheFirstFailure) {
  EXPECT_TRUE(FirstError({Status::Ok(), Status::Ok()}).ok());
  EXPECT_EQ(FirstError({Status::Ok(), CheckRange("a", 5, 0, 1), CheckRange("b", 5, 0, 1)}).message(),
            "--a=5 is out of range: allowed 0..1");
}

TEST(FlagCheck, BadFlagsExitTwoWithOneLine) {
  EXPECT_EXIT(ExitOnBadFlags("memnode", {CheckRange("pollers", 0, 1, 64)}), testing::ExitedWithCode(2),
              "^memnode: --pollers=0 is out of range: allowed 1..64\n$");
}

TEST(FlagCheck, RunMainCatchesWhatEscapes) {
  auto throws = [](int, char**) -> int { throw std::runtime_error("boom"); };
  EXPECT_EQ(RunMain("t", throws, 0, nullptr), 1);
  auto fine = [](int, char**) -> int { return 7; };
  EXPECT_EQ(RunMain("t", fine, 0, nullptr), 7);
}

}  // namespace
}  // namespace sharry::flags
