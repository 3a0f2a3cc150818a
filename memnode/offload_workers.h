// OffloadWorkers: the memnode's offload threads (issue #13) — apart from
// the section (allocator) threads and the transport pollers, so that a slow
// scan never stalls ALLOC/FREE: a poller only checks an OFFLOAD
// (ParseOffloadRequest) and queues it here; a worker runs it
// (RunOffloadJob). docs/offload.md, "The OFFLOAD RPC and the offload
// workers".
//
// A job's life:
//
//   Submit ──► queued ──► running ──► done ──► Collect (forgotten)
//                 │           │
//                 └───────────┴── DropClient (the client went away):
//                      a queued job is forgotten, a running one stops at
//                      its next unit and is forgotten when it does
//
// Bounds (each refusal is ResourceExhausted with the bound in its message):
//   OffloadOptions::queue            jobs waiting for a worker, all clients
//   OffloadOptions::jobs_per_client  a client's jobs not yet collected
//                                    (queued, running, or done)
// A job holds its decoded request (at most one message's worth) until it
// runs, and while it runs a result buffer of at most
// OffloadLimits::max_result_bytes; a done job keeps its status only.
//
// Threading: `threads` workers, each pinned to its core of `cores` (if
// any); an idle worker blocks on a CondVar, it never spins. Submit,
// Collect, DropClient and Stats may be called from any thread (the
// pollers, the transport's connection thread). DropClient returns once no
// job of the client runs any more. The destructor drops every queued job,
// stops the running ones at their next unit and joins the workers: the
// owner (MemnodeService) destroys it before the region and the page-owner
// map go away.
//
// Lock: mu_, a leaf (nothing is called with it held but the CondVars; the
// test hook is called without it).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/mutex.h"
#include "base/status.h"
#include "memnode/offload_job.h"
#include "memnode/rpc.h"
#include "memnode/service.h"
#include "verbs/transport.h"

namespace sharry::memnode {

class OffloadWorkers {
 public:
  // Starts o.threads (>= 1) workers reading `region` (region_size bytes),
  // whose page owners `access` knows.
  OffloadWorkers(const OffloadOptions& o, uint8_t* region, uint64_t region_size, RegionAccess* access);
  ~OffloadWorkers();
  OffloadWorkers(const OffloadWorkers&) = delete;
  OffloadWorkers& operator=(const OffloadWorkers&) = delete;

  const OffloadLimits& limits() const { return limits_; }
  uint8_t* region() const { return region_; }
  uint64_t region_size() const { return region_size_; }
  RegionAccess* access() const { return access_; }

  // Queues a checked job of `client`, whose pages are its session's.
  // Returns the job's id (never 0), or ResourceExhausted past a bound.
  StatusOr<uint64_t> Submit(ClientId client, uint32_t session, OffloadJob job) EXCLUDES(mu_);
  // The OFFLOAD_WAIT entry of `job` for `client` (msglen not set; a failed
  // job's message in *message). A done job is forgotten here; an unknown
  // job, or another client's, is done with NotFound.
  JobEntry Collect(ClientId client, uint64_t job, std::string* message) EXCLUDES(mu_);
  // `client` went away: forgets its queued and done jobs, stops its running
  // ones at their next unit and returns once they have stopped.
  void DropClient(ClientId client) EXCLUDES(mu_);

  // The numbers (refused_total is the service's, 0 here).
  OffloadStats Stats() const EXCLUDES(mu_);

  // Tests: paused, the workers start no job (queued ones wait); running
  // ones go on. The hook is called by a worker before each unit of each
  // job, with no page pinned and no lock held (a test blocks in it to
  // order a free, or a disconnect, against a running job).
  void PauseForTest(bool paused) EXCLUDES(mu_);
  void SetUnitHookForTest(std::function<void(uint64_t job, size_t unit)> hook) EXCLUDES(mu_);

 private:
  // A job, owned by jobs_. id, client and session never change; cancel is
  // atomic; the rest is read and written under mu_ (the analysis cannot
  // name a lock of the enclosing class here), except `job`, which the
  // worker that took the record from the queue owns.
  struct Record {
    Record(uint64_t i, ClientId c, uint32_t s) : id(i), client(c), session(s) {}
    const uint64_t id;
    const ClientId client;
    const uint32_t session;
    std::unique_ptr<OffloadJob> job;
    std::atomic<bool> cancel{false};
    OffloadState state = OffloadState::kQueued;
    bool orphan = false;  // its client went away while it ran: the worker forgets it
    Status status;
    uint64_t rows = 0;
    uint64_t cpu_ns = 0;
  };

  void Run() EXCLUDES(mu_);  // a worker's loop
  void Forget(uint64_t id) REQUIRES(mu_);
  size_t RunningOf(ClientId client) const REQUIRES(mu_);

  const OffloadOptions options_;
  const OffloadLimits limits_;
  uint8_t* const region_;
  const uint64_t region_size_;
  RegionAccess* const access_;

  mutable Mutex mu_;
  CondVar work_cv_;  // with mu_: a job was queued, the workers unpaused, or stop_
  CondVar idle_cv_;  // with mu_: a job stopped running (DropClient waits)
  bool stop_ GUARDED_BY(mu_) = false;
  bool paused_ GUARDED_BY(mu_) = false;
  uint64_t next_id_ GUARDED_BY(mu_) = 1;
  std::deque<Record*> queue_ GUARDED_BY(mu_);
  std::unordered_map<uint64_t, std::unique_ptr<Record>> jobs_ GUARDED_BY(mu_);
  std::unordered_map<ClientId, uint32_t> per_client_ GUARDED_BY(mu_);  // records of each client in jobs_
  std::function<void(uint64_t, size_t)> hook_ GUARDED_BY(mu_);
  uint64_t running_ GUARDED_BY(mu_) = 0;
  uint64_t jobs_total_ GUARDED_BY(mu_) = 0;
  uint64_t failed_total_ GUARDED_BY(mu_) = 0;
  uint64_t rows_total_ GUARDED_BY(mu_) = 0;
  uint64_t cpu_ns_total_ GUARDED_BY(mu_) = 0;
  std::vector<std::thread> threads_;
};

}  // namespace sharry::memnode
