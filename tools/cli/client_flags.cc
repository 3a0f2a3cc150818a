#include "tools/cli/client_flags.h"

#include "base/flag_check.h"
#include "tools/cli/client_options.h"
#include "tools/cli/program.h"
#include "tools/cli/start_barrier.h"

DEFINE_string(memnode, "127.0.0.1:7000", "memnodes: HOST:PORT[,HOST:PORT...] (far blocks are placed across them)");
DEFINE_string(redundancy, "none",
              "far copies: none, replicate:R (R copies on R memnodes, R in 2..4) or ec:K+M (Unique-Copy: Reed-Solomon stripes of K data + M parity blocks)");
DEFINE_string(etcd, "", "memnode discovery: etcd HOST:PORT; the memnodes registered there are used too "
              "(alone, unless --memnode is given)");
DEFINE_string(etcd_prefix, "/sharry/memnodes/", "with --etcd: the key prefix the memnodes register under");
DEFINE_string(mode, "unique", "unique (Unique-Copy) or multi (Multi-Copy)");
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
  cli::CredentialsFromFlags(program, "", &o->tenant, &o->secret);
}

Status WaitAtStartBarrierOfFlags() { return WaitAtStartBarrier(FLAGS_ready_file, FLAGS_go_file); }

void AddSwapCounters(const RuntimeStats& st, cli::Record* r) {
  r->Add("hit_rate", st.hit_rate(), "%.4f").Add("swap_ins", st.swap_ins).Add("swap_outs", st.swap_outs);
  r->Add("drops", st.drops);
}

}  // namespace sharry::compute
