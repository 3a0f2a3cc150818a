// A real etcd for tests (discovery_test, multi_memnode_etcd_test): etcd on
// free loopback ports, its data in a temporary directory, killed with the
// test process (PR_SET_PDEATHSIG) and at exit; the child-process helpers it
// uses. A missing etcd is a failure (Start's *err says how to get one).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
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
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/mutex.h"
#include "discovery/etcd_client.h"

namespace sharry::discovery {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

inline bool PollUntil(const std::function<bool()>& pred, Clock::duration timeout) {
  const auto end = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= end) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

// A loopback port nobody listens on right now.
inline uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  uint16_t port = 0;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  if (fd >= 0) close(fd);
  return port;
}

inline std::string ReadTail(const std::string& path, size_t max = 3000) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  return s.size() > max ? s.substr(s.size() - max) : s;
}

// ------------------------------------------------------------ child processes

// Every child still running; killed at exit (atexit), whatever the tests did.
inline constexpr int kMaxChildren = 16;
inline std::atomic<pid_t> g_children[kMaxChildren];

inline void KillChildrenAtExit() {
  for (auto& c : g_children) {
    pid_t pid = c.exchange(0);
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
}

inline void TrackChild(pid_t pid) {
  for (auto& c : g_children) {
    pid_t zero = 0;
    if (c.compare_exchange_strong(zero, pid)) return;
  }
}

inline void UntrackChild(pid_t pid) {
  for (auto& c : g_children) {
    pid_t p = pid;
    if (c.compare_exchange_strong(p, 0)) return;
  }
}

// Starts argv with stdout and stderr to `log`; the child gets SIGKILL when
// this process dies. -1 and *err on failure.
inline pid_t Spawn(std::vector<std::string> args, const std::string& log, std::string* err) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int logfd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (logfd < 0) {
    *err = "open " + log + ": " + std::strerror(errno);
    return -1;
  }
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);  // the parent died before prctl
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    dup2(logfd, STDOUT_FILENO);
    dup2(logfd, STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(logfd);
  if (pid < 0) {
    *err = std::string("fork: ") + std::strerror(errno);
    return -1;
  }
  TrackChild(pid);
  return pid;
}

inline void KillAndReap(pid_t* pid, int sig = SIGKILL) {
  if (*pid <= 0) return;
  kill(*pid, sig);
  int st;
  while (waitpid(*pid, &st, 0) < 0 && errno == EINTR) {
  }
  UntrackChild(*pid);
  *pid = -1;
}

inline bool Exited(pid_t pid) {
  int st;
  return waitpid(pid, &st, WNOHANG) == pid;
}

// ------------------------------------------------------------ a real etcd

inline std::string EtcdBinary() {
  const char* e = std::getenv("SHARRY_ETCD");
  return e != nullptr && *e != '\0' ? e : "/usr/bin/etcd";
}

// etcd on free loopback ports, its data in a temporary directory.
class EtcdProcess {
 public:
  static std::unique_ptr<EtcdProcess> Start(std::string* err) {
    if (access(EtcdBinary().c_str(), X_OK) != 0) {
      *err = "no etcd at " + EtcdBinary() +
             ": install etcd-server (scripts/install-deps.sh does), or set SHARRY_ETCD to an etcd 3.4 binary";
      return nullptr;
    }
    std::unique_ptr<EtcdProcess> e(new EtcdProcess);
    char tmpl[] = "/tmp/sharry_etcd_XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      *err = std::string("mkdtemp: ") + std::strerror(errno);
      return nullptr;
    }
    e->dir_ = tmpl;
    e->client_port_ = FreePort();
    e->peer_port_ = FreePort();
    if (e->client_port_ == 0 || e->peer_port_ == 0 || e->client_port_ == e->peer_port_) {
      *err = "no free loopback ports";
      return nullptr;
    }
    if (!e->Launch(err)) return nullptr;
    return e;
  }

  ~EtcdProcess() {
    KillAndReap(&pid_);
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  std::string endpoint() const { return "127.0.0.1:" + std::to_string(client_port_); }
  EtcdOptions options(int timeout_ms = 2000) const { return EtcdOptions{endpoint(), timeout_ms}; }
  std::string log_tail() const { return ReadTail(dir_ + "/etcd.log"); }

  void Kill() { KillAndReap(&pid_); }

  // Starts it again on the same ports: with its data, or (fresh) with an
  // empty data directory: a new cluster that knows no key and no lease.
  bool Restart(bool fresh, std::string* err) {
    Kill();
    if (fresh) ++generation_;
    return Launch(err);
  }

 private:
  EtcdProcess() = default;

  bool Launch(std::string* err) {
    const std::string client = "http://127.0.0.1:" + std::to_string(client_port_);
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    const std::string data = dir_ + "/data" + std::to_string(generation_);
    pid_ =
        Spawn({EtcdBinary(), "--name=default", "--data-dir=" + data, "--listen-client-urls=" + client,
               "--advertise-client-urls=" + client, "--listen-peer-urls=" + peer,
               "--initial-advertise-peer-urls=" + peer, "--initial-cluster=default=" + peer, "--heartbeat-interval=10",
               "--election-timeout=100", "--logger=zap", "--log-outputs=stderr", "--log-level=warn"},
              dir_ + "/etcd.log", err);
    if (pid_ < 0) return false;
    // Healthy: it answers a range (bounded; the ports may take a moment
    // after a kill to be free again).
    EtcdClient probe(options(200));
    bool up = PollUntil([&] { return Exited(pid_) || probe.RangePrefix("/").ok(); }, seconds(15));
    if (!up || Exited(pid_)) {
      *err = "etcd did not start on " + endpoint() + "; its log:\n" + log_tail();
      KillAndReap(&pid_);
      return false;
    }
    return true;
  }

  std::string dir_;
  uint16_t client_port_ = 0, peer_port_ = 0;
  int generation_ = 0;
  pid_t pid_ = -1;
};

}  // namespace sharry::discovery
