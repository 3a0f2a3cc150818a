#include "base/status.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace sharry {
namespace {

TEST(StatusTest, OkAndErrors) {
  Status ok;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.ToString(), "OK");
  Status s = Status::OutOfRange("read of 8 B at offset 10");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s.ToString(), "OutOfRange: read of 8 B at offset 10");
  EXPECT_EQ(s.WithContext("client 3").ToString(), "OutOfRange: client 3: read of 8 B at offset 10");
  EXPECT_TRUE(ok.WithContext("x").ok());
}

TEST(StatusTest, FromErrnoNamesTheCallAndMapsTheCode) {
  Status s = Status::FromErrno("connect(10.0.0.1:7)", ECONNREFUSED);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("connect(10.0.0.1:7)"), std::string::npos);
  EXPECT_NE(s.message().find("errno 111"), std::string::npos);
  EXPECT_EQ(Status::FromErrno("x", ETIMEDOUT).code(), StatusCode::kTimeout);
  EXPECT_EQ(Status::FromErrno("x", ECONNRESET).code(), StatusCode::kDisconnected);
  EXPECT_EQ(Status::FromErrno("x", ENOMEM).code(), StatusCode::kOutOfMemory);
  EXPECT_EQ(Status::FromErrno("x", EINVAL).code(), StatusCode::kIoError);
}

TEST(StatusTest, StatusOrHoldsValueOrError) {
  StatusOr<int> v = 42;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 42);
  StatusOr<int> e = Status::NotFound("no such block");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kNotFound);
  StatusOr<int> bad = Status::Ok();  // a bug: turned into an Internal error
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInternal);
}

TEST(StatusTest, EveryCodeHasAName) {
  for (int c = 0; c <= static_cast<int>(kLastStatusCode); ++c)
    EXPECT_NE(StatusCodeName(static_cast<StatusCode>(c)), "Unknown") << c;
}

}  // namespace
}  // namespace sharry
