// ErasureCode: a systematic Reed-Solomon code over GF(2^8) for Carbink-style
// stripes, on Intel ISA-L. Private to compute/ (not installed); ISA-L stays
// out of every header (docs/redundancy.md, "Erasure code (ISA-L)").
//
// Glossary:
//   stripe       k data blocks and m parity blocks of one size `len`, each
//                block on a different memnode.
//   block index  0..k-1 are the data blocks (an object's bytes, zero-padded
//                to `len`), k..k+m-1 the parity blocks.
//   any k        the generator matrix is the identity over a Cauchy matrix
//                (gf_gen_cauchy1_matrix), every k of whose k+m rows are
//                invertible: any k surviving blocks rebuild the other m.
//
// Threading: an ErasureCode is immutable after Create() (the matrix and the
// encode tables); every method is const and may run on many threads at once
// on distinct output buffers.
//
// Errors: Create() and Reconstruct() return a Status for what the caller
// cannot rule out beforehand (a bad configuration, a stripe that lost more
// than m blocks, indices from elsewhere). Encode() and UpdateParity() have
// preconditions (REQUIRES) that are CHECKed, in release builds too.
//
// Costs: Encode and UpdateParity allocate nothing; Reconstruct allocates
// nothing either (its k x k matrices and decode tables, at most ~11 KiB, are
// on the stack) and inverts a k x k matrix per call, O(k^3) GF(2^8) steps
// (microseconds), before the O(k * len) pass per wanted block.
#pragma once

#include <climits>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "base/status.h"

namespace sharry::compute {

class ErasureCode {
 public:
  // At most this many blocks (k + m) per stripe: the decode matrices live on
  // the stack and index sets are 32-bit masks. (ISA-L itself allows 255.)
  static constexpr int kMaxBlocks = 32;
  // ISA-L's lengths are ints.
  static constexpr size_t kMaxBlockBytes = INT_MAX;

  // A code with k data and m parity blocks per stripe.
  // kInvalidArgument unless 1 <= k, 1 <= m and k + m <= kMaxBlocks.
  static StatusOr<ErasureCode> Create(int k, int m);

  int k() const { return k_; }
  int m() const { return m_; }

  // Computes the m parity blocks of the k data blocks, each `len` bytes.
  // REQUIRES: data.size() == k, parity.size() == m, len <= kMaxBlockBytes;
  // no parity block overlaps a data block or another parity block.
  void Encode(size_t len, std::span<const uint8_t* const> data, std::span<uint8_t* const> parity) const;

  // Rebuilds the blocks want_idx (data or parity, in any order) into out,
  // from the blocks present_idx (any order), whose bytes are present, same
  // order. Uses k of the present blocks (the lowest indices: data first).
  // A wanted block that is also present is rebuilt all the same (a copy).
  //   kDataLoss        fewer than k blocks present ("stripe has 1 of 3 needed
  //                    blocks ..."); out is untouched.
  //   kInvalidArgument an index outside [0, k+m), an index listed twice in
  //                    present_idx or in want_idx, spans of different sizes,
  //                    len > kMaxBlockBytes; out is untouched.
  // REQUIRES: every present and out block holds len bytes; out blocks do not
  // overlap each other or a present block.
  Status Reconstruct(size_t len, std::span<const int> present_idx, std::span<const uint8_t* const> present,
                     std::span<const int> want_idx, std::span<uint8_t* const> out) const;

  // Data block data_idx changes from old_data to new_data (e.g. a stripe
  // member is replaced or zeroed by stripe compaction): updates the m parity
  // blocks in place, reading only the old and new bytes of that one block —
  // the result equals Encode() over the new data blocks. Works on the delta
  // (old xor new) in 4 KiB pieces on the stack: no allocation.
  // REQUIRES: 0 <= data_idx < k, parity.size() == m, len <= kMaxBlockBytes.
  // old_data and new_data may be the same buffer (no change).
  void UpdateParity(size_t len, int data_idx, const uint8_t* old_data, const uint8_t* new_data,
                    std::span<uint8_t* const> parity) const;

 private:
  ErasureCode(int k, int m);

  int k_;
  int m_;
  std::vector<uint8_t> matrix_;        // (k+m) x k generator: identity, then the Cauchy rows
  std::vector<uint8_t> encode_tables_; // ec_init_tables of the m parity rows: 32 * k * m bytes
};

}  // namespace sharry::compute
