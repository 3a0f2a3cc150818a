// The TCP backend's server. Private to the build.
//
// An acceptor thread takes connections and hands them round robin to the
// poller threads (epoll); each connection's input goes through a
// TcpFraming (socket-free parser, tcp_framing.h) that writes kWrite data
// straight into the region and asks the server to greet, to run a request
// through the RequestHandler, to reply region bytes for a kRead, to queue
// errors or close. Replies are queued per connection and flushed with
// sendmsg without blocking.
//
// Where the code is:
//   tcp_server_impl.h  this header: TcpConn (one connection), TcpServer
//   tcp_server.cc      start/stop, the accept loop and its refusals, the
//                      pollers, the sweep (handshake timeout, linger, stall,
//                      leases), sessions, reading, the framing's sink,
//                      queueing and flushing replies
//   tcp_framing.h/.cc  the input parser, driven by bytes
//   tcp_client.cc      the client
//   handshake.h/.cc    hello/welcome encoding, CheckHello and CheckWelcome (both backends)
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/mutex.h"
#include "verbs/handshake.h"
#include "verbs/session.h"
#include "verbs/socket_util.h"
#include "verbs/tcp_framing.h"
#include "verbs/transport_internal.h"
#include "verbs/transport.h"
#include "verbs/wire.h"

namespace sharry::internal {

using net::Clock;
using wire::Kind;
using wire::MsgHeader;

// Each connection belongs to one poller thread. Its life:
//
//   accepted --hello--> greeted --EOF/bad frame/refusal--> closing --flushed--> closed
//       |                  |  \--lease expired, session over, stalled-----------^
//       \--handshake_timeout_ms without a hello--------------------------------^
//
// Bounds (docs/security.md): connections open <= max_clients greeted +
// max_handshakes not yet greeted; per connection: the input buffer (64 B
// before the hello, 64 KiB after), one request payload (<= max_message), and
// unsent replies — reading stops while they exceed max_unsent_bytes
// (backpressure), and a connection that then takes nothing for
// stall_timeout_ms is dropped. A closing connection gets linger_ms to take
// its last replies. Nothing a peer does makes a poller spin: the epoll
// interest of a connection always matches what it can do.

constexpr size_t kPreHelloInbuf = 64;
constexpr size_t kInbuf = 64 << 10;

// One connection, owned by exactly one poller thread.
struct TcpConn {
  explicit TcpConn(const TcpFraming::Options& o) : framing(o) {}
  net::Fd fd;
  ClientId id = 0;
  bool closing = false;  // no more input; close once the output is flushed
  bool dead = false;     // to be closed by the poll loop (never freed mid-handling)
  bool paused = false;   // backpressure: input not read while unsent > max_unsent_bytes
  bool peer_done = false;  // the peer closed its side (EOF read)
  bool shut_wr = false;    // closing: our side is shut down, input drained until EOF
  std::string why;       // why it is closing or dead (for the log)
  std::shared_ptr<SessionTable::Session> session;
  std::string peer_address;           // for the log and the failed-authentication guard
  std::unique_ptr<ServerAuth> auth;   // the handshake's authentication (null once greeted)
  uint32_t hello_max_message = 0;     // negotiated by the hello, in force once greeted
  Clock::time_point accepted, closing_since, last_progress;
  TcpFraming framing;  // the input parser: hello, frames, writes into the region
  std::vector<uint8_t> inbuf = std::vector<uint8_t>(kPreHelloInbuf);  // bytes read, not yet parsed
  size_t in_pos = 0, in_len = 0;
  // Output: owned bytes, or borrowed region bytes (stable memory). With
  // confinement (ServerOptions::region_access) borrowed bytes are pinned for
  // `session` around every sendmsg that carries them (Flush), so bytes taken
  // from the client after the READ was queued are never sent.
  struct Out {
    std::vector<uint8_t> owned;
    const uint8_t* borrowed = nullptr;
    size_t len = 0;
    size_t off = 0;
    uint64_t region_offset = 0;  // borrowed: where in the region
    const uint8_t* data() const { return borrowed ? borrowed : owned.data(); }
  };
  // The session (its root's id) this connection's region accesses are for.
  ClientId session_id() const { return session ? session->root : id; }
  std::deque<Out> out;
  size_t unsent = 0;          // bytes in `out` not yet sent
  uint32_t events = 0;        // the epoll interest registered now
  void Close(const std::string& reason) {
    if (!dead && why.empty()) why = reason;
    dead = true;
  }
};

class TcpServer final : public NetServer {
 public:
  TcpServer(const ServerOptions& o, RequestHandler* h) : NetServer(TransportKind::kTcp, o, h) {}
  ~TcpServer() override;
  Status Start();

 private:
  struct Poller {
    int index = 0;
    net::Fd epfd;
    net::Fd wake;  // eventfd: new connections handed over
    // The acceptor hands fds over under mu (a leaf lock, the only one of
    // this server besides SessionTable's, which is never taken under it).
    Mutex mu;
    std::vector<int> incoming GUARDED_BY(mu);
    std::unordered_map<int, std::unique_ptr<TcpConn>> conns;  // poller thread only
    std::thread thread;
    std::vector<uint8_t> response;  // handler output buffer
    Clock::time_point next_sweep;
  };
  void AcceptLoop();
  // Writes a refusal (Welcome with status + reason) without blocking and closes fd.
  void RefuseAtAccept(int fd, StatusCode code, const std::string& reason);
  void PollLoop(Poller* p);
  void Adopt(Poller* p, int fd);
  // Reads and parses what the connection has, flushes, and repeats while a
  // flush lifted backpressure with input still buffered.
  void Serve(Poller* p, TcpConn* c);
  void Parse(Poller* p, TcpConn* c);
  void Drain(TcpConn* c);  // closing, our side shut: drop the peer's input until its EOF
  void Flush(TcpConn* c);
  void UpdateInterest(Poller* p, TcpConn* c);
  void Sweep(Poller* p, Clock::time_point now);  // deadlines, leases
  class Sink;  // what the framing of one connection asks for (tcp_server.cc)
  // The hello passed the framing's checks: a join (token), anonymous
  // (welcome now) or credentials (challenge; *challenged set).
  Status Greet(TcpConn* c, uint64_t tag, const Hello& hello, uint32_t max_message, bool* challenged);
  // The answer to the challenge: verified, then Admit.
  Status Authenticate(TcpConn* c, uint64_t tag, std::span<const uint8_t> proof);
  // Counts the connection in, opens or joins its session, tells the
  // handler and queues the welcome (a root's carries its session token).
  Status Admit(TcpConn* c, uint64_t tag, std::shared_ptr<SessionTable::Session> joined, Peer peer);
  // A failed handshake of c: counted and rate-limited (auth_guard_).
  void AuthFailed(TcpConn* c, std::string_view tenant, bool known, std::string_view why);
  void QueueHeader(TcpConn* c, Kind k, uint64_t tag, std::span<const uint8_t> payload);
  void QueueError(TcpConn* c, uint64_t tag, const Status& s);
  void StartClosing(TcpConn* c, const std::string& why);
  void Close(Poller* p, TcpConn* c);

  net::Fd listen_fd_;
  net::Fd reserve_fd_;  // spent to accept-and-refuse when out of descriptors
  std::atomic<size_t> handshakes_{0};  // accepted, not greeted yet
  std::atomic<uint32_t> next_client_id_{1};
  std::thread acceptor_;
  std::vector<std::unique_ptr<Poller>> pollers_;
};

}  // namespace sharry::internal
