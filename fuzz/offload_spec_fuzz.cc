// libFuzzer target: an OFFLOAD request's operator as a memnode sees it —
// offload::Decode on arbitrary bytes, then the kernel on what it accepts.
//
// Input: [spec wire form][layout byte][column bytes...]. Decode(in, &used)
// must never read past the input; what it accepts must be valid (Validate)
// and re-encode to exactly the bytes it took (one wire form per spec). Then,
// on the bytes after the spec, the kernel runs one unit of as many rows as
// the data holds (at most 600: a few batches and a partial one), the
// columns cut into pieces of 1 + layout % 7 elements, and again with every
// column as one piece: the two must agree (same status code; same partial
// bytes when OK — the piece layout never changes a result). A column one
// element short must be refused before anything is read. The partial merges
// into a Result without crashing (an integer overflow is an error).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

#include "offload/kernel.h"
#include "offload/spec.h"

namespace {

using namespace sharry;
using namespace sharry::offload;

void Check(bool ok) {
  if (!ok) std::abort();
}

// Pieces of `bytes`: `elems` elements each (the last one shorter).
std::vector<std::span<const uint8_t>> Cut(std::span<const uint8_t> bytes, size_t esize, size_t elems) {
  std::vector<std::span<const uint8_t>> out;
  const size_t step = esize * elems;
  for (size_t at = 0; at < bytes.size(); at += step) out.push_back(bytes.subspan(at, std::min(step, bytes.size() - at)));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  size_t used = 0;
  StatusOr<Spec> spec = Decode(in, &used);
  const StatusOr<Spec> whole = Decode(in);
  if (!spec.ok()) {
    Check(!whole.ok());
    return 0;
  }
  Check(used <= size && used <= kMaxSpecBytes);
  Check(whole.ok() == (used == size));
  const Spec& s = *spec;
  Check(Validate(s).ok());
  Check(Encode(s) == std::vector<uint8_t>(data, data + used));

  // Bound the partial (groups up to 65536 x 8 aggregates: 4 MiB) per input.
  if (PartialBytes(s) > (size_t{1} << 20)) return 0;

  std::span<const uint8_t> rest = in.subspan(used);
  const uint8_t layout = rest.empty() ? 0 : rest[0];
  if (!rest.empty()) rest = rest.subspan(1);
  size_t row_bytes = 0;
  for (ElemType t : s.columns) row_bytes += ElemSize(t);
  const uint64_t rows = std::min<size_t>(600, rest.size() / row_bytes);

  std::vector<std::vector<std::span<const uint8_t>>> cut, one;
  size_t at = 0;
  for (ElemType t : s.columns) {
    const std::span<const uint8_t> col = rest.subspan(at, rows * ElemSize(t));
    at += col.size();
    cut.push_back(Cut(col, ElemSize(t), 1 + layout % 7));
    one.push_back({col});
  }
  const std::vector<Pieces> cut_cols(cut.begin(), cut.end()), one_cols(one.begin(), one.end());
  std::vector<uint8_t> p1(PartialBytes(s)), p2(PartialBytes(s));
  const Status s1 = RunUnit(s, rows, cut_cols, p1, 1000);
  const Status s2 = RunUnit(s, rows, one_cols, p2, 1000);
  Check(s1.code() == s2.code());
  if (s1.ok()) {
    Check(p1 == p2);
    Result r(s);
    Check(r.Add(p1).ok());
    (void)r.Add(p2);  // may overflow an integer aggregate: an error, not a crash
    for (uint32_t g = 0; g < r.groups(); ++g) {
      for (size_t a = 0; a < s.aggs.size(); ++a) {
        (void)r.Int(g, a);
        (void)r.Value(g, a);
      }
    }
  }
  if (rows > 0) {
    // One element short in the last column: refused.
    std::vector<std::vector<std::span<const uint8_t>>> shorter = one;
    std::span<const uint8_t>& last = shorter.back().back();
    last = last.first(last.size() - ElemSize(s.columns.back()));
    const std::vector<Pieces> short_cols(shorter.begin(), shorter.end());
    Check(RunUnit(s, rows, short_cols, p1).code() == StatusCode::kInvalidArgument);
  }
  return 0;
}
