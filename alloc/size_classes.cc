// Copyright 2024 The Sharry Authors.

#include "alloc/size_classes.h"

#include <array>

#include "glog/logging.h"

namespace sharry::alloc {
namespace {

// The table was produced by these rules (tests check that it obeys them):
//   sizes:  8, 16, ..., 128 (step 8); then from 2^k to 2^(k+1) in steps of
//           2^(k-3) (eight classes per power of two) up to 256 KiB;
//   pages:  the smallest span of at least one block whose tail (span bytes
//           that cannot hold a whole block) is <= 1/16 of the span.
// Columns after "//" are for the reader: blocks per span, the worst rounding
// waste of one block ((size - previous - 1) / size) and the span tail, both
// in percent. <worst bp> combines the two (see SizeClassInfo).
//
// Reading the table: classes up to 128 B are limited by the 8-byte step (a
// 9-byte request in a 16-byte block wastes 43.75%); from 144 B up the worst
// combined waste stays below 17% (1665 bp, the 9216 B class: an
// 8193-byte request in a 9216-byte block, 5 blocks in 6 pages).
// clang-format off
constexpr std::array<SizeClassInfo, kNumSizeClasses> kSizeClasses = {{
    // <bytes>, <pages>, <worst bp>   // blocks  round%  tail%
    {       0,   0,     0},           // class 0: no class
    {       8,   1,  8750},           //  1024   87.50   0.00
    {      16,   1,  4375},           //   512   43.75   0.00
    {      24,   1,  2923},           //   341   29.17   0.10
    {      32,   1,  2187},           //   256   21.88   0.00
    {      40,   1,  1782},           //   204   17.50   0.39
    {      48,   1,  1491},           //   170   14.58   0.39
    {      56,   1,  1267},           //   146   12.50   0.20
    {      64,   1,  1093},           //   128   10.94   0.00
    {      72,   1,  1033},           //   113    9.72   0.68
    {      80,   1,   910},           //   102    8.75   0.39
    {      88,   1,   804},           //    93    7.95   0.10
    {      96,   1,   765},           //    85    7.29   0.39
    {     104,   1,   764},           //    78    6.73   0.98
    {     112,   1,   643},           //    73    6.25   0.20
    {     120,   1,   620},           //    68    5.83   0.39
    {     128,   1,   546},           //    64    5.47   0.00
    {     144,   1,  1181},           //    56   10.42   1.56
    {     160,   1,   972},           //    51    9.38   0.39
    {     176,   1,   959},           //    46    8.52   1.17
    {     192,   1,   925},           //    42    7.81   1.56
    {     208,   1,   811},           //    39    7.21   0.98
    {     224,   1,   815},           //    36    6.70   1.56
    {     240,   1,   661},           //    34    6.25   0.39
    {     256,   1,   585},           //    32    5.86   0.00
    {     288,   1,  1215},           //    28   10.76   1.56
    {     320,   1,  1180},           //    25    9.69   2.34
    {     352,   1,   987},           //    23    8.81   1.17
    {     384,   1,   950},           //    21    8.07   1.56
    {     416,   1,  1070},           //    19    7.45   3.52
    {     448,   1,   837},           //    18    6.92   1.56
    {     480,   1,   682},           //    17    6.46   0.39
    {     512,   1,   605},           //    16    6.05   0.00
    {     576,   1,  1232},           //    14   10.94   1.56
    {     640,   1,  1547},           //    12    9.84   6.25
    {     704,   1,  1392},           //    11    8.95   5.47
    {     768,   1,  1394},           //    10    8.20   6.25
    {     832,   2,  1082},           //    19    7.57   3.52
    {     896,   1,   848},           //     9    7.03   1.56
    {     960,   1,  1240},           //     8    6.56   6.25
    {    1024,   1,   615},           //     8    6.15   0.00
    {    1152,   1,  1241},           //     7   11.02   1.56
    {    1280,   1,  1555},           //     6    9.92   6.25
    {    1408,   2,  1399},           //    11    9.02   5.47
    {    1536,   1,  1400},           //     5    8.27   6.25
    {    1664,   3,  1244},           //    14    7.63   5.21
    {    1792,   2,   853},           //     9    7.09   1.56
    {    1920,   1,  1245},           //     4    6.61   6.25
    {    2048,   1,   620},           //     4    6.20   0.00
    {    2304,   2,  1245},           //     7   11.07   1.56
    {    2560,   1,  1558},           //     3    9.96   6.25
    {    2816,   4,  1402},           //    11    9.06   5.47
    {    3072,   2,  1403},           //     5    8.30   6.25
    {    3328,   3,  1247},           //     7    7.66   5.21
    {    3584,   4,   856},           //     9    7.11   1.56
    {    3840,   1,  1247},           //     2    6.64   6.25
    {    4096,   1,   622},           //     2    6.23   0.00
    {    4608,   3,  1664},           //     5   11.09   6.25
    {    5120,   2,  1560},           //     3    9.98   6.25
    {    5632,   5,  1248},           //     7    9.07   3.75
    {    6144,   3,   831},           //     4    8.32   0.00
    {    6656,   5,   998},           //     6    7.68   2.50
    {    7168,   7,   712},           //     8    7.13   0.00
    {    7680,   1,  1248},           //     1    6.65   6.25
    {    8192,   1,   623},           //     1    6.24   0.00
    {    9216,   6,  1665},           //     5   11.10   6.25
    {   10240,   4,  1561},           //     3    9.99   6.25
    {   11264,   7,  1070},           //     5    9.08   1.79
    {   12288,   3,   832},           //     2    8.33   0.00
    {   13312,   5,   999},           //     3    7.68   2.50
    {   14336,   7,   713},           //     4    7.14   0.00
    {   15360,   2,  1249},           //     1    6.66   6.25
    {   16384,   2,   624},           //     1    6.24   0.00
    {   18432,   7,  1428},           //     3   11.11   3.57
    {   20480,   5,   999},           //     2   10.00   0.00
    {   22528,  11,   908},           //     4    9.09   0.00
    {   24576,   3,   832},           //     1    8.33   0.00
    {   26624,  10,   999},           //     3    7.69   2.50
    {   28672,   7,   713},           //     2    7.14   0.00
    {   30720,   4,  1249},           //     1    6.66   6.25
    {   32768,   4,   624},           //     1    6.25   0.00
    {   36864,   9,  1110},           //     2   11.11   0.00
    {   40960,   5,   999},           //     1   10.00   0.00
    {   45056,  11,   908},           //     2    9.09   0.00
    {   49152,   6,   833},           //     1    8.33   0.00
    {   53248,  13,   769},           //     2    7.69   0.00
    {   57344,   7,   714},           //     1    7.14   0.00
    {   61440,   8,  1249},           //     1    6.67   6.25
    {   65536,   8,   624},           //     1    6.25   0.00
    {   73728,   9,  1110},           //     1   11.11   0.00
    {   81920,  10,   999},           //     1   10.00   0.00
    {   90112,  11,   908},           //     1    9.09   0.00
    {   98304,  12,   833},           //     1    8.33   0.00
    {  106496,  13,   769},           //     1    7.69   0.00
    {  114688,  14,   714},           //     1    7.14   0.00
    {  122880,  15,   666},           //     1    6.67   0.00
    {  131072,  16,   624},           //     1    6.25   0.00
    {  147456,  18,  1111},           //     1   11.11   0.00
    {  163840,  20,   999},           //     1   10.00   0.00
    {  180224,  22,   909},           //     1    9.09   0.00
    {  196608,  24,   833},           //     1    8.33   0.00
    {  212992,  26,   769},           //     1    7.69   0.00
    {  229376,  28,   714},           //     1    7.14   0.00
    {  245760,  30,   666},           //     1    6.67   0.00
    {  262144,  32,   624},           //     1    6.25   0.00
}};
// clang-format on

static_assert(kSizeClasses[kNumSizeClasses - 1].size == kMaxSmallSize);

constexpr std::array<uint8_t, kSizeLookupEntries> BuildLookup() {
  std::array<uint8_t, kSizeLookupEntries> lookup{};
  // The largest size that maps to lookup index i is 8*i in the first region
  // and 128*i - 15360 in the second; every class size is a multiple of the
  // step of its region, so the class for that size fits every size with the
  // same index and no size is rounded further than its class.
  int cl = 1;
  for (size_t i = 0; i < lookup.size(); ++i) {
    const uint64_t max_size = i <= 128 ? 8 * i : 128 * i - 15360;
    while (cl < kNumSizeClasses - 1 && kSizeClasses[cl].size < max_size) ++cl;
    lookup[i] = static_cast<uint8_t>(cl);
  }
  return lookup;
}

constexpr std::array<uint8_t, kSizeLookupEntries> kLookup = BuildLookup();

}  // namespace

std::span<const SizeClassInfo, kNumSizeClasses> SizeMap::Table() {
  return std::span<const SizeClassInfo, kNumSizeClasses>(kSizeClasses);
}

uint32_t SizeMap::ClassFor(uint64_t size) {
  DCHECK(size >= 1 && size <= kMaxSmallSize) << size;
  return kLookup[LookupIndex(size)];
}

uint64_t SizeMap::RoundedSize(uint64_t size) {
  if (size <= kMaxSmallSize) return ClassSize(ClassFor(size));
  return (size + kPageSize - 1) & ~(kPageSize - 1);
}

}  // namespace sharry::alloc
