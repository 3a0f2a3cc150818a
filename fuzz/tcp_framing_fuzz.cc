// libFuzzer target: the TCP server's socket-free input parser
// (verbs/tcp_framing.h) on arbitrary bytes in arbitrary splits.
//
// Input layout:
//   byte 0   bits 0-3  k, the number of piece sizes that follow
//            bit 4     backpressure in the split run: every other complete
//                      frame header is held once (Sink::TakeFrame false)
//   k bytes  piece sizes, used in turn (all zero: byte by byte)
//   rest     the stream a peer sends
//
// Each input is parsed twice: whole, in one Feed, and in the pieces (bytes a
// held Feed did not consume are fed again). Checks: no crash or sanitizer
// report, and both runs ask the sink for the same things in the same order,
// consume the same bytes and leave the same region (kWrite data lands there).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "verbs/tcp_framing.h"
#include "verbs/wire.h"

namespace {

using sharry::Status;
using sharry::StatusCode;
using sharry::internal::TcpFraming;

class Recorder : public TcpFraming::Sink {
 public:
  explicit Recorder(bool hold) : hold_(hold) {}
  std::vector<std::string> events;

  bool TakeFrame() override { return !hold_ || (flip_ = !flip_); }
  Status OnHello(uint64_t tag, const sharry::internal::Hello& hello, uint32_t max_message,
                 bool* challenged) override {
    const sharry::wire::HelloPayload& h = hello.base;
    Add("hello", tag, h.session, max_message);
    if (h.session % 5 == 4) return Status::Unavailable("session " + std::to_string(h.session) + " is over");
    *challenged = hello.authenticates;  // then only a kAuth may follow
    return Status::Ok();
  }
  // An answer "verifies" when its first byte is odd: both paths get fuzzed.
  Status OnAuth(uint64_t tag, std::span<const uint8_t> proof) override {
    Add("auth", tag, proof.size(), proof[0]);
    if (proof[0] & 1) return Status::Ok();
    return Status::PermissionDenied("authentication failed");
  }
  void OnRequest(uint64_t tag, std::span<const uint8_t> p) override {
    Add("request", tag, p.size(), 0);
    events.back().append(p.begin(), p.end());
  }
  void OnRead(uint64_t tag, uint64_t off, uint64_t len) override { Add("read", tag, off, len); }
  void OnWrite(uint64_t tag, uint64_t off, uint64_t len) override { Add("write", tag, off, len); }
  void OnError(uint64_t tag, const Status& s) override {
    Add("error", tag, static_cast<uint64_t>(s.code()), 0);
    events.back() += s.message();
  }
  void OnRefuse(uint64_t tag, StatusCode code, const std::string& reason) override {
    Add("refuse", tag, static_cast<uint64_t>(code), 0);
    events.back() += reason;
  }
  void OnClose(const std::string& why) override { events.push_back("close " + why); }

 private:
  void Add(const char* what, uint64_t tag, uint64_t a, uint64_t b) {
    events.push_back(std::string(what) + " " + std::to_string(tag) + " " + std::to_string(a) + " " +
                     std::to_string(b) + " ");
  }
  bool hold_;
  bool flip_ = false;
};

constexpr uint64_t kRegion = 4096;
constexpr uint32_t kMaxMessage = 1024;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t k = std::min<size_t>(data[0] & 15, size - 1);
  const bool hold = data[0] & 16;
  const std::vector<uint8_t> sizes(data + 1, data + 1 + k);
  const std::span<const uint8_t> stream(data + 1 + k, size - 1 - k);
  bool all_zero = true;
  for (uint8_t s : sizes) all_zero = all_zero && s == 0;

  std::vector<uint8_t> region_whole(kRegion), region_split(kRegion);
  Recorder whole(false), split(hold);
  TcpFraming fw({kMaxMessage, region_whole.data(), kRegion});
  TcpFraming fs({kMaxMessage, region_split.data(), kRegion});

  const size_t consumed_whole = fw.Feed(stream, whole);
  if (consumed_whole != stream.size() && !fw.closed()) std::abort();  // only closing stops a whole feed

  size_t pos = 0;
  for (size_t i = 0; pos < stream.size() && !fs.closed(); ++i) {
    size_t n = all_zero ? 1 : sizes[i % k];
    n = std::min(n, stream.size() - pos);
    const size_t end = pos + n;
    // A held frame: feed the rest of the piece again (the held header is
    // taken then). Two Feeds in a row that take nothing would be a stall.
    for (bool idle = false; !fs.closed();) {
      const size_t used = fs.Feed(stream.subspan(pos, end - pos), split);
      pos += used;
      if (pos == end) break;
      if (used == 0 && idle) std::abort();
      idle = used == 0;
    }
  }
  if (hold && !fs.closed()) fs.Feed({}, split);  // a header held at the very end
  if (split.events != whole.events || pos != consumed_whole || region_split != region_whole ||
      fs.greeted() != fw.greeted())
    std::abort();
  return 0;
}
