// IntDivider: C division (truncating toward zero) of int64 values by a
// divisor fixed in advance (>= 1), by multiplication instead of idiv — the
// group key's `/ div` and `% mod` of every row (kernel.cc). On the
// magnitude (C division truncates, so x / d = sign(x) (|x| / d)), with the
// magic numbers of Granlund and Montgomery, "Division by invariant integers
// using multiplication" (PLDI 1994), as libdivide picks them: for
// L = floor(log2 d) and 0 <= n < 2^64,
//   d = 2^L:                      n / d = n >> L
//   else m = floor(2^(64+L) / d) + 1, e = d - 2^(64+L) mod d;
//   if e < 2^L (most divisors):  n / d = mulhi(m, n) >> L
//   else (m needs a 65th bit):    m' = floor(2^(65+L) / d) + 1 - 2^64,
//                                 t = mulhi(m', n), n / d = (t + ((n - t) >> 1)) >> L
// Internal to sharry::offload (not installed); tests/offload_kernel_test.cc
// checks it against the / and % operators.
//
// Thread-safety: a value; const methods only after construction.
#pragma once

#include <cstdint>

namespace sharry::offload::internal {

class IntDivider {
 public:
  // REQUIRES: d >= 1.
  explicit IntDivider(int64_t d) : d_(static_cast<uint64_t>(d)) {
    using u128 = unsigned __int128;
    shift_ = 63 - __builtin_clzll(d_);  // L
    if ((d_ & (d_ - 1)) == 0) {
      kind_ = Kind::kShift;
      return;
    }
    const u128 num = static_cast<u128>(1) << (64 + shift_);
    const uint64_t rem = static_cast<uint64_t>(num % d_);
    if (d_ - rem < (uint64_t{1} << shift_)) {
      kind_ = Kind::kMul;
      m_ = static_cast<uint64_t>(num / d_) + 1;
    } else {
      kind_ = Kind::kMulAdd;
      m_ = static_cast<uint64_t>(((num << 1) / d_) + 1);  // mod 2^64: the 65th bit is implied
    }
  }

  enum class Kind : uint8_t { kShift, kMul, kMulAdd };
  Kind kind() const { return kind_; }

  // x / d, truncated toward zero (as C's / for int64). Div<kind()>(x) is
  // the same without the run-time switch on the kind (for hot loops).
  int64_t Div(int64_t x) const {
    switch (kind_) {
      case Kind::kShift: return Div<Kind::kShift>(x);
      case Kind::kMul: return Div<Kind::kMul>(x);
      case Kind::kMulAdd: return Div<Kind::kMulAdd>(x);
    }
    return 0;
  }
  template <Kind K>
  int64_t Div(int64_t x) const {
    const bool neg = x < 0;
    const uint64_t n = neg ? 0 - static_cast<uint64_t>(x) : static_cast<uint64_t>(x);
    const uint64_t q = UDiv<K>(n);
    return static_cast<int64_t>(neg ? 0 - q : q);
  }
  // x % d, with the sign of x (as C's % for int64).
  int64_t Mod(int64_t x) const { return Rem(x, Div(x)); }
  template <Kind K>
  int64_t Mod(int64_t x) const {
    return Rem(x, Div<K>(x));
  }

 private:
  int64_t Rem(int64_t x, int64_t q) const {
    return static_cast<int64_t>(static_cast<uint64_t>(x) - static_cast<uint64_t>(q) * d_);
  }
  template <Kind K>
  uint64_t UDiv(uint64_t n) const {
    if constexpr (K == Kind::kShift) return n >> shift_;
    const uint64_t t = static_cast<uint64_t>((static_cast<unsigned __int128>(m_) * n) >> 64);
    if constexpr (K == Kind::kMul) return t >> shift_;
    return (t + ((n - t) >> 1)) >> shift_;
  }

  uint64_t d_;
  uint64_t m_ = 0;
  int shift_ = 0;
  Kind kind_ = Kind::kShift;
};

}  // namespace sharry::offload::internal
