// offload::Spec: element types, the builders, Validate and the wire form
// (spec.h draws it). Pure functions of their arguments; no state.
#include "offload/spec.h"

#include <bit>
#include <cstring>
#include <string>

namespace sharry::offload {

static_assert(std::endian::native == std::endian::little,
              "the spec's and the partials' wire forms are little-endian; a big-endian host needs byte swaps here");

size_t ElemSize(ElemType t) {
  switch (t) {
    case ElemType::kI8: case ElemType::kU8: return 1;
    case ElemType::kI16: case ElemType::kU16: return 2;
    case ElemType::kI32: case ElemType::kU32: case ElemType::kF32: return 4;
    case ElemType::kI64: case ElemType::kU64: case ElemType::kF64: return 8;
  }
  return 0;
}

bool IsInteger(ElemType t) {
  const auto v = static_cast<uint8_t>(t);
  return v >= static_cast<uint8_t>(ElemType::kI8) && v <= static_cast<uint8_t>(ElemType::kU64);
}

std::string_view ElemTypeName(ElemType t) {
  switch (t) {
    case ElemType::kI8: return "i8";
    case ElemType::kU8: return "u8";
    case ElemType::kI16: return "i16";
    case ElemType::kU16: return "u16";
    case ElemType::kI32: return "i32";
    case ElemType::kU32: return "u32";
    case ElemType::kI64: return "i64";
    case ElemType::kU64: return "u64";
    case ElemType::kF32: return "f32";
    case ElemType::kF64: return "f64";
  }
  return "?";
}

std::string_view ExprOpName(ExprOp op) {
  switch (op) {
    case ExprOp::kColumn: return "kColumn";
    case ExprOp::kConst: return "kConst";
    case ExprOp::kAdd: return "kAdd";
    case ExprOp::kSub: return "kSub";
    case ExprOp::kMul: return "kMul";
    case ExprOp::kDiv: return "kDiv";
    case ExprOp::kMin: return "kMin";
    case ExprOp::kMax: return "kMax";
    case ExprOp::kSqrt: return "kSqrt";
    case ExprOp::kAbs: return "kAbs";
    case ExprOp::kNeg: return "kNeg";
    case ExprOp::kDup: return "kDup";
    case ExprOp::kSwap: return "kSwap";
    case ExprOp::kSelectGt: return "kSelectGt";
  }
  return "?";
}

std::string_view AggKindName(AggKind k) {
  switch (k) {
    case AggKind::kCount: return "kCount";
    case AggKind::kSum: return "kSum";
    case AggKind::kMin: return "kMin";
    case AggKind::kMax: return "kMax";
    case AggKind::kSumSq: return "kSumSq";
    case AggKind::kSumProd: return "kSumProd";
  }
  return "?";
}

uint8_t Spec::Column(ElemType t) {
  columns.push_back(t);
  return static_cast<uint8_t>(columns.size() - 1);
}

uint8_t Spec::AddExpr(Expr e) {
  exprs.push_back(std::move(e));
  return static_cast<uint8_t>(exprs.size() - 1);
}

uint8_t Spec::ColumnExpr(uint8_t column) { return AddExpr({Node{.op = ExprOp::kColumn, .column = column}}); }

size_t Spec::Aggregate(AggKind k, uint8_t a, uint8_t b) {
  aggs.push_back(Agg{.kind = k, .a = a, .b = b});
  return aggs.size() - 1;
}

namespace {

// Values an op pops and pushes (pops < 0: not an op).
struct StackEffect {
  int pops = -1;
  int pushes = 0;
};
StackEffect EffectOf(ExprOp op) {
  switch (op) {
    case ExprOp::kColumn: case ExprOp::kConst: return {0, 1};
    case ExprOp::kAdd: case ExprOp::kSub: case ExprOp::kMul: case ExprOp::kDiv:
    case ExprOp::kMin: case ExprOp::kMax: return {2, 1};
    case ExprOp::kSqrt: case ExprOp::kAbs: case ExprOp::kNeg: return {1, 1};
    case ExprOp::kDup: return {1, 2};
    case ExprOp::kSwap: return {2, 2};
    case ExprOp::kSelectGt: return {4, 1};
  }
  return {};
}

std::string Str(uint64_t v) { return std::to_string(v); }
std::string Str(int64_t v) { return std::to_string(v); }

bool ValidCmp(Cmp c) {
  const auto v = static_cast<uint8_t>(c);
  return v >= static_cast<uint8_t>(Cmp::kLt) && v <= static_cast<uint8_t>(Cmp::kNe);
}
bool ValidKind(AggKind k) {
  const auto v = static_cast<uint8_t>(k);
  return v >= static_cast<uint8_t>(AggKind::kCount) && v <= static_cast<uint8_t>(AggKind::kSumProd);
}
bool PositiveZero(double d) { return std::bit_cast<uint64_t>(d) == 0; }

Status Bad(std::string m) { return Status::InvalidArgument(std::move(m)); }

Status ValidateExpr(const Spec& s, size_t e) {
  const Expr& x = s.exprs[e];
  const std::string where = "expression " + Str(uint64_t{e}) + ": ";
  if (x.empty() || x.size() > kMaxNodes) {
    return Bad(where + "nodes " + Str(uint64_t{x.size()}) + " (allowed 1.." + Str(uint64_t{kMaxNodes}) + ")");
  }
  int depth = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const Node& n = x[i];
    const std::string at = where + "node " + Str(uint64_t{i}) + ": ";
    const StackEffect eff = EffectOf(n.op);
    if (eff.pops < 0) {
      return Bad(at + "op " + Str(uint64_t{static_cast<uint8_t>(n.op)}) + " (allowed 1..14)");
    }
    if (n.op == ExprOp::kColumn) {
      if (n.column >= s.columns.size()) {
        return Bad(at + "column " + Str(uint64_t{n.column}) + " of " + Str(uint64_t{s.columns.size()}));
      }
    } else if (n.column != 0) {
      return Bad(at + "column " + Str(uint64_t{n.column}) + " on " + std::string(ExprOpName(n.op)) +
                 " (allowed 0: only kColumn reads a column)");
    }
    if (n.op != ExprOp::kConst && !PositiveZero(n.constant)) {
      return Bad(at + "constant " + std::to_string(n.constant) + " on " + std::string(ExprOpName(n.op)) +
                 " (allowed 0: only kConst has a constant)");
    }
    if (depth < eff.pops) {
      return Bad(where + "stack underflow at node " + Str(uint64_t{i}) + " (" + std::string(ExprOpName(n.op)) +
                 " needs " + Str(int64_t{eff.pops}) + " value" + (eff.pops == 1 ? "" : "s") + ", the stack holds " +
                 Str(int64_t{depth}) + ")");
    }
    depth += eff.pushes - eff.pops;
    if (depth > static_cast<int>(kMaxStack)) {
      return Bad(where + "stack overflow at node " + Str(uint64_t{i}) + " (depth " + Str(int64_t{depth}) +
                 ", allowed up to " + Str(uint64_t{kMaxStack}) + ")");
    }
  }
  if (depth != 1) {
    return Bad(where + "leaves " + Str(int64_t{depth}) + " values (allowed exactly 1)");
  }
  return Status::Ok();
}

}  // namespace

Status Validate(const Spec& s) {
  const uint64_t ncol = s.columns.size();
  if (ncol < 1 || ncol > kMaxColumns) {
    return Bad("columns " + Str(ncol) + " (allowed 1.." + Str(uint64_t{kMaxColumns}) + ")");
  }
  for (size_t c = 0; c < ncol; ++c) {
    if (ElemSize(s.columns[c]) == 0) {
      return Bad("column " + Str(uint64_t{c}) + ": type " + Str(uint64_t{static_cast<uint8_t>(s.columns[c])}) +
                 " (allowed 1..10)");
    }
  }
  if (s.filters.size() > kMaxFilters) {
    return Bad("filters " + Str(uint64_t{s.filters.size()}) + " (allowed 0.." + Str(uint64_t{kMaxFilters}) + ")");
  }
  for (size_t i = 0; i < s.filters.size(); ++i) {
    const Filter& f = s.filters[i];
    const std::string at = "filter " + Str(uint64_t{i}) + ": ";
    if (f.column >= ncol) return Bad(at + "column " + Str(uint64_t{f.column}) + " of " + Str(ncol));
    if (!ValidCmp(f.cmp)) return Bad(at + "cmp " + Str(uint64_t{static_cast<uint8_t>(f.cmp)}) + " (allowed 1..6)");
    const ElemType t = s.columns[f.column];
    if (IsInteger(t) && !PositiveZero(f.float_value)) {
      return Bad(at + "float_value " + std::to_string(f.float_value) + " on " + std::string(ElemTypeName(t)) +
                 " column " + Str(uint64_t{f.column}) + " (allowed 0: an integer column compares int_value)");
    }
    if (!IsInteger(t) && f.int_value != 0) {
      return Bad(at + "int_value " + Str(f.int_value) + " on " + std::string(ElemTypeName(t)) + " column " +
                 Str(uint64_t{f.column}) + " (allowed 0: a float column compares float_value)");
    }
  }
  if (s.key.column == kNoKey) {
    if (s.key.add != 0 || s.key.div != 1 || s.key.mod != 0) {
      return Bad("key: add " + Str(s.key.add) + ", div " + Str(s.key.div) + ", mod " + Str(s.key.mod) +
                 " without a key column (allowed 0, 1, 0)");
    }
    if (s.groups != 1) return Bad("groups " + Str(uint64_t{s.groups}) + " (allowed 1 without a key column)");
  } else {
    if (s.key.column >= ncol) return Bad("key: column " + Str(uint64_t{s.key.column}) + " of " + Str(ncol));
    const ElemType t = s.columns[s.key.column];
    if (!IsInteger(t)) {
      return Bad("key: column " + Str(uint64_t{s.key.column}) + " is " + std::string(ElemTypeName(t)) +
                 " (allowed: an integer column)");
    }
    if (s.key.div < 1) return Bad("key: div " + Str(s.key.div) + " (allowed >= 1)");
    if (s.key.mod < 0) return Bad("key: mod " + Str(s.key.mod) + " (allowed >= 0)");
    if (s.groups < 1 || s.groups > kMaxGroups) {
      return Bad("groups " + Str(uint64_t{s.groups}) + " (allowed 1.." + Str(uint64_t{kMaxGroups}) + ")");
    }
  }
  if (s.exprs.size() > kMaxExprs) {
    return Bad("expressions " + Str(uint64_t{s.exprs.size()}) + " (allowed 0.." + Str(uint64_t{kMaxExprs}) + ")");
  }
  for (size_t e = 0; e < s.exprs.size(); ++e) SHARRY_RETURN_IF_ERROR(ValidateExpr(s, e));
  if (s.aggs.empty() || s.aggs.size() > kMaxAggs) {
    return Bad("aggregates " + Str(uint64_t{s.aggs.size()}) + " (allowed 1.." + Str(uint64_t{kMaxAggs}) + ")");
  }
  const uint64_t nexpr = s.exprs.size();
  for (size_t i = 0; i < s.aggs.size(); ++i) {
    const Agg& a = s.aggs[i];
    const std::string at = "aggregate " + Str(uint64_t{i}) + ": ";
    if (!ValidKind(a.kind)) return Bad(at + "kind " + Str(uint64_t{static_cast<uint8_t>(a.kind)}) + " (allowed 1..6)");
    const std::string kind(AggKindName(a.kind));
    if (a.kind == AggKind::kCount) {
      if (a.a != 0) return Bad(at + "a " + Str(uint64_t{a.a}) + " on kCount (allowed 0: kCount reads no expression)");
    } else if (a.a >= nexpr) {
      return Bad(at + "a: expression " + Str(uint64_t{a.a}) + " of " + Str(nexpr));
    }
    if (a.kind == AggKind::kSumProd) {
      if (a.b >= nexpr) return Bad(at + "b: expression " + Str(uint64_t{a.b}) + " of " + Str(nexpr));
    } else if (a.b != 0) {
      return Bad(at + "b " + Str(uint64_t{a.b}) + " on " + kind + " (allowed 0: only kSumProd reads b)");
    }
  }
  return Status::Ok();
}

bool IsIntegerExpr(const Spec& s, size_t e) {
  if (e >= s.exprs.size()) return false;
  const Expr& x = s.exprs[e];
  return x.size() == 1 && x[0].op == ExprOp::kColumn && x[0].column < s.columns.size() &&
         IsInteger(s.columns[x[0].column]);
}

bool IsIntegerAgg(const Spec& s, size_t agg) {
  if (agg >= s.aggs.size()) return false;
  const Agg& a = s.aggs[agg];
  switch (a.kind) {
    case AggKind::kCount: return true;
    case AggKind::kSum: case AggKind::kMin: case AggKind::kMax: case AggKind::kSumSq: return IsIntegerExpr(s, a.a);
    case AggKind::kSumProd: return IsIntegerExpr(s, a.a) && IsIntegerExpr(s, a.b);
  }
  return false;
}

// ---- wire form ------------------------------------------------------------

namespace {

constexpr size_t kHeadBytes = 16;
constexpr size_t kKeyBytes = 24;
constexpr size_t kFilterBytes = 24;
constexpr size_t kNodeBytes = 16;
constexpr size_t kAggBytes = 4;
static_assert(kMaxSpecBytes == kHeadBytes + kMaxColumns + kKeyBytes + kMaxFilters * kFilterBytes +
                                   kMaxExprs * (1 + kMaxNodes * kNodeBytes) + kMaxAggs * kAggBytes);
static_assert(kMaxSpecBytes == 4280);

template <typename T>
void Put(std::vector<uint8_t>* out, T v) {
  const size_t at = out->size();
  out->resize(at + sizeof(T));
  std::memcpy(out->data() + at, &v, sizeof(T));
}
void PutZeros(std::vector<uint8_t>* out, size_t n) { out->insert(out->end(), n, 0); }

// Reads from the front of the input; every read is bounds-checked.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  size_t pos() const { return pos_; }
  // Whether n more bytes are there; else records what was being read.
  bool Need(size_t n, std::string_view what) {
    if (in_.size() - pos_ >= n) return true;
    err_ = Status::InvalidArgument("spec truncated: " + std::to_string(in_.size()) + " B, " + std::string(what) +
                                   " needs bytes " + std::to_string(pos_) + ".." + std::to_string(pos_ + n - 1));
    return false;
  }
  template <typename T>
  T Get() {
    T v;
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  // Reads n reserved bytes; false (with the error) if any is non-zero.
  bool Reserved(size_t n, std::string_view what) {
    for (size_t i = 0; i < n; ++i) {
      if (in_[pos_ + i] != 0) {
        err_ = Status::InvalidArgument(std::string(what) + ": reserved byte " + std::to_string(pos_ + i) + " is " +
                                       std::to_string(in_[pos_ + i]) + " (allowed 0)");
        return false;
      }
    }
    pos_ += n;
    return true;
  }
  Status error() const { return err_; }

 private:
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  Status err_;
};

}  // namespace

void EncodeTo(const Spec& s, std::vector<uint8_t>* out) {
  const bool keyed = s.key.column != kNoKey;
  Put<uint8_t>(out, kSpecVersion);
  Put<uint8_t>(out, static_cast<uint8_t>(s.columns.size()));
  Put<uint8_t>(out, static_cast<uint8_t>(s.filters.size()));
  Put<uint8_t>(out, static_cast<uint8_t>(s.exprs.size()));
  Put<uint8_t>(out, static_cast<uint8_t>(s.aggs.size()));
  Put<uint8_t>(out, s.key.column);
  PutZeros(out, 2);
  Put<uint32_t>(out, s.groups);
  PutZeros(out, 4);
  for (ElemType t : s.columns) Put<uint8_t>(out, static_cast<uint8_t>(t));
  if (keyed) {
    Put<int64_t>(out, s.key.add);
    Put<int64_t>(out, s.key.div);
    Put<int64_t>(out, s.key.mod);
  }
  for (const Filter& f : s.filters) {
    Put<uint8_t>(out, f.column);
    Put<uint8_t>(out, static_cast<uint8_t>(f.cmp));
    PutZeros(out, 6);
    Put<int64_t>(out, f.int_value);
    Put<double>(out, f.float_value);
  }
  for (const Expr& e : s.exprs) {
    Put<uint8_t>(out, static_cast<uint8_t>(e.size()));
    for (const Node& n : e) {
      Put<uint8_t>(out, static_cast<uint8_t>(n.op));
      Put<uint8_t>(out, n.column);
      PutZeros(out, 6);
      Put<double>(out, n.constant);
    }
  }
  for (const Agg& a : s.aggs) {
    Put<uint8_t>(out, static_cast<uint8_t>(a.kind));
    Put<uint8_t>(out, a.a);
    Put<uint8_t>(out, a.b);
    PutZeros(out, 1);
  }
}

std::vector<uint8_t> Encode(const Spec& s) {
  std::vector<uint8_t> out;
  EncodeTo(s, &out);
  return out;
}

StatusOr<Spec> Decode(std::span<const uint8_t> in, size_t* used) {
  Reader r(in);
  if (!r.Need(kHeadBytes, "the head")) return r.error();
  Spec s;
  const auto version = r.Get<uint8_t>();
  if (version != kSpecVersion) {
    return Bad("spec version " + Str(uint64_t{version}) + " (allowed " + Str(uint64_t{kSpecVersion}) + ")");
  }
  const auto ncol = r.Get<uint8_t>();
  const auto nfilter = r.Get<uint8_t>();
  const auto nexpr = r.Get<uint8_t>();
  const auto nagg = r.Get<uint8_t>();
  s.key.column = r.Get<uint8_t>();
  if (!r.Reserved(2, "head")) return r.error();
  s.groups = r.Get<uint32_t>();
  if (!r.Reserved(4, "head")) return r.error();
  // Counts first, so that an absurd count is named as such rather than as
  // a truncation.
  if (ncol < 1 || ncol > kMaxColumns) {
    return Bad("columns " + Str(uint64_t{ncol}) + " (allowed 1.." + Str(uint64_t{kMaxColumns}) + ")");
  }
  if (nfilter > kMaxFilters) {
    return Bad("filters " + Str(uint64_t{nfilter}) + " (allowed 0.." + Str(uint64_t{kMaxFilters}) + ")");
  }
  if (nexpr > kMaxExprs) {
    return Bad("expressions " + Str(uint64_t{nexpr}) + " (allowed 0.." + Str(uint64_t{kMaxExprs}) + ")");
  }
  if (nagg < 1 || nagg > kMaxAggs) {
    return Bad("aggregates " + Str(uint64_t{nagg}) + " (allowed 1.." + Str(uint64_t{kMaxAggs}) + ")");
  }
  if (!r.Need(ncol, "the column types")) return r.error();
  for (size_t c = 0; c < ncol; ++c) s.columns.push_back(static_cast<ElemType>(r.Get<uint8_t>()));
  if (s.key.column != kNoKey) {
    if (!r.Need(kKeyBytes, "the key")) return r.error();
    s.key.add = r.Get<int64_t>();
    s.key.div = r.Get<int64_t>();
    s.key.mod = r.Get<int64_t>();
  }
  for (size_t i = 0; i < nfilter; ++i) {
    const std::string what = "filter " + Str(uint64_t{i});
    if (!r.Need(kFilterBytes, what)) return r.error();
    Filter f;
    f.column = r.Get<uint8_t>();
    f.cmp = static_cast<Cmp>(r.Get<uint8_t>());
    if (!r.Reserved(6, what)) return r.error();
    f.int_value = r.Get<int64_t>();
    f.float_value = r.Get<double>();
    s.filters.push_back(f);
  }
  for (size_t e = 0; e < nexpr; ++e) {
    const std::string what = "expression " + Str(uint64_t{e});
    if (!r.Need(1, what)) return r.error();
    const auto nodes = r.Get<uint8_t>();
    if (nodes < 1 || nodes > kMaxNodes) {
      return Bad(what + ": nodes " + Str(uint64_t{nodes}) + " (allowed 1.." + Str(uint64_t{kMaxNodes}) + ")");
    }
    Expr x;
    for (size_t i = 0; i < nodes; ++i) {
      const std::string nwhat = what + ": node " + Str(uint64_t{i});
      if (!r.Need(kNodeBytes, nwhat)) return r.error();
      Node n;
      n.op = static_cast<ExprOp>(r.Get<uint8_t>());
      n.column = r.Get<uint8_t>();
      if (!r.Reserved(6, nwhat)) return r.error();
      n.constant = r.Get<double>();
      x.push_back(n);
    }
    s.exprs.push_back(std::move(x));
  }
  for (size_t i = 0; i < nagg; ++i) {
    const std::string what = "aggregate " + Str(uint64_t{i});
    if (!r.Need(kAggBytes, what)) return r.error();
    Agg a;
    a.kind = static_cast<AggKind>(r.Get<uint8_t>());
    a.a = r.Get<uint8_t>();
    a.b = r.Get<uint8_t>();
    if (!r.Reserved(1, what)) return r.error();
    s.aggs.push_back(a);
  }
  if (used != nullptr) {
    *used = r.pos();
  } else if (r.pos() != in.size()) {
    return Bad("spec of " + Str(uint64_t{r.pos()}) + " B followed by " + Str(uint64_t{in.size() - r.pos()}) +
               " trailing bytes");
  }
  SHARRY_RETURN_IF_ERROR(Validate(s));
  return s;
}

}  // namespace sharry::offload
