#include "tools/cli/client_flags.h"

#include <string>

#include "base/flag_check.h"
#include "tools/cli/client_options.h"
#include "tools/cli/program.h"
#include "tools/cli/ranged_flag.h"
#include "tools/cli/start_barrier.h"

DEFINE_string(memnode, "127.0.0.1:7000", "memnodes: HOST:PORT[,HOST:PORT...] (far blocks are placed across them)");
DEFINE_string(redundancy, "none",
              "far copies: none, replicate:R (R copies on R memnodes, R in 2..4) or ec:K+M (Unique-Copy: Reed-Solomon stripes of K data + M parity blocks)");
DEFINE_string(etcd, "", "memnode discovery: etcd HOST:PORT; the memnodes registered there are used too "
              "(alone, unless --memnode is given)");
DEFINE_string(etcd_prefix, "/sharry/memnodes/", "with --etcd: the key prefix the memnodes register under");
// The runtime's default (RuntimeOptions::op_timeout_ms); small values make a
// frozen memnode be declared dead sooner (tests/redundancy_test.sh).
SHARRY_FLAG(int32, op_timeout_ms, 2000, 50, 600000,
            "a far READ/WRITE/RPC unanswered this long fails its connection (a stopped memnode is noticed "
            "within this), in ms");
DEFINE_string(mode, "unique", "unique (Unique-Copy) or multi (Multi-Copy)");
SHARRY_FLAG(double, ec_hole_budget, 0.05, 0, 10,
            "with --redundancy=ec:K+M: holes (members swapped in) are compacted away only while the stripes' far "
            "memory is more than this fraction over (K+M)/K of the data (docs/redundancy.md)");
SHARRY_FLAG(int64, ec_refill_bytes, -1, -1, int64_t{1} << 40,
            "with --redundancy=ec:K+M: bytes of swapped-in members' old bytes kept so that eviction refills "
            "their holes in place (-1: min(budget/16, 2 x evict_batch x 4 KiB); 0: no refills, holes are only "
            "compacted; docs/redundancy.md)");
DEFINE_string(offload, "auto", "where aggregates over far chunks run: auto (at the memnode when that moves fewer "
              "bytes), always (at the memnode whenever a unit is far there) or never (here, swapping chunks in)");
DEFINE_string(ready_file, "", "start barrier: created when the data is loaded");
DEFINE_string(go_file, "", "start barrier: the timed phase starts once this file exists");

namespace sharry::compute {

void ConnectionFromFlags(std::string_view program, RuntimeOptions* o) {
  const char* bad_flag = "";
  // With --etcd and no --memnode, etcd names every memnode.
  const bool memnode_given = !gflags::GetCommandLineFlagInfoOrDie("memnode").is_default;
  const std::string memnode = FLAGS_etcd.empty() || memnode_given ? FLAGS_memnode : "";
  flags::ExitOnBadFlags(program, ParseConnectionFlags(FLAGS_transport, FLAGS_mode, memnode, FLAGS_redundancy, o,
                                                      &bad_flag, FLAGS_etcd));
  if (FLAGS_etcd_prefix.empty() || FLAGS_etcd_prefix.find_first_of(" \t\n") != std::string::npos)
    flags::ExitOnBadFlags(program, Status::InvalidArgument("--etcd_prefix=" + FLAGS_etcd_prefix +
                                                           " must be non-empty, without spaces"));
  o->etcd_prefix = FLAGS_etcd_prefix;
  o->op_timeout_ms = FLAGS_op_timeout_ms;
  o->ec_hole_budget = FLAGS_ec_hole_budget;
  o->ec_refill_bytes = FLAGS_ec_refill_bytes;
  auto offload = ParseOffloadMode(FLAGS_offload);
  if (!offload.ok())
    flags::ExitOnBadFlags(program, Status::InvalidArgument("--offload=" + FLAGS_offload +
                                                           " is not one of auto, always, never"));
  o->offload = *offload;
  cli::CredentialsFromFlags(program, "", &o->tenant, &o->secret);
}

Status WaitAtStartBarrierOfFlags() { return WaitAtStartBarrier(FLAGS_ready_file, FLAGS_go_file); }

void AddSwapCounters(const RuntimeStats& st, cli::Record* r) {
  r->Add("hit_rate", st.hit_rate(), "%.4f").Add("swap_ins", st.swap_ins).Add("swap_outs", st.swap_outs);
  r->Add("drops", st.drops);
}

cli::Record FarCounters(Runtime& rt, const RuntimeStats& st) {
  uint64_t mine = 0, used = 0, answered = 0;
  for (size_t i = 0; i < rt.memnode_count(); ++i) {
    auto ms = rt.MemnodeStats(i);
    if (!ms.ok()) continue;
    mine += ms->BytesHeldBy(rt.control_client_id(i));
    used += ms->head.used_bytes;
    answered++;
  }
  cli::Record r("far");
  r.Add("far_bytes_mine", mine).Add("far_bytes_memnode", used).Add("memnodes_answered", answered);
  r.Add("far_copy_bytes", st.far_copy_bytes);
  for (size_t i = 0; i < st.memnodes.size(); ++i)
    r.Add("far_bytes_node" + std::to_string(i), st.memnodes[i].copy_bytes);
  r.Add("degraded_reads", st.degraded_reads).Add("repaired_objects", st.repaired_objects);
  r.Add("repair_pending", st.repair_pending).Add("dead_memnodes", st.dead_memnodes);
  r.Add("stripes", st.stripes).Add("restriped_objects", st.restriped_objects);
  r.Add("ec_refills", st.ec_refills).Add("ec_kept_bytes", st.ec_kept_bytes);
  r.Add("lost_objects", st.lost_objects);
  r.Add("far_read_bytes", st.far_read_bytes).Add("far_write_bytes", st.far_write_bytes);
  return r;
}

}  // namespace sharry::compute
