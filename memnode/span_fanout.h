// SpanFanout: the allocator's one SpanObserver in a memnode, passing each
// grant and revoke of a span on to the two things that confine clients
// (issue #11, docs/tenants.md):
//   - the PageOwnerMap (tcp, loopback: who may READ/WRITE each page; zeroes
//     revoked pages), always;
//   - the verbs transport's RegionKeys (a memory region per span in the
//     owner session's protection domain), once the transport is attached.
// On revoke the transport goes first: the span's memory region is
// deregistered (no key reaches the pages any more) before the pages are
// zeroed and can be granted to anyone else.
//
// Thread-safety: OnGrant/OnRevoke run on section threads (SpanObserver's
// contract); Attach/Detach on the memnode's thread. Detach waits for calls
// in progress, so after it returns no call reaches the transport, which may
// then be destroyed.
#pragma once

#include "alloc/span_observer.h"
#include "base/mutex.h"
#include "memnode/page_owners.h"
#include "verbs/transport.h"

namespace sharry::memnode {

class SpanFanout final : public alloc::SpanObserver {
 public:
  explicit SpanFanout(PageOwnerMap* pages) : pages_(pages) {}

  void Attach(RegionKeys* keys) EXCLUDES(mu_) {
    WriterMutexLock l(&mu_);
    keys_ = keys;
  }
  void Detach() EXCLUDES(mu_) { Attach(nullptr); }

  void OnGrant(alloc::OwnerId owner, uint64_t offset, uint64_t bytes) override EXCLUDES(mu_) {
    pages_->OnGrant(owner, offset, bytes);
    ReaderMutexLock l(&mu_);
    if (keys_ != nullptr) keys_->Grant(owner, offset, bytes);
  }
  void OnRevoke(alloc::OwnerId owner, uint64_t offset, uint64_t bytes) override EXCLUDES(mu_) {
    {
      ReaderMutexLock l(&mu_);
      if (keys_ != nullptr) keys_->Revoke(owner, offset, bytes);
    }
    pages_->OnRevoke(owner, offset, bytes);
  }

 private:
  PageOwnerMap* const pages_;
  SharedMutex mu_;
  RegionKeys* keys_ GUARDED_BY(mu_) = nullptr;
};

}  // namespace sharry::memnode
