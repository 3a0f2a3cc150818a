// sharry_client: runs the array and hashtable workloads against a memnode
// and reports throughput, local hit rate, swaps in/out and far memory used.
//
//   build/compute/sharry_client --memnode=127.0.0.1:7000 --workload=array
//       --working_set_mb=64 --local_pct=25 --mode=unique --ops=1000000
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "compute/runtime.h"
#include "remote_ds/remote_array.h"
#include "remote_ds/remote_hashtable.h"

DEFINE_string(memnode, "127.0.0.1:7000", "memnode HOST:PORT");
DEFINE_string(transport, "tcp", "verbs or tcp");
DEFINE_string(workload, "array", "array or hashtable");
DEFINE_string(mode, "unique", "unique (Unique-Copy) or multi (Multi-Copy)");
DEFINE_uint64(working_set_mb, 64, "bytes of data, in MiB");
DEFINE_double(local_pct, 25, "local memory budget, percent of the working set");
DEFINE_uint64(ops, 1000000, "operations (array: element reads/writes; hashtable: gets/puts)");
DEFINE_double(write_pct, 20, "percent of operations that write");
DEFINE_string(pattern, "random", "array: random or scan");
DEFINE_int32(threads, 1, "worker threads (array workload)");
DEFINE_uint64(seed, 1, "random seed");

namespace {

using sharry::compute::Runtime;
using Clock = std::chrono::steady_clock;

struct Value {
  uint64_t key;
  uint8_t bytes[248];
};

int Fail(const sharry::Status& s, const char* what) {
  std::fprintf(stderr, "sharry_client: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage("Sharry compute client: array and hashtable workloads over far memory");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  sharry::compute::RuntimeOptions o;
  auto transport = sharry::ParseTransport(FLAGS_transport);
  if (!transport.ok()) return Fail(transport.status(), "--transport");
  auto mode = sharry::compute::ParseCopyMode(FLAGS_mode);
  if (!mode.ok()) return Fail(mode.status(), "--mode");
  auto colon = FLAGS_memnode.rfind(':');
  if (colon == std::string::npos) return Fail(sharry::Status::InvalidArgument("want HOST:PORT"), "--memnode");
  o.transport = *transport;
  o.mode = *mode;
  o.memnode_addr = FLAGS_memnode.substr(0, colon);
  o.memnode_port = static_cast<uint16_t>(std::stoi(FLAGS_memnode.substr(colon + 1)));
  const uint64_t ws = FLAGS_working_set_mb << 20;
  o.local_budget_bytes = std::max<uint64_t>(static_cast<uint64_t>(ws * FLAGS_local_pct / 100), 64 << 10);
  auto rt = Runtime::Create(o);
  if (!rt.ok()) return Fail(rt.status(), "runtime");

  uint64_t done = 0, bad = 0;
  double secs = 0;
  // Taken while the data structure still exists.
  sharry::compute::RuntimeStats st;
  uint64_t far_mine = 0, far_total = 0;
  auto snapshot = [&] {
    st = (*rt)->Stats();
    if (auto ms = (*rt)->MemnodeStats(); ms.ok()) {
      far_total = ms->head.used_bytes;
      for (auto& c : ms->clients)
        if (c.client_id == (*rt)->control_client_id()) far_mine = c.bytes_held;
    }
  };
  if (FLAGS_workload == "array") {
    const size_t n = ws / sizeof(uint64_t);
    auto arr = sharry::remote_ds::RemoteArray<uint64_t>::Make(**rt, n);
    if (!arr.ok()) return Fail(arr.status(), "array");
    if (auto s = arr->ForEachMut([](size_t i, uint64_t& v) { v = i; }); !s.ok()) return Fail(s, "fill");
    auto t0 = Clock::now();
    std::vector<std::thread> ts;
    std::atomic<uint64_t> ops{0}, errors{0};
    for (int t = 0; t < FLAGS_threads; ++t) {
      ts.emplace_back([&, t] {
        std::mt19937_64 rng(FLAGS_seed * 1000 + t);
        const uint64_t mine = FLAGS_ops / FLAGS_threads;
        if (FLAGS_pattern == "scan") {
          uint64_t count = 0;
          while (count < mine) {
            auto s = arr->ForEach([&](size_t i, const uint64_t& v) { errors += (v % n) != i; }, 0,
                                  std::min<uint64_t>(n, mine - count));
            if (!s.ok()) { errors++; break; }
            count += std::min<uint64_t>(n, mine - count);
          }
          ops += count;
          return;
        }
        for (uint64_t k = 0; k < mine; ++k) {
          size_t i = rng() % n;
          if ((rng() % 10000) < FLAGS_write_pct * 100) {
            errors += !arr->Set(i, i + n).ok();  // v % n == i still holds
          } else {
            auto v = arr->Get(i);
            errors += !v.ok() || (*v % n) != i;
          }
        }
        ops += mine;
      });
    }
    for (auto& t : ts) t.join();
    secs = std::chrono::duration<double>(Clock::now() - t0).count();
    done = ops;
    bad = errors;
    snapshot();
  } else if (FLAGS_workload == "hashtable") {
    sharry::remote_ds::RemoteHashTable<uint64_t, Value> table(**rt);
    const uint64_t keys = ws / sizeof(Value);
    for (uint64_t k = 0; k < keys; ++k)
      if (auto s = table.Put(k, Value{k, {}}); !s.ok()) return Fail(s, "fill");
    std::mt19937_64 rng(FLAGS_seed);
    auto t0 = Clock::now();
    for (uint64_t i = 0; i < FLAGS_ops; ++i) {
      uint64_t k = rng() % keys;
      if ((rng() % 10000) < FLAGS_write_pct * 100) {
        bad += !table.Put(k, Value{k, {1}}).ok();
      } else {
        auto v = table.Get(k);
        bad += !v.ok() || v->key != k;
      }
    }
    secs = std::chrono::duration<double>(Clock::now() - t0).count();
    done = FLAGS_ops;
    snapshot();
  } else {
    return Fail(sharry::Status::InvalidArgument("array or hashtable"), "--workload");
  }
  std::printf("sharry_client workload=%s mode=%s transport=%s working_set_mb=%llu local_pct=%.0f threads=%d "
              "ops=%llu secs=%.3f ops_per_s=%.0f hit_rate=%.4f swap_ins=%llu swap_outs=%llu drops=%llu "
              "local_bytes=%llu far_bytes_mine=%llu far_bytes_memnode=%llu errors=%llu\n",
              FLAGS_workload.c_str(), FLAGS_mode.c_str(), FLAGS_transport.c_str(),
              static_cast<unsigned long long>(FLAGS_working_set_mb), FLAGS_local_pct, FLAGS_threads,
              static_cast<unsigned long long>(done), secs, done / secs, st.hit_rate(),
              static_cast<unsigned long long>(st.swap_ins), static_cast<unsigned long long>(st.swap_outs),
              static_cast<unsigned long long>(st.drops), static_cast<unsigned long long>(st.local_bytes),
              static_cast<unsigned long long>(far_mine), static_cast<unsigned long long>(far_total),
              static_cast<unsigned long long>(bad));
  return bad == 0 ? 0 : 3;
}
