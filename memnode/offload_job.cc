#include "memnode/offload_job.h"

#include <cstring>
#include <string>

#include "offload/kernel.h"

namespace sharry::memnode {

namespace {

// Reads little-endian values from the front of a request body.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  template <typename T>
  [[nodiscard]] bool Get(T* v) {
    if (b_.size() - at_ < sizeof(T)) return false;
    std::memcpy(v, b_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return true;
  }
  void Skip(size_t n) { at_ += n; }
  size_t at() const { return at_; }
  size_t left() const { return b_.size() - at_; }

 private:
  std::span<const uint8_t> b_;
  size_t at_ = 0;
};

std::string Range(uint64_t offset, uint64_t length) {
  return "[" + std::to_string(offset) + ", +" + std::to_string(length) + ")";
}

std::string UnitName(size_t u) { return "OFFLOAD unit " + std::to_string(u); }

// Whether every page of [offset, +length) is the session's now: pinned,
// then unpinned at once (a check; the worker pins again while it reads).
bool SessionOwns(RegionAccess* access, uint32_t session, uint64_t offset, uint64_t length) {
  if (!access->Pin(session, offset, length)) return false;
  access->Unpin(offset, length);
  return true;
}

}  // namespace

StatusOr<OffloadJob> ParseOffloadRequest(uint16_t units, std::span<const uint8_t> body, uint32_t session,
                                         const OffloadLimits& limits, RegionAccess* access, uint64_t region_size) {
  if (units == 0 || units > kMaxOffloadUnits)
    return Status::InvalidArgument("OFFLOAD of " + std::to_string(units) + " units (allowed 1.." +
                                   std::to_string(kMaxOffloadUnits) + ")");
  Reader r(body);
  OffloadHead head;
  if (!r.Get(&head))
    return Status::InvalidArgument("OFFLOAD body of " + std::to_string(body.size()) + " B is shorter than its " +
                                   std::to_string(sizeof head) + "-byte head");
  if (head.reserved != 0) return Status::InvalidArgument("OFFLOAD head: reserved bytes are set");
  if (head.spec_bytes > r.left())
    return Status::InvalidArgument("OFFLOAD spec of " + std::to_string(head.spec_bytes) + " B runs past the request (" +
                                   std::to_string(r.left()) + " B left)");
  size_t used = 0;
  auto spec = offload::Decode(body.subspan(r.at(), head.spec_bytes), &used);
  if (!spec.ok()) return spec.status().WithContext("OFFLOAD spec");
  if (used != head.spec_bytes)
    return Status::InvalidArgument("OFFLOAD spec: " + std::to_string(head.spec_bytes - used) +
                                   " trailing bytes after the spec (spec_bytes " + std::to_string(head.spec_bytes) +
                                   ", the spec is " + std::to_string(used) + " B)");
  r.Skip(head.spec_bytes);

  OffloadJob job;
  job.spec = std::move(*spec);
  job.partial_bytes = offload::PartialBytes(job.spec);
  const size_t columns = job.spec.columns.size();
  job.units.reserve(units);
  job.starts.reserve(size_t{units} * columns + 1);
  job.starts.push_back(0);
  auto truncated = [&](size_t u) {
    return Status::InvalidArgument(UnitName(u) + " of " + std::to_string(units) + " is truncated (the request ends " +
                                   "after " + std::to_string(body.size() + sizeof(RpcHeader)) + " B)");
  };
  for (size_t u = 0; u < units; ++u) {
    OffloadJob::Unit unit;
    if (!r.Get(&unit.first_row) || !r.Get(&unit.rows)) return truncated(u);
    if (unit.rows == 0) return Status::InvalidArgument(UnitName(u) + " has 0 rows");
    job.rows += unit.rows;
    if (job.rows > limits.max_rows)
      return Status::InvalidArgument("OFFLOAD of more than " + std::to_string(limits.max_rows) +
                                     " rows (this memnode's --offload_max_rows=" + std::to_string(limits.max_rows) +
                                     "): send fewer units per request");
    for (size_t c = 0; c < columns; ++c) {
      const std::string where = UnitName(u) + ", column " + std::to_string(c);
      uint16_t n = 0;
      if (!r.Get(&n)) return truncated(u);
      if (n == 0) return Status::InvalidArgument(where + " has no pieces");
      const offload::ElemType type = job.spec.columns[c];
      const uint64_t elem = offload::ElemSize(type);
      uint64_t total = 0;
      for (uint16_t p = 0; p < n; ++p) {
        PieceRef piece;
        if (!r.Get(&piece.offset) || !r.Get(&piece.length)) return truncated(u);
        const std::string what = where + ", piece " + std::to_string(p) + ": " + Range(piece.offset, piece.length);
        if (piece.length == 0) return Status::InvalidArgument(what + " is empty");
        if (piece.length % elem != 0)
          return Status::InvalidArgument(what + " is not whole elements of " +
                                         std::string(offload::ElemTypeName(type)) + " (" + std::to_string(elem) +
                                         " B each)");
        if (!CheckRange(piece.offset, piece.length, region_size, "piece").ok())
          return Status::OutOfRange(what + " is outside the UMA of " + std::to_string(region_size) + " B");
        if (!SessionOwns(access, session, piece.offset, piece.length))
          return Status::PermissionDenied(what + " is not this session's far memory");
        total += piece.length;
        job.pieces.push_back(piece);
      }
      if (total != uint64_t{unit.rows} * elem)
        return Status::InvalidArgument(where + ": pieces of " + std::to_string(total) + " B for " +
                                       std::to_string(unit.rows) + " rows of " +
                                       std::string(offload::ElemTypeName(type)) + " (want " +
                                       std::to_string(uint64_t{unit.rows} * elem) + " B)");
      job.starts.push_back(static_cast<uint32_t>(job.pieces.size()));
    }
    job.units.push_back(unit);
  }
  if (r.left() != 0)
    return Status::InvalidArgument("OFFLOAD: " + std::to_string(r.left()) + " trailing bytes after unit " +
                                   std::to_string(units - 1));

  const uint64_t result = uint64_t{units} * job.partial_bytes;
  if (result > head.result_bytes)
    return Status::InvalidArgument("result of " + std::to_string(result) + " B does not fit the result block of " +
                                   std::to_string(head.result_bytes) + " B");
  if (result > limits.max_result_bytes)
    return Status::InvalidArgument("result of " + std::to_string(result) + " B is above this memnode's limit of " +
                                   std::to_string(limits.max_result_bytes) +
                                   " B per OFFLOAD: send fewer units per request");
  const std::string block = "result block " + Range(head.result_offset, head.result_bytes);
  if (!CheckRange(head.result_offset, head.result_bytes, region_size, "result").ok())
    return Status::OutOfRange(block + " is outside the UMA of " + std::to_string(region_size) + " B");
  if (!SessionOwns(access, session, head.result_offset, head.result_bytes))
    return Status::PermissionDenied(block + " is not this session's far memory");
  job.result_offset = head.result_offset;
  job.result_bytes = head.result_bytes;
  return job;
}

Status RunOffloadJob(const OffloadJob& job, uint32_t session, uint8_t* region, RegionAccess* access,
                     const OffloadRunControl& control, uint64_t* rows_done) {
  const size_t columns = job.columns();
  const size_t pb = job.partial_bytes;
  std::vector<uint8_t> out(job.units.size() * pb);
  std::vector<std::span<const uint8_t>> spans;
  std::vector<offload::Pieces> cols(columns);
  for (size_t u = 0; u < job.units.size(); ++u) {
    if (control.before_unit) control.before_unit(u);
    if (control.cancel != nullptr && control.cancel->load(std::memory_order_acquire))
      return Status::Disconnected("the client went away");
    const OffloadJob::Unit& unit = job.units[u];
    const PieceRef* first = job.pieces.data() + job.starts[u * columns];
    // Pin every piece of the unit; a page revoked since the request was
    // checked (its block freed) fails the job, naming the piece.
    Status st;
    const PieceRef* pinned = first;
    spans.clear();
    for (size_t c = 0; c < columns && st.ok(); ++c) {
      const std::span<const PieceRef> ps = job.PiecesOf(u, c);
      for (size_t p = 0; p < ps.size(); ++p) {
        if (!access->Pin(session, ps[p].offset, ps[p].length)) {
          st = Status::PermissionDenied(UnitName(u) + ", column " + std::to_string(c) + ", piece " +
                                        std::to_string(p) + ": " + Range(ps[p].offset, ps[p].length) +
                                        " is no longer this session's far memory (freed meanwhile)");
          break;
        }
        ++pinned;
        spans.emplace_back(region + ps[p].offset, ps[p].length);
      }
    }
    if (st.ok()) {
      for (size_t c = 0; c < columns; ++c) {
        const size_t at = job.starts[u * columns + c] - job.starts[u * columns];
        cols[c] = offload::Pieces(spans.data() + at, job.starts[u * columns + c + 1] - job.starts[u * columns + c]);
      }
      const std::span<uint8_t> partial(out.data() + u * pb, pb);
      offload::InitPartial(job.spec, partial);
      st = offload::RunUnit(job.spec, unit.rows, cols, partial, unit.first_row);
      if (!st.ok()) st = st.WithContext(UnitName(u));
    }
    for (const PieceRef* p = first; p != pinned; ++p) access->Unpin(p->offset, p->length);
    if (!st.ok()) return st;
    *rows_done += unit.rows;
  }
  if (!access->Pin(session, job.result_offset, out.size()))
    return Status::PermissionDenied("result block " + Range(job.result_offset, job.result_bytes) +
                                    " is no longer this session's far memory (freed meanwhile)");
  std::memcpy(region + job.result_offset, out.data(), out.size());
  access->Unpin(job.result_offset, out.size());
  return Status::Ok();
}

}  // namespace sharry::memnode
