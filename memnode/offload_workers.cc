#include "memnode/offload_workers.h"

#include <glog/logging.h>
#include <time.h>

#include <algorithm>
#include <utility>

#include "verbs/transport_internal.h"

namespace sharry::memnode {

namespace {

// CPU time of the calling thread.
uint64_t ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

OffloadWorkers::OffloadWorkers(const OffloadOptions& o, uint8_t* region, uint64_t region_size, RegionAccess* access)
    : options_(o),
      limits_{o.max_rows, OffloadLimits{}.max_result_bytes},
      region_(region),
      region_size_(region_size),
      access_(access) {
  CHECK_GE(o.threads, 1u);
  CHECK(region != nullptr && access != nullptr);
  threads_.reserve(o.threads);
  for (uint32_t i = 0; i < o.threads; ++i) {
    threads_.emplace_back([this] { Run(); });
    const int core = o.cores.empty() ? -1 : o.cores[i % o.cores.size()];
    internal::PinThread(threads_.back(), core, "offload " + std::to_string(i));
  }
}

OffloadWorkers::~OffloadWorkers() {
  {
    MutexLock l(&mu_);
    stop_ = true;
    for (auto& [id, r] : jobs_) r->cancel.store(true, std::memory_order_release);
    queue_.clear();
  }
  work_cv_.SignalAll();
  for (std::thread& t : threads_) t.join();
}

StatusOr<uint64_t> OffloadWorkers::Submit(ClientId client, uint32_t session, OffloadJob job) {
  MutexLock l(&mu_);
  if (stop_) return Status::Unavailable("the memnode is stopping");
  auto held = per_client_.find(client);
  if (held != per_client_.end() && held->second >= options_.jobs_per_client)
    return Status::ResourceExhausted("client " + std::to_string(client) + " has " + std::to_string(held->second) +
                                     " offload jobs not yet collected (at most " +
                                     std::to_string(options_.jobs_per_client) +
                                     " per client, --offload_client_jobs): OFFLOAD_WAIT them");
  if (queue_.size() >= options_.queue)
    return Status::ResourceExhausted("offload queue full (--offload_queue=" + std::to_string(options_.queue) + ")");
  const uint64_t id = next_id_++;
  auto r = std::make_unique<Record>(id, client, session);
  r->job = std::make_unique<OffloadJob>(std::move(job));
  queue_.push_back(r.get());
  jobs_.emplace(id, std::move(r));
  ++per_client_[client];
  ++jobs_total_;
  work_cv_.Signal();
  return id;
}

void OffloadWorkers::Forget(uint64_t id) {
  auto it = jobs_.find(id);
  if (it == jobs_.end()) return;
  auto n = per_client_.find(it->second->client);
  if (n != per_client_.end() && --n->second == 0) per_client_.erase(n);
  jobs_.erase(it);
}

size_t OffloadWorkers::RunningOf(ClientId client) const {
  size_t n = 0;
  for (const auto& [id, r] : jobs_) n += r->client == client && r->state == OffloadState::kRunning;
  return n;
}

JobEntry OffloadWorkers::Collect(ClientId client, uint64_t job, std::string* message) {
  JobEntry e;
  e.job = job;
  MutexLock l(&mu_);
  auto it = jobs_.find(job);
  if (it == jobs_.end() || it->second->client != client || it->second->orphan) {
    e.code = static_cast<uint8_t>(StatusCode::kNotFound);
    e.state = OffloadState::kDone;
    *message = "no offload job " + std::to_string(job) + " of this client (unknown, or already collected)";
    return e;
  }
  Record& r = *it->second;
  e.state = r.state;
  if (r.state == OffloadState::kDone) {
    e.code = static_cast<uint8_t>(r.status.code());
    e.rows = r.rows;
    e.cpu_ns = r.cpu_ns;
    *message = r.status.message();
    Forget(job);
  }
  return e;
}

void OffloadWorkers::DropClient(ClientId client) {
  MutexLock l(&mu_);
  if (per_client_.find(client) == per_client_.end()) return;
  std::erase_if(queue_, [client](const Record* r) { return r->client == client; });
  std::vector<uint64_t> forget;
  for (auto& [id, r] : jobs_) {
    if (r->client != client) continue;
    if (r->state == OffloadState::kRunning) {
      r->cancel.store(true, std::memory_order_release);
      r->orphan = true;  // the worker forgets it when it stops
    } else {
      forget.push_back(id);
    }
  }
  for (uint64_t id : forget) Forget(id);
  while (RunningOf(client) > 0) idle_cv_.Wait(&mu_);
}

OffloadStats OffloadWorkers::Stats() const {
  MutexLock l(&mu_);
  OffloadStats s;
  s.enabled = true;
  s.jobs_total = jobs_total_;
  s.jobs_failed_total = failed_total_;
  s.rows_total = rows_total_;
  s.cpu_ns_total = cpu_ns_total_;
  s.queue_depth = queue_.size();
  s.running = running_;
  s.jobs = jobs_.size();
  return s;
}

void OffloadWorkers::PauseForTest(bool paused) {
  {
    MutexLock l(&mu_);
    paused_ = paused;
  }
  work_cv_.SignalAll();
}

void OffloadWorkers::SetUnitHookForTest(std::function<void(uint64_t job, size_t unit)> hook) {
  MutexLock l(&mu_);
  hook_ = std::move(hook);
}

void OffloadWorkers::Run() {
  MutexLock l(&mu_);
  for (;;) {
    while (!stop_ && (paused_ || queue_.empty())) work_cv_.Wait(&mu_);
    if (stop_) return;
    Record* r = queue_.front();
    queue_.pop_front();
    r->state = OffloadState::kRunning;
    ++running_;
    std::unique_ptr<OffloadJob> job = std::move(r->job);
    const std::function<void(uint64_t, size_t)> hook = hook_;
    l.Unlock();

    OffloadRunControl control;
    control.cancel = &r->cancel;
    if (hook) control.before_unit = [&hook, id = r->id](size_t unit) { hook(id, unit); };
    uint64_t rows = 0;
    const uint64_t cpu0 = ThreadCpuNs();
    Status st = RunOffloadJob(*job, r->session, region_, access_, control, &rows);
    const uint64_t cpu = ThreadCpuNs() - cpu0;
    job.reset();

    l.Lock();
    --running_;
    r->state = OffloadState::kDone;
    r->rows = rows;
    r->cpu_ns = cpu;
    rows_total_ += rows;
    cpu_ns_total_ += cpu;
    const bool dropped = r->cancel.load(std::memory_order_acquire);
    if (!st.ok() && !dropped) ++failed_total_;
    r->status = std::move(st);
    if (r->orphan) Forget(r->id);  // r is gone
    idle_cv_.SignalAll();
  }
}

}  // namespace sharry::memnode
