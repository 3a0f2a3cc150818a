// The benchmarks' small statistics and flag-list helpers, one copy for all
// of bench/: elapsed seconds, comma-separated flag lists, median, percentile
// and mean of samples.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace sharry::bench {

using Clock = std::chrono::steady_clock;

// Seconds from t0 to now (negative if t0 is in the future: a deadline).
inline double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// "a,b,,c" -> {"a", "b", "c"}: the non-empty items of a comma-separated list.
inline std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

// "1,2,8" -> {1, 2, 8} (std::stoull; throws on a non-number).
template <typename T = uint64_t>
std::vector<T> SplitNumbers(const std::string& s) {
  std::vector<T> out;
  for (const auto& x : Split(s)) out.push_back(static_cast<T>(std::stoull(x)));
  return out;
}

// The median (the mean of the middle two for an even count); 0 if empty.
inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The sample at rank q * size (q in [0, 1], the last for q = 1); 0 if empty.
template <typename T>
double Percentile(std::vector<T> v, double q) {
  if (v.empty()) return 0;
  const size_t k = std::min(v.size() - 1, static_cast<size_t>(q * v.size()));
  std::nth_element(v.begin(), v.begin() + k, v.end());
  return static_cast<double>(v[k]);
}

template <typename T>
double Mean(const std::vector<T>& v) {
  double s = 0;
  for (T x : v) s += static_cast<double>(x);
  return v.empty() ? 0 : s / v.size();
}

}  // namespace sharry::bench
