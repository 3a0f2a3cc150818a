// The aggregate kernel (kernel.h): RunUnit's batched interpretation, the
// partial layout, Merge and Result.
//
// RunUnit, per batch of up to kBatch rows:
//   1. gather: each column something reads is copied out of its pieces (a
//      batch may straddle pieces) into an int64 array (integer columns: for
//      filters, the key and integer aggregates) and/or a double array (for
//      the expressions and float filters);
//   2. filter: a 0/1 mask per row (the conjunction), compacted into a
//      selection vector unless every row passes (the dense case);
//   3. expressions: each expression a double aggregate reads, node by node
//      over the whole batch (one tight loop per node), on a stack of
//      kBatch-double buffers taken from a small pool (a node's output never
//      aliases its inputs, so the loops vectorise);
//   4. keys: the group of each row (checked only for rows that pass);
//   5. accumulate: aggregate by aggregate, the passing rows in row order into
//      agg-major accumulators (int64 or double), which are written to the
//      group-major partial at the end.
// Each slot sees its rows in row order, whatever the batching: that is the
// determinism contract of kernel.h. Built with -ffp-contract=off (no fused
// multiply-adds: a*b+c rounds twice everywhere, on every host).
//
// Thread-safety: RunUnit uses a thread_local accumulator scratch; distinct
// threads may run units concurrently.
#include "offload/kernel.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "offload/int_divider.h"

namespace sharry::offload {

namespace {

constexpr size_t kSlotBytes = 8;

int64_t IntIdentity(AggKind k) {
  if (k == AggKind::kMin) return std::numeric_limits<int64_t>::max();
  if (k == AggKind::kMax) return std::numeric_limits<int64_t>::min();
  return 0;
}
double DoubleIdentity(AggKind k) {
  if (k == AggKind::kMin) return std::numeric_limits<double>::infinity();
  if (k == AggKind::kMax) return -std::numeric_limits<double>::infinity();
  return 0;
}

template <typename T>
T LoadSlot(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
template <typename T>
void StoreSlot(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

std::string AggName(const Spec& s, size_t a) {
  return "aggregate " + std::to_string(a) + " (" + std::string(AggKindName(s.aggs[a].kind)) + ")";
}

// ---- gather -----------------------------------------------------------------

using IntLoader = void (*)(const uint8_t* src, size_t n, int64_t* out);
using FloatLoader = void (*)(const uint8_t* src, size_t n, double* out);

template <typename T>
void LoadInts(const uint8_t* src, size_t n, int64_t* __restrict out) {
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + i * sizeof(T), sizeof(T));
    out[i] = static_cast<int64_t>(v);  // u64: its int64 bits
  }
}
template <typename T>
void LoadFloats(const uint8_t* src, size_t n, double* __restrict out) {
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, src + i * sizeof(T), sizeof(T));
    out[i] = static_cast<double>(v);
  }
}

IntLoader IntLoaderOf(ElemType t) {
  switch (t) {
    case ElemType::kI8: return LoadInts<int8_t>;
    case ElemType::kU8: return LoadInts<uint8_t>;
    case ElemType::kI16: return LoadInts<int16_t>;
    case ElemType::kU16: return LoadInts<uint16_t>;
    case ElemType::kI32: return LoadInts<int32_t>;
    case ElemType::kU32: return LoadInts<uint32_t>;
    case ElemType::kI64: return LoadInts<int64_t>;
    case ElemType::kU64: return LoadInts<uint64_t>;
    default: return nullptr;
  }
}
FloatLoader FloatLoaderOf(ElemType t) {
  switch (t) {
    case ElemType::kI8: return LoadFloats<int8_t>;
    case ElemType::kU8: return LoadFloats<uint8_t>;
    case ElemType::kI16: return LoadFloats<int16_t>;
    case ElemType::kU16: return LoadFloats<uint16_t>;
    case ElemType::kI32: return LoadFloats<int32_t>;
    case ElemType::kU32: return LoadFloats<uint32_t>;
    case ElemType::kI64: return LoadFloats<int64_t>;
    case ElemType::kU64: return LoadFloats<uint64_t>;  // the unsigned value, rounded
    case ElemType::kF32: return LoadFloats<float>;
    case ElemType::kF64: return LoadFloats<double>;
  }
  return nullptr;
}

// Where a column's next row is: piece index and byte offset in it.
struct Cursor {
  size_t piece = 0;
  size_t off = 0;
};

// Copies n rows of a column from its pieces at cursor `c`, through `load`
// (IntLoader or FloatLoader), and advances the cursor. The pieces were
// checked to hold the unit's rows, so they hold these n.
template <typename Out, typename Loader>
void Gather(Pieces pieces, size_t esize, Loader load, Cursor* c, size_t n, Out* out) {
  while (n > 0) {
    const std::span<const uint8_t> p = pieces[c->piece];
    const size_t avail = (p.size() - c->off) / esize;
    const size_t m = std::min(n, avail);
    load(p.data() + c->off, m, out);
    out += m;
    n -= m;
    c->off += m * esize;
    if (c->off == p.size()) {
      ++c->piece;
      c->off = 0;
    }
  }
}

// ---- expressions ------------------------------------------------------------

// Evaluates expressions over a batch of n rows, node by node, on a stack
// whose entries are a column's array, a buffer from a small refcounted pool
// (kDup shares one), or a constant kept as a scalar (kConst, and what only
// constants feed: folded with the same IEEE operations, so the values are
// those of a row-by-row evaluation). A node's output buffer never aliases
// its inputs (the loops are __restrict and vectorise); the last node writes
// straight into the caller's `out`.
class ExprEvaluator {
 public:
  // Returns the values of expression x: a column's array, or `out`.
  const double* Eval(const Expr& x, const std::array<const double*, kMaxColumns>& cols, size_t n, double* out) {
    size_t d = 0;
    for (size_t at = 0; at < x.size(); ++at) {
      const Node& node = x[at];
      out_ = at + 1 == x.size() ? out : nullptr;
      switch (node.op) {
        case ExprOp::kColumn: stack_[d++] = {cols[node.column], -1, false, 0}; break;
        case ExprOp::kConst: stack_[d++] = {nullptr, -1, true, node.constant}; break;
        case ExprOp::kAdd: Binary(&d, n, [](double a, double b) { return a + b; }); break;
        case ExprOp::kSub: Binary(&d, n, [](double a, double b) { return a - b; }); break;
        case ExprOp::kMul: Binary(&d, n, [](double a, double b) { return a * b; }); break;
        case ExprOp::kDiv: Binary(&d, n, [](double a, double b) { return a / b; }); break;
        case ExprOp::kMin: Binary(&d, n, [](double a, double b) { return b < a ? b : a; }); break;
        case ExprOp::kMax: Binary(&d, n, [](double a, double b) { return a < b ? b : a; }); break;
        case ExprOp::kSqrt: Unary(&d, n, [](double a) { return std::sqrt(a); }); break;
        case ExprOp::kAbs: Unary(&d, n, [](double a) { return std::fabs(a); }); break;
        case ExprOp::kNeg: Unary(&d, n, [](double a) { return -a; }); break;
        case ExprOp::kDup:
          stack_[d] = stack_[d - 1];
          if (stack_[d].buf >= 0) ++refs_[stack_[d].buf];
          ++d;
          break;
        case ExprOp::kSwap: std::swap(stack_[d - 2], stack_[d - 1]); break;
        case ExprOp::kSelectGt: {
          for (size_t k = 1; k <= 4; ++k) Materialize(&stack_[d - k], n);
          double* __restrict r = Target();
          const double* __restrict a = stack_[d - 4].p;
          const double* __restrict b = stack_[d - 3].p;
          const double* __restrict xv = stack_[d - 2].p;
          const double* __restrict yv = stack_[d - 1].p;
          for (size_t i = 0; i < n; ++i) r[i] = a[i] > b[i] ? xv[i] : yv[i];
          for (size_t k = 1; k <= 4; ++k) Release(stack_[d - k]);
          d -= 3;
          stack_[d - 1] = Result(r);
          break;
        }
      }
    }
    // Validate: exactly one value left.
    Entry top = stack_[0];
    if (top.is_const) {
      std::fill_n(out, n, top.c);
      return out;
    }
    if (top.buf >= 0) {  // (the last node wrote `out` itself; a kDup'd buffer cannot end an expression)
      std::memcpy(out, top.p, n * sizeof(double));
      Release(top);
    }
    return top.p == out || top.buf >= 0 ? out : top.p;
  }

 private:
  struct Entry {
    const double* p = nullptr;  // the values (not for a constant)
    int buf = -1;               // pool buffer holding them, or -1 (a column's array, `out`, a constant)
    bool is_const = false;
    double c = 0;
  };
  static constexpr int kPool = kMaxStack + 1;  // a full stack plus one result

  // Where the current node writes: `out` for the last node, else a free pool buffer.
  double* Target() {
    if (out_ != nullptr) return out_;
    for (int b = 0; b < kPool; ++b) {
      if (refs_[b] == 0) {
        refs_[b] = 1;
        target_buf_ = b;
        return pool_[b];
      }
    }
    return nullptr;  // unreachable: at most kMaxStack entries are live, and one output
  }
  Entry Result(double* r) {
    const int b = out_ != nullptr ? -1 : target_buf_;
    return {r, b, false, 0};
  }
  void Release(const Entry& e) {
    if (e.buf >= 0) --refs_[e.buf];
  }
  // A constant operand as an array (for the ops not specialised on one).
  void Materialize(Entry* e, size_t n) {
    if (!e->is_const) return;
    double* const saved = out_;  // a constant never goes to `out`
    out_ = nullptr;
    double* r = Target();
    out_ = saved;
    std::fill_n(r, n, e->c);
    *e = {r, target_buf_, false, 0};
  }
  template <typename F>
  void Binary(size_t* d, size_t n, F f) {
    Entry& ea = stack_[*d - 2];
    const Entry eb = stack_[*d - 1];
    --*d;
    if (ea.is_const && eb.is_const) {
      ea.c = f(ea.c, eb.c);
      return;
    }
    double* __restrict r = Target();
    if (eb.is_const) {
      const double* __restrict a = ea.p;
      const double c = eb.c;
      for (size_t i = 0; i < n; ++i) r[i] = f(a[i], c);
    } else if (ea.is_const) {
      const double c = ea.c;
      const double* __restrict b = eb.p;
      for (size_t i = 0; i < n; ++i) r[i] = f(c, b[i]);
    } else {
      const double* __restrict a = ea.p;
      const double* __restrict b = eb.p;
      for (size_t i = 0; i < n; ++i) r[i] = f(a[i], b[i]);
    }
    Release(ea);
    Release(eb);
    ea = Result(r);
  }
  template <typename F>
  void Unary(size_t* d, size_t n, F f) {
    Entry& ea = stack_[*d - 1];
    if (ea.is_const) {
      ea.c = f(ea.c);
      return;
    }
    double* __restrict r = Target();
    const double* __restrict a = ea.p;
    for (size_t i = 0; i < n; ++i) r[i] = f(a[i]);
    Release(ea);
    ea = Result(r);
  }

  std::array<Entry, kMaxStack> stack_;
  std::array<int, kPool> refs_{};
  double* out_ = nullptr;  // set while the last node runs
  int target_buf_ = -1;    // the pool buffer Target() took
  alignas(64) double pool_[kPool][kBatch];
};

// ---- accumulation -------------------------------------------------------------

// Calls f(i) for the rows of the batch that pass, in row order.
template <typename F>
inline void ForRows(bool dense, size_t n, const uint16_t* sel, size_t nsel, F f) {
  if (dense) {
    for (size_t i = 0; i < n; ++i) f(i);
  } else {
    for (size_t j = 0; j < nsel; ++j) f(sel[j]);
  }
}
// The same, stopping at the first row for which f returns false; returns
// that row, or kBatch if none.
template <typename F>
inline size_t ForRowsUntil(bool dense, size_t n, const uint16_t* sel, size_t nsel, F f) {
  if (dense) {
    for (size_t i = 0; i < n; ++i) {
      if (!f(i)) return i;
    }
  } else {
    for (size_t j = 0; j < nsel; ++j) {
      if (!f(sel[j])) return sel[j];
    }
  }
  return kBatch;
}

template <Cmp C, typename T>
void FilterLoop(const T* __restrict v, T c, size_t n, uint8_t* __restrict mask) {
  for (size_t i = 0; i < n; ++i) {
    bool ok;
    if constexpr (C == Cmp::kLt) ok = v[i] < c;
    if constexpr (C == Cmp::kLe) ok = v[i] <= c;
    if constexpr (C == Cmp::kGt) ok = v[i] > c;
    if constexpr (C == Cmp::kGe) ok = v[i] >= c;
    if constexpr (C == Cmp::kEq) ok = v[i] == c;
    if constexpr (C == Cmp::kNe) ok = v[i] != c;
    mask[i] &= static_cast<uint8_t>(ok);
  }
}
template <typename T>
void ApplyFilter(Cmp cmp, const T* v, T c, size_t n, uint8_t* mask) {
  switch (cmp) {
    case Cmp::kLt: FilterLoop<Cmp::kLt>(v, c, n, mask); break;
    case Cmp::kLe: FilterLoop<Cmp::kLe>(v, c, n, mask); break;
    case Cmp::kGt: FilterLoop<Cmp::kGt>(v, c, n, mask); break;
    case Cmp::kGe: FilterLoop<Cmp::kGe>(v, c, n, mask); break;
    case Cmp::kEq: FilterLoop<Cmp::kEq>(v, c, n, mask); break;
    case Cmp::kNe: FilterLoop<Cmp::kNe>(v, c, n, mask); break;
  }
}

// What a unit run needs of the spec, worked out once per RunUnit.
struct Plan {
  std::array<bool, kMaxColumns> need_int{};     // int64 staging
  std::array<bool, kMaxColumns> need_double{};  // double staging
  std::array<bool, kMaxExprs> eval{};           // evaluated in double
  std::array<bool, kMaxAggs> integer{};         // integer aggregate
  std::array<size_t, kMaxAggs> slot_base{};     // offset in its accumulator vector
  size_t nint = 0, ndouble = 0;                 // aggregates of each kind
  // The fused pass (FusedSums): the double sums (kSum, and kSumSq/kSumProd
  // of a product array) and the first kCount, in one loop over the rows.
  std::array<bool, kMaxAggs> fused{};
  std::array<uint8_t, kMaxAggs> sums{};  // the fused double sums' aggregate indices
  size_t nsums = 0;
  int count = -1;  // the fused kCount, or -1
};

Plan MakePlan(const Spec& s) {
  Plan p;
  for (const Filter& f : s.filters) {
    (IsInteger(s.columns[f.column]) ? p.need_int : p.need_double)[f.column] = true;
  }
  if (s.key.column != kNoKey) p.need_int[s.key.column] = true;
  for (size_t a = 0; a < s.aggs.size(); ++a) {
    const Agg& g = s.aggs[a];
    p.integer[a] = IsIntegerAgg(s, a);
    p.slot_base[a] = (p.integer[a] ? p.nint++ : p.ndouble++) * s.groups;
    if (g.kind == AggKind::kCount) continue;
    if (p.integer[a]) {
      p.need_int[s.exprs[g.a][0].column] = true;
      if (g.kind == AggKind::kSumProd) p.need_int[s.exprs[g.b][0].column] = true;
    } else {
      p.eval[g.a] = true;
      if (g.kind == AggKind::kSumProd) p.eval[g.b] = true;
    }
  }
  for (size_t a = 0; a < s.aggs.size(); ++a) {
    const AggKind k = s.aggs[a].kind;
    if (k == AggKind::kCount && p.count < 0) {
      p.count = static_cast<int>(a);
      p.fused[a] = true;
    } else if (!p.integer[a] && (k == AggKind::kSum || k == AggKind::kSumSq || k == AggKind::kSumProd)) {
      p.sums[p.nsums++] = static_cast<uint8_t>(a);
      p.fused[a] = true;
    }
  }
  for (size_t e = 0; e < s.exprs.size(); ++e) {
    if (!p.eval[e]) continue;
    for (const Node& n : s.exprs[e]) {
      if (n.op == ExprOp::kColumn) p.need_double[n.column] = true;
    }
  }
  return p;
}

// Checks column c's pieces against rows.
Status CheckPieces(const Spec& s, size_t c, uint64_t rows, Pieces pieces) {
  const ElemType t = s.columns[c];
  const size_t es = ElemSize(t);
  uint64_t total = 0;
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (pieces[i].size() % es != 0) {
      return Status::InvalidArgument("column " + std::to_string(c) + ": piece " + std::to_string(i) + " holds " +
                                     std::to_string(pieces[i].size()) + " B, not whole " +
                                     std::string(ElemTypeName(t)) + " elements of " + std::to_string(es) + " B");
    }
    total += pieces[i].size();
  }
  if (rows > std::numeric_limits<uint64_t>::max() / es || total != rows * es) {
    return Status::InvalidArgument("column " + std::to_string(c) + ": pieces hold " + std::to_string(total) + " B, " +
                                   std::to_string(rows) + " rows of " + std::string(ElemTypeName(t)) + " need " +
                                   (rows > std::numeric_limits<uint64_t>::max() / es ? std::string("more than 2^64")
                                                                                     : std::to_string(rows * es)) +
                                   " B");
  }
  return Status::Ok();
}

// The group key of one value; false on overflow of value + add.
inline bool KeyOf(int64_t v, const KeySpec& k, int64_t* out) {
  int64_t x;
  if (__builtin_add_overflow(v, k.add, &x)) return false;
  x /= k.div;
  if (k.mod != 0) x %= k.mod;
  *out = x;
  return true;
}

// The keys of a batch: b.keys[i] = KeyOf(kv[i]), or -1 on overflow (out of
// range, reported by the caller for rows that pass). / div and % mod by
// multiplication (IntDivider), the loop specialised on the kind of each
// step (kNone: no such step).
enum class Step : uint8_t { kNone, kShift, kMul, kMulAdd };
using DivKind = internal::IntDivider::Kind;

template <Step S>
inline int64_t DivStep(const internal::IntDivider& d, int64_t x) {
  if constexpr (S == Step::kShift) return d.Div<DivKind::kShift>(x);
  if constexpr (S == Step::kMul) return d.Div<DivKind::kMul>(x);
  if constexpr (S == Step::kMulAdd) return d.Div<DivKind::kMulAdd>(x);
  return x;
}
template <Step S>
inline int64_t ModStep(const internal::IntDivider& d, int64_t x) {
  if constexpr (S == Step::kShift) return d.Mod<DivKind::kShift>(x);
  if constexpr (S == Step::kMul) return d.Mod<DivKind::kMul>(x);
  if constexpr (S == Step::kMulAdd) return d.Mod<DivKind::kMulAdd>(x);
  return x;
}

// Returns whether any row's key (passing or not) is out of [0, groups).
template <Step D, Step M>
bool KeysLoop(const int64_t* __restrict kv, size_t n, int64_t add, const internal::IntDivider div,
              const internal::IntDivider mod, uint64_t groups, int64_t* __restrict keys) {
  bool bad = false;
  for (size_t i = 0; i < n; ++i) {
    int64_t x;
    const bool overflow = __builtin_add_overflow(kv[i], add, &x);
    x = ModStep<M>(mod, DivStep<D>(div, x));
    x = overflow ? -1 : x;
    keys[i] = x;
    bad |= static_cast<uint64_t>(x) >= groups;
  }
  return bad;
}

using KeysFn = bool (*)(const int64_t*, size_t, int64_t, internal::IntDivider, internal::IntDivider, uint64_t,
                        int64_t*);

template <Step D>
KeysFn KeysFnFor(Step m) {
  switch (m) {
    case Step::kNone: return KeysLoop<D, Step::kNone>;
    case Step::kShift: return KeysLoop<D, Step::kShift>;
    case Step::kMul: return KeysLoop<D, Step::kMul>;
    case Step::kMulAdd: return KeysLoop<D, Step::kMulAdd>;
  }
  return nullptr;
}

Step StepOf(bool none, const internal::IntDivider& d) {
  if (none) return Step::kNone;
  switch (d.kind()) {
    case DivKind::kShift: return Step::kShift;
    case DivKind::kMul: return Step::kMul;
    case DivKind::kMulAdd: return Step::kMulAdd;
  }
  return Step::kNone;
}

// The key loop for a spec's key (div 1 and mod 0 are no steps).
KeysFn KeysFnOf(const KeySpec& k, const internal::IntDivider& div, const internal::IntDivider& mod) {
  const Step ds = StepOf(k.div == 1, div), ms = StepOf(k.mod == 0, mod);
  switch (ds) {
    case Step::kNone: return KeysFnFor<Step::kNone>(ms);
    case Step::kShift: return KeysFnFor<Step::kShift>(ms);
    case Step::kMul: return KeysFnFor<Step::kMul>(ms);
    case Step::kMulAdd: return KeysFnFor<Step::kMulAdd>(ms);
  }
  return nullptr;
}

Status KeyError(const Spec& s, int64_t v, uint64_t row) {
  int64_t k;
  if (!KeyOf(v, s.key, &k)) {
    return Status::OutOfRange("group key of row " + std::to_string(row) + ": column " + std::to_string(s.key.column) +
                              " value " + std::to_string(v) + " + add " + std::to_string(s.key.add) +
                              " overflows int64");
  }
  return Status::OutOfRange("group key " + std::to_string(k) + " of row " + std::to_string(row) + " outside [0, " +
                            std::to_string(s.groups) + ")");
}

// Per-thread accumulators (agg-major: aggregate a's group g at
// slot_base[a] + g), kept between units to avoid an allocation per unit.
struct Accumulators {
  std::vector<int64_t> ints;
  std::vector<double> doubles;
};
thread_local Accumulators tls_acc;

// The batch buffers (about 50 KiB: on the worker's stack).
struct Batch {
  alignas(64) int64_t ival[kMaxColumns][kBatch];
  alignas(64) double dval[kMaxColumns][kBatch];
  alignas(64) double exprout[kMaxExprs][kBatch];
  alignas(64) double prod[kMaxAggs][kBatch];  // kSumSq/kSumProd's a*b, for the fused pass
  alignas(64) int64_t keys[kBatch];
  alignas(64) uint8_t mask[kBatch];
  alignas(64) uint16_t sel[kBatch];
};

// Integer accumulation of aggregate a over the passing rows; on overflow
// (or a u64 value above INT64_MAX) the error.
Status AccumulateInt(const Spec& s, size_t a, const Batch& b, bool dense, size_t n, size_t nsel, int64_t* acc,
                     uint64_t row0) {
  const Agg& g = s.aggs[a];
  const int64_t* keys = b.keys;
  if (g.kind == AggKind::kCount) {
    ForRows(dense, n, b.sel, nsel, [&](size_t i) { ++acc[keys[i]]; });
    return Status::Ok();
  }
  const uint8_t ca = s.exprs[g.a][0].column;
  const uint8_t cb = g.kind == AggKind::kSumProd ? s.exprs[g.b][0].column : ca;
  const int64_t* va = b.ival[ca];
  const int64_t* vb = b.ival[cb];
  // u64 values above INT64_MAX (negative as int64) cannot be summed exactly.
  for (uint8_t c : {ca, cb}) {
    if (s.columns[c] != ElemType::kU64) continue;
    const int64_t* v = b.ival[c];
    const size_t bad = ForRowsUntil(dense, n, b.sel, nsel, [&](size_t i) { return v[i] >= 0; });
    if (bad != kBatch) {
      return Status::OutOfRange(AggName(s, a) + ": column " + std::to_string(c) + " (u64) value " +
                                std::to_string(static_cast<uint64_t>(v[bad])) + " of row " +
                                std::to_string(row0 + bad) + " above INT64_MAX");
    }
  }
  size_t bad = kBatch;
  switch (g.kind) {
    case AggKind::kSum:
      bad = ForRowsUntil(dense, n, b.sel, nsel,
                         [&](size_t i) { return !__builtin_add_overflow(acc[keys[i]], va[i], &acc[keys[i]]); });
      break;
    case AggKind::kSumSq:
    case AggKind::kSumProd:
      bad = ForRowsUntil(dense, n, b.sel, nsel, [&](size_t i) {
        int64_t p;
        return !__builtin_mul_overflow(va[i], vb[i], &p) && !__builtin_add_overflow(acc[keys[i]], p, &acc[keys[i]]);
      });
      break;
    case AggKind::kMin:
      ForRows(dense, n, b.sel, nsel, [&](size_t i) { acc[keys[i]] = std::min(acc[keys[i]], va[i]); });
      break;
    case AggKind::kMax:
      ForRows(dense, n, b.sel, nsel, [&](size_t i) { acc[keys[i]] = std::max(acc[keys[i]], va[i]); });
      break;
    case AggKind::kCount: break;
  }
  if (bad != kBatch) {
    return Status::OutOfRange(AggName(s, a) + " of group " + std::to_string(keys[bad]) +
                              " overflows int64 at row " + std::to_string(row0 + bad));
  }
  return Status::Ok();
}

// The fused pass over the rows that pass, in row order: M double sums of
// value arrays (and, with kCount, one count), each row's group loaded once.
// Without a key the sums run in registers, M independent chains. The same
// additions in the same order as M separate passes: the same bits.
template <int M, bool kKeyed, bool kDense, bool kCount>
void FusedSums(size_t n, const uint16_t* __restrict sel, size_t nsel, const int64_t* __restrict keys,
               const double* const* vals, double* const* accs, int64_t* cnt) {
  constexpr int kM = M > 0 ? M : 1;
  const double* v[kM];
  double* ac[kM];
  for (int j = 0; j < M; ++j) {
    v[j] = vals[j];
    ac[j] = accs[j];
  }
  const size_t m = kDense ? n : nsel;
  if constexpr (!kKeyed) {
    double t[kM];
    for (int j = 0; j < M; ++j) t[j] = ac[j][0];
    for (size_t r = 0; r < m; ++r) {
      const size_t i = kDense ? r : sel[r];
      for (int j = 0; j < M; ++j) t[j] += v[j][i];
    }
    for (int j = 0; j < M; ++j) ac[j][0] = t[j];
    if constexpr (kCount) cnt[0] += static_cast<int64_t>(m);
  } else {
    for (size_t r = 0; r < m; ++r) {
      const size_t i = kDense ? r : sel[r];
      const int64_t g = keys[i];
      if constexpr (kCount) ++cnt[g];
      for (int j = 0; j < M; ++j) ac[j][g] += v[j][i];
    }
  }
}

using FusedFn = void (*)(size_t, const uint16_t*, size_t, const int64_t*, const double* const*, double* const*,
                         int64_t*);

template <int M>
FusedFn FusedFor(bool keyed, bool dense, bool count) {
  if (keyed) {
    if (dense) return count ? FusedSums<M, true, true, true> : FusedSums<M, true, true, false>;
    return count ? FusedSums<M, true, false, true> : FusedSums<M, true, false, false>;
  }
  if (dense) return count ? FusedSums<M, false, true, true> : FusedSums<M, false, true, false>;
  return count ? FusedSums<M, false, false, true> : FusedSums<M, false, false, false>;
}

FusedFn FusedFnOf(size_t m, bool keyed, bool dense, bool count) {
  static_assert(kMaxAggs == 8, "FusedFnOf instantiates FusedSums for 0..8 sums");
  switch (m) {
    case 0: return FusedFor<0>(keyed, dense, count);
    case 1: return FusedFor<1>(keyed, dense, count);
    case 2: return FusedFor<2>(keyed, dense, count);
    case 3: return FusedFor<3>(keyed, dense, count);
    case 4: return FusedFor<4>(keyed, dense, count);
    case 5: return FusedFor<5>(keyed, dense, count);
    case 6: return FusedFor<6>(keyed, dense, count);
    case 7: return FusedFor<7>(keyed, dense, count);
    default: return FusedFor<8>(keyed, dense, count);
  }
}

void AccumulateDouble(const Spec& s, size_t a, const Batch& b, const std::array<const double*, kMaxExprs>& ev,
                      bool dense, size_t n, size_t nsel, bool keyed, double* acc) {
  const Agg& g = s.aggs[a];
  const double* va = ev[g.a];
  const double* vb = g.kind == AggKind::kSumProd ? ev[g.b] : va;
  const int64_t* keys = b.keys;
  switch (g.kind) {
    case AggKind::kSum:
      if (!keyed) {
        double t = acc[0];
        ForRows(dense, n, b.sel, nsel, [&](size_t i) { t += va[i]; });
        acc[0] = t;
      } else {
        ForRows(dense, n, b.sel, nsel, [&](size_t i) { acc[keys[i]] += va[i]; });
      }
      break;
    case AggKind::kSumSq:
    case AggKind::kSumProd:
      if (!keyed) {
        double t = acc[0];
        ForRows(dense, n, b.sel, nsel, [&](size_t i) { t += va[i] * vb[i]; });
        acc[0] = t;
      } else {
        ForRows(dense, n, b.sel, nsel, [&](size_t i) { acc[keys[i]] += va[i] * vb[i]; });
      }
      break;
    case AggKind::kMin:
      ForRows(dense, n, b.sel, nsel, [&](size_t i) {
        if (va[i] < acc[keys[i]]) acc[keys[i]] = va[i];
      });
      break;
    case AggKind::kMax:
      ForRows(dense, n, b.sel, nsel, [&](size_t i) {
        if (va[i] > acc[keys[i]]) acc[keys[i]] = va[i];
      });
      break;
    case AggKind::kCount: break;  // integer
  }
}

}  // namespace

size_t PartialBytes(const Spec& s) { return size_t{s.groups} * s.aggs.size() * kSlotBytes; }

void InitPartial(const Spec& s, std::span<uint8_t> partial) {
  const size_t na = s.aggs.size();
  for (size_t a = 0; a < na; ++a) {
    const bool integer = IsIntegerAgg(s, a);
    const int64_t ii = IntIdentity(s.aggs[a].kind);
    const double di = DoubleIdentity(s.aggs[a].kind);
    for (uint32_t g = 0; g < s.groups; ++g) {
      uint8_t* p = partial.data() + (size_t{g} * na + a) * kSlotBytes;
      if (integer) {
        StoreSlot(p, ii);
      } else {
        StoreSlot(p, di);
      }
    }
  }
}

namespace {
Status RunRowsImpl(const Spec& s, uint64_t rows, std::span<const Pieces> columns, std::span<uint8_t> partial,
                   uint64_t first_row, bool resume);
}  // namespace

Status RunUnit(const Spec& s, uint64_t rows, std::span<const Pieces> columns, std::span<uint8_t> partial,
               uint64_t first_row) {
  return RunRowsImpl(s, rows, columns, partial, first_row, false);
}

Status RunRows(const Spec& s, uint64_t rows, std::span<const Pieces> columns, std::span<uint8_t> partial,
               uint64_t first_row) {
  return RunRowsImpl(s, rows, columns, partial, first_row, true);
}

namespace {
Status RunRowsImpl(const Spec& s, uint64_t rows, std::span<const Pieces> columns, std::span<uint8_t> partial,
                   uint64_t first_row, bool resume) {
  SHARRY_RETURN_IF_ERROR(Validate(s));  // cheap next to a unit; the memnode's guard
  if (columns.size() != s.columns.size()) {
    return Status::InvalidArgument("columns: " + std::to_string(columns.size()) + " given, the spec has " +
                                   std::to_string(s.columns.size()));
  }
  if (partial.size() != PartialBytes(s)) {
    return Status::InvalidArgument("partial: " + std::to_string(partial.size()) + " B, the spec's is " +
                                   std::to_string(PartialBytes(s)) + " B");
  }
  for (size_t c = 0; c < columns.size(); ++c) SHARRY_RETURN_IF_ERROR(CheckPieces(s, c, rows, columns[c]));

  const Plan plan = MakePlan(s);
  const size_t ncol = s.columns.size();
  const size_t na = s.aggs.size();
  const bool keyed = s.key.column != kNoKey;
  const uint64_t groups = s.groups;

  Accumulators& acc = tls_acc;
  acc.ints.resize(plan.nint * groups);
  acc.doubles.resize(plan.ndouble * groups);
  for (size_t a = 0; a < na; ++a) {
    if (resume) {  // go on from the partial of the unit's earlier rows
      for (uint64_t g = 0; g < groups; ++g) {
        const uint8_t* p = partial.data() + (g * na + a) * kSlotBytes;
        if (plan.integer[a]) {
          acc.ints[plan.slot_base[a] + g] = LoadSlot<int64_t>(p);
        } else {
          acc.doubles[plan.slot_base[a] + g] = LoadSlot<double>(p);
        }
      }
    } else if (plan.integer[a]) {
      std::fill_n(acc.ints.begin() + plan.slot_base[a], groups, IntIdentity(s.aggs[a].kind));
    } else {
      std::fill_n(acc.doubles.begin() + plan.slot_base[a], groups, DoubleIdentity(s.aggs[a].kind));
    }
  }

  std::array<IntLoader, kMaxColumns> int_load{};
  std::array<FloatLoader, kMaxColumns> float_load{};
  std::array<size_t, kMaxColumns> esize{};
  for (size_t c = 0; c < ncol; ++c) {
    int_load[c] = IntLoaderOf(s.columns[c]);
    float_load[c] = FloatLoaderOf(s.columns[c]);
    esize[c] = ElemSize(s.columns[c]);
  }
  std::array<Cursor, kMaxColumns> int_cur{}, float_cur{};

  Batch b;
  ExprEvaluator eval;
  std::array<const double*, kMaxColumns> dcols{};
  for (size_t c = 0; c < ncol; ++c) dcols[c] = b.dval[c];
  std::array<const double*, kMaxExprs> ev{};
  if (!keyed) std::fill_n(b.keys, kBatch, 0);
  const internal::IntDivider key_div(keyed ? s.key.div : 1);
  const internal::IntDivider key_mod(keyed && s.key.mod != 0 ? s.key.mod : 1);
  const KeysFn keys_fn = KeysFnOf(s.key, key_div, key_mod);
  const FusedFn fused_dense = FusedFnOf(plan.nsums, keyed, true, plan.count >= 0);
  const FusedFn fused_sel = FusedFnOf(plan.nsums, keyed, false, plan.count >= 0);

  for (uint64_t row0 = 0; row0 < rows; row0 += kBatch) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kBatch, rows - row0));
    // 1. gather
    for (size_t c = 0; c < ncol; ++c) {
      if (plan.need_int[c]) Gather(columns[c], esize[c], int_load[c], &int_cur[c], n, b.ival[c]);
      if (plan.need_double[c]) Gather(columns[c], esize[c], float_load[c], &float_cur[c], n, b.dval[c]);
    }
    // 2. filter
    bool dense = true;
    size_t nsel = n;
    if (!s.filters.empty()) {
      std::fill_n(b.mask, n, uint8_t{1});
      for (const Filter& f : s.filters) {
        if (IsInteger(s.columns[f.column])) {
          ApplyFilter(f.cmp, b.ival[f.column], f.int_value, n, b.mask);
        } else {
          ApplyFilter(f.cmp, b.dval[f.column], f.float_value, n, b.mask);
        }
      }
      nsel = 0;
      for (size_t i = 0; i < n; ++i) {
        b.sel[nsel] = static_cast<uint16_t>(i);
        nsel += b.mask[i];
      }
      dense = nsel == n;
      if (nsel == 0) continue;
    }
    // 3. expressions
    for (size_t e = 0; e < s.exprs.size(); ++e) {
      if (plan.eval[e]) ev[e] = eval.Eval(s.exprs[e], dcols, n, b.exprout[e]);
    }
    // 4. keys
    if (keyed) {
      const int64_t* kv = b.ival[s.key.column];
      if (keys_fn(kv, n, s.key.add, key_div, key_mod, groups, b.keys)) {
        // Some row's key is out of range: an error if that row passes.
        const size_t bad = ForRowsUntil(dense, n, b.sel, nsel, [&](size_t i) {
          return static_cast<uint64_t>(b.keys[i]) < groups;
        });
        if (bad != kBatch) return KeyError(s, kv[bad], first_row + row0 + bad);
      }
    }
    // 5. accumulate: the fused pass, then the other aggregates one by one
    if (plan.nsums > 0 || plan.count >= 0) {
      std::array<const double*, kMaxAggs> vals{};
      std::array<double*, kMaxAggs> accs{};
      for (size_t j = 0; j < plan.nsums; ++j) {
        const size_t a = plan.sums[j];
        const Agg& g = s.aggs[a];
        accs[j] = acc.doubles.data() + plan.slot_base[a];
        if (g.kind == AggKind::kSum) {
          vals[j] = ev[g.a];
          continue;
        }
        const double* __restrict x = ev[g.a];
        const double* __restrict y = g.kind == AggKind::kSumProd ? ev[g.b] : x;
        double* __restrict pr = b.prod[j];
        for (size_t i = 0; i < n; ++i) pr[i] = x[i] * y[i];
        vals[j] = pr;
      }
      int64_t* cnt = plan.count >= 0 ? acc.ints.data() + plan.slot_base[plan.count] : nullptr;
      (dense ? fused_dense : fused_sel)(n, b.sel, nsel, b.keys, vals.data(), accs.data(), cnt);
    }
    for (size_t a = 0; a < na; ++a) {
      if (plan.fused[a]) continue;
      if (plan.integer[a]) {
        SHARRY_RETURN_IF_ERROR(AccumulateInt(s, a, b, dense, n, nsel, acc.ints.data() + plan.slot_base[a],
                                             first_row + row0));
      } else {
        AccumulateDouble(s, a, b, ev, dense, n, nsel, keyed, acc.doubles.data() + plan.slot_base[a]);
      }
    }
  }

  for (size_t a = 0; a < na; ++a) {
    for (uint64_t g = 0; g < groups; ++g) {
      uint8_t* p = partial.data() + (g * na + a) * kSlotBytes;
      if (plan.integer[a]) {
        StoreSlot(p, acc.ints[plan.slot_base[a] + g]);
      } else {
        StoreSlot(p, acc.doubles[plan.slot_base[a] + g]);
      }
    }
  }
  return Status::Ok();
}
}  // namespace

Status Merge(const Spec& s, std::span<uint8_t> acc, std::span<const uint8_t> partial) {
  const size_t bytes = PartialBytes(s);
  if (acc.size() != bytes || partial.size() != bytes) {
    return Status::InvalidArgument("merge: accumulator " + std::to_string(acc.size()) + " B, partial " +
                                   std::to_string(partial.size()) + " B, the spec's partial is " +
                                   std::to_string(bytes) + " B");
  }
  const size_t na = s.aggs.size();
  for (size_t a = 0; a < na; ++a) {
    const AggKind k = s.aggs[a].kind;
    const bool integer = IsIntegerAgg(s, a);
    for (uint32_t g = 0; g < s.groups; ++g) {
      const size_t off = (size_t{g} * na + a) * kSlotBytes;
      uint8_t* pa = acc.data() + off;
      const uint8_t* pp = partial.data() + off;
      if (integer) {
        int64_t x = LoadSlot<int64_t>(pa);
        const int64_t y = LoadSlot<int64_t>(pp);
        if (k == AggKind::kMin) {
          x = std::min(x, y);
        } else if (k == AggKind::kMax) {
          x = std::max(x, y);
        } else if (__builtin_add_overflow(x, y, &x)) {
          return Status::OutOfRange(AggName(s, a) + " of group " + std::to_string(g) + " overflows int64 in merge");
        }
        StoreSlot(pa, x);
      } else {
        double x = LoadSlot<double>(pa);
        const double y = LoadSlot<double>(pp);
        if (k == AggKind::kMin) {
          if (y < x) x = y;
        } else if (k == AggKind::kMax) {
          if (y > x) x = y;
        } else {
          x += y;
        }
        StoreSlot(pa, x);
      }
    }
  }
  return Status::Ok();
}

Result::Result(Spec s) : spec_(std::move(s)), acc_(PartialBytes(spec_)) { InitPartial(spec_, acc_); }

int64_t Result::Int(uint32_t g, size_t agg) const {
  const uint8_t* p = acc_.data() + (size_t{g} * spec_.aggs.size() + agg) * kSlotBytes;
  if (IsIntegerAgg(spec_, agg)) return LoadSlot<int64_t>(p);
  const double d = LoadSlot<double>(p);  // a double aggregate: truncated, saturated, NaN as 0
  if (std::isnan(d)) return 0;
  if (d >= 0x1p63) return std::numeric_limits<int64_t>::max();
  if (d < -0x1p63) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(d);
}

double Result::Value(uint32_t g, size_t agg) const {
  const uint8_t* p = acc_.data() + (size_t{g} * spec_.aggs.size() + agg) * kSlotBytes;
  if (IsIntegerAgg(spec_, agg)) return static_cast<double>(LoadSlot<int64_t>(p));
  return LoadSlot<double>(p);
}

}  // namespace sharry::offload
