// Sharry in one minute: an array bigger than the local memory we allow,
// living in far memory on a memory node, used like an array.
//
//   build/examples/quickstart                       # starts its own memnode (tcp, in-process)
//   build/examples/quickstart --memnode=HOST:PORT   # or use a running one
//   (add --transport=verbs on an RDMA network)
#include <cstdio>
#include <string>
#include <string_view>

#include "base/flag_check.h"
#include "compute/runtime.h"
#include "memnode/memnode.h"
#include "remote_ds/remote_array.h"
#include "tools/cli/client_options.h"

namespace {

// Far memory can fail (the memnode dies, or runs out): every call that may
// touch it returns a Status. Say what happened and stop.
int Fail(const sharry::Status& s, const char* what) {
  std::fprintf(stderr, "quickstart: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

int Main(int argc, char** argv) {
  // Arguments: [--memnode=HOST:PORT] [--transport=tcp|verbs]; anything else
  // is refused (exit 2), as is a malformed value.
  std::string_view memnode_at, transport = "tcp";
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a.starts_with("--memnode=")) {
      memnode_at = a.substr(10);
    } else if (a.starts_with("--transport=")) {
      transport = a.substr(12);
    } else {
      std::fprintf(stderr, "quickstart: unknown argument '%s': use [--memnode=HOST:PORT] [--transport=tcp|verbs]\n",
                   argv[i]);
      return 2;
    }
  }
  sharry::compute::RuntimeOptions opts;
  const char* bad_flag = "";
  // The memnode flag is checked only when given (the default is local).
  sharry::flags::ExitOnBadFlags(
      "quickstart", sharry::compute::ParseConnectionFlags(transport, "unique",
                                                          memnode_at.empty() ? "127.0.0.1:1" : memnode_at,
                                                          "none", &opts, &bad_flag));

  // 1. A memory node. Normally a separate machine running `memnode`; here,
  //    for a self-contained example, one in this process.
  std::unique_ptr<sharry::memnode::Memnode> local_node;
  if (memnode_at.empty()) {
    sharry::memnode::MemnodeOptions mo;
    mo.transport = opts.transport;
    mo.server.listen_addr = "127.0.0.1";
    mo.uma_bytes = 64 << 20;
    auto node = sharry::memnode::Memnode::Start(mo);
    if (!node.ok()) {
      std::fprintf(stderr, "quickstart: memnode: %s\n", node.status().ToString().c_str());
      return 1;
    }
    local_node = std::move(*node);
    opts.memnode_addr = "127.0.0.1";
    opts.memnode_port = local_node->port();
    opts.memnodes.clear();  // the one above, not --memnode's
  }

  // 2. The runtime: 1 MiB of local memory for 8 MiB of data.
  opts.local_budget_bytes = 1 << 20;
  auto rt = sharry::compute::Runtime::Create(opts);
  if (!rt.ok()) {
    std::fprintf(stderr, "quickstart: runtime: %s\n", rt.status().ToString().c_str());
    return 1;
  }

  // 3. A remoteable array of one million uint64_t.
  const size_t n = 1 << 20;
  auto arr = sharry::remote_ds::RemoteArray<uint64_t>::Make(**rt, n);
  if (!arr.ok()) return Fail(arr.status(), "make the array");
  if (auto st = arr->ForEachMut([](size_t i, uint64_t& v) { v = i * i; }); !st.ok()) return Fail(st, "fill");

  // 4. Read it back: a scan, and random access inside a dereference scope.
  uint64_t sum = 0;
  if (auto st = arr->ForEach([&](size_t, const uint64_t& v) { sum += v; }); !st.ok()) return Fail(st, "scan");
  {
    sharry::compute::DerefScope scope(**rt);  // what we touch here stays local until the scope ends
    auto p = arr->at(scope, 123456);
    if (!p.ok()) return Fail(p.status(), "read");
    if (**p != 123456ull * 123456ull) return 2;
  }

  if (auto h = (*rt)->health(); !h.ok()) return Fail(h, "far memory");  // OK, or what went wrong
  auto s = (*rt)->Stats();
  std::printf("sum of squares below %zu: %llu\n", n, static_cast<unsigned long long>(sum));
  std::printf("local %llu KiB of %llu KiB data; %llu swap-ins, %llu swap-outs, hit rate %.1f %%\n",
              static_cast<unsigned long long>(s.local_bytes >> 10), static_cast<unsigned long long>((n * 8) >> 10),
              static_cast<unsigned long long>(s.swap_ins), static_cast<unsigned long long>(s.swap_outs),
              100 * s.hit_rate());
  const unsigned long long expect = (n - 1) * n * (2 * n - 1) / 6;
  return sum == expect ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv) { return sharry::flags::RunMain("quickstart", Main, argc, argv); }
