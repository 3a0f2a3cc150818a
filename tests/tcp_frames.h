// Hand-made frames on a raw socket against a TCP TransportServer: shared by
// the tests that feed the server's wire bytes no client would send
// (tests/tcp_transport_test.cc, tests/tcp_hardening_test.cc).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "verbs/socket_util.h"
#include "verbs/transport.h"
#include "verbs/wire.h"

namespace sharry::testing {

// Every raw send and receive gives up after 5 s.
inline net::Clock::time_point FrameDeadline() { return net::Clock::now() + std::chrono::seconds(5); }

// A TCP connection to 127.0.0.1:port (an empty Fd and a test failure if none).
inline net::Fd DialLoopback(uint16_t port) {
  auto fd = net::ConnectTcp("127.0.0.1", port, 2000);
  EXPECT_TRUE(fd.ok()) << fd.status();
  return fd.ok() ? std::move(*fd) : net::Fd();
}

// One frame: a header announcing `claimed_len` bytes (default: n), then n.
inline Status SendFrame(int fd, wire::Kind k, uint64_t tag, const void* payload, size_t n,
                        uint32_t claimed_len = ~0u) {
  wire::MsgHeader h{};
  h.kind = k;
  h.tag = tag;
  h.length = claimed_len == ~0u ? static_cast<uint32_t>(n) : claimed_len;
  SHARRY_RETURN_IF_ERROR(net::SendAll(fd, &h, sizeof h, FrameDeadline()));
  return n ? net::SendAll(fd, payload, n, FrameDeadline()) : Status::Ok();
}

// Reads one frame; returns its header and payload.
inline wire::MsgHeader RecvFrame(int fd, std::vector<uint8_t>* payload) {
  wire::MsgHeader h{};
  EXPECT_TRUE(net::RecvAll(fd, &h, sizeof h, FrameDeadline()).ok());
  payload->resize(h.length);
  if (h.length) {
    EXPECT_TRUE(net::RecvAll(fd, payload->data(), h.length, FrameDeadline()).ok());
  }
  return h;
}

// Says hello with `max_message` (and `session`, to resume one); returns the
// welcome, and in *reason the text that follows it (a refusal's reason).
inline wire::WelcomePayload SayHello(int fd, uint32_t max_message = 4096, std::string* reason = nullptr,
                                     ClientId session = 0) {
  wire::HelloPayload hello{};
  hello.max_message = max_message;
  hello.session = session;
  EXPECT_TRUE(SendFrame(fd, wire::Kind::kHello, 0, &hello, sizeof hello).ok());
  std::vector<uint8_t> p;
  wire::MsgHeader h = RecvFrame(fd, &p);
  EXPECT_EQ(h.kind, wire::Kind::kWelcome);
  wire::WelcomePayload w{};
  EXPECT_GE(p.size(), sizeof w);
  std::memcpy(&w, p.data(), std::min(p.size(), sizeof w));
  if (reason) reason->assign(p.begin() + std::min(p.size(), sizeof w), p.end());
  return w;
}

}  // namespace sharry::testing
