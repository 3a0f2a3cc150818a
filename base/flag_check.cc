#include "base/flag_check.h"

#include <signal.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <sstream>

namespace sharry::flags {
namespace {

std::string Flag(std::string_view name, std::string_view value) {
  return "--" + std::string(name) + "=" + std::string(value);
}

std::string OutOfRange(std::string_view name, std::string_view value, const std::string& lo, const std::string& hi) {
  return Flag(name, value) + " is out of range: allowed " + lo + ".." + hi;
}

std::string FormatDouble(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// Splits on ','; the empty string yields no items.
std::vector<std::string_view> SplitCommas(std::string_view s) {
  std::vector<std::string_view> items;
  if (s.empty()) return items;
  for (size_t pos = 0;;) {
    const size_t comma = s.find(',', pos);
    items.push_back(s.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return items;
}

// Whole-string decimal integer; false on junk, empty or overflow.
template <typename T>
bool ParseWhole(std::string_view s, T* out) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

Status CheckRange(std::string_view name, int64_t value, int64_t lo, int64_t hi) {
  if (value >= lo && value <= hi) return Status::Ok();
  return Status::InvalidArgument(OutOfRange(name, std::to_string(value), std::to_string(lo), std::to_string(hi)));
}

Status CheckRangeU(std::string_view name, uint64_t value, uint64_t lo, uint64_t hi) {
  if (value >= lo && value <= hi) return Status::Ok();
  return Status::InvalidArgument(OutOfRange(name, std::to_string(value), std::to_string(lo), std::to_string(hi)));
}

Status CheckRangeF(std::string_view name, double value, double lo, double hi) {
  if (std::isfinite(value) && value >= lo && value <= hi) return Status::Ok();
  return Status::InvalidArgument(OutOfRange(name, FormatDouble(value), FormatDouble(lo), FormatDouble(hi)) +
                                 (std::isfinite(value) ? "" : " (a finite number)"));
}

Status CheckOneOf(std::string_view name, std::string_view value, std::initializer_list<std::string_view> allowed) {
  std::string list;
  size_t i = 0;
  for (std::string_view a : allowed) {
    if (a == value) return Status::Ok();
    list += (i == 0 ? "" : i + 1 == allowed.size() ? " or " : ", ") + std::string(a);
    ++i;
  }
  return Status::InvalidArgument(Flag(name, value) + " is not allowed: use " + list);
}

Status CheckListOf(std::string_view name, std::string_view value, std::initializer_list<std::string_view> allowed) {
  const auto items = SplitCommas(value);
  if (items.empty()) return Status::InvalidArgument(Flag(name, value) + " is empty: want a comma-separated list");
  for (std::string_view item : items) {
    if (auto s = CheckOneOf(name, item, allowed); !s.ok())
      return Status::InvalidArgument(Flag(name, value) + ": '" + std::string(item) + "' is not allowed: use" +
                                     s.message().substr(s.message().find(": use") + 5) + " (comma-separated)");
  }
  return Status::Ok();
}

StatusOr<std::vector<int>> ParseCoreList(std::string_view name, std::string_view value) {
  const int hi = NumCores() - 1;
  std::vector<int> cores;
  for (std::string_view item : SplitCommas(value)) {
    int core = 0;
    if (!ParseWhole(item, &core) || core < -1 || core > hi)
      return Status::InvalidArgument(Flag(name, value) + ": '" + std::string(item) +
                                     "' is not a core: want a comma-separated list of cores in 0.." +
                                     std::to_string(hi) + " or -1 (not pinned)");
    cores.push_back(core);
  }
  return cores;
}

StatusOr<std::vector<uint64_t>> ParseU64List(std::string_view name, std::string_view value, uint64_t lo,
                                             uint64_t hi) {
  std::vector<uint64_t> out;
  for (std::string_view item : SplitCommas(value)) {
    uint64_t v = 0;
    if (!ParseWhole(item, &v) || v < lo || v > hi)
      return Status::InvalidArgument(Flag(name, value) + ": '" + std::string(item) + "' is not an integer in " +
                                     std::to_string(lo) + ".." + std::to_string(hi) + " (comma-separated list)");
    out.push_back(v);
  }
  if (out.empty()) return Status::InvalidArgument(Flag(name, value) + " is empty: want at least one integer");
  return out;
}

int NumCores() {
  const long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n >= 1 ? static_cast<int>(n) : 1;
}

uint64_t PhysicalMiB() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return kMaxFlagMiB;  // unknown: only the format's limit applies
  const uint64_t mib = (static_cast<uint64_t>(pages) * static_cast<uint64_t>(page)) >> 20;
  return mib >= 1 ? mib : 1;
}

Status FirstError(std::initializer_list<Status> checks) {
  for (const Status& s : checks)
    if (!s.ok()) return s;
  return Status::Ok();
}

void ExitOnBadFlags(std::string_view program, const Status& s) {
  if (s.ok()) return;
  std::fprintf(stderr, "%.*s: %s\n", static_cast<int>(program.size()), program.data(), s.message().c_str());
  std::fflush(stderr);
  std::exit(2);
}

int RunMain(std::string_view program, int (*body)(int, char**), int argc, char** argv,
            std::string_view out_of_memory) {
  signal(SIGPIPE, SIG_IGN);
  try {
    return body(argc, argv);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%.*s: %.*s\n", static_cast<int>(program.size()), program.data(),
                 static_cast<int>(out_of_memory.size()), out_of_memory.data());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%.*s: unexpected error: %s\n", static_cast<int>(program.size()), program.data(),
                 e.what());
  }
  return 1;
}

}  // namespace sharry::flags
