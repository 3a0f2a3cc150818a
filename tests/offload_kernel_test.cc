// offload_kernel_test: the operator spec (offload/spec.h: Validate and the
// wire form) and the aggregate kernel (offload/kernel.h) against a naive
// row-at-a-time reference written here independently: std::map groups,
// the same contract (each unit's partial from the identities, its rows in
// order; units merged in row order), compared bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "offload/int_divider.h"
#include "offload/kernel.h"
#include "offload/spec.h"

namespace sharry::offload {
namespace {

constexpr ElemType kAllTypes[] = {ElemType::kI8,  ElemType::kU8,  ElemType::kI16, ElemType::kU16, ElemType::kI32,
                                  ElemType::kU32, ElemType::kI64, ElemType::kU64, ElemType::kF32, ElemType::kF64};
constexpr Cmp kAllCmps[] = {Cmp::kLt, Cmp::kLe, Cmp::kGt, Cmp::kGe, Cmp::kEq, Cmp::kNe};

// ---- data -----------------------------------------------------------------

// One column's bytes and where its pieces end (element indices, ascending,
// the last one == rows).
struct Column {
  ElemType type;
  std::vector<uint8_t> bytes;
  std::vector<uint64_t> cuts;
  size_t rows() const { return bytes.size() / ElemSize(type); }
};

template <typename T>
void Append(Column* c, T v) {
  const size_t at = c->bytes.size();
  c->bytes.resize(at + sizeof(T));
  std::memcpy(c->bytes.data() + at, &v, sizeof(T));
}

// Appends a value given as int64 (integer types; truncated to the type) or
// as double (float types).
void AppendValue(Column* c, int64_t i, double d) {
  switch (c->type) {
    case ElemType::kI8: Append(c, static_cast<int8_t>(i)); break;
    case ElemType::kU8: Append(c, static_cast<uint8_t>(i)); break;
    case ElemType::kI16: Append(c, static_cast<int16_t>(i)); break;
    case ElemType::kU16: Append(c, static_cast<uint16_t>(i)); break;
    case ElemType::kI32: Append(c, static_cast<int32_t>(i)); break;
    case ElemType::kU32: Append(c, static_cast<uint32_t>(i)); break;
    case ElemType::kI64: Append(c, i); break;
    case ElemType::kU64: Append(c, static_cast<uint64_t>(i)); break;
    case ElemType::kF32: Append(c, static_cast<float>(d)); break;
    case ElemType::kF64: Append(c, d); break;
  }
}

void CutWhole(Column* c) { c->cuts = {c->rows()}; }

// Random values: integers within +-2^bits (non-negative if `nonneg`) cut to
// the type; floats of mixed magnitude with -0.0 and, if `specials`, inf/NaN.
Column RandomColumn(ElemType t, size_t rows, std::mt19937_64& rng, int bits = 20, bool nonneg = false,
                    bool specials = false) {
  Column c{t, {}, {}};
  const bool is_unsigned = t == ElemType::kU8 || t == ElemType::kU16 || t == ElemType::kU32 || t == ElemType::kU64;
  if (is_unsigned) nonneg = true;
  for (size_t r = 0; r < rows; ++r) {
    int64_t i = static_cast<int64_t>(rng() % (uint64_t{1} << bits));
    if (!nonneg && rng() % 2) i = -i;
    double d = std::ldexp(static_cast<double>(rng() % 1000000) - 500000, static_cast<int>(rng() % 20) - 10);
    const uint64_t pick = rng() % 100;
    if (pick == 0) d = -0.0;
    if (pick == 1) d = 0.0;
    if (specials && pick == 2) d = std::numeric_limits<double>::infinity();
    if (specials && pick == 3) d = -std::numeric_limits<double>::infinity();
    if (specials && pick == 4) d = std::numeric_limits<double>::quiet_NaN();
    AppendValue(&c, i, d);
  }
  CutWhole(&c);
  return c;
}

// Piece layouts: whole (one piece), each element alone, random lengths
// (1..max_elems elements), or fixed byte length.
void CutEach(Column* c) {
  c->cuts.clear();
  for (uint64_t r = 1; r <= c->rows(); ++r) c->cuts.push_back(r);
  if (c->cuts.empty()) c->cuts.push_back(0);
}
void CutRandom(Column* c, std::mt19937_64& rng, uint64_t max_elems) {
  c->cuts.clear();
  uint64_t at = 0;
  while (at < c->rows()) {
    at = std::min<uint64_t>(c->rows(), at + 1 + rng() % max_elems);
    c->cuts.push_back(at);
  }
  if (c->cuts.empty()) c->cuts.push_back(0);
}
void CutBytes(Column* c, size_t piece_bytes) {
  c->cuts.clear();
  const uint64_t per = piece_bytes / ElemSize(c->type);
  for (uint64_t at = per; at < c->rows(); at += per) c->cuts.push_back(at);
  c->cuts.push_back(c->rows());
}

// The pieces of rows [from, to) of a column: its own pieces, sliced.
std::vector<std::span<const uint8_t>> PiecesOf(const Column& c, uint64_t from, uint64_t to) {
  std::vector<std::span<const uint8_t>> out;
  const size_t es = ElemSize(c.type);
  uint64_t start = 0;
  for (uint64_t end : c.cuts) {
    const uint64_t a = std::max(start, from), b = std::min(end, to);
    if (a < b) out.emplace_back(c.bytes.data() + a * es, (b - a) * es);
    start = end;
  }
  return out;
}

// ---- the kernel, unit by unit ----------------------------------------------

// What a run yields: the total's bytes, or the error.
struct Outcome {
  Status status;
  std::vector<uint8_t> bytes;
};

Outcome RunKernel(const Spec& s, const std::vector<Column>& cols, uint64_t unit_rows) {
  Result total(s);
  const uint64_t rows = cols.empty() ? 0 : cols[0].rows();
  std::vector<uint8_t> partial(PartialBytes(s));
  for (uint64_t from = 0; from < rows || (rows == 0 && from == 0); from += unit_rows) {
    const uint64_t to = std::min(rows, from + unit_rows);
    std::vector<std::vector<std::span<const uint8_t>>> pieces;
    for (const Column& c : cols) pieces.push_back(PiecesOf(c, from, to));
    std::vector<Pieces> spans(pieces.begin(), pieces.end());
    Status st = RunUnit(s, to - from, spans, partial, from);
    if (!st.ok()) return {st, {}};
    st = total.Add(partial);
    if (!st.ok()) return {st, {}};
    if (rows == 0) break;
  }
  return {Status::Ok(), std::vector<uint8_t>(total.bytes().begin(), total.bytes().end())};
}

// ---- the reference: one row at a time ---------------------------------------

int64_t RefInt(const Column& c, uint64_t r) {
  const uint8_t* p = c.bytes.data() + r * ElemSize(c.type);
  auto get = [p]<typename T>(T) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
  };
  switch (c.type) {
    case ElemType::kI8: return get(int8_t{});
    case ElemType::kU8: return get(uint8_t{});
    case ElemType::kI16: return get(int16_t{});
    case ElemType::kU16: return get(uint16_t{});
    case ElemType::kI32: return get(int32_t{});
    case ElemType::kU32: return get(uint32_t{});
    case ElemType::kI64: return get(int64_t{});
    case ElemType::kU64: return static_cast<int64_t>(get(uint64_t{}));
    default: ADD_FAILURE() << "RefInt of a float column"; return 0;
  }
}

double RefDouble(const Column& c, uint64_t r) {
  const uint8_t* p = c.bytes.data() + r * ElemSize(c.type);
  if (c.type == ElemType::kF32) {
    float f;
    std::memcpy(&f, p, 4);
    return f;
  }
  if (c.type == ElemType::kF64) {
    double d;
    std::memcpy(&d, p, 8);
    return d;
  }
  if (c.type == ElemType::kU64) return static_cast<double>(static_cast<uint64_t>(RefInt(c, r)));
  return static_cast<double>(RefInt(c, r));
}

double RefEval(const Expr& x, const std::vector<Column>& cols, uint64_t r) {
  std::vector<double> st;
  auto pop = [&st] {
    double v = st.back();
    st.pop_back();
    return v;
  };
  for (const Node& n : x) {
    switch (n.op) {
      case ExprOp::kColumn: st.push_back(RefDouble(cols[n.column], r)); break;
      case ExprOp::kConst: st.push_back(n.constant); break;
      case ExprOp::kSqrt: st.push_back(std::sqrt(pop())); break;
      case ExprOp::kAbs: st.push_back(std::fabs(pop())); break;
      case ExprOp::kNeg: st.push_back(-pop()); break;
      case ExprOp::kDup: st.push_back(st.back()); break;
      case ExprOp::kSwap: std::swap(st[st.size() - 1], st[st.size() - 2]); break;
      case ExprOp::kSelectGt: {
        const double y = pop(), xx = pop(), b = pop(), a = pop();
        st.push_back(a > b ? xx : y);
        break;
      }
      default: {
        const double b = pop(), a = pop();
        switch (n.op) {
          case ExprOp::kAdd: st.push_back(a + b); break;
          case ExprOp::kSub: st.push_back(a - b); break;
          case ExprOp::kMul: st.push_back(a * b); break;
          case ExprOp::kDiv: st.push_back(a / b); break;
          case ExprOp::kMin: st.push_back(std::min(a, b)); break;
          case ExprOp::kMax: st.push_back(std::max(a, b)); break;
          default: ADD_FAILURE() << "bad op"; st.push_back(0);
        }
      }
    }
  }
  EXPECT_EQ(st.size(), 1u);
  return st.back();
}

bool RefPasses(const Spec& s, const std::vector<Column>& cols, uint64_t r) {
  for (const Filter& f : s.filters) {
    const Column& c = cols[f.column];
    int order;  // -1, 0, 1, or 2 (unordered: NaN)
    if (IsInteger(c.type)) {
      const int64_t v = RefInt(c, r);
      order = v < f.int_value ? -1 : v > f.int_value ? 1 : 0;
    } else {
      const double v = RefDouble(c, r);
      order = v < f.float_value ? -1 : v > f.float_value ? 1 : v == f.float_value ? 0 : 2;
    }
    bool ok = false;
    switch (f.cmp) {
      case Cmp::kLt: ok = order == -1; break;
      case Cmp::kLe: ok = order == -1 || order == 0; break;
      case Cmp::kGt: ok = order == 1; break;
      case Cmp::kGe: ok = order == 1 || order == 0; break;
      case Cmp::kEq: ok = order == 0; break;
      case Cmp::kNe: ok = order != 0; break;
    }
    if (!ok) return false;
  }
  return true;
}

// One slot of the reference: exact integer (__int128, checked against
// int64 at every step) or double.
struct RefSlot {
  __int128 i = 0;
  double d = 0;
};

bool FitsInt64(__int128 v) {
  return v >= std::numeric_limits<int64_t>::min() && v <= std::numeric_limits<int64_t>::max();
}

// The reference total: units of unit_rows rows, each from the identities
// over its rows in order, merged in order. std::nullopt and *code on error.
std::optional<std::vector<uint8_t>> RefRun(const Spec& s, const std::vector<Column>& cols, uint64_t unit_rows,
                                           StatusCode* code) {
  const size_t na = s.aggs.size();
  const uint64_t rows = cols[0].rows();
  auto identity = [&](size_t a) {
    RefSlot id;
    const AggKind k = s.aggs[a].kind;
    if (k == AggKind::kMin) {
      id.i = std::numeric_limits<int64_t>::max();
      id.d = std::numeric_limits<double>::infinity();
    } else if (k == AggKind::kMax) {
      id.i = std::numeric_limits<int64_t>::min();
      id.d = -std::numeric_limits<double>::infinity();
    }
    return id;
  };
  std::map<int64_t, std::vector<RefSlot>> total;
  auto slots = [&](std::map<int64_t, std::vector<RefSlot>>& m, int64_t g) -> std::vector<RefSlot>& {
    auto it = m.find(g);
    if (it == m.end()) {
      std::vector<RefSlot> v;
      for (size_t a = 0; a < na; ++a) v.push_back(identity(a));
      it = m.emplace(g, v).first;
    }
    return it->second;
  };
  auto fail = [&](StatusCode c) {
    *code = c;
    return std::nullopt;
  };
  for (uint64_t from = 0; from < rows; from += unit_rows) {
    std::map<int64_t, std::vector<RefSlot>> unit;
    for (uint64_t r = from; r < std::min(rows, from + unit_rows); ++r) {
      if (!RefPasses(s, cols, r)) continue;
      int64_t g = 0;
      if (s.key.column != kNoKey) {
        const __int128 k = static_cast<__int128>(RefInt(cols[s.key.column], r)) + s.key.add;
        if (!FitsInt64(k)) return fail(StatusCode::kOutOfRange);
        g = static_cast<int64_t>(k) / s.key.div;
        if (s.key.mod != 0) g %= s.key.mod;
        if (g < 0 || g >= static_cast<int64_t>(s.groups)) return fail(StatusCode::kOutOfRange);
      }
      std::vector<RefSlot>& v = slots(unit, g);
      for (size_t a = 0; a < na; ++a) {
        const Agg& ag = s.aggs[a];
        if (IsIntegerAgg(s, a)) {
          if (ag.kind == AggKind::kCount) {
            v[a].i += 1;
            continue;
          }
          const Column& ca = cols[s.exprs[ag.a][0].column];
          const Column& cb = ag.kind == AggKind::kSumProd ? cols[s.exprs[ag.b][0].column] : ca;
          const int64_t x = RefInt(ca, r), y = RefInt(cb, r);
          if ((ca.type == ElemType::kU64 && x < 0) || (cb.type == ElemType::kU64 && y < 0)) {
            return fail(StatusCode::kOutOfRange);
          }
          switch (ag.kind) {
            case AggKind::kSum: v[a].i += x; break;
            case AggKind::kSumSq:
            case AggKind::kSumProd: {
              const __int128 p = static_cast<__int128>(x) * y;
              if (!FitsInt64(p)) return fail(StatusCode::kOutOfRange);
              v[a].i += p;
              break;
            }
            case AggKind::kMin: v[a].i = std::min<__int128>(v[a].i, x); break;
            case AggKind::kMax: v[a].i = std::max<__int128>(v[a].i, x); break;
            default: break;
          }
          if (!FitsInt64(v[a].i)) return fail(StatusCode::kOutOfRange);
        } else {
          const double x = RefEval(s.exprs[ag.a], cols, r);
          switch (ag.kind) {
            case AggKind::kSum: v[a].d += x; break;
            case AggKind::kSumSq: v[a].d += x * x; break;
            case AggKind::kSumProd: v[a].d += x * RefEval(s.exprs[ag.b], cols, r); break;
            case AggKind::kMin: if (x < v[a].d) v[a].d = x; break;
            case AggKind::kMax: if (x > v[a].d) v[a].d = x; break;
            default: break;
          }
        }
      }
    }
    for (auto& [g, v] : unit) {
      std::vector<RefSlot>& t = slots(total, g);
      for (size_t a = 0; a < na; ++a) {
        const AggKind k = s.aggs[a].kind;
        if (k == AggKind::kMin) {
          t[a].i = std::min(t[a].i, v[a].i);
          if (v[a].d < t[a].d) t[a].d = v[a].d;
        } else if (k == AggKind::kMax) {
          t[a].i = std::max(t[a].i, v[a].i);
          if (v[a].d > t[a].d) t[a].d = v[a].d;
        } else {
          t[a].i += v[a].i;
          t[a].d += v[a].d;
          if (IsIntegerAgg(s, a) && !FitsInt64(t[a].i)) return fail(StatusCode::kOutOfRange);
        }
      }
    }
  }
  std::vector<uint8_t> out(size_t{s.groups} * na * 8);
  for (uint32_t g = 0; g < s.groups; ++g) {
    auto it = total.find(g);
    for (size_t a = 0; a < na; ++a) {
      const RefSlot v = it == total.end() ? identity(a) : it->second[a];
      uint8_t* p = out.data() + (size_t{g} * na + a) * 8;
      if (IsIntegerAgg(s, a)) {
        const int64_t i = static_cast<int64_t>(v.i);
        std::memcpy(p, &i, 8);
      } else {
        std::memcpy(p, &v.d, 8);
      }
    }
  }
  return out;
}

// Slot-by-slot comparison for a readable failure; NaNs compare equal only
// when `nan_equal` (the random data may hold NaNs of different payloads,
// whose propagation depends on operand order inside an instruction).
void ExpectSameBytes(const Spec& s, const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
                     bool nan_equal = false) {
  ASSERT_EQ(got.size(), want.size());
  if (std::memcmp(got.data(), want.data(), got.size()) == 0) return;
  const size_t na = s.aggs.size();
  int shown = 0;
  for (size_t slot = 0; slot < got.size() / 8; ++slot) {
    uint64_t x, y;
    std::memcpy(&x, got.data() + slot * 8, 8);
    std::memcpy(&y, want.data() + slot * 8, 8);
    if (x == y) continue;
    const size_t a = slot % na;
    if (!IsIntegerAgg(s, a) && nan_equal && std::isnan(std::bit_cast<double>(x)) &&
        std::isnan(std::bit_cast<double>(y))) {
      continue;
    }
    if (++shown > 5) break;
    ADD_FAILURE() << "group " << slot / na << " aggregate " << a << " (" << AggKindName(s.aggs[a].kind) << "): kernel "
                  << (IsIntegerAgg(s, a) ? std::to_string(static_cast<int64_t>(x))
                                         : std::to_string(std::bit_cast<double>(x)))
                  << " reference "
                  << (IsIntegerAgg(s, a) ? std::to_string(static_cast<int64_t>(y))
                                         : std::to_string(std::bit_cast<double>(y)))
                  << " (bits " << std::hex << x << " vs " << y << std::dec << ")";
  }
}

// Runs kernel and reference with unit length `unit` and expects the same
// outcome (bytes, or both failing with the same code).
void ExpectMatches(const Spec& s, const std::vector<Column>& cols, uint64_t unit, bool nan_equal = false) {
  ASSERT_TRUE(Validate(s).ok()) << Validate(s);
  StatusCode ref_code = StatusCode::kOk;
  const auto want = RefRun(s, cols, unit, &ref_code);
  const Outcome got = RunKernel(s, cols, unit);
  if (!want) {
    EXPECT_EQ(got.status.code(), ref_code) << got.status;
    return;
  }
  ASSERT_TRUE(got.status.ok()) << got.status;
  ExpectSameBytes(s, got.bytes, *want, nan_equal);
}

Expr E(std::initializer_list<Node> nodes) { return Expr(nodes); }
Node Col(uint8_t c) { return {ExprOp::kColumn, c, 0}; }
Node Const(double v) { return {ExprOp::kConst, 0, v}; }
Node Op(ExprOp op) { return {op, 0, 0}; }

// A small integer key column (i64 in [0, 24)) as column 0.
Column KeyColumn(size_t rows, std::mt19937_64& rng, int64_t groups = 24) {
  Column c{ElemType::kI64, {}, {}};
  for (size_t r = 0; r < rows; ++r) Append(&c, static_cast<int64_t>(rng() % groups));
  CutWhole(&c);
  return c;
}

// ---- every element type, aggregate, comparison, op -----------------------------

TEST(OffloadKernelTest, EveryElemTypeAndAggregateMatchesReference) {
  for (ElemType t : kAllTypes) {
    SCOPED_TRACE(std::string(ElemTypeName(t)));
    std::mt19937_64 rng(static_cast<uint64_t>(t));
    const size_t rows = 3000;  // not a multiple of kBatch
    std::vector<Column> cols = {KeyColumn(rows, rng), RandomColumn(t, rows, rng, 20),
                                RandomColumn(t, rows, rng, 20)};
    CutRandom(&cols[0], rng, 700);
    CutRandom(&cols[1], rng, 300);
    CutWhole(&cols[2]);
    for (bool keyed : {false, true}) {
      Spec s;
      s.Column(ElemType::kI64);
      s.Column(t);
      s.Column(t);
      if (keyed) {
        s.key.column = 0;
        s.groups = 24;
      }
      const uint8_t x = s.ColumnExpr(1), y = s.ColumnExpr(2);
      const uint8_t dx = s.AddExpr(E({Col(1), Const(0.5), Op(ExprOp::kMul)}));
      s.Aggregate(AggKind::kCount);
      for (AggKind k : {AggKind::kSum, AggKind::kMin, AggKind::kMax, AggKind::kSumSq}) {
        s.Aggregate(k, x);
        s.Aggregate(k, dx);
      }
      s.Aggregate(AggKind::kSumProd, x, y);
      // kMaxAggs is 8: split into two specs.
      Spec s1 = s, s2 = s;
      s1.aggs.assign(s.aggs.begin(), s.aggs.begin() + 5);
      s2.aggs.assign(s.aggs.begin() + 5, s.aggs.end());
      EXPECT_EQ(IsIntegerAgg(s1, 1), IsInteger(t));  // sum of a column
      EXPECT_FALSE(IsIntegerAgg(s1, 2));              // sum of an expression
      for (uint64_t unit : {uint64_t{1000}, uint64_t{4096}, uint64_t{77}}) {
        ExpectMatches(s1, cols, unit);
        ExpectMatches(s2, cols, unit);
      }
    }
  }
}

TEST(OffloadKernelTest, EveryComparisonOnEveryTypeMatchesReference) {
  for (ElemType t : kAllTypes) {
    for (Cmp cmp : kAllCmps) {
      SCOPED_TRACE(std::string(ElemTypeName(t)) + " cmp " + std::to_string(static_cast<int>(cmp)));
      std::mt19937_64 rng(static_cast<uint64_t>(t) * 100 + static_cast<uint64_t>(cmp));
      const size_t rows = 1500;
      // Few distinct values, so that kEq and kNe both hold for many rows.
      std::vector<Column> cols = {KeyColumn(rows, rng, 8), RandomColumn(t, rows, rng, 3)};
      CutRandom(&cols[1], rng, 100);
      Spec s;
      s.Column(ElemType::kI64);
      s.Column(t);
      s.key.column = 0;
      s.groups = 8;
      // The median value: every comparison holds for some rows, not all.
      std::vector<uint64_t> order(rows);
      for (size_t r = 0; r < rows; ++r) order[r] = r;
      auto value = [&](uint64_t r) { return RefDouble(cols[1], r); };
      std::sort(order.begin(), order.end(), [&](uint64_t a, uint64_t b) { return value(a) < value(b); });
      Filter f{.column = 1, .cmp = cmp};
      if (IsInteger(t)) {
        f.int_value = RefInt(cols[1], order[rows / 2]);
      } else {
        f.float_value = RefDouble(cols[1], order[rows / 2]);
      }
      s.filters.push_back(f);
      s.Aggregate(AggKind::kCount);
      s.Aggregate(AggKind::kSum, s.ColumnExpr(1));
      s.Aggregate(AggKind::kSum, s.AddExpr(E({Col(1), Const(3), Op(ExprOp::kAdd)})));
      ExpectMatches(s, cols, 512);
      // The filter does filter: neither all nor no rows pass.
      const Outcome o = RunKernel(s, cols, 512);
      ASSERT_TRUE(o.status.ok());
      Result r(s);
      std::copy(o.bytes.begin(), o.bytes.end(), r.bytes().begin());
      int64_t passed = 0;
      for (uint32_t g = 0; g < 8; ++g) passed += r.Int(g, 0);
      EXPECT_GT(passed, 0);
      EXPECT_LT(passed, static_cast<int64_t>(rows));
    }
  }
}

TEST(OffloadKernelTest, SeveralFiltersAreAConjunction) {
  std::mt19937_64 rng(7);
  const size_t rows = 2000;
  std::vector<Column> cols = {KeyColumn(rows, rng), RandomColumn(ElemType::kI32, rows, rng, 10),
                              RandomColumn(ElemType::kF64, rows, rng)};
  CutEach(&cols[1]);
  CutRandom(&cols[2], rng, 300);
  Spec s;
  s.Column(ElemType::kI64);
  s.Column(ElemType::kI32);
  s.Column(ElemType::kF64);
  s.key.column = 0;
  s.groups = 24;
  s.filters.push_back({.column = 1, .cmp = Cmp::kGt, .int_value = -300});
  s.filters.push_back({.column = 1, .cmp = Cmp::kLe, .int_value = 500});
  s.filters.push_back({.column = 2, .cmp = Cmp::kGe, .float_value = -1000.0});
  s.filters.push_back({.column = 0, .cmp = Cmp::kNe, .int_value = 3});
  s.Aggregate(AggKind::kCount);
  s.Aggregate(AggKind::kSum, s.ColumnExpr(2));
  s.Aggregate(AggKind::kMax, s.ColumnExpr(1));
  ExpectMatches(s, cols, 700);
  const Outcome o = RunKernel(s, cols, 700);
  ASSERT_TRUE(o.status.ok());
  int64_t count3;
  std::memcpy(&count3, o.bytes.data() + 3 * 3 * 8, 8);
  EXPECT_EQ(count3, 0);  // group 3 filtered out
}

TEST(OffloadKernelTest, EveryExpressionOpMatchesReference) {
  std::mt19937_64 rng(11);
  const size_t rows = 1111;
  std::vector<Column> cols = {KeyColumn(rows, rng), RandomColumn(ElemType::kF64, rows, rng),
                              RandomColumn(ElemType::kI16, rows, rng, 12), RandomColumn(ElemType::kF32, rows, rng)};
  CutRandom(&cols[1], rng, 50);
  CutEach(&cols[3]);
  const std::vector<Expr> exprs = {
      E({Col(1), Col(2), Op(ExprOp::kAdd)}),
      E({Col(1), Col(2), Op(ExprOp::kSub)}),
      E({Col(1), Col(3), Op(ExprOp::kMul)}),
      E({Col(1), Col(2), Op(ExprOp::kDiv)}),  // division by 0: inf / NaN
      E({Col(1), Col(3), Op(ExprOp::kMin)}),
      E({Col(1), Col(3), Op(ExprOp::kMax)}),
      E({Col(1), Op(ExprOp::kAbs), Op(ExprOp::kSqrt)}),
      E({Col(3), Op(ExprOp::kSqrt)}),  // NaN for negatives
      E({Col(2), Op(ExprOp::kNeg)}),
      E({Col(1), Op(ExprOp::kDup), Op(ExprOp::kMul), Col(2), Op(ExprOp::kSub)}),
      E({Col(1), Col(2), Op(ExprOp::kSwap), Op(ExprOp::kDiv)}),
      E({Col(1), Col(3), Col(2), Const(2.5), Op(ExprOp::kSelectGt)}),
      E({Const(1), Const(2), Op(ExprOp::kSwap), Op(ExprOp::kSub), Op(ExprOp::kDup), Op(ExprOp::kNeg),
         Op(ExprOp::kSwap), Op(ExprOp::kDup), Op(ExprOp::kAdd), Op(ExprOp::kMul)}),
      // A full stack of kMaxStack values.
      E({Col(1), Col(2), Col(3), Const(1), Col(1), Col(2), Col(3), Const(2), Op(ExprOp::kAdd), Op(ExprOp::kSub),
         Op(ExprOp::kMul), Op(ExprOp::kDiv), Op(ExprOp::kMin), Op(ExprOp::kMax), Op(ExprOp::kAdd)}),
      // kDup of a computed value, then an op on the copy below it.
      E({Col(1), Const(1), Op(ExprOp::kAdd), Op(ExprOp::kDup), Op(ExprOp::kSqrt), Op(ExprOp::kSwap),
         Op(ExprOp::kNeg), Op(ExprOp::kSub)}),
  };
  for (size_t i = 0; i < exprs.size(); ++i) {
    SCOPED_TRACE("expression " + std::to_string(i));
    Spec s;
    s.Column(ElemType::kI64);
    s.Column(ElemType::kF64);
    s.Column(ElemType::kI16);
    s.Column(ElemType::kF32);
    s.key.column = 0;
    s.groups = 24;
    const uint8_t e = s.AddExpr(exprs[i]);
    s.Aggregate(AggKind::kSum, e);
    s.Aggregate(AggKind::kMin, e);
    s.Aggregate(AggKind::kMax, e);
    s.Aggregate(AggKind::kSumSq, e);
    s.Aggregate(AggKind::kSumProd, e, s.ColumnExpr(1));
    ExpectMatches(s, cols, 500, /*nan_equal=*/true);
  }
}

// ---- keys, pieces, batches -------------------------------------------------------

TEST(OffloadKernelTest, KeysWithAddDivModMatchReference) {
  struct Case {
    int64_t add, div, mod;
    uint32_t groups;
  };
  const Case cases[] = {{0, 1, 0, 1000}, {17, 7, 24, 24}, {0, 3600, 24, 24}, {4 * 86400, 86400, 7, 7},
                        {-5, 1, 0, 1000}, {0, 1, 65536, 65536}, {1000, 1000, 0, 1003}};
  for (const Case& c : cases) {
    SCOPED_TRACE("add " + std::to_string(c.add) + " div " + std::to_string(c.div) + " mod " + std::to_string(c.mod));
    std::mt19937_64 rng(static_cast<uint64_t>(c.div * 31 + c.mod));
    const size_t rows = 5000;
    Column key{ElemType::kU32, {}, {}};
    for (size_t r = 0; r < rows; ++r) {
      // Values whose key is in range for the case.
      uint64_t v;
      if (c.mod != 0) {
        v = rng() % 2000000000;
      } else {
        v = static_cast<uint64_t>(static_cast<int64_t>(rng() % (uint64_t{c.groups} * c.div)) - c.add);
      }
      Append(&key, static_cast<uint32_t>(v));
    }
    CutRandom(&key, rng, 400);
    std::vector<Column> cols = {key, RandomColumn(ElemType::kF64, rows, rng)};
    CutWhole(&cols[1]);
    Spec s;
    s.Column(ElemType::kU32);
    s.Column(ElemType::kF64);
    s.key = {.column = 0, .add = c.add, .div = c.div, .mod = c.mod};
    s.groups = c.groups;
    s.Aggregate(AggKind::kCount);
    s.Aggregate(AggKind::kSum, s.ColumnExpr(1));
    ExpectMatches(s, cols, 2048);
  }
}

TEST(OffloadKernelTest, IntDividerIsCDivision) {
  // The keys' / and % by multiplication against the / and % operators:
  // small, power-of-two and random divisors, extreme and random values.
  std::mt19937_64 rng(64);
  std::vector<int64_t> divisors = {1, 2, 3, 5, 7, 24, 60, 3600, 86400, 1000000007,
                                   std::numeric_limits<int64_t>::max(), std::numeric_limits<int64_t>::max() - 1};
  for (int k = 1; k < 63; ++k) {
    divisors.push_back(int64_t{1} << k);
    divisors.push_back((int64_t{1} << k) - 1);
    divisors.push_back((int64_t{1} << k) + 1);
  }
  for (int i = 0; i < 200; ++i) divisors.push_back(static_cast<int64_t>(rng() >> (1 + rng() % 63)) | 1);
  for (int64_t d : divisors) {
    const internal::IntDivider div(d);
    std::vector<int64_t> xs = {0, 1, -1, d, -d, d - 1, 1 - d, std::numeric_limits<int64_t>::max(),
                               std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::min() + 1};
    if (d < std::numeric_limits<int64_t>::max()) {
      xs.push_back(d + 1);
      xs.push_back(-d - 1);
    }
    for (int i = 0; i < 300; ++i) {
      xs.push_back(static_cast<int64_t>(rng() >> (rng() % 64)) * (rng() % 2 ? 1 : -1));
    }
    for (int64_t x : xs) {
      ASSERT_EQ(div.Div(x), x / d) << x << " / " << d;
      ASSERT_EQ(div.Mod(x), x % d) << x << " % " << d;
    }
  }
}

TEST(OffloadKernelTest, PieceLayoutsAndRowCountsDoNotChangeTheResult) {
  // For a fixed unit length the pieces' boundaries must not matter: the
  // same bytes whatever the layout, and the reference's.
  for (uint64_t rows : {uint64_t{1}, uint64_t{255}, uint64_t{256}, uint64_t{257}, uint64_t{1000}, uint64_t{4099}}) {
    SCOPED_TRACE("rows " + std::to_string(rows));
    std::mt19937_64 rng(rows);
    std::vector<Column> cols = {KeyColumn(rows, rng), RandomColumn(ElemType::kF32, rows, rng),
                                RandomColumn(ElemType::kI8, rows, rng, 7)};
    Spec s;
    s.Column(ElemType::kI64);
    s.Column(ElemType::kF32);
    s.Column(ElemType::kI8);
    s.key.column = 0;
    s.groups = 24;
    s.Aggregate(AggKind::kCount);
    s.Aggregate(AggKind::kSum, s.AddExpr(E({Col(1), Col(2), Op(ExprOp::kMul)})));
    s.Aggregate(AggKind::kSumSq, s.ColumnExpr(2));
    std::optional<std::vector<uint8_t>> first;
    for (int layout = 0; layout < 5; ++layout) {
      for (Column& c : cols) {
        switch (layout) {
          case 0: CutWhole(&c); break;
          case 1: CutEach(&c); break;
          case 2: CutRandom(&c, rng, 3); break;
          case 3: CutRandom(&c, rng, 300); break;  // straddling batches
          case 4: CutBytes(&c, 4096); break;
        }
      }
      ExpectMatches(s, cols, 1024);
      const Outcome o = RunKernel(s, cols, 1024);
      ASSERT_TRUE(o.status.ok()) << o.status;
      if (!first) first = o.bytes;
      EXPECT_EQ(o.bytes, *first) << "layout " << layout;
    }
  }
}

TEST(OffloadKernelTest, NoRowPassingLeavesTheIdentities) {
  std::mt19937_64 rng(3);
  const size_t rows = 600;
  std::vector<Column> cols = {KeyColumn(rows, rng, 4), RandomColumn(ElemType::kI32, rows, rng, 10)};
  CutWhole(&cols[0]);
  CutRandom(&cols[1], rng, 50);
  Spec s;
  s.Column(ElemType::kI64);
  s.Column(ElemType::kI32);
  s.key.column = 0;
  s.groups = 4;
  s.filters.push_back({.column = 1, .cmp = Cmp::kGt, .int_value = int64_t{1} << 40});
  const uint8_t x = s.ColumnExpr(1);
  const uint8_t dx = s.AddExpr(E({Col(1), Const(2), Op(ExprOp::kMul)}));
  s.Aggregate(AggKind::kCount);
  s.Aggregate(AggKind::kSum, x);
  s.Aggregate(AggKind::kMin, x);
  s.Aggregate(AggKind::kMax, x);
  s.Aggregate(AggKind::kMin, dx);
  s.Aggregate(AggKind::kMax, dx);
  s.Aggregate(AggKind::kSum, dx);
  ExpectMatches(s, cols, 256);
  const Outcome o = RunKernel(s, cols, 256);
  ASSERT_TRUE(o.status.ok());
  Result r(s);
  std::copy(o.bytes.begin(), o.bytes.end(), r.bytes().begin());
  for (uint32_t g = 0; g < 4; ++g) {
    EXPECT_EQ(r.Int(g, 0), 0);
    EXPECT_EQ(r.Int(g, 1), 0);
    EXPECT_EQ(r.Int(g, 2), std::numeric_limits<int64_t>::max());
    EXPECT_EQ(r.Int(g, 3), std::numeric_limits<int64_t>::min());
    EXPECT_EQ(r.Value(g, 4), std::numeric_limits<double>::infinity());
    EXPECT_EQ(r.Value(g, 5), -std::numeric_limits<double>::infinity());
    EXPECT_EQ(std::bit_cast<uint64_t>(r.Value(g, 6)), 0u);
  }
}

TEST(OffloadKernelTest, ZeroRowUnitGivesTheIdentities) {
  Spec s;
  s.Column(ElemType::kF64);
  s.Aggregate(AggKind::kMin, s.ColumnExpr(0));
  std::vector<uint8_t> partial(PartialBytes(s), 0xAB);
  std::vector<Pieces> cols(1);
  ASSERT_TRUE(RunUnit(s, 0, cols, partial).ok());
  double d;
  std::memcpy(&d, partial.data(), 8);
  EXPECT_EQ(d, std::numeric_limits<double>::infinity());
}

// ---- randomized specs ----------------------------------------------------------

// A random valid expression over the columns (depth-tracked postfix).
Expr RandomExpr(std::mt19937_64& rng, size_t ncol) {
  Expr x;
  int depth = 0;
  const size_t len = 1 + rng() % 12;
  while (x.size() < kMaxNodes) {
    const bool done = x.size() >= len;
    if (done && depth == 1) break;
    std::vector<ExprOp> ok;
    if (!done && depth < static_cast<int>(kMaxStack)) {
      ok.push_back(ExprOp::kColumn);
      ok.push_back(ExprOp::kConst);
      ok.push_back(ExprOp::kColumn);
    }
    if (depth >= 1) {
      for (ExprOp op : {ExprOp::kSqrt, ExprOp::kAbs, ExprOp::kNeg}) {
        if (!done) ok.push_back(op);
      }
      if (!done && depth < static_cast<int>(kMaxStack)) ok.push_back(ExprOp::kDup);
    }
    if (depth >= 2) {
      for (ExprOp op : {ExprOp::kAdd, ExprOp::kSub, ExprOp::kMul, ExprOp::kDiv, ExprOp::kMin, ExprOp::kMax}) {
        ok.push_back(op);
      }
      if (!done) ok.push_back(ExprOp::kSwap);
    }
    if (depth >= 4) ok.push_back(ExprOp::kSelectGt);
    if (ok.empty()) break;
    const ExprOp op = ok[rng() % ok.size()];
    Node n{op, 0, 0};
    if (op == ExprOp::kColumn) n.column = static_cast<uint8_t>(rng() % ncol);
    if (op == ExprOp::kConst) n.constant = std::ldexp(static_cast<double>(rng() % 2001) - 1000, -3);
    x.push_back(n);
    switch (op) {
      case ExprOp::kColumn: case ExprOp::kConst: case ExprOp::kDup: ++depth; break;
      case ExprOp::kSqrt: case ExprOp::kAbs: case ExprOp::kNeg: case ExprOp::kSwap: break;
      case ExprOp::kSelectGt: depth -= 3; break;
      default: --depth;
    }
  }
  return x;
}

// A random valid spec; integer columns hold values within +-2^bits, the key
// column (if any) non-negative values and mod == groups, so that keys are
// in range.
Spec RandomSpec(std::mt19937_64& rng) {
  Spec s;
  const size_t ncol = 1 + rng() % kMaxColumns;
  for (size_t c = 0; c < ncol; ++c) s.Column(kAllTypes[rng() % 10]);
  std::vector<uint8_t> ints;
  for (size_t c = 0; c < ncol; ++c) {
    if (IsInteger(s.columns[c])) ints.push_back(static_cast<uint8_t>(c));
  }
  if (!ints.empty() && rng() % 4 != 0) {
    s.key.column = ints[rng() % ints.size()];
    s.key.add = static_cast<int64_t>(rng() % 100);
    s.key.div = 1 + static_cast<int64_t>(rng() % 5);
    s.groups = 1 + static_cast<uint32_t>(rng() % 50);
    s.key.mod = s.groups;
  }
  const size_t nf = rng() % (kMaxFilters + 1);
  for (size_t i = 0; i < nf; ++i) {
    Filter f;
    f.column = static_cast<uint8_t>(rng() % ncol);
    f.cmp = kAllCmps[rng() % 6];
    if (IsInteger(s.columns[f.column])) {
      f.int_value = static_cast<int64_t>(rng() % 64) - 32;
    } else {
      f.float_value = static_cast<double>(rng() % 2000) - 1000;
    }
    s.filters.push_back(f);
  }
  const size_t ne = 1 + rng() % kMaxExprs;
  for (size_t e = 0; e < ne; ++e) {
    if (rng() % 3 == 0) {
      s.ColumnExpr(static_cast<uint8_t>(rng() % ncol));
    } else {
      s.AddExpr(RandomExpr(rng, ncol));
    }
  }
  const size_t na = 1 + rng() % kMaxAggs;
  for (size_t a = 0; a < na; ++a) {
    const auto k = static_cast<AggKind>(1 + rng() % 6);
    const auto ea = static_cast<uint8_t>(k == AggKind::kCount ? 0 : rng() % ne);
    const auto eb = static_cast<uint8_t>(k == AggKind::kSumProd ? rng() % ne : 0);
    s.Aggregate(k, ea, eb);
  }
  return s;
}

TEST(OffloadKernelTest, RandomSpecsOnRandomDataMatchReference) {
  std::mt19937_64 rng(20240613);
  int failures_expected = 0, runs = 0;
  for (int iter = 0; iter < 300; ++iter) {
    SCOPED_TRACE("iteration " + std::to_string(iter));
    const Spec s = RandomSpec(rng);
    ASSERT_TRUE(Validate(s).ok()) << Validate(s);
    const size_t rows = rng() % 3000;
    std::vector<Column> cols;
    for (size_t c = 0; c < s.columns.size(); ++c) {
      const bool is_key = c == s.key.column;
      // Mostly small integers, now and then a full-width column (overflow
      // and u64-above-INT64_MAX errors must match the reference too).
      const int bits = is_key ? 30 : rng() % 8 == 0 ? 63 : 5 + static_cast<int>(rng() % 20);
      cols.push_back(RandomColumn(s.columns[c], rows, rng, bits, is_key, /*specials=*/rng() % 2 == 0));
      switch (rng() % 4) {
        case 0: CutWhole(&cols.back()); break;
        case 1: CutRandom(&cols.back(), rng, 5); break;
        case 2: CutRandom(&cols.back(), rng, 500); break;
        case 3: CutBytes(&cols.back(), 4096); break;
      }
    }
    const uint64_t unit = 1 + rng() % 2000;
    StatusCode code = StatusCode::kOk;
    if (rows > 0 && !RefRun(s, cols, unit, &code)) ++failures_expected;
    if (rows > 0) {
      ExpectMatches(s, cols, unit, /*nan_equal=*/true);
      ++runs;
    }
    if (HasFailure()) break;
  }
  // The generator exercises both outcomes.
  EXPECT_GT(failures_expected, 0);
  EXPECT_LT(failures_expected, runs / 2);
}

// ---- the wire form --------------------------------------------------------------

// A spec that uses every part of the wire form.
Spec FullSpec() {
  Spec s;
  s.Column(ElemType::kI64);
  s.Column(ElemType::kF32);
  s.Column(ElemType::kU16);
  s.key = {.column = 0, .add = -7, .div = 3600, .mod = 24};
  s.groups = 24;
  s.filters.push_back({.column = 1, .cmp = Cmp::kGe, .float_value = 1.5});
  s.filters.push_back({.column = 2, .cmp = Cmp::kNe, .int_value = 9});
  s.ColumnExpr(1);
  s.AddExpr(E({Col(1), Col(2), Op(ExprOp::kSub), Const(-2.25), Op(ExprOp::kMul)}));
  s.Aggregate(AggKind::kCount);
  s.Aggregate(AggKind::kSum, 1);
  s.Aggregate(AggKind::kSumProd, 0, 1);
  return s;
}

TEST(OffloadSpecTest, WireFormIsTheDrawnLayout) {
  const Spec s = FullSpec();
  const std::vector<uint8_t> w = Encode(s);
  const size_t expect = 16 + 3 + 24 + 2 * 24 + (1 + 16) + (1 + 5 * 16) + 3 * 4;
  ASSERT_EQ(w.size(), expect);
  EXPECT_EQ(w[0], 1);   // version
  EXPECT_EQ(w[1], 3);   // columns
  EXPECT_EQ(w[2], 2);   // filters
  EXPECT_EQ(w[3], 2);   // exprs
  EXPECT_EQ(w[4], 3);   // aggs
  EXPECT_EQ(w[5], 0);   // key column
  EXPECT_EQ(w[8], 24);  // groups, little-endian
  EXPECT_EQ(w[9], 0);
  EXPECT_EQ(w[16], static_cast<uint8_t>(ElemType::kI64));
  EXPECT_EQ(w[18], static_cast<uint8_t>(ElemType::kU16));
  int64_t div;
  std::memcpy(&div, w.data() + 19 + 8, 8);
  EXPECT_EQ(div, 3600);
  EXPECT_EQ(w[19 + 24], 1);  // filter 0 column
  EXPECT_EQ(w[19 + 24 + 1], static_cast<uint8_t>(Cmp::kGe));
  double fv;
  std::memcpy(&fv, w.data() + 19 + 24 + 16, 8);
  EXPECT_EQ(fv, 1.5);
  const size_t aggs_at = w.size() - 12;
  EXPECT_EQ(w[aggs_at + 4], static_cast<uint8_t>(AggKind::kSum));
  EXPECT_EQ(w[aggs_at + 5], 1);
  EXPECT_EQ(w[aggs_at + 8 + 2], 1);  // kSumProd's b
  // A spec without a key has no KeySpec.
  Spec n;
  n.Column(ElemType::kU8);
  n.Aggregate(AggKind::kCount);
  EXPECT_EQ(Encode(n).size(), 16u + 1 + 4);
  EXPECT_EQ(Encode(n)[5], kNoKey);
}

void ExpectSameSpec(const Spec& a, const Spec& b) {
  EXPECT_EQ(Encode(a), Encode(b));
  ASSERT_EQ(a.columns, b.columns);
  ASSERT_EQ(a.filters.size(), b.filters.size());
  for (size_t i = 0; i < a.filters.size(); ++i) {
    EXPECT_EQ(a.filters[i].column, b.filters[i].column);
    EXPECT_EQ(a.filters[i].cmp, b.filters[i].cmp);
    EXPECT_EQ(a.filters[i].int_value, b.filters[i].int_value);
    EXPECT_EQ(std::bit_cast<uint64_t>(a.filters[i].float_value), std::bit_cast<uint64_t>(b.filters[i].float_value));
  }
  EXPECT_EQ(a.key.column, b.key.column);
  EXPECT_EQ(a.key.add, b.key.add);
  EXPECT_EQ(a.key.div, b.key.div);
  EXPECT_EQ(a.key.mod, b.key.mod);
  EXPECT_EQ(a.groups, b.groups);
  ASSERT_EQ(a.exprs.size(), b.exprs.size());
  for (size_t e = 0; e < a.exprs.size(); ++e) {
    ASSERT_EQ(a.exprs[e].size(), b.exprs[e].size());
    for (size_t i = 0; i < a.exprs[e].size(); ++i) {
      EXPECT_EQ(a.exprs[e][i].op, b.exprs[e][i].op);
      EXPECT_EQ(a.exprs[e][i].column, b.exprs[e][i].column);
      EXPECT_EQ(std::bit_cast<uint64_t>(a.exprs[e][i].constant), std::bit_cast<uint64_t>(b.exprs[e][i].constant));
    }
  }
  ASSERT_EQ(a.aggs.size(), b.aggs.size());
  for (size_t i = 0; i < a.aggs.size(); ++i) {
    EXPECT_EQ(a.aggs[i].kind, b.aggs[i].kind);
    EXPECT_EQ(a.aggs[i].a, b.aggs[i].a);
    EXPECT_EQ(a.aggs[i].b, b.aggs[i].b);
  }
}

TEST(OffloadSpecTest, RandomSpecsRoundTrip) {
  std::mt19937_64 rng(99);
  for (int i = 0; i < 500; ++i) {
    const Spec s = RandomSpec(rng);
    const std::vector<uint8_t> w = Encode(s);
    size_t used = 0;
    StatusOr<Spec> d = Decode(w, &used);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(used, w.size());
    ExpectSameSpec(s, *d);
    // EncodeTo appends; two specs back to back decode one after the other.
    std::vector<uint8_t> two = {0xEE};
    EncodeTo(s, &two);
    EncodeTo(FullSpec(), &two);
    StatusOr<Spec> first = Decode(std::span(two).subspan(1), &used);
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_EQ(used, w.size());
    StatusOr<Spec> second = Decode(std::span(two).subspan(1 + used));
    ASSERT_TRUE(second.ok()) << second.status();
    ExpectSameSpec(FullSpec(), *second);
  }
}

TEST(OffloadSpecTest, DecodeRejectsEveryTruncation) {
  const std::vector<uint8_t> w = Encode(FullSpec());
  for (size_t len = 0; len < w.size(); ++len) {
    size_t used = 12345;
    StatusOr<Spec> d = Decode(std::span(w).first(len), &used);
    ASSERT_FALSE(d.ok()) << "length " << len;
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(d.status().message().find("truncated"), std::string::npos) << len << ": " << d.status();
    EXPECT_EQ(used, 12345u);
    EXPECT_FALSE(Decode(std::span(w).first(len)).ok());
  }
  EXPECT_TRUE(Decode(w).ok());
}

TEST(OffloadSpecTest, DecodeTrailingBytesOnlyWithUsed) {
  std::vector<uint8_t> w = Encode(FullSpec());
  const size_t n = w.size();
  w.push_back(0);
  w.push_back(7);
  size_t used = 0;
  EXPECT_TRUE(Decode(w, &used).ok());
  EXPECT_EQ(used, n);
  StatusOr<Spec> d = Decode(w);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("2 trailing bytes"), std::string::npos) << d.status();
}

// Offsets in FullSpec's wire form.
constexpr size_t kColumnsAt = 16;
constexpr size_t kKeyAt = kColumnsAt + 3;
constexpr size_t kFiltersAt = kKeyAt + 24;
constexpr size_t kExprsAt = kFiltersAt + 48;
constexpr size_t kExpr1At = kExprsAt + 17;  // its node count; nodes from +1
constexpr size_t kAggsAt = kExpr1At + 1 + 5 * 16;

template <typename T>
std::vector<uint8_t> Patched(size_t at, T v, std::vector<uint8_t> w = Encode(FullSpec())) {
  std::memcpy(w.data() + at, &v, sizeof v);
  return w;
}

TEST(OffloadSpecTest, DecodeNamesEachMalformedField) {
  struct Case {
    const char* what;
    std::vector<uint8_t> wire;
    const char* text;
  };
  const Case cases[] = {
      {"version", Patched<uint8_t>(0, 2), "spec version 2 (allowed 1)"},
      {"columns 0", Patched<uint8_t>(1, 0), "columns 0 (allowed 1..8)"},
      {"columns 9", Patched<uint8_t>(1, 9), "columns 9 (allowed 1..8)"},
      {"filters", Patched<uint8_t>(2, 5), "filters 5 (allowed 0..4)"},
      {"exprs", Patched<uint8_t>(3, 9), "expressions 9 (allowed 0..8)"},
      {"aggs 0", Patched<uint8_t>(4, 0), "aggregates 0 (allowed 1..8)"},
      {"aggs 9", Patched<uint8_t>(4, 9), "aggregates 9 (allowed 1..8)"},
      {"key column", Patched<uint8_t>(5, 3), "key: column 3 of 3"},
      {"key column float", Patched<uint8_t>(5, 1), "key: column 1 is f32 (allowed: an integer column)"},
      {"head reserved 6", Patched<uint8_t>(6, 1), "head: reserved byte 6 is 1 (allowed 0)"},
      {"head reserved 13", Patched<uint8_t>(13, 4), "head: reserved byte 13 is 4 (allowed 0)"},
      {"groups 70000", Patched<uint32_t>(8, 70000), "groups 70000 (allowed 1..65536)"},
      {"groups 0", Patched<uint32_t>(8, 0), "groups 0 (allowed 1..65536)"},
      {"column type", Patched<uint8_t>(kColumnsAt + 1, 11), "column 1: type 11 (allowed 1..10)"},
      {"column type 0", Patched<uint8_t>(kColumnsAt, 0), "column 0: type 0 (allowed 1..10)"},
      {"key div", Patched<int64_t>(kKeyAt + 8, 0), "key: div 0 (allowed >= 1)"},
      {"key mod", Patched<int64_t>(kKeyAt + 16, -1), "key: mod -1 (allowed >= 0)"},
      {"filter column", Patched<uint8_t>(kFiltersAt, 5), "filter 0: column 5 of 3"},
      {"filter cmp", Patched<uint8_t>(kFiltersAt + 24 + 1, 7), "filter 1: cmp 7 (allowed 1..6)"},
      {"filter reserved", Patched<uint8_t>(kFiltersAt + 24 + 4, 1), "filter 1: reserved byte"},
      {"filter int on float", Patched<int64_t>(kFiltersAt + 8, 3), "filter 0: int_value 3 on f32 column 1"},
      {"filter float on int", Patched<double>(kFiltersAt + 24 + 16, 0.5), "filter 1: float_value 0.5"},
      {"expr nodes 0", Patched<uint8_t>(kExprsAt, 0), "expression 0: nodes 0 (allowed 1..32)"},
      {"expr nodes 33", Patched<uint8_t>(kExprsAt, 33), "expression 0: nodes 33 (allowed 1..32)"},
      {"node op", Patched<uint8_t>(kExprsAt + 1, 15), "expression 0: node 0: op 15 (allowed 1..14)"},
      {"node column", Patched<uint8_t>(kExprsAt + 2, 3), "expression 0: node 0: column 3 of 3"},
      {"node reserved", Patched<uint8_t>(kExpr1At + 1 + 16 + 7, 1), "expression 1: node 1: reserved byte"},
      {"column on kSub", Patched<uint8_t>(kExpr1At + 1 + 32 + 1, 1),
       "expression 1: node 2: column 1 on kSub (allowed 0: only kColumn reads a column)"},
      {"constant on kColumn", Patched<double>(kExpr1At + 1 + 8, 1.0),
       "expression 1: node 0: constant 1.000000 on kColumn (allowed 0: only kConst has a constant)"},
      {"underflow",
       Patched<uint8_t>(kExpr1At + 1 + 16, static_cast<uint8_t>(ExprOp::kSub), Patched<uint8_t>(kExpr1At + 1 + 17, 0)),
       "expression 1: stack underflow at node 1 (kSub needs 2 values, the stack holds 1)"},
      {"leaves 2", Patched<uint8_t>(kExpr1At + 1 + 64, static_cast<uint8_t>(ExprOp::kSwap)),
       "expression 1: leaves 2 values (allowed exactly 1)"},
      {"agg kind", Patched<uint8_t>(kAggsAt + 8, 9), "aggregate 2: kind 9 (allowed 1..6)"},
      {"agg a", Patched<uint8_t>(kAggsAt + 4 + 1, 2), "aggregate 1: a: expression 2 of 2"},
      {"agg b", Patched<uint8_t>(kAggsAt + 8 + 2, 5), "aggregate 2: b: expression 5 of 2"},
      {"agg b unused", Patched<uint8_t>(kAggsAt + 4 + 2, 1), "aggregate 1: b 1 on kSum (allowed 0: only kSumProd"},
      {"count a", Patched<uint8_t>(kAggsAt + 1, 1), "aggregate 0: a 1 on kCount"},
      {"agg reserved", Patched<uint8_t>(kAggsAt + 3, 1), "aggregate 0: reserved byte"},
  };
  for (const Case& c : cases) {
    StatusOr<Spec> d = Decode(c.wire);
    ASSERT_FALSE(d.ok()) << c.what;
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument) << c.what;
    EXPECT_NE(d.status().message().find(c.text), std::string::npos)
        << c.what << ": got \"" << d.status().message() << "\", want \"" << c.text << "\"";
  }
}

TEST(OffloadSpecTest, ValidateNamesWhatTheWireCannotCarry) {
  Spec s;
  s.Column(ElemType::kI64);
  s.Aggregate(AggKind::kCount);
  EXPECT_TRUE(Validate(s).ok());
  Spec t = s;
  t.groups = 2;
  EXPECT_NE(Validate(t).message().find("groups 2 (allowed 1 without a key column)"), std::string::npos);
  t = s;
  t.key.div = 4;
  EXPECT_NE(Validate(t).message().find("without a key column"), std::string::npos);
  t = s;
  t.exprs.push_back(E({Const(1), Const(2), Const(3), Const(4), Const(5), Const(6), Const(7), Const(8), Const(9)}));
  EXPECT_NE(Validate(t).message().find("expression 0: stack overflow at node 8 (depth 9, allowed up to 8)"),
            std::string::npos)
      << Validate(t);
  t = s;
  t.exprs.push_back(E({Col(0), Col(0), Op(ExprOp::kSelectGt)}));
  EXPECT_NE(Validate(t).message().find("stack underflow at node 2 (kSelectGt needs 4 values"), std::string::npos)
      << Validate(t);
  t = s;
  t.columns.clear();
  EXPECT_NE(Validate(t).message().find("columns 0 (allowed 1..8)"), std::string::npos);
  t = s;
  t.aggs.clear();
  EXPECT_NE(Validate(t).message().find("aggregates 0 (allowed 1..8)"), std::string::npos);
}

// ---- errors at run time -------------------------------------------------------

Status RunOne(const Spec& s, const std::vector<Column>& cols, uint64_t first_row = 0) {
  std::vector<std::vector<std::span<const uint8_t>>> pieces;
  for (const Column& c : cols) pieces.push_back(PiecesOf(c, 0, c.rows()));
  std::vector<Pieces> spans(pieces.begin(), pieces.end());
  std::vector<uint8_t> partial(PartialBytes(s));
  return RunUnit(s, cols[0].rows(), spans, partial, first_row);
}

TEST(OffloadKernelTest, IntegerOverflowIsAnErrorNamingAggregateAndGroup) {
  Column c{ElemType::kI64, {}, {}};
  for (int i = 0; i < 300; ++i) Append(&c, i == 260 ? std::numeric_limits<int64_t>::max() - 5 : int64_t{1});
  CutWhole(&c);
  Column k{ElemType::kU8, {}, {}};
  for (int i = 0; i < 300; ++i) Append(&k, uint8_t{2});
  CutWhole(&k);
  Spec s;
  s.Column(ElemType::kI64);
  s.Column(ElemType::kU8);
  s.key.column = 1;
  s.groups = 3;
  s.Aggregate(AggKind::kCount);
  s.Aggregate(AggKind::kSum, s.ColumnExpr(0));
  Status st = RunOne(s, {c, k}, 1000);
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("aggregate 1 (kSum) of group 2 overflows int64 at row 1260"), std::string::npos) << st;
  // As a double (an expression), no overflow.
  Spec d = s;
  d.aggs[1].a = d.AddExpr(E({Col(0), Const(1), Op(ExprOp::kMul)}));
  EXPECT_TRUE(RunOne(d, {c, k}).ok());
  // Squares overflow in the multiplication.
  Column q{ElemType::kI32, {}, {}};
  for (int i = 0; i < 10; ++i) Append(&q, i == 4 ? std::numeric_limits<int32_t>::min() : int32_t{3});
  CutWhole(&q);
  Spec sq;
  sq.Column(ElemType::kI32);
  sq.Aggregate(AggKind::kSumSq, sq.ColumnExpr(0));
  EXPECT_TRUE(RunOne(sq, {q}).ok());  // 2^62 + 9*9 fits
  q.bytes.clear();
  for (int i = 0; i < 10; ++i) Append(&q, i >= 4 ? std::numeric_limits<int32_t>::min() : int32_t{3});
  st = RunOne(sq, {q});
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("aggregate 0 (kSumSq) of group 0 overflows int64 at row 5"), std::string::npos) << st;
  // Merge overflow.
  Spec m;
  m.Column(ElemType::kI64);
  m.Aggregate(AggKind::kSum, m.ColumnExpr(0));
  Result r(m);
  std::vector<uint8_t> p(8);
  const int64_t big = std::numeric_limits<int64_t>::max() - 1;
  std::memcpy(p.data(), &big, 8);
  ASSERT_TRUE(r.Add(p).ok());
  st = r.Add(p);
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("aggregate 0 (kSum) of group 0 overflows int64"), std::string::npos) << st;
  EXPECT_EQ(r.units, 1u);
}

TEST(OffloadKernelTest, U64AboveInt64MaxInAnIntegerAggregateIsAnError) {
  Column c{ElemType::kU64, {}, {}};
  for (int i = 0; i < 50; ++i) Append(&c, i == 33 ? (uint64_t{1} << 63) + 1 : static_cast<uint64_t>(i));
  CutWhole(&c);
  Spec s;
  s.Column(ElemType::kU64);
  s.Aggregate(AggKind::kMax, s.ColumnExpr(0));
  Status st = RunOne(s, {c});
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("column 0 (u64) value 9223372036854775809 of row 33 above INT64_MAX"), std::string::npos)
      << st;
  // Filtered out: fine. As a double: the unsigned value.
  s.filters.push_back({.column = 0, .cmp = Cmp::kGe, .int_value = 0});  // u64 compares as int64 bits
  EXPECT_TRUE(RunOne(s, {c}).ok());
  Spec d;
  d.Column(ElemType::kU64);
  d.Aggregate(AggKind::kMax, d.AddExpr(E({Col(0), Const(0), Op(ExprOp::kAdd)})));
  std::vector<uint8_t> partial(PartialBytes(d));
  const std::span<const uint8_t> one(c.bytes);
  std::vector<Pieces> spans = {Pieces(&one, 1)};
  ASSERT_TRUE(RunUnit(d, 50, spans, partial).ok());
  double mx;
  std::memcpy(&mx, partial.data(), 8);
  EXPECT_EQ(mx, 0x1p63);
}

TEST(OffloadKernelTest, GroupKeyOutOfRangeIsAnError) {
  Column c{ElemType::kI32, {}, {}};
  for (int i = 0; i < 100; ++i) Append(&c, i == 77 ? int32_t{-3} : int32_t{i % 24});
  std::mt19937_64 rng(1);
  CutRandom(&c, rng, 10);
  Spec s;
  s.Column(ElemType::kI32);
  s.key.column = 0;
  s.groups = 24;
  s.Aggregate(AggKind::kCount);
  Status st = RunOne(s, {c});
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("group key -3 of row 77 outside [0, 24)"), std::string::npos) << st;
  st = RunOne(s, {c}, 5000);
  EXPECT_NE(st.message().find("of row 5077 "), std::string::npos) << st;
  // A row the filter drops is not keyed.
  s.filters.push_back({.column = 0, .cmp = Cmp::kGe, .int_value = 0});
  EXPECT_TRUE(RunOne(s, {c}).ok());
  // Too large, and value + add overflowing.
  Column big{ElemType::kI64, {}, {}};
  Append(&big, int64_t{-5});
  Append(&big, std::numeric_limits<int64_t>::max() - 2);
  CutWhole(&big);
  Spec b;
  b.Column(ElemType::kI64);
  b.key = {.column = 0, .add = 0, .div = 1, .mod = 0};
  b.groups = 5;
  b.Aggregate(AggKind::kCount);
  st = RunOne(b, {big});
  EXPECT_NE(st.message().find("group key -5 of row 0 outside [0, 5)"), std::string::npos) << st;
  b.groups = 6;
  b.key.add = 10;
  st = RunOne(b, {big});
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("group key of row 1: column 0 value 9223372036854775805 + add 10 overflows int64"),
            std::string::npos)
      << st;
  // An overflow whose wrapped value would land in range is still refused:
  // (INT64_MIN + 2) - 10 wraps to INT64_MAX - 7, / 2^62 = 1.
  Column low{ElemType::kI64, {}, {}};
  Append(&low, std::numeric_limits<int64_t>::min() + 2);
  CutWhole(&low);
  b.key = {.column = 0, .add = -10, .div = int64_t{1} << 62, .mod = 0};
  b.groups = 4;
  st = RunOne(b, {low});
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("+ add -10 overflows int64"), std::string::npos) << st;
}

TEST(OffloadKernelTest, PiecesAndSizesAreChecked) {
  Spec s;
  s.Column(ElemType::kI64);
  s.Column(ElemType::kF32);
  s.Aggregate(AggKind::kCount);
  std::vector<uint8_t> a(1024 * 8), f(4096);
  std::vector<uint8_t> partial(PartialBytes(s));
  const std::span<const uint8_t> pa(a);
  std::span<const uint8_t> pf[2] = {std::span<const uint8_t>(f).first(2048),
                                    std::span<const uint8_t>(f).subspan(2048, 2044)};
  std::vector<Pieces> cols = {Pieces(&pa, 1), Pieces(pf, 2)};
  Status st = RunUnit(s, 1024, cols, partial);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("column 1: pieces hold 4092 B, 1024 rows of f32 need 4096 B"), std::string::npos) << st;
  pf[1] = std::span<const uint8_t>(f).subspan(2046, 2050);
  pf[0] = std::span<const uint8_t>(f).first(2046);
  st = RunUnit(s, 1024, cols, partial);
  EXPECT_NE(st.message().find("column 1: piece 0 holds 2046 B, not whole f32 elements of 4 B"), std::string::npos)
      << st;
  pf[0] = std::span<const uint8_t>(f).first(2048);
  pf[1] = std::span<const uint8_t>(f).subspan(2048);
  EXPECT_TRUE(RunUnit(s, 1024, cols, partial).ok());
  st = RunUnit(s, 1024, std::span(cols).first(1), partial);
  EXPECT_NE(st.message().find("columns: 1 given, the spec has 2"), std::string::npos) << st;
  std::vector<uint8_t> small(4);
  st = RunUnit(s, 1024, cols, small);
  EXPECT_NE(st.message().find("partial: 4 B, the spec's is 8 B"), std::string::npos) << st;
  Spec bad = s;
  bad.aggs[0].kind = static_cast<AggKind>(0);
  EXPECT_EQ(RunUnit(bad, 1024, cols, partial).code(), StatusCode::kInvalidArgument);
}

// ---- the Taxi-like query of Fig. 8 ----------------------------------------------

TEST(OffloadKernelTest, TaxiLikeQueryMatchesAHandWrittenLoop) {
  // Per hour of pickup: count, sum(dropoff - pickup) as double,
  // sum(distance / ((dropoff - pickup) / 3600)).
  std::mt19937_64 rng(2016);
  const size_t rows = 100000, unit = 16384;
  Column pickup{ElemType::kI64, {}, {}}, dropoff{ElemType::kI64, {}, {}}, dist{ElemType::kF64, {}, {}};
  for (size_t r = 0; r < rows; ++r) {
    const int64_t p = 1451606400 + static_cast<int64_t>(rng() % (366 * 86400));
    Append(&pickup, p);
    Append(&dropoff, p + 60 + static_cast<int64_t>(rng() % 3600));
    Append(&dist, static_cast<double>(rng() % 3000) / 100.0);
  }
  CutBytes(&pickup, 4096);
  CutBytes(&dropoff, 4096);
  CutBytes(&dist, 4096);
  Spec s;
  const uint8_t cp = s.Column(ElemType::kI64), cd = s.Column(ElemType::kI64), cx = s.Column(ElemType::kF64);
  s.key = {.column = cp, .add = 0, .div = 3600, .mod = 24};
  s.groups = 24;
  s.Aggregate(AggKind::kCount);
  s.Aggregate(AggKind::kSum, s.AddExpr(E({Col(cd), Col(cp), Op(ExprOp::kSub)})));
  s.Aggregate(AggKind::kSum, s.AddExpr(E({Col(cx), Col(cd), Col(cp), Op(ExprOp::kSub), Const(3600),
                                            Op(ExprOp::kDiv), Op(ExprOp::kDiv)})));
  const Outcome got = RunKernel(s, {pickup, dropoff, dist}, unit);
  ASSERT_TRUE(got.status.ok()) << got.status;

  // The hand-written loop, with the same per-unit, then in-order merge.
  std::vector<int64_t> cnt(24, 0);
  std::vector<double> dur(24, 0), speed(24, 0);
  auto i64 = [](const Column& c, size_t r) {
    int64_t v;
    std::memcpy(&v, c.bytes.data() + r * 8, 8);
    return v;
  };
  for (size_t from = 0; from < rows; from += unit) {
    std::vector<int64_t> ucnt(24, 0);
    std::vector<double> udur(24, 0), uspeed(24, 0);
    for (size_t r = from; r < std::min(rows, from + unit); ++r) {
      const int64_t p = i64(pickup, r), d = i64(dropoff, r);
      double x;
      std::memcpy(&x, dist.bytes.data() + r * 8, 8);
      const int64_t h = p / 3600 % 24;
      ++ucnt[h];
      const double secs = static_cast<double>(d) - static_cast<double>(p);
      udur[h] += secs;
      uspeed[h] += x / (secs / 3600.0);
    }
    for (int h = 0; h < 24; ++h) {
      cnt[h] += ucnt[h];
      dur[h] += udur[h];
      speed[h] += uspeed[h];
    }
  }
  Result r(s);
  std::copy(got.bytes.begin(), got.bytes.end(), r.bytes().begin());
  int64_t total = 0;
  for (uint32_t h = 0; h < 24; ++h) {
    EXPECT_EQ(r.Int(h, 0), cnt[h]) << "hour " << h;
    EXPECT_EQ(std::bit_cast<uint64_t>(r.Value(h, 1)), std::bit_cast<uint64_t>(dur[h])) << "hour " << h;
    EXPECT_EQ(std::bit_cast<uint64_t>(r.Value(h, 2)), std::bit_cast<uint64_t>(speed[h])) << "hour " << h;
    total += r.Int(h, 0);
  }
  EXPECT_EQ(total, static_cast<int64_t>(rows));
}

TEST(OffloadKernelTest, MergeOrderAndResultAccessors) {
  // Min/max keep the first of equal values (-0.0 vs +0.0), in a unit and
  // across units (Merge): the row-order answer whatever the unit length.
  Spec s;
  s.Column(ElemType::kF64);
  s.Aggregate(AggKind::kMin, s.ColumnExpr(0));
  s.Aggregate(AggKind::kMax, 0);
  for (bool neg_first : {false, true}) {
    for (uint64_t unit : {uint64_t{1}, uint64_t{2}, uint64_t{4}}) {
      Column c{ElemType::kF64, {}, {}};
      for (double v : {neg_first ? -0.0 : 0.0, neg_first ? 0.0 : -0.0, 0.0, -0.0}) Append(&c, v);
      CutWhole(&c);
      const Outcome o = RunKernel(s, {c}, unit);
      ASSERT_TRUE(o.status.ok());
      double mn, mx;
      std::memcpy(&mn, o.bytes.data(), 8);
      std::memcpy(&mx, o.bytes.data() + 8, 8);
      EXPECT_EQ(std::signbit(mn), neg_first) << "unit " << unit;
      EXPECT_EQ(std::signbit(mx), neg_first) << "unit " << unit;
    }
  }
  Result r(s);
  EXPECT_EQ(r.groups(), 1u);
  EXPECT_EQ(r.Value(0, 0), std::numeric_limits<double>::infinity());
  EXPECT_EQ(r.Int(0, 0), std::numeric_limits<int64_t>::max());  // saturated
  std::vector<uint8_t> wrong(8);
  EXPECT_EQ(r.Add(wrong).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.units, 0u);
}

}  // namespace
}  // namespace sharry::offload
