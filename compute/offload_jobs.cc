// The far units of an aggregate's window as OFFLOAD jobs (compute/aggregate_run.h):
// staging their local chunks, sending them per memnode, waiting for them,
// reading their partials, and freeing the scratch blocks.
#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "compute/aggregate_run.h"

namespace sharry::compute {

using namespace meta;  // NOLINT: the bit names of object.h

void RuntimeImpl::AggregateRun::Submit() {
  std::vector<std::vector<size_t>> by_node(rt_.nodes_.size());
  for (size_t i = 0; i < window_.size(); ++i)
    if (window_[i].kind == Kind::kFar) by_node[window_[i].node].push_back(i);
  for (uint32_t node = 0; node < by_node.size(); ++node) {
    std::vector<size_t>& units = by_node[node];
    if (units.empty()) continue;
    FarNode& n = *rt_.nodes_[node];
    // One result block for this memnode's units of the window.
    const uint64_t need = units.size() * partial_bytes_;
    std::vector<uint64_t> got;
    bool died = false;
    const uint32_t sizes[1] = {static_cast<uint32_t>(std::min<uint64_t>(need, kMaxResultBlock))};
    if (need > kMaxResultBlock) {  // the rest: pulled
      const size_t fit = kMaxResultBlock / partial_bytes_;
      Refuse(std::span<const size_t>(units).subspan(fit), node, Status::ResourceExhausted("result block full"));
      units.resize(fit);
    }
    Status st = rt_.BlocksAt(n, sizes, &got, &died, "aggregate: result block");
    if (!st.ok() || got[0] == kNoFarOffset) {
      Refuse(units, node, st.ok() ? Status::OutOfMemory("no far block for the offload results") : st);
      continue;
    }
    result_blocks_.push_back({got[0], sizes[0]});
    if (Status staged = Stage(n, units); !staged.ok()) {
      Refuse(units, node, staged);
      continue;
    }
    auto conn = rt_.DataConnection(n);
    if (!conn.ok()) {
      Refuse(units, node, conn.status());
      continue;
    }
    size_t next = 0;
    while (next < units.size()) {
      Job job;
      job.node = node;
      job.result_offset = far::OffsetOf(got[0]) + next * partial_bytes_;
      memnode::OffloadRequestBuilder b(memnode::MaxRequestBytes(**conn));
      b.Begin(spec_bytes_, job.result_offset, static_cast<uint32_t>((units.size() - next) * partial_bytes_));
      size_t first = next;
      while (next < units.size() && b.TryAdd(UnitRef(window_[units[next]]))) next++;
      if (next == first) {  // one unit does not fit a request: pulled
        Refuse(std::span<const size_t>(units).subspan(first, 1), node,
               Status::ResourceExhausted("one unit does not fit an OFFLOAD request"));
        next++;
        continue;
      }
      job.units.assign(units.begin() + first, units.begin() + next);
      auto id = memnode::SubmitOffload(**conn, b.bytes());
      rt_.offload_rpc_bytes_ += b.bytes().size() + 16;
      if (!id.ok()) {
        if (!(*conn)->alive()) {
          (void)rt_.ConnectionFailed(n, id.status(), "aggregate: OFFLOAD");
        } else if (id.status().code() == StatusCode::kFailedPrecondition) {
          no_offload_[node] = true;  // offload is off there (--offload_threads=0)
        } else if (id.status().code() != StatusCode::kResourceExhausted) {
          LOG_FIRST_N(WARNING, 5) << "aggregate: memnode " << n.name << " refused an OFFLOAD: " << id.status();
        }
        Refuse(job.units, node, id.status());
        continue;
      }
      rt_.offload_jobs_++;
      job.id = *id;
      for (size_t i : job.units) window_[i].job = jobs_.size();
      jobs_.push_back(std::move(job));
    }
  }
}

Status RuntimeImpl::AggregateRun::Stage(FarNode& n, std::vector<size_t>& units) {
  std::vector<uint32_t> sizes;
  std::vector<size_t> staged;
  for (size_t i : units)
    if (window_[i].staged_bytes > 0) {
      sizes.push_back(static_cast<uint32_t>(window_[i].staged_bytes));
      staged.push_back(i);
    }
  if (sizes.empty()) return Status::Ok();
  std::vector<uint64_t> got;
  bool died = false;
  SHARRY_RETURN_IF_ERROR(rt_.BlocksAt(n, sizes, &got, &died, "aggregate: staging blocks"));
  std::vector<RemoteOp> ops;
  std::vector<size_t> refused;
  for (size_t j = 0; j < staged.size(); ++j) {
    if (got[j] == kNoFarOffset) {
      refused.push_back(staged[j]);
      continue;
    }
    result_blocks_.push_back({got[j], sizes[j]});
    Unit& u = window_[staged[j]];
    uint64_t at = 0;
    for (size_t k = 0; k < u.takes.size(); ++k) {
      const Take& t = u.takes[k];
      if (!t.stage) continue;
      u.far_addr[k] = got[j] + at;
      ops.push_back({far::OffsetOf(got[j]) + at, reinterpret_cast<void*>(Addr(t.word)), t.bytes});
      at += t.bytes;
    }
  }
  if (!refused.empty()) {
    Refuse(refused, n.index, Status::OutOfMemory("no far block for staging"));
    std::erase_if(units, [&](size_t i) { return window_[i].kind != Kind::kFar; });
  }
  return ops.empty() ? Status::Ok() : rt_.WriteChain(n, ops, "aggregate: staging");
}

memnode::OffloadUnitRef RuntimeImpl::AggregateRun::UnitRef(const Unit& unit) const {
  memnode::OffloadUnitRef r;
  r.first_row = unit.first_row;
  r.rows = unit.rows;
  r.columns.resize(cols_.size());
  uint32_t begin = 0;
  for (size_t c = 0; c < cols_.size(); ++c) {
    for (uint32_t i = begin; i < unit.col_end[c]; ++i)
      r.columns[c].push_back({far::OffsetOf(unit.far_addr[i]), unit.takes[i].bytes});
    begin = unit.col_end[c];
  }
  return r;
}

void RuntimeImpl::AggregateRun::Refuse(std::span<const size_t> units, uint32_t node, const Status& why) {
  rt_.offload_refused_++;
  VLOG(1) << "aggregate: " << units.size() << " unit(s) pulled from memnode " << rt_.nodes_[node]->name << ": " << why;
  for (size_t i : units) {
    window_[i].kind = Kind::kPull;
    window_[i].job = SIZE_MAX;
  }
}

Status RuntimeImpl::AggregateRun::Collect() {
  using Clock = std::chrono::steady_clock;
  Status first_error;
  auto last_progress = Clock::now();
  int sleep_us = 20;
  size_t left = jobs_.size();
  while (left > 0) {
    bool progress = false;
    for (uint32_t node = 0; node < rt_.nodes_.size(); ++node) {
      std::vector<uint64_t> ids;
      std::vector<size_t> which;
      for (size_t j = 0; j < jobs_.size(); ++j)
        if (!jobs_[j].done && jobs_[j].node == node && ids.size() < memnode::kMaxOffloadWait) {
          ids.push_back(jobs_[j].id);
          which.push_back(j);
        }
      if (ids.empty()) continue;
      FarNode& n = *rt_.nodes_[node];
      auto conn = rt_.DataConnection(n);
      StatusOr<std::vector<memnode::OffloadJobState>> st =
          conn.ok() ? memnode::PollOffload(**conn, ids) : StatusOr<std::vector<memnode::OffloadJobState>>(conn.status());
      rt_.offload_rpc_bytes_ += 8 + 8 * ids.size() + 8 + 40 * ids.size();
      if (!st.ok()) {
        const bool dead = !conn.ok() || !(*conn)->alive();
        if (conn.ok() && dead) (void)rt_.ConnectionFailed(n, st.status(), "aggregate: OFFLOAD_WAIT");
        for (size_t j : which) {
          FailJob(j, st.status());
          jobs_[j].confirmed = dead;  // a dead connection: the memnode drops our jobs and blocks
        }
        left -= which.size();
        progress = true;
        continue;
      }
      for (const memnode::OffloadJobState& js : *st) {
        auto it = std::find(ids.begin(), ids.end(), js.job);
        if (it == ids.end() || !js.done) continue;
        const size_t j = which[it - ids.begin()];
        if (jobs_[j].done) continue;
        rt_.offload_cpu_ns_ += js.cpu_ns;
        jobs_[j].confirmed = true;
        if (js.status.ok()) {
          ReadResults(j);
        } else if (js.status.code() == StatusCode::kOutOfRange || js.status.code() == StatusCode::kInvalidArgument) {
          // The kernel's error (a key out of range, an overflow): the
          // aggregate's, once every other job is over.
          if (first_error.ok()) first_error = js.status.WithContext("offloaded aggregate at memnode " + n.name);
        } else {
          FailJob(j, js.status);
        }
        jobs_[j].done = true;
        left--;
        progress = true;
      }
    }
    if (left == 0) break;
    if (progress) {
      last_progress = Clock::now();
      sleep_us = 20;
      continue;
    }
    if (Clock::now() - last_progress > std::chrono::milliseconds(rt_.opts_.op_timeout_ms)) {
      for (size_t j = 0; j < jobs_.size(); ++j)
        if (!jobs_[j].done)
          FailJob(j, Status::Timeout("offload job unanswered for " + std::to_string(rt_.opts_.op_timeout_ms) +
                                     " ms"));
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(sleep_us));
    sleep_us = std::min(sleep_us * 2, 1000);
  }
  return first_error;
}

void RuntimeImpl::AggregateRun::FailJob(size_t j, const Status& why) {
  Job& job = jobs_[j];
  job.done = true;
  job.status = why;
  Refuse(job.units, job.node, why);
}

void RuntimeImpl::AggregateRun::ReadResults(size_t j) {
  Job& job = jobs_[j];
  FarNode& n = *rt_.nodes_[job.node];
  std::vector<uint8_t> buf(job.units.size() * partial_bytes_);
  auto conn = rt_.DataConnection(n);
  Status s = conn.ok() ? (*conn)->Read(job.result_offset, buf.data(), buf.size()) : conn.status();
  if (!s.ok()) {
    if (conn.ok() && !(*conn)->alive()) (void)rt_.ConnectionFailed(n, s, "aggregate: results");
    FailJob(j, s);
    return;
  }
  rt_.far_read_bytes_ += buf.size();
  for (size_t k = 0; k < job.units.size(); ++k) {
    Unit& u = window_[job.units[k]];
    u.partial.assign(buf.begin() + k * partial_bytes_, buf.begin() + (k + 1) * partial_bytes_);
    rt_.agg_offloaded_units_++;
    rt_.agg_offloaded_rows_ += u.rows;
  }
}

void RuntimeImpl::AggregateRun::FreeResultBlocks() {
  bool unsure[kMaxMemnodes] = {};
  std::vector<uint64_t> by_node[kMaxMemnodes];
  for (const Job& j : jobs_)
    if (!j.confirmed) unsure[j.node] = true;
  for (const auto& [addr, size] : result_blocks_) {
    const uint32_t node = far::NodeOf(addr);
    if (unsure[node] && rt_.nodes_[node]->healthy()) {
      rt_.offload_abandoned_blocks_++;
      LOG_EVERY_N(WARNING, 100) << "aggregate: memnode " << rt_.nodes_[node]->name
                                << " did not confirm the end of a job: its result block is not freed";
      continue;
    }
    by_node[node].push_back(far::OffsetOf(addr));
  }
  result_blocks_.clear();
  // FREEd at once, one FREE per memnode (not queued for reuse like a
  // swapped-in object's block: they are large and few, and the queue's
  // reserve would keep them allocated).
  for (uint32_t node = 0; node < kMaxMemnodes; ++node) {
    if (by_node[node].empty()) continue;
    FarNode& n = *rt_.nodes_[node];
    std::vector<Status> each;
    MutexLock l(&n.control_mu);
    Status s = n.control->Free(by_node[node], &each);
    rt_.free_rpcs_++;
    n.free_rpcs++;
    if (!s.ok() && n.control->transport().alive())
      LOG(ERROR) << "aggregate: memnode " << n.name << " refused the FREE of our scratch blocks: " << s;
    // (A dead connection: the memnode reclaims them with everything else.)
  }
}

}  // namespace sharry::compute
