// ErasureCode (compute/erasure_code.h): the generator matrix, encode,
// reconstruct from any k blocks, and the parity update of one data block, on
// ISA-L's ec_* and gf_* functions.
#include "compute/erasure_code.h"

#include <glog/logging.h>
#include <isa-l/erasure_code.h>

#include <algorithm>
#include <array>
#include <string>

namespace sharry::compute {
namespace {

// Reconstruct decodes at most this many wanted blocks per ec_encode_data
// call, so that its decode tables (32 * k * rows bytes) stay small on the
// stack; ISA-L itself works through the rows 6 at a time.
constexpr int kRowsPerCall = 8;
// UpdateParity's delta (old xor new) is computed this many bytes at a time.
constexpr size_t kUpdateChunk = 4096;

// ISA-L's pointer arrays are not const-qualified; it only reads the sources.
unsigned char** Sources(const uint8_t* const* p) { return const_cast<unsigned char**>(p); }
unsigned char** Dests(uint8_t* const* p) { return const_cast<unsigned char**>(p); }

// Checks that every index of `idx` is in [0, n) and none is listed twice;
// sets their bits in *mask.
Status CheckIndices(const char* what, std::span<const int> idx, int k, int m, uint32_t* mask) {
  const int n = k + m;
  *mask = 0;
  for (size_t i = 0; i < idx.size(); ++i) {
    const int b = idx[i];
    if (b < 0 || b >= n) {
      return Status::InvalidArgument(std::string(what) + "[" + std::to_string(i) + "]=" + std::to_string(b) +
                                     " is not a block of the stripe: allowed [0, " + std::to_string(n - 1) +
                                     "] (k=" + std::to_string(k) + ", m=" + std::to_string(m) + ")");
    }
    if (*mask & (uint32_t{1} << b)) {
      return Status::InvalidArgument(std::string(what) + "[" + std::to_string(i) + "]=" + std::to_string(b) +
                                     " is listed twice");
    }
    *mask |= uint32_t{1} << b;
  }
  return Status::Ok();
}

}  // namespace

ErasureCode::ErasureCode(int k, int m)
    : k_(k), m_(m), matrix_(static_cast<size_t>(k + m) * k), encode_tables_(static_cast<size_t>(32) * k * m) {
  gf_gen_cauchy1_matrix(matrix_.data(), k + m, k);
  ec_init_tables(k, m, &matrix_[static_cast<size_t>(k) * k], encode_tables_.data());
}

StatusOr<ErasureCode> ErasureCode::Create(int k, int m) {
  if (k < 1) {
    return Status::InvalidArgument("erasure code: k=" + std::to_string(k) +
                                   " data blocks per stripe; allowed: k >= 1 and k + m <= " +
                                   std::to_string(kMaxBlocks));
  }
  if (m < 1) {
    return Status::InvalidArgument("erasure code: m=" + std::to_string(m) +
                                   " parity blocks per stripe; allowed: m >= 1 and k + m <= " +
                                   std::to_string(kMaxBlocks));
  }
  if (k > kMaxBlocks - m) {  // k + m > kMaxBlocks, without overflow
    return Status::InvalidArgument("erasure code: k=" + std::to_string(k) + " + m=" + std::to_string(m) +
                                   " blocks per stripe; allowed: k >= 1, m >= 1, k + m <= " +
                                   std::to_string(kMaxBlocks));
  }
  return ErasureCode(k, m);
}

void ErasureCode::Encode(size_t len, std::span<const uint8_t* const> data, std::span<uint8_t* const> parity) const {
  CHECK_EQ(data.size(), static_cast<size_t>(k_)) << "Encode: one data block per data index";
  CHECK_EQ(parity.size(), static_cast<size_t>(m_)) << "Encode: one parity block per parity index";
  CHECK_LE(len, kMaxBlockBytes);
  ec_encode_data(static_cast<int>(len), k_, m_, const_cast<unsigned char*>(encode_tables_.data()),
                 Sources(data.data()), Dests(parity.data()));
}

Status ErasureCode::Reconstruct(size_t len, std::span<const int> present_idx, std::span<const uint8_t* const> present,
                                std::span<const int> want_idx, std::span<uint8_t* const> out) const {
  if (present_idx.size() != present.size() || want_idx.size() != out.size()) {
    return Status::InvalidArgument("Reconstruct: " + std::to_string(present_idx.size()) + " present indices for " +
                                   std::to_string(present.size()) + " blocks, " + std::to_string(want_idx.size()) +
                                   " wanted indices for " + std::to_string(out.size()) + " outputs");
  }
  if (len > kMaxBlockBytes) {
    return Status::InvalidArgument("Reconstruct: block length " + std::to_string(len) + "; allowed: at most " +
                                   std::to_string(kMaxBlockBytes));
  }
  uint32_t present_mask, want_mask;
  SHARRY_RETURN_IF_ERROR(CheckIndices("present_idx", present_idx, k_, m_, &present_mask));
  SHARRY_RETURN_IF_ERROR(CheckIndices("want_idx", want_idx, k_, m_, &want_mask));
  if (present_idx.size() < static_cast<size_t>(k_)) {
    return Status::DataLoss("stripe has " + std::to_string(present_idx.size()) + " of " + std::to_string(k_) +
                            " needed blocks (k=" + std::to_string(k_) + ", m=" + std::to_string(m_) + "): " +
                            std::to_string(k_ + m_ - static_cast<int>(present_idx.size())) +
                            " lost, at most m=" + std::to_string(m_) + " can be rebuilt");
  }
  if (want_idx.empty()) return Status::Ok();

  // The k sources: the lowest present indices (data blocks first, whose rows
  // of the generator are unit rows), with where their bytes are.
  std::array<int, kMaxBlocks> where;  // block index -> position in present
  for (size_t i = 0; i < present_idx.size(); ++i) where[present_idx[i]] = static_cast<int>(i);
  std::array<const uint8_t*, kMaxBlocks> src;
  std::array<uint8_t, kMaxBlocks * kMaxBlocks> sub, inv;  // k x k, row-major
  const int k = k_;
  for (int b = 0, s = 0; s < k; ++b) {
    if (!(present_mask & (uint32_t{1} << b))) continue;
    src[s] = present[where[b]];
    std::copy_n(&matrix_[static_cast<size_t>(b) * k], k, &sub[static_cast<size_t>(s) * k]);
    ++s;
  }
  // sub * data = sources, so data = inv * sources; block r = matrix[r] * data
  // = (matrix[r] * inv) * sources.
  if (gf_invert_matrix(sub.data(), inv.data(), k) != 0) {
    // Every k x k submatrix of identity-over-Cauchy is invertible.
    return Status::Internal("Reconstruct: the k x k submatrix of the sources is singular (k=" + std::to_string(k) +
                            ", m=" + std::to_string(m_) + ")");
  }

  std::array<uint8_t, kRowsPerCall * kMaxBlocks> decode;             // rows x k
  std::array<uint8_t, 32 * kRowsPerCall * kMaxBlocks> decode_tables;  // ec_init_tables
  for (size_t first = 0; first < want_idx.size(); first += kRowsPerCall) {
    const int rows = static_cast<int>(std::min<size_t>(kRowsPerCall, want_idx.size() - first));
    for (int w = 0; w < rows; ++w) {
      const int r = want_idx[first + w];
      uint8_t* row = &decode[static_cast<size_t>(w) * k];
      if (r < k) {  // a data block: matrix[r] is the unit row e_r
        std::copy_n(&inv[static_cast<size_t>(r) * k], k, row);
        continue;
      }
      const uint8_t* coef = &matrix_[static_cast<size_t>(r) * k];
      for (int j = 0; j < k; ++j) {
        uint8_t acc = 0;
        for (int t = 0; t < k; ++t) acc ^= gf_mul(coef[t], inv[static_cast<size_t>(t) * k + j]);
        row[j] = acc;
      }
    }
    ec_init_tables(k, rows, decode.data(), decode_tables.data());
    ec_encode_data(static_cast<int>(len), k, rows, decode_tables.data(), Sources(src.data()),
                   Dests(out.data() + first));
  }
  return Status::Ok();
}

void ErasureCode::UpdateParity(size_t len, int data_idx, const uint8_t* old_data, const uint8_t* new_data,
                               std::span<uint8_t* const> parity) const {
  CHECK_GE(data_idx, 0);
  CHECK_LT(data_idx, k_);
  CHECK_EQ(parity.size(), static_cast<size_t>(m_)) << "UpdateParity: one parity block per parity index";
  CHECK_LE(len, kMaxBlockBytes);
  // Parity is linear: new parity = old parity + coefficient * (old xor new).
  std::array<uint8_t, kUpdateChunk> delta;
  std::array<uint8_t*, kMaxBlocks> dest;
  for (size_t off = 0; off < len; off += kUpdateChunk) {
    const size_t n = std::min(kUpdateChunk, len - off);
    for (size_t i = 0; i < n; ++i) delta[i] = old_data[off + i] ^ new_data[off + i];
    for (int p = 0; p < m_; ++p) dest[p] = parity[p] + off;
    ec_encode_data_update(static_cast<int>(n), k_, m_, data_idx, const_cast<unsigned char*>(encode_tables_.data()),
                          delta.data(), dest.data());
  }
}

}  // namespace sharry::compute
