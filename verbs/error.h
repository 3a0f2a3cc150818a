// Turning verbs failures into Status values a user can act on.
//
// Every verb's return code is checked: a failed verb becomes a Status naming
// the verb and errno; a failed work completion becomes a typed Status whose
// message says what went wrong on the wire and what to do about it.
#pragma once

#include <infiniband/verbs.h>

#include <string_view>

#include "base/status.h"

namespace sharry::verbs {

// "ibv_reg_mr(64 MiB): Cannot allocate memory (errno 12)".
// `err` is the errno (or the positive return value of verbs that return one).
Status VerbFailed(std::string_view verb, int err);

// Maps a failed work completion to a Status:
//   IBV_WC_REM_ACCESS_ERR            -> kRemoteAccess (bad rkey or address out of the region)
//   IBV_WC_RETRY_EXC_ERR, RNR_RETRY  -> kDisconnected (peer dead or unreachable)
//   IBV_WC_WR_FLUSH_ERR              -> kDisconnected (queue pair already in error)
//   IBV_WC_LOC_*, REM_INV_REQ, REM_OP -> kProtocol / kInternal
// `what` names the operation, e.g. "RDMA READ of 4096 B at remote 0x7f..".
Status WcFailed(const ibv_wc& wc, std::string_view what);

// True for completion statuses after which the queue pair is in the error
// state and the connection cannot carry further work (all of them but SUCCESS).
inline bool WcKillsQueuePair(const ibv_wc& wc) { return wc.status != IBV_WC_SUCCESS; }

}  // namespace sharry::verbs
