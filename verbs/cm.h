// RAII over librdmacm: event channel, connection identifiers, listening.
//
// Connection setup goes through rdma_cm (address and route resolution,
// connect/accept with private data), so hosts are named by IP address and no
// GID index or LID is ever configured by hand.
//
// Destruction: a CmId destroys its QP (rdma_destroy_qp) before the id
// itself. rdma_destroy_id blocks until every event of that id is
// acknowledged, so a CmEvent must be released before its id is destroyed.
#pragma once

#include <rdma/rdma_cma.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "base/status.h"

namespace sharry::verbs {

// One rdma_cm event; acknowledged when this object dies.
class CmEvent {
 public:
  explicit CmEvent(rdma_cm_event* ev) : ev_(ev) {}
  CmEvent(CmEvent&& o) noexcept : ev_(o.ev_) { o.ev_ = nullptr; }
  CmEvent& operator=(CmEvent&&) = delete;
  ~CmEvent() { Ack(); }
  void Ack() {
    if (ev_ != nullptr) rdma_ack_cm_event(ev_);
    ev_ = nullptr;
  }

  rdma_cm_event_type type() const { return ev_->event; }
  rdma_cm_id* id() const { return ev_->id; }
  rdma_cm_id* listen_id() const { return ev_->listen_id; }
  int status() const { return ev_->status; }
  std::span<const uint8_t> private_data() const {
    const auto& c = ev_->param.conn;
    return {static_cast<const uint8_t*>(c.private_data), c.private_data ? c.private_data_len : 0u};
  }
  const rdma_conn_param& conn_param() const { return ev_->param.conn; }
  const char* name() const { return rdma_event_str(ev_->event); }

 private:
  rdma_cm_event* ev_;
};

class CmEventChannel {
 public:
  // The channel's fd is non-blocking; Next() waits with poll().
  static StatusOr<CmEventChannel> Create();
  CmEventChannel(CmEventChannel&& o) noexcept : ch_(o.ch_) { o.ch_ = nullptr; }
  CmEventChannel& operator=(CmEventChannel&& o) noexcept { std::swap(ch_, o.ch_); return *this; }
  ~CmEventChannel();
  rdma_event_channel* get() const { return ch_; }
  int fd() const { return ch_->fd; }

  // The next event, waiting at most timeout_ms (-1: forever). kTimeout if none.
  StatusOr<CmEvent> Next(int timeout_ms);
  // The next event, which must be `expected`; anything else is an error that
  // says what came instead (REJECTED, UNREACHABLE, ...).
  StatusOr<CmEvent> Expect(rdma_cm_event_type expected, int timeout_ms, std::string_view what);

 private:
  explicit CmEventChannel(rdma_event_channel* ch) : ch_(ch) {}
  rdma_event_channel* ch_ = nullptr;
};

// Owns an rdma_cm_id and the QP created on it with rdma_create_qp.
class CmId {
 public:
  static StatusOr<CmId> Create(CmEventChannel& ch, void* context = nullptr);
  // Takes ownership of an id delivered by a CONNECT_REQUEST event.
  static CmId Adopt(rdma_cm_id* id) { return CmId(id); }
  CmId() = default;
  CmId(CmId&& o) noexcept : id_(o.id_) { o.id_ = nullptr; }
  CmId& operator=(CmId&& o) noexcept { std::swap(id_, o.id_); return *this; }
  ~CmId() { Reset(); }
  void Reset();  // destroys the QP, then the id

  rdma_cm_id* get() const { return id_; }
  rdma_cm_id* operator->() const { return id_; }
  explicit operator bool() const { return id_ != nullptr; }
  ibv_qp* qp() const { return id_ ? id_->qp : nullptr; }

 private:
  explicit CmId(rdma_cm_id* id) : id_(id) {}
  rdma_cm_id* id_ = nullptr;
};

// Resolves `host:port` (numeric or a name) into a sockaddr for rdma_cm.
Status ResolveAddress(const std::string& host, uint16_t port, sockaddr_storage* out);

// Client side: resolves address and route of `id` to host:port, waiting at
// most timeout_ms for each step. After it, id->verbs is the local device.
Status ResolveRoute(CmEventChannel& ch, CmId& id, const std::string& host, uint16_t port,
                    int timeout_ms);
// Client side, from nothing: a new event channel into *ch, a new id on it
// into *id, then ResolveRoute to host:port.
Status OpenAndResolve(std::optional<CmEventChannel>* ch, CmId* id, const std::string& host, uint16_t port,
                      int timeout_ms);

// A listening id bound to addr:port (port 0 picks a free one).
struct Listener {
  CmEventChannel channel;
  CmId id;
  uint16_t port = 0;
};
StatusOr<Listener> Listen(const std::string& addr, uint16_t port, int backlog);

}  // namespace sharry::verbs
