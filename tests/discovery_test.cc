// Memnode discovery against a REAL etcd (discovery/): EtcdClient,
// MemnodeRegistration, MemnodeWatcher, and the memnode daemon's --etcd.
//
// Each suite starts /usr/bin/etcd (or $SHARRY_ETCD) as a child process on
// free loopback ports with its data in a mkdtemp directory, waits (bounded)
// until it answers, and kills it at the end. A child dies with the test
// process too (PR_SET_PDEATHSIG) and is killed at exit, so a failing or
// crashing test leaks no etcd. etcd runs with a 10 ms heartbeat so that a
// lease of 1 s really expires after about 1 s (etcd's minimum TTL is 1.5
// election timeouts).
//
// A missing etcd is a FAILURE, not a skip: scripts/install-deps.sh installs
// etcd-server, and a suite that skips silently tests nothing.
//
// Other tests play a broken etcd: FakeHttpServer answers every request with
// canned bytes (garbage, wrong JSON, oversized, silence) and the client
// must return a clean error.
//
//   discovery_test /path/to/memnode [gtest flags]   (the end-to-end test runs the daemon)
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/mutex.h"
#include "discovery/etcd_client.h"
#include "discovery/http_post.h"
#include "discovery/memnode_registry.h"
#include "tests/etcd_process.h"

namespace sharry::discovery {
namespace {

std::string g_memnode_path;  // argv[1]

double MsSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Polls pred every 10 ms until it holds or `timeout` passes.
// ------------------------------------------------------------ a broken etcd

// Answers each connection with `reply` (raw bytes: status line, headers,
// body) once it has read the request, then closes it, or holds it open
// until destruction (hold_open: for silent or endless streams).
class FakeHttpServer {
 public:
  explicit FakeHttpServer(std::string reply, bool hold_open = false) : reply_(std::move(reply)), hold_open_(hold_open) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(listen_fd_, 16) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0 || pipe2(stop_pipe_, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "FakeHttpServer: " << std::strerror(errno);
      return;
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeHttpServer() {
    if (thread_.joinable()) {
      (void)!write(stop_pipe_[1], "x", 1);
      thread_.join();
    }
    for (int fd : {listen_fd_, stop_pipe_[0], stop_pipe_[1]}) {
      if (fd >= 0) close(fd);
    }
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  EtcdOptions options(int timeout_ms = 1000, size_t max_reply = size_t{4} << 20) const {
    return EtcdOptions{endpoint(), timeout_ms, max_reply};
  }

 private:
  void Serve() {
    std::vector<int> open_fds;
    for (;;) {
      pollfd p[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
      if (poll(p, 2, -1) < 0 && errno != EINTR) break;
      if (p[1].revents != 0) break;
      if ((p[0].revents & POLLIN) == 0) continue;
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      ReadRequest(fd);
      for (size_t off = 0; off < reply_.size();) {
        ssize_t n = send(fd, reply_.data() + off, reply_.size() - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      if (hold_open_) {
        open_fds.push_back(fd);
      } else {
        close(fd);
      }
    }
    for (int fd : open_fds) close(fd);
  }

  // Reads the headers and the Content-Length body (bounded: 2 s, 1 MiB), so
  // that closing does not reset the connection under unread bytes.
  void ReadRequest(int fd) {
    std::string req;
    size_t want = std::string::npos;
    const auto end = Clock::now() + seconds(2);
    char buf[4096];
    while (Clock::now() < end && req.size() < (1u << 20)) {
      if (want == std::string::npos) {
        size_t h = req.find("\r\n\r\n");
        if (h != std::string::npos) {
          size_t body = 0;
          size_t cl = req.find("Content-Length: ");
          if (cl != std::string::npos && cl < h) body = std::strtoul(req.c_str() + cl + 16, nullptr, 10);
          want = h + 4 + body;
        }
      }
      if (want != std::string::npos && req.size() >= want) return;
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return;
      req.append(buf, static_cast<size_t>(n));
    }
  }

  const std::string reply_;
  const bool hold_open_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  uint16_t port_ = 0;
  std::thread thread_;
};

// A whole reply with its length.
std::string HttpReply(const std::string& status, const std::string& body) {
  return "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}
std::string HttpOk(const std::string& body) { return HttpReply("200 OK", body); }
// A streamed reply's start: no length, the body runs until the connection closes.
const std::string kStreamStart = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
const std::string kCreatedLine = R"({"result":{"header":{"revision":"5"},"created":true}})"
                                 "\n";

// ------------------------------------------------------------ join/leave recorder

// Records a watcher's callbacks as "join ADDR" / "leave ADDR" lines.
class Recorder {
 public:
  WatcherCallbacks Callbacks() {
    WatcherCallbacks cb;
    cb.on_join = [this](const std::string& addr, const MemnodeInfo& info) {
      MutexLock l(&mu_);
      EXPECT_EQ(info.addr, addr);
      events_.push_back("join " + addr);
      infos_[addr] = info;
      cv_.SignalAll();
    };
    cb.on_leave = [this](const std::string& addr) {
      MutexLock l(&mu_);
      events_.push_back("leave " + addr);
      cv_.SignalAll();
    };
    return cb;
  }
  // Waits (bounded) until `event` has been recorded at index >= from;
  // returns its index, or -1.
  int WaitFor(const std::string& event, Clock::duration timeout, size_t from = 0) {
    const auto end = Clock::now() + timeout;
    MutexLock l(&mu_);
    for (;;) {
      for (size_t i = from; i < events_.size(); ++i) {
        if (events_[i] == event) return static_cast<int>(i);
      }
      if (Clock::now() >= end) return -1;
      cv_.WaitUntil(&mu_, end);
    }
  }
  std::vector<std::string> events() const {
    MutexLock l(&mu_);
    return events_;
  }
  MemnodeInfo info(const std::string& addr) const {
    MutexLock l(&mu_);
    auto it = infos_.find(addr);
    return it == infos_.end() ? MemnodeInfo{} : it->second;
  }
  std::string Dump() const {
    std::string s;
    for (const auto& e : events()) s += "  " + e + "\n";
    return s;
  }

 private:
  mutable Mutex mu_;
  CondVar cv_;
  std::vector<std::string> events_ GUARDED_BY(mu_);
  std::map<std::string, MemnodeInfo> infos_ GUARDED_BY(mu_);
};

MemnodeInfo InfoFor(const std::string& addr, int64_t started = 1000) {
  return MemnodeInfo{addr, "tcp", uint64_t{64} << 20, started};
}

// ------------------------------------------------------------ the fixture

// One etcd for the suite; each test works under its own key prefix.
class DiscoveryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { etcd_ = EtcdProcess::Start(&start_error_).release(); }
  static void TearDownTestSuite() {
    delete etcd_;
    etcd_ = nullptr;
  }
  void SetUp() override { ASSERT_NE(etcd_, nullptr) << start_error_; }

  // "/sharry-test/<test name>/"
  static std::string Prefix() {
    return std::string("/sharry-test/") + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/";
  }
  static EtcdClient Client() { return EtcdClient(etcd_->options()); }
  static RegistrationOptions Registration(const std::string& addr, int ttl_s = 1) {
    RegistrationOptions r;
    r.etcd = etcd_->options();
    r.prefix = Prefix();
    r.info = InfoFor(addr);
    r.ttl_s = ttl_s;
    return r;
  }
  static WatcherOptions Watcher() {
    WatcherOptions w;
    w.etcd = etcd_->options();
    w.prefix = Prefix();
    w.max_backoff_ms = 300;
    return w;
  }

  static EtcdProcess* etcd_;
  static std::string start_error_;
};
EtcdProcess* DiscoveryTest::etcd_ = nullptr;
std::string DiscoveryTest::start_error_;

// ------------------------------------------------------------ EtcdClient on a real etcd

TEST_F(DiscoveryTest, PutRangeDeleteRoundTrip) {
  EtcdClient etcd = Client();
  const std::string p = Prefix();
  const std::string binary("v\0\xff\n\"x", 6);  // bytes JSON could not hold raw
  auto r1 = etcd.Put(p + "b", binary);
  ASSERT_TRUE(r1.ok()) << r1.status();
  auto r2 = etcd.Put(p + "a", "first");
  ASSERT_TRUE(r2.ok()) << r2.status();
  auto r3 = etcd.Put(p + "c", "");
  ASSERT_TRUE(r3.ok()) << r3.status();
  ASSERT_TRUE(etcd.Put(p.substr(0, p.size() - 1) + "X", "outside the prefix").ok());
  EXPECT_LT(*r1, *r2);
  EXPECT_LT(*r2, *r3);

  auto range = etcd.RangePrefix(p);
  ASSERT_TRUE(range.ok()) << range.status();
  EXPECT_GE(range->revision, *r3 + 1);
  ASSERT_EQ(range->kvs.size(), 3u);
  EXPECT_EQ(range->kvs[0].key, p + "a");
  EXPECT_EQ(range->kvs[0].value, "first");
  EXPECT_EQ(range->kvs[0].mod_revision, *r2);
  EXPECT_EQ(range->kvs[1].key, p + "b");
  EXPECT_EQ(range->kvs[1].value, binary);
  EXPECT_EQ(range->kvs[1].mod_revision, *r1);
  EXPECT_EQ(range->kvs[2].value, "");
  EXPECT_EQ(range->kvs[0].lease, 0);

  auto deleted = etcd.Delete(p + "b");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 1);
  deleted = etcd.Delete(p + "b");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 0);
  range = etcd.RangePrefix(p);
  ASSERT_TRUE(range.ok()) << range.status();
  ASSERT_EQ(range->kvs.size(), 2u);
  EXPECT_EQ(range->kvs[0].key, p + "a");
  EXPECT_EQ(range->kvs[1].key, p + "c");
}

TEST_F(DiscoveryTest, LeaseExpiryRemovesTheKey) {
  EtcdClient etcd = Client();
  const std::string key = Prefix() + "k";
  auto lease = etcd.LeaseGrant(1);
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(etcd.Put(key, "v", *lease).ok());
  auto range = etcd.RangePrefix(Prefix());
  ASSERT_TRUE(range.ok());
  ASSERT_EQ(range->kvs.size(), 1u);
  EXPECT_EQ(range->kvs[0].lease, *lease);
  auto ttl = etcd.LeaseKeepAliveOnce(*lease);
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_GE(*ttl, 1);
  const auto t0 = Clock::now();
  ASSERT_TRUE(PollUntil(
      [&] {
        auto r = etcd.RangePrefix(Prefix());
        return r.ok() && r->kvs.empty();
      },
      seconds(6)))
      << "the key outlived its 1 s lease by 5 s";
  const double ms = MsSince(t0);
  EXPECT_GE(ms, 500) << "the key went before its lease could have expired";
  std::printf("[discovery] a 1 s lease expired after %.0f ms\n", ms);
  // The lease is gone: renewing, revoking or putting with it is NotFound.
  ttl = etcd.LeaseKeepAliveOnce(*lease);
  ASSERT_FALSE(ttl.ok());
  EXPECT_EQ(ttl.status().code(), StatusCode::kNotFound) << ttl.status();
  EXPECT_NE(ttl.status().message().find("etcd " + etcd_->endpoint() + ": lease keepalive: lease"), std::string::npos)
      << ttl.status();
  Status s = etcd.LeaseRevoke(*lease);
  EXPECT_EQ(s.code(), StatusCode::kNotFound) << s;
  auto put = etcd.Put(key, "v", *lease);
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), StatusCode::kNotFound) << put.status();
  EXPECT_NE(put.status().message().find("requested lease not found"), std::string::npos) << put.status();
}

TEST_F(DiscoveryTest, WatchDeliversEventsInOrderAndStopsPromptly) {
  EtcdClient etcd = Client();
  const std::string p = Prefix();
  auto start = etcd.RangePrefix(p);
  ASSERT_TRUE(start.ok());
  Mutex mu;
  std::vector<std::string> seen;  // guarded by mu
  std::atomic<bool> created{false};
  std::stop_source stop;
  Status result = Status::Internal("not returned");
  std::thread watcher([&] {
    result = etcd.Watch(
        p, start->revision + 1,
        [&](const WatchEvent& ev) {
          MutexLock l(&mu);
          seen.push_back((ev.type == WatchEvent::Type::kPut ? "put " : "delete ") + ev.key.substr(p.size()) + "=" +
                         ev.value);
        },
        stop.get_token(), [&] { created = true; });
  });
  ASSERT_TRUE(PollUntil([&] { return created.load(); }, seconds(5)));
  ASSERT_TRUE(etcd.Put(p + "x", "1").ok());
  ASSERT_TRUE(etcd.Put(p + "y", "2").ok());
  ASSERT_TRUE(etcd.Delete(p + "x").ok());
  ASSERT_TRUE(etcd.Put(p.substr(0, p.size() - 1) + "Z", "not ours").ok());
  const std::vector<std::string> want = {"put x=1", "put y=2", "delete x="};
  EXPECT_TRUE(PollUntil(
      [&] {
        MutexLock l(&mu);
        return seen.size() >= want.size();
      },
      seconds(5)));
  // An idle watch stops at once.
  std::this_thread::sleep_for(milliseconds(100));
  const auto t0 = Clock::now();
  stop.request_stop();
  watcher.join();
  const double ms = MsSince(t0);
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_LT(ms, 500) << "Watch took " << ms << " ms to stop";
  MutexLock l(&mu);
  EXPECT_EQ(seen, want);
}

TEST_F(DiscoveryTest, WatchOfACompactedRevisionIsOutOfRange) {
  EtcdClient etcd = Client();
  auto rev = etcd.Put(Prefix() + "k", "1");
  ASSERT_TRUE(rev.ok());
  ASSERT_TRUE(etcd.Put(Prefix() + "k", "2").ok());
  // Compact (no EtcdClient call for it: only the test needs one).
  internal::HttpPost compact;
  compact.url = "http://" + etcd_->endpoint() + "/v3/kv/compaction";
  compact.body = R"({"revision":")" + std::to_string(*rev + 1) + R"("})";
  auto c = internal::Post(compact, {});
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->http_code, 200) << c->body;
  Status s = etcd.Watch(Prefix(), *rev, [](const WatchEvent&) {}, {});
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange) << s;
  EXPECT_NE(s.message().find("compacted"), std::string::npos) << s;
}

TEST_F(DiscoveryTest, ErrorsNameTheEndpointAndWhatFailed) {
  const uint16_t closed = FreePort();
  EtcdClient nobody(EtcdOptions{"127.0.0.1:" + std::to_string(closed), 1000});
  auto r = nobody.RangePrefix("/x/");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(),
            "etcd 127.0.0.1:" + std::to_string(closed) + ": range: connection refused (errno 111)");
  Status w = nobody.Watch("/x/", 1, [](const WatchEvent&) {}, {});
  EXPECT_EQ(w.code(), StatusCode::kUnavailable) << w;
  EXPECT_NE(w.message().find(": watch: connection refused"), std::string::npos) << w;

  EtcdClient bad(EtcdOptions{"no-port", 1000});
  auto g = bad.LeaseGrant(5);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(g.status().message(), "etcd no-port: lease grant: not host:port");

  EtcdClient etcd = Client();
  auto empty = etcd.RangePrefix("");
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument);
  // A request etcd refuses: its error, mapped.
  auto put = etcd.Put("", "v");
  ASSERT_FALSE(put.ok());
  EXPECT_EQ(put.status().code(), StatusCode::kInvalidArgument) << put.status();
  EXPECT_NE(
      put.status().message().find("etcd " + etcd_->endpoint() + ": put: HTTP 400: etcdserver: key is not provided"),
      std::string::npos)
      << put.status();
}

// ------------------------------------------------------------ a broken etcd: clean errors

// Each case: what the fake etcd sends, and what RangePrefix must say.
struct BrokenReply {
  const char* name;
  std::string reply;
  StatusCode code;
  const char* says;
};

TEST(BrokenEtcdTest, HostileRepliesAreErrorsNotCrashes) {
  constexpr size_t kMaxReply = 300000;
  const std::string deep(200000, '[');
  const std::vector<BrokenReply> cases = {
      {"garbage", HttpOk("this is not JSON"), StatusCode::kProtocol, "range: bad reply: not JSON: this is not JSON"},
      {"no header", HttpOk(R"({"kvs":[]})"), StatusCode::kProtocol, "range: bad reply: no \"header\""},
      {"mistyped", HttpOk(R"({"header":{"revision":{}}})"), StatusCode::kProtocol, "\"revision\" is not an int64"},
      {"bad base64", HttpOk(R"({"header":{"revision":"3"},"kvs":[{"key":"!!!!"}]})"), StatusCode::kProtocol,
       "\"key\": not base64"},
      {"deep", HttpOk(deep), StatusCode::kProtocol, "JSON nested deeper than 32"},
      {"oversized", HttpOk(std::string(kMaxReply + 1, ' ')), StatusCode::kProtocol, "range: a reply over 300000 bytes"},
      {"HTTP 500", HttpReply("500 Internal Server Error", "oops!"), StatusCode::kUnavailable,
       "range: HTTP 500: bad reply: oops!"},
      {"etcd error", HttpReply("404 Not Found", R"({"error":"gone","message":"nothing here","code":5})"),
       StatusCode::kNotFound, "range: HTTP 404: nothing here"},
      {"not HTTP", "SSH-2.0-OpenSSH_9.2\r\n", StatusCode::kProtocol, "range: not an HTTP reply"},
      {"closed", "", StatusCode::kDisconnected, "range: the connection closed without a reply"},
  };
  for (const BrokenReply& c : cases) {
    SCOPED_TRACE(c.name);
    FakeHttpServer fake(c.reply);
    EtcdClient etcd(fake.options(1000, kMaxReply));
    auto r = etcd.RangePrefix("/sharry/memnodes/");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), c.code) << r.status();
    EXPECT_NE(r.status().message().find(c.says), std::string::npos) << r.status();
    EXPECT_EQ(r.status().message().rfind("etcd " + fake.endpoint() + ": ", 0), 0u) << r.status();
    EXPECT_LT(r.status().message().size(), 400u) << "the excerpt is bounded";
  }
}

TEST(BrokenEtcdTest, SilenceIsATimeout) {
  FakeHttpServer fake("", /*hold_open=*/true);
  EtcdClient etcd(fake.options(300));
  const auto t0 = Clock::now();
  auto r = etcd.LeaseGrant(5);
  const double ms = MsSince(t0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kTimeout) << r.status();
  EXPECT_EQ(r.status().message(), "etcd " + fake.endpoint() + ": lease grant: no reply within 300 ms");
  EXPECT_GE(ms, 250);
  EXPECT_LT(ms, 1500);
  // The watch too, until its first line.
  Status w = etcd.Watch("/p/", 1, [](const WatchEvent&) {}, {});
  EXPECT_EQ(w.code(), StatusCode::kTimeout) << w;
  FakeHttpServer headers_only(kStreamStart, /*hold_open=*/true);
  w = EtcdClient(headers_only.options(300)).Watch("/p/", 1, [](const WatchEvent&) {}, {});
  EXPECT_EQ(w.code(), StatusCode::kTimeout) << w;
}

TEST(BrokenEtcdTest, BrokenWatchStreamsEndTheWatch) {
  struct Case {
    const char* name;
    std::string stream;
    StatusCode code;
    const char* says;
    bool created;
  };
  const std::vector<Case> cases = {
      {"garbage line", kStreamStart + kCreatedLine + "garbage\n", StatusCode::kProtocol, "watch: bad reply: not JSON",
       true},
      {"endless line", kStreamStart + kCreatedLine + std::string(8192, 'x'), StatusCode::kProtocol,
       "watch: a reply line over 1024 bytes", true},
      {"not created",
       kStreamStart + R"({"result":{"header":{"revision":"5"}}})"
                      "\n",
       StatusCode::kProtocol, "the first line does not create the watch", false},
      {"compacted",
       kStreamStart + kCreatedLine +
           R"({"result":{"header":{"revision":"9"},"canceled":true,"compact_revision":"7"}})"
           "\n",
       StatusCode::kOutOfRange, "compact revision 7", true},
      {"error line",
       kStreamStart + R"({"error":{"grpc_code":14,"message":"etcdserver: no leader"}})"
                      "\n",
       StatusCode::kUnavailable, "watch: etcdserver: no leader", false},
      {"bad event",
       kStreamStart + kCreatedLine +
           R"({"result":{"header":{"revision":"9"},"events":[{"type":"DELETE"}]}})"
           "\n",
       StatusCode::kProtocol, "an event without \"kv\"", true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    FakeHttpServer fake(c.stream, /*hold_open=*/true);
    bool created = false;
    int events = 0;
    Status s = EtcdClient(fake.options(1000, 1024))
                   .Watch(
                       "/p/", 1, [&](const WatchEvent&) { ++events; }, {}, [&] { created = true; });
    EXPECT_EQ(s.code(), c.code) << s;
    EXPECT_NE(s.message().find(c.says), std::string::npos) << s;
    EXPECT_EQ(created, c.created);
    EXPECT_EQ(events, 0);
  }
  // A stream that simply ends is a disconnect.
  FakeHttpServer ends(kStreamStart + kCreatedLine);
  Status s = EtcdClient(ends.options()).Watch("/p/", 1, [](const WatchEvent&) {}, {});
  EXPECT_EQ(s.code(), StatusCode::kDisconnected) << s;
  EXPECT_NE(s.message().find("watch: the stream ended"), std::string::npos) << s;
}

TEST(BrokenEtcdTest, RegistrationAndWatcherFailCleanly) {
  FakeHttpServer fake(HttpOk("<html>proxy error</html>"));
  RegistrationOptions r;
  r.etcd = fake.options();
  r.info = InfoFor("127.0.0.1:7000");
  auto reg = MemnodeRegistration::Start(r);
  ASSERT_FALSE(reg.ok());
  EXPECT_EQ(reg.status().code(), StatusCode::kProtocol) << reg.status();
  EXPECT_NE(reg.status().message().find("lease grant: bad reply: not JSON: <html>proxy error</html>"),
            std::string::npos)
      << reg.status();
  WatcherOptions w;
  w.etcd = fake.options();
  Recorder rec;
  auto watcher = MemnodeWatcher::Start(w, rec.Callbacks());
  ASSERT_FALSE(watcher.ok());
  EXPECT_EQ(watcher.status().code(), StatusCode::kProtocol) << watcher.status();
  // Bad options.
  r.ttl_s = 0;
  EXPECT_EQ(MemnodeRegistration::Start(r).status().code(), StatusCode::kInvalidArgument);
  r.ttl_s = 5;
  r.info.addr = "no-port";
  EXPECT_EQ(MemnodeRegistration::Start(r).status().code(), StatusCode::kInvalidArgument);
  w.prefix = "";
  EXPECT_EQ(MemnodeWatcher::Start(w, rec.Callbacks()).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(rec.events().empty());
}

// ------------------------------------------------------------ registration and watcher

TEST_F(DiscoveryTest, RegistrationIsSeenAndItsStopIsALeaveAtOnce) {
  Recorder rec;
  auto watcher = MemnodeWatcher::Start(Watcher(), rec.Callbacks());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  EXPECT_TRUE((*watcher)->Snapshot().empty());
  // A TTL far longer than the test: only the revoke can make it leave.
  auto reg = MemnodeRegistration::Start(Registration("10.0.0.1:7000", /*ttl_s=*/60));
  ASSERT_TRUE(reg.ok()) << reg.status();
  EXPECT_EQ((*reg)->key(), Prefix() + "10.0.0.1:7000");
  EXPECT_NE((*reg)->lease_id(), 0);
  ASSERT_GE(rec.WaitFor("join 10.0.0.1:7000", seconds(5)), 0) << rec.Dump();
  EXPECT_EQ(rec.info("10.0.0.1:7000"), InfoFor("10.0.0.1:7000"));
  auto snap = (*watcher)->Snapshot();
  ASSERT_EQ(snap.size(), 1u);
  EXPECT_EQ(snap.begin()->second, InfoFor("10.0.0.1:7000"));

  const auto t0 = Clock::now();
  ASSERT_TRUE((*reg)->Stop().ok());
  // Gone from etcd as soon as Stop returns.
  auto range = Client().RangePrefix(Prefix());
  ASSERT_TRUE(range.ok());
  EXPECT_TRUE(range->kvs.empty());
  ASSERT_GE(rec.WaitFor("leave 10.0.0.1:7000", seconds(5)), 0) << rec.Dump();
  const double ms = MsSince(t0);
  EXPECT_LT(ms, 1000) << "the leave came " << ms << " ms after Stop";
  std::printf("[discovery] Stop() to leave seen: %.0f ms\n", ms);
  EXPECT_TRUE((*watcher)->Snapshot().empty());
  EXPECT_TRUE((*reg)->Stop().ok()) << "idempotent";
  EXPECT_EQ(rec.events(), (std::vector<std::string>{"join 10.0.0.1:7000", "leave 10.0.0.1:7000"}));
  const WatcherStats st = (*watcher)->stats();
  EXPECT_EQ(st.joins, 1u);
  EXPECT_EQ(st.leaves, 1u);
  EXPECT_EQ(st.watch_failures, 0u);
}

TEST_F(DiscoveryTest, WatcherStartDeliversTheCurrentSetAndLaterJoins) {
  auto a = MemnodeRegistration::Start(Registration("10.0.0.1:7000", 60));
  ASSERT_TRUE(a.ok()) << a.status();
  auto b = MemnodeRegistration::Start(Registration("10.0.0.2:7000", 60));
  ASSERT_TRUE(b.ok()) << b.status();
  Recorder rec;
  auto watcher = MemnodeWatcher::Start(Watcher(), rec.Callbacks());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  // Delivered by Start itself, in key order.
  EXPECT_EQ(rec.events(), (std::vector<std::string>{"join 10.0.0.1:7000", "join 10.0.0.2:7000"}));
  EXPECT_EQ((*watcher)->Snapshot().size(), 2u);
  // A memnode registering later is a join.
  auto c = MemnodeRegistration::Start(Registration("10.0.0.3:7000", 60));
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(rec.WaitFor("join 10.0.0.3:7000", seconds(5)), 2) << rec.Dump();
  auto snap = (*watcher)->Snapshot();
  ASSERT_EQ(snap.size(), 3u);
  EXPECT_TRUE(snap.contains("10.0.0.3:7000"));
  // Stop is prompt.
  const auto t0 = Clock::now();
  (*watcher)->Stop();
  EXPECT_LT(MsSince(t0), 1000);
  ASSERT_TRUE((*b)->Stop().ok());
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_EQ(rec.events().size(), 3u) << "a callback after Stop:\n" << rec.Dump();
}

TEST_F(DiscoveryTest, KeepAliveHoldsTheKeyAndAFrozenMemnodeLeavesWithinItsTtl) {
  Recorder rec;
  auto watcher = MemnodeWatcher::Start(Watcher(), rec.Callbacks());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  auto reg = MemnodeRegistration::Start(Registration("10.0.0.1:7000", /*ttl_s=*/1));
  ASSERT_TRUE(reg.ok()) << reg.status();
  ASSERT_GE(rec.WaitFor("join 10.0.0.1:7000", seconds(5)), 0) << rec.Dump();
  // Renewed: still there after three TTLs.
  std::this_thread::sleep_for(milliseconds(3000));
  EXPECT_EQ(rec.events(), (std::vector<std::string>{"join 10.0.0.1:7000"}));
  EXPECT_GE((*reg)->stats().keepalives, 5u);
  EXPECT_EQ((*reg)->stats().failures, 0u);
  // Frozen: no more renewals, so etcd expires the lease.
  (*reg)->PauseKeepAliveForTest();
  const auto t0 = Clock::now();
  ASSERT_GE(rec.WaitFor("leave 10.0.0.1:7000", seconds(4)), 0) << "no leave within ttl + 3 s:\n" << rec.Dump();
  std::printf("[discovery] a frozen memnode (ttl 1 s) left after %.0f ms\n", MsSince(t0));
  EXPECT_TRUE((*reg)->Stop().ok()) << "revoking an expired lease is fine";
}

TEST_F(DiscoveryTest, AChangedValueIsALeaveAndAJoinAndABadOneIsIgnored) {
  Recorder rec;
  auto watcher = MemnodeWatcher::Start(Watcher(), rec.Callbacks());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  EtcdClient etcd = Client();
  const std::string key = Prefix() + "10.0.0.1:7000";
  ASSERT_TRUE(etcd.Put(key, EncodeMemnodeInfo(InfoFor("10.0.0.1:7000", 1))).ok());
  ASSERT_GE(rec.WaitFor("join 10.0.0.1:7000", seconds(5)), 0) << rec.Dump();
  // The same value again (a re-put after a lost lease): nothing.
  ASSERT_TRUE(etcd.Put(key, EncodeMemnodeInfo(InfoFor("10.0.0.1:7000", 1))).ok());
  // Restarted at the same address: a new "started".
  ASSERT_TRUE(etcd.Put(key, EncodeMemnodeInfo(InfoFor("10.0.0.1:7000", 2))).ok());
  ASSERT_GE(rec.WaitFor("join 10.0.0.1:7000", seconds(5), 1), 0) << rec.Dump();
  EXPECT_EQ(rec.events(),
            (std::vector<std::string>{"join 10.0.0.1:7000", "leave 10.0.0.1:7000", "join 10.0.0.1:7000"}));
  EXPECT_EQ(rec.info("10.0.0.1:7000").started_ms, 2);
  // Not a MemnodeInfo, or another address's: ignored (and counted); a
  // member whose value turns bad leaves.
  ASSERT_TRUE(etcd.Put(Prefix() + "10.0.0.2:7000", "not json").ok());
  ASSERT_TRUE(etcd.Put(Prefix() + "10.0.0.3:7000", EncodeMemnodeInfo(InfoFor("10.0.0.4:7000"))).ok());
  ASSERT_TRUE(etcd.Put(key, "{}").ok());
  ASSERT_GE(rec.WaitFor("leave 10.0.0.1:7000", seconds(5), 2), 0) << rec.Dump();
  EXPECT_TRUE(PollUntil([&] { return (*watcher)->stats().bad_values == 3; }, seconds(5)));
  EXPECT_EQ(rec.events().size(), 4u) << rec.Dump();
  EXPECT_TRUE((*watcher)->Snapshot().empty());
}

// ------------------------------------------------------------ etcd restarts

// Its own etcd: killed and started again with an EMPTY data directory (a new
// cluster: every key and lease is gone, no DELETE event is ever sent). The
// watcher's re-list must deliver the leave, the registration must notice
// its lease is gone and register again, and new registrations are seen.
TEST(EtcdRestartTest, WatcherAndRegistrationSurviveARestart) {
  std::string err;
  auto etcd = EtcdProcess::Start(&err);
  ASSERT_NE(etcd, nullptr) << err;
  RegistrationOptions ro;
  ro.etcd = etcd->options(500);
  ro.prefix = "/restart/";
  ro.ttl_s = 1;
  ro.info = InfoFor("10.0.0.1:7000");
  auto frozen = MemnodeRegistration::Start(ro);
  ASSERT_TRUE(frozen.ok()) << frozen.status();
  ro.info = InfoFor("10.0.0.2:7000");
  auto live = MemnodeRegistration::Start(ro);
  ASSERT_TRUE(live.ok()) << live.status();
  WatcherOptions wo;
  wo.etcd = etcd->options(500);
  wo.prefix = "/restart/";
  wo.max_backoff_ms = 200;
  Recorder rec;
  auto watcher = MemnodeWatcher::Start(wo, rec.Callbacks());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  ASSERT_EQ(rec.events(), (std::vector<std::string>{"join 10.0.0.1:7000", "join 10.0.0.2:7000"}));

  (*frozen)->PauseKeepAliveForTest();  // it will not register again
  ASSERT_TRUE(etcd->Restart(/*fresh=*/true, &err)) << err;
  // 10.0.0.1 is gone without a DELETE event: only the re-list can tell.
  ASSERT_GE(rec.WaitFor("leave 10.0.0.1:7000", seconds(8)), 0) << rec.Dump();
  // 10.0.0.2's keepalive finds its lease unknown and registers again.
  ASSERT_TRUE(PollUntil([&] { return (*live)->stats().regrants >= 1; }, seconds(8)))
      << "failures " << (*live)->stats().failures;
  ASSERT_TRUE(PollUntil([&] { return (*watcher)->Snapshot().contains("10.0.0.2:7000"); }, seconds(8))) << rec.Dump();
  // And the watch runs again: a new memnode is a join.
  ro.info = InfoFor("10.0.0.3:7000");
  auto later = MemnodeRegistration::Start(ro);
  ASSERT_TRUE(later.ok()) << later.status();
  ASSERT_GE(rec.WaitFor("join 10.0.0.3:7000", seconds(5)), 0) << rec.Dump();
  auto snap = (*watcher)->Snapshot();
  EXPECT_EQ(snap.size(), 2u);
  EXPECT_FALSE(snap.contains("10.0.0.1:7000"));
  const WatcherStats st = (*watcher)->stats();
  EXPECT_GE(st.watch_failures, 1u);
  EXPECT_GE(st.relists, 1u);
  // Stopped while etcd is down: still prompt.
  etcd->Kill();
  const auto t0 = Clock::now();
  (*watcher)->Stop();
  EXPECT_LT(MsSince(t0), 1000);
}

// ------------------------------------------------------------ the memnode daemon

// build/tools/memnode with --etcd: seen as a join (its advertised address,
// transport and UMA), a SIGKILL is a leave within the TTL, a SIGTERM a leave
// at once.
TEST_F(DiscoveryTest, MemnodeDaemonRegistersAndLeaves) {
  ASSERT_FALSE(g_memnode_path.empty()) << "usage: discovery_test /path/to/memnode";
  Recorder rec;
  auto watcher = MemnodeWatcher::Start(Watcher(), rec.Callbacks());
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  char tmpl[] = "/tmp/sharry_discovery_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  struct Cleanup {
    std::string dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir};

  for (int sig : {SIGKILL, SIGTERM}) {
    SCOPED_TRACE(sig == SIGKILL ? "SIGKILL" : "SIGTERM");
    const size_t before = rec.events().size();
    const std::string port_file = dir + "/port" + std::to_string(sig);
    const std::string log = dir + "/memnode" + std::to_string(sig) + ".log";
    std::string err;
    pid_t pid = Spawn({g_memnode_path, "--transport=tcp", "--listen=127.0.0.1", "--port=0", "--port_file=" + port_file,
                       "--uma_mb=16", "--sections=1", "--stats_interval=0", "--etcd=" + etcd_->endpoint(),
                       "--etcd_prefix=" + Prefix(), "--etcd_ttl_s=1"},
                      log, &err);
    ASSERT_GT(pid, 0) << err;
    int port = 0;
    ASSERT_TRUE(PollUntil(
        [&] {
          std::ifstream f(port_file);
          return Exited(pid) || static_cast<bool>(f >> port);
        },
        seconds(30)))
        << ReadTail(log);
    ASSERT_GT(port, 0) << "memnode did not start:\n" << ReadTail(log);
    const std::string addr = "127.0.0.1:" + std::to_string(port);
    // Registered before it wrote its port file.
    ASSERT_GE(rec.WaitFor("join " + addr, seconds(5), before), 0) << rec.Dump() << ReadTail(log);
    const MemnodeInfo info = rec.info(addr);
    EXPECT_EQ(info.transport, "tcp");
    EXPECT_EQ(info.uma_bytes, uint64_t{16} << 20);
    EXPECT_GT(info.started_ms, UnixMillisNow() - 60000);
    const auto t0 = Clock::now();
    KillAndReap(&pid, sig);
    ASSERT_GE(rec.WaitFor("leave " + addr, seconds(sig == SIGKILL ? 4 : 1), before), 0)
        << "no leave after " << (sig == SIGKILL ? "SIGKILL within ttl + 3 s" : "SIGTERM within 1 s") << ":\n"
        << rec.Dump() << ReadTail(log);
    std::printf("[discovery] memnode %s: leave seen after %.0f ms\n", sig == SIGKILL ? "SIGKILLed" : "SIGTERMed",
                MsSince(t0));
  }
}

}  // namespace
}  // namespace sharry::discovery

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc > 1) sharry::discovery::g_memnode_path = argv[1];
  signal(SIGPIPE, SIG_IGN);
  std::atexit(sharry::discovery::KillChildrenAtExit);
  return RUN_ALL_TESTS();
}
