// libFuzzer target: what a hostile or broken etcd can make EtcdClient and
// MemnodeWatcher parse (discovery/etcd_wire.h, discovery/memnode_info.h).
// Input: [selector byte] [text]; the selector picks the parser:
//   0 ParseRangeReply   1 ParseWatchLine     2 ParseLeaseGrantReply
//   3 ParseKeepAliveReply  4 ParseDeleteReply / ParseHeaderRevision
//   5 ParseErrorReply (HTTP 404 and 200)   6 DecodeMemnodeInfo   7 Base64Decode
// None may crash, throw or hang (the JSON depth bound); every refusal is the
// Status the header promises, with a bounded message; and what is accepted
// holds together: a range's revision is >= 1 and its keys non-empty,
// a MemnodeInfo re-encodes to one that decodes equal, base64 round-trips.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "discovery/etcd_wire.h"
#include "discovery/memnode_info.h"

namespace {

using namespace sharry;
using namespace sharry::discovery;

void Check(bool ok) {
  if (!ok) std::abort();
}

// A refusal: the promised code, a bounded message.
void Refused(const Status& s, StatusCode want) {
  Check(!s.ok());
  Check(s.code() == want);
  Check(s.message().size() < 600);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 8) {
    case 0: {
      auto r = wire::ParseRangeReply(text);
      if (!r.ok()) {
        Refused(r.status(), StatusCode::kProtocol);
        break;
      }
      Check(r->revision >= 1);
      for (const KeyValue& kv : r->kvs) Check(!kv.key.empty());
      break;
    }
    case 1: {
      auto w = wire::ParseWatchLine(text);
      if (!w.ok()) {
        Check(w.status().message().size() < 600);  // (an error line carries its own code)
        break;
      }
      for (const WatchEvent& ev : w->events) {
        Check(!ev.key.empty());
        Check(ev.type == WatchEvent::Type::kPut || ev.value.empty());
      }
      break;
    }
    case 2: {
      auto id = wire::ParseLeaseGrantReply(text);
      if (id.ok()) Check(*id > 0);
      break;
    }
    case 3: {
      auto ttl = wire::ParseKeepAliveReply(text);
      if (ttl.ok()) Check(*ttl >= 0);
      break;
    }
    case 4: {
      auto n = wire::ParseDeleteReply(text);
      if (n.ok()) Check(*n >= 0);
      auto rev = wire::ParseHeaderRevision(text);
      if (!rev.ok()) {
        Refused(rev.status(), StatusCode::kProtocol);
      } else {
        Check(*rev >= 1);
      }
      break;
    }
    case 5: {
      Status s = wire::ParseErrorReply(404, text);
      Check(!s.ok() && s.message().size() < 600);
      s = wire::ParseErrorReply(200, text);
      Check(!s.ok() && s.message().size() < 600);
      break;
    }
    case 6: {
      auto info = DecodeMemnodeInfo(text);
      if (!info.ok()) {
        Refused(info.status(), StatusCode::kInvalidArgument);
        break;
      }
      auto again = DecodeMemnodeInfo(EncodeMemnodeInfo(*info));
      // (a string with bytes that are not UTF-8 cannot have been accepted:
      // the JSON parser refuses them, so the re-encoding is exact)
      Check(again.ok() && *again == *info);
      break;
    }
    case 7: {
      auto d = wire::Base64Decode(text);
      if (d.ok()) {
        auto back = wire::Base64Decode(wire::Base64Encode(*d));
        Check(back.ok() && *back == *d);
      } else {
        Refused(d.status(), StatusCode::kProtocol);
      }
      auto round = wire::Base64Decode(wire::Base64Encode(text));
      Check(round.ok() && *round == text);
      break;
    }
  }
  return 0;
}
