// Helpers shared by the transport tests.
#pragma once

#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/mutex.h"
#include "verbs/transport.h"

namespace sharry::testing {

// True in a ThreadSanitizer build (gcc's macro, clang's feature): stress
// tests run fewer rounds there, e.g. `kRounds = kTsan ? 150 : 600`.
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kTsan = true;
#elif defined(__has_feature)
inline constexpr bool kTsan = __has_feature(thread_sanitizer);
#else
inline constexpr bool kTsan = false;
#endif
// True under AddressSanitizer (gcc's macro, clang's feature).
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAsan = true;
#elif defined(__has_feature)
inline constexpr bool kAsan = __has_feature(address_sanitizer);
#else
inline constexpr bool kAsan = false;
#endif

// The address tests use for the verbs transport: SHARRY_RDMA_ADDR, set by
// scripts/run-rxe.sh and inside the test VM. Empty if there is no device.
inline std::string RdmaAddr() {
  const char* a = std::getenv("SHARRY_RDMA_ADDR");
  return a ? a : "";
}

inline std::string ServerAddr(TransportKind k) { return k == TransportKind::kVerbs ? RdmaAddr() : "127.0.0.1"; }

// Waits for each child and expects it to have exited with status 0.
inline void ExpectChildrenSucceed(const std::vector<pid_t>& pids) {
  for (pid_t pid : pids) {
    int status = 0;
    ASSERT_EQ(pid, waitpid(pid, &status, 0));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child " << pid << " exit status " << status;
  }
}

// Starts this test binary again as a child process with argv[1..] = args
// (its main() recognises the first argument and runs the child's part, never
// the tests). If out_fd is given, the child's stdout is a pipe read there.
// Returns the pid, or -1.
inline pid_t SpawnSelf(const std::vector<std::string>& args, int* out_fd = nullptr) {
  std::vector<std::string> all = {"/proc/self/exe"};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  int pipefd[2] = {-1, -1};
  if (out_fd != nullptr) {
    if (pipe(pipefd) != 0) return -1;
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
  }
  pid_t pid = -1;
  if (posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv.data(), ::environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&fa);
  if (out_fd != nullptr) {
    close(pipefd[1]);
    *out_fd = pipefd[0];
  }
  return pid;
}

// main() of a test binary whose children are itself (SpawnSelf): with
// argv[1] == child_flag it is a child and returns child(argv), or 64 unless
// argc == child_argc; else it runs the tests. A child never runs the tests
// (that would spawn children forever).
template <typename Child>
int TestsOrChildMain(int argc, char** argv, std::string_view child_flag, int child_argc, Child child) {
  if (argc >= 2 && argv[1] == child_flag) return argc == child_argc ? child(argv) : 64;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}

// Deterministic bytes: what a test writes and expects back.
inline void FillPattern(uint8_t* p, size_t n, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = static_cast<uint8_t>(x);
  }
}
inline std::vector<uint8_t> Pattern(size_t n, uint64_t seed) {
  std::vector<uint8_t> v(n);
  FillPattern(v.data(), n, seed);
  return v;
}

// Waits until `pred` or `timeout`; returns pred's last value.
inline bool Eventually(const std::function<bool()>& pred,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

// A handler for tests: echoes the request reversed, prefixed by the client
// id (4 bytes); counts connects/disconnects and requests.
class EchoHandler : public RequestHandler {
 public:
  std::atomic<int> connects{0}, disconnects{0};
  std::atomic<uint64_t> requests{0};
  void OnConnect(ClientId, const Peer&) override { connects++; }
  void OnDisconnect(ClientId) override { disconnects++; }
  size_t Handle(ClientId client, std::span<const uint8_t> req, std::span<uint8_t> resp) override {
    requests++;
    size_t n = std::min(req.size() + 4, resp.size());
    std::memcpy(resp.data(), &client, 4);
    for (size_t i = 4; i < n; ++i) resp[i] = req[req.size() - 1 - (i - 4)];
    return n;
  }
};

// An EchoHandler that also records the order of disconnects (sessions:
// members must go before their root).
class RecordingHandler : public EchoHandler {
 public:
  void OnDisconnect(ClientId id) override EXCLUDES(mu) {
    MutexLock l(&mu);
    gone.push_back(id);
    disconnects++;
  }
  std::vector<ClientId> Gone() EXCLUDES(mu) {
    MutexLock l(&mu);
    return gone;
  }
  Mutex mu;  // a leaf lock
  std::vector<ClientId> gone GUARDED_BY(mu);
};

inline std::vector<uint8_t> ExpectedEcho(ClientId id, std::span<const uint8_t> req) {
  std::vector<uint8_t> v(4 + req.size());
  std::memcpy(v.data(), &id, 4);
  for (size_t i = 0; i < req.size(); ++i) v[4 + i] = req[req.size() - 1 - i];
  return v;
}

}  // namespace sharry::testing
