// Results of the benchmark and tool binaries in three formats, chosen with
// --format (defined here, one copy for every binary that prints results):
//   text  `<prefix> key=value key=value ...`, one line per result: what the
//         binaries have always printed (the default; nothing else changes)
//   csv   a header line of the keys, then one row per result; a new header
//         line only when a result has other keys than the one before
//   json  one JSON object per result and line (JSON Lines), its first member
//         "record" naming the kind of result ("sharry_client", "row", ...)
// A binary builds a Record per result and hands it to its Emitter; human
// tables and commentary it prints only when Emitter::text() is true, so csv
// and json carry results alone (scripts/sharry_bench.py reads them).
#pragma once

#include <gflags/gflags.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

DECLARE_string(format);

namespace sharry::cli {

enum class Format { kText, kCsv, kJson };

// One result: its kind and ordered key/value pairs. Values are kept as the
// text the binary has always printed (a printf format per number), so text
// output stays byte-identical; json writes numbers bare (nan and inf as
// null) and strings quoted.
class Record {
 public:
  // `kind` names the result in csv/json; `text_prefix` starts its text line
  // (default: the kind).
  explicit Record(std::string kind, std::string text_prefix = "");

  Record& Add(std::string_view key, std::string_view value);  // a string
  Record& Add(std::string_view key, const char* value) { return Add(key, std::string_view(value)); }
  Record& Add(std::string_view key, const std::string& value) { return Add(key, std::string_view(value)); }
  Record& Add(std::string_view key, uint64_t value);
  Record& Add(std::string_view key, int64_t value);
  Record& Add(std::string_view key, uint32_t value) { return Add(key, uint64_t{value}); }
  Record& Add(std::string_view key, int value) { return Add(key, int64_t{value}); }
  // `fmt` is a printf format for one double ("%.3f").
  Record& Add(std::string_view key, double value, const char* fmt);
  // A value for csv/json only: the text line does not show it (its prefix
  // already says it, for example).
  Record& AddHidden(std::string_view key, std::string_view value);
  // Appends every pair of `other`. With a `group` name, its keys are
  // prefixed "<group>_" in csv and json, and in text the first one is spelled
  // "<group>:key" and the others plain (compute_bench's
  // "get:hit_rate=.. swap_ins=.. update:hit_rate=.. swap_ins=..").
  Record& Append(const Record& other, std::string_view group = "");

  const std::string& kind() const { return kind_; }

 private:
  friend class Emitter;
  enum class Type { kString, kNumber, kNull };  // how json writes a value
  struct Pair {
    std::string key;       // csv/json
    std::string text_key;  // text; empty: not shown in text
    std::string value;     // as printed in text and csv
    Type type;             // how json writes it
  };
  Record& Push(std::string_view key, std::string value, Type type);

  std::string kind_, text_prefix_;
  std::vector<Pair> pairs_;
};

// Writes Records to `out` in one format.
class Emitter {
 public:
  explicit Emitter(Format format, std::FILE* out = stdout) : format_(format), out_(out) {}
  Format format() const { return format_; }
  // True for text: the binary may print its human tables and commentary.
  bool text() const { return format_ == Format::kText; }
  void Emit(const Record& r);

 private:
  Format format_;
  std::FILE* out_;
  std::vector<std::string> csv_header_;  // the keys of the last header line
};

// The Emitter for --format; a bad value exits with status 2 naming the flag
// (flags::ExitOnBadFlags).
Emitter EmitterFromFlags(std::string_view program);

// Text of one value as JSON: a string quoted and escaped.
std::string JsonString(std::string_view s);

}  // namespace sharry::cli
