#include "tools/cli/ranged_flag.h"

#include <bit>
#include <deque>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "base/mutex.h"

namespace sharry::cli {
namespace {

// Filled during static initialisation (one thread), read after main starts;
// the mutex keeps that honest if a flag is ever defined in a plugin.
struct Registry {
  Mutex mu;
  std::vector<std::function<Status()>> checks GUARDED_BY(mu);
  std::deque<std::string> helps GUARDED_BY(mu);  // a deque: pointers stay put
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: gflags outlives main
  return *r;
}

// 65536 and up, powers of two read better as 2^k.
std::string Number(uint64_t v) {
  if (v >= 65536 && std::has_single_bit(v)) return "2^" + std::to_string(std::countr_zero(v));
  return std::to_string(v);
}
std::string Number(int64_t v) { return v >= 0 ? Number(static_cast<uint64_t>(v)) : std::to_string(v); }
std::string Number(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

template <typename T, typename Bound>
const char* Register(const char* name, const T* flag, Bound lo, Bound hi, const char* help) {
  Registry& r = registry();
  MutexLock l(&r.mu);
  r.checks.push_back([name, flag, lo, hi]() -> Status {
    if constexpr (std::is_same_v<T, double>) {
      return flags::CheckRangeF(name, *flag, lo, hi);
    } else if constexpr (std::is_signed_v<T>) {
      return flags::CheckRange(name, *flag, lo, hi);
    } else {
      return flags::CheckRangeU(name, *flag, lo, hi);
    }
  });
  r.helps.push_back(std::string(help) + " [" + Number(lo) + ".." + Number(hi) + "]");
  return r.helps.back().c_str();
}

}  // namespace

Status CheckFlagRanges() {
  Registry& r = registry();
  MutexLock l(&r.mu);
  for (const auto& check : r.checks) {
    Status s = check();
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

namespace internal {

const char* RangedHelp(const char* name, const int32_t* flag, int64_t lo, int64_t hi, const char* help) {
  return Register(name, flag, lo, hi, help);
}
const char* RangedHelp(const char* name, const int64_t* flag, int64_t lo, int64_t hi, const char* help) {
  return Register(name, flag, lo, hi, help);
}
const char* RangedHelp(const char* name, const uint32_t* flag, uint64_t lo, uint64_t hi, const char* help) {
  return Register(name, flag, lo, hi, help);
}
const char* RangedHelp(const char* name, const uint64_t* flag, uint64_t lo, uint64_t hi, const char* help) {
  return Register(name, flag, lo, hi, help);
}
const char* RangedHelp(const char* name, const double* flag, double lo, double hi, const char* help) {
  return Register(name, flag, lo, hi, help);
}

}  // namespace internal
}  // namespace sharry::cli
