// offload::Spec: what an offloaded (or local) aggregate computes — the
// operator of issue #13. A fixed, safe, built-in set: typed column scans
// with an optional filter, optional group-by key and up to kMaxAggs
// aggregates over per-row expressions. No code is shipped: an expression is
// a short postfix list of built-in operations, checked before it runs
// (Validate), with a bounded stack and no loops, so its cost per row is
// bounded by its length.
//
// The same Spec and the same kernel (offload/kernel.h) run at the memnode
// (offload workers) and in the compute process (the local part of a split
// aggregate, and the plain-local-memory reference), which is what makes the
// results bit-identical however the rows are split (see kernel.h: fixed
// per-unit reduction order).
//
// Wire form (Encode/Decode; all integers little-endian; carried in the
// OFFLOAD RPC, memnode/rpc.h), docs/offload.md:
//
//   SpecHead (16 B)
//     0  u8  version (1)          1  u8  columns (1..kMaxColumns)
//     2  u8  filters (0..kMaxFilters)  3  u8 exprs (0..kMaxExprs)
//     4  u8  aggs (1..kMaxAggs)   5  u8  key_column (kNoKey: no group-by)
//     6  u16 reserved (0)         8  u32 groups (1..kMaxGroups; 1 without a key)
//    12  u32 reserved (0)
//   columns x u8 ElemType
//   KeySpec (24 B, only with a key): i64 add, i64 div (>= 1), i64 mod (0: none)
//   filters x Filter (24 B): u8 column, u8 Cmp, 6 reserved, i64 int constant,
//                            f64 float constant (the one of the column's kind)
//   exprs x { u8 nodes (1..kMaxNodes), nodes x Node (16 B):
//             u8 ExprOp, u8 column (kColumn), 6 reserved, f64 constant (kConst) }
//   aggs x Agg (4 B): u8 AggKind, u8 expr a, u8 expr b (kSumProd), u8 reserved
//
// Decode checks every field (named in its error: "filter 2: column 9 of 3",
// "expression 1: stack underflow at node 4", ...) and trailing bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace sharry::offload {

inline constexpr uint8_t kSpecVersion = 1;
inline constexpr size_t kMaxColumns = 8;
inline constexpr size_t kMaxFilters = 4;
inline constexpr size_t kMaxExprs = 8;
inline constexpr size_t kMaxNodes = 32;   // per expression
inline constexpr size_t kMaxStack = 8;    // expression stack depth
inline constexpr size_t kMaxAggs = 8;
inline constexpr uint32_t kMaxGroups = 65536;
inline constexpr uint8_t kNoKey = 0xFF;
// The longest wire form of a valid spec (every count at its bound).
inline constexpr size_t kMaxSpecBytes =
    16 + kMaxColumns + 24 + kMaxFilters * 24 + kMaxExprs * (1 + kMaxNodes * 16) + kMaxAggs * 4;

// Element type of a column (a RemoteArray<T> of that T).
enum class ElemType : uint8_t {
  kI8 = 1, kU8 = 2, kI16 = 3, kU16 = 4, kI32 = 5, kU32 = 6, kI64 = 7, kU64 = 8, kF32 = 9, kF64 = 10,
};
size_t ElemSize(ElemType t);                 // 0 for a value that is not an ElemType
bool IsInteger(ElemType t);
std::string_view ElemTypeName(ElemType t);   // "i64", "f32", ...
template <typename T> constexpr ElemType ElemTypeOf();  // defined below for the ten types

enum class Cmp : uint8_t { kLt = 1, kLe = 2, kGt = 3, kGe = 4, kEq = 5, kNe = 6 };

// A filter: column <cmp> constant, in the column's own domain (integers as
// int64 — u64 above INT64_MAX compare as their int64 bits —, floats as
// double). A row passes when every filter holds (a conjunction).
struct Filter {
  uint8_t column = 0;
  Cmp cmp = Cmp::kEq;
  int64_t int_value = 0;    // integer columns
  double float_value = 0;   // float columns
};

// Expression nodes, postfix, evaluated in double on a stack of at most
// kMaxStack values. kColumn pushes the row's value of `column` converted to
// double (exact for integers of magnitude <= 2^53); kConst pushes constant.
// Binary ops pop b then a and push a op b (kMin: b < a ? b : a, kMax:
// a < b ? b : a, as std::min/max); kSelectGt pops y, x, b, a and
// pushes (a > b ? x : y); kDup pushes a copy of the top; kSwap swaps the two
// on top. An expression must leave exactly one value.
enum class ExprOp : uint8_t {
  kColumn = 1, kConst = 2,
  kAdd = 3, kSub = 4, kMul = 5, kDiv = 6, kMin = 7, kMax = 8,
  kSqrt = 9, kAbs = 10, kNeg = 11,
  kDup = 12, kSwap = 13, kSelectGt = 14,
};
struct Node {
  ExprOp op = ExprOp::kConst;
  uint8_t column = 0;
  double constant = 0;
};
using Expr = std::vector<Node>;

// Aggregates, per group, over the rows that pass the filter:
//   kCount    rows                                     (integer)
//   kSum      sum of expr a
//   kMin/kMax min/max of expr a
//   kSumSq    sum of a*a
//   kSumProd  sum of a*b
// An expression that is one kColumn node of an integer column is an
// integer expression: its aggregates are exact int64 (overflow is an error
// naming the aggregate, never a wrapped value; so is a u64 value above
// INT64_MAX in a row that passes). Otherwise double (to sum an integer
// column as a double, make it an expression: column, 1, kMul).
enum class AggKind : uint8_t { kCount = 1, kSum = 2, kMin = 3, kMax = 4, kSumSq = 5, kSumProd = 6 };
struct Agg {
  AggKind kind = AggKind::kCount;
  uint8_t a = 0, b = 0;  // expression indices (unused by kCount; b only kSumProd)
};

// Group key of a row: k = column value (int64); k += add; k /= div (C
// division); if mod != 0: k %= mod; then 0 <= k < groups or the unit fails
// with OutOfRange ("group key -3 of row 77 outside [0, 24)"; also when
// value + add overflows int64). Only rows that pass the filter are keyed. A
// u64 key column's value is its int64 bits. The hour of a
// unix time: add 0, div 3600, mod 24; the weekday: add 4*86400, div 86400,
// mod 7.
struct KeySpec {
  uint8_t column = kNoKey;  // kNoKey: one group
  int64_t add = 0, div = 1, mod = 0;
};

struct Spec {
  std::vector<ElemType> columns;
  std::vector<Filter> filters;
  KeySpec key;
  uint32_t groups = 1;
  std::vector<Expr> exprs;
  std::vector<Agg> aggs;

  // Builders (return the index of what they added).
  uint8_t Column(ElemType t);
  uint8_t AddExpr(Expr e);
  uint8_t ColumnExpr(uint8_t column);  // an expression that is just `column`
  size_t Aggregate(AggKind k, uint8_t a = 0, uint8_t b = 0);
};

// Every field in range, every expression well formed (stack never under- or
// over-flows and ends with one value), integer key column, groups in
// 1..kMaxGroups (1 without a key). The error names the field and its value.
// Fields a spec does not use must hold their defaults, so that a valid spec
// has one wire form: a node's column (other than kColumn's) and constant
// (other than kConst's) 0, a filter's constant of the other kind 0, an
// aggregate's unused a/b 0, the KeySpec without a key column {kNoKey, 0, 1, 0}.
Status Validate(const Spec& s);

// Wire form (above), at most kMaxSpecBytes. Decode validates (a decoded spec
// is valid) and rejects truncation, non-zero reserved bytes and unknown
// enum values; Encode(Decode(w)) == w.
std::vector<uint8_t> Encode(const Spec& s);
void EncodeTo(const Spec& s, std::vector<uint8_t>* out);  // appends
// Decodes one Spec from the front of `in`; *used = bytes consumed (bytes
// after the spec are the caller's). With used == nullptr, `in` must be
// exactly one spec: trailing bytes are an error.
StatusOr<Spec> Decode(std::span<const uint8_t> in, size_t* used = nullptr);

// Whether aggregate i yields int64 (else double); false for i out of range.
bool IsIntegerAgg(const Spec& s, size_t agg);
// Whether expression e is an integer expression (one kColumn node of an
// integer column).
bool IsIntegerExpr(const Spec& s, size_t e);

// Names for messages: "kSub", "kSumProd".
std::string_view ExprOpName(ExprOp op);
std::string_view AggKindName(AggKind k);

template <> constexpr ElemType ElemTypeOf<int8_t>() { return ElemType::kI8; }
template <> constexpr ElemType ElemTypeOf<uint8_t>() { return ElemType::kU8; }
template <> constexpr ElemType ElemTypeOf<int16_t>() { return ElemType::kI16; }
template <> constexpr ElemType ElemTypeOf<uint16_t>() { return ElemType::kU16; }
template <> constexpr ElemType ElemTypeOf<int32_t>() { return ElemType::kI32; }
template <> constexpr ElemType ElemTypeOf<uint32_t>() { return ElemType::kU32; }
template <> constexpr ElemType ElemTypeOf<int64_t>() { return ElemType::kI64; }
template <> constexpr ElemType ElemTypeOf<uint64_t>() { return ElemType::kU64; }
template <> constexpr ElemType ElemTypeOf<float>() { return ElemType::kF32; }
template <> constexpr ElemType ElemTypeOf<double>() { return ElemType::kF64; }

}  // namespace sharry::offload
