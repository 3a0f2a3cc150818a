#include "tools/cli/output.h"

#include <cmath>
#include <cstdio>

#include "base/flag_check.h"

DEFINE_string(format, "text", "output: text (key=value lines), csv (a header, then a row per result) or json "
                              "(one JSON object per line)");

namespace sharry::cli {

Record::Record(std::string kind, std::string text_prefix)
    : kind_(std::move(kind)), text_prefix_(text_prefix.empty() ? kind_ : std::move(text_prefix)) {}

Record& Record::Push(std::string_view key, std::string value, Type type) {
  pairs_.push_back({std::string(key), std::string(key), std::move(value), type});
  return *this;
}

Record& Record::Add(std::string_view key, std::string_view value) { return Push(key, std::string(value), Type::kString); }
Record& Record::Add(std::string_view key, uint64_t value) { return Push(key, std::to_string(value), Type::kNumber); }
Record& Record::Add(std::string_view key, int64_t value) { return Push(key, std::to_string(value), Type::kNumber); }

Record& Record::Add(std::string_view key, double value, const char* fmt) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, value);
  // nan and inf have no JSON number: they are written as null.
  return Push(key, buf, std::isfinite(value) ? Type::kNumber : Type::kNull);
}

Record& Record::AddHidden(std::string_view key, std::string_view value) {
  Push(key, std::string(value), Type::kString);
  pairs_.back().text_key.clear();
  return *this;
}

Record& Record::Append(const Record& other, std::string_view group) {
  const std::string g(group);
  bool first = true;
  for (const Pair& p : other.pairs_) {
    if (g.empty())
      pairs_.push_back(p);
    else
      pairs_.push_back({g + "_" + p.key, first ? g + ":" + p.text_key : p.text_key, p.value, p.type});
    first = false;
  }
  return *this;
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

namespace {

// A csv field: quoted only if it must be.
std::string CsvField(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace

void Emitter::Emit(const Record& r) {
  std::string line;
  switch (format_) {
    case Format::kText:
      line = r.text_prefix_;
      for (const auto& p : r.pairs_)
        if (!p.text_key.empty()) line += " " + p.text_key + "=" + p.value;
      break;
    case Format::kCsv: {
      std::vector<std::string> keys = {"record"};
      for (const auto& p : r.pairs_) keys.push_back(p.key);
      if (keys != csv_header_) {
        std::string header;
        for (const auto& k : keys) header += (header.empty() ? "" : ",") + CsvField(k);
        std::fprintf(out_, "%s\n", header.c_str());
        csv_header_ = std::move(keys);
      }
      line = CsvField(r.kind_);
      for (const auto& p : r.pairs_) line += "," + CsvField(p.value);
      break;
    }
    case Format::kJson:
      line = "{\"record\":" + JsonString(r.kind_);
      for (const auto& p : r.pairs_) {
        line += "," + JsonString(p.key) + ":";
        using T = Record::Type;
        line += p.type == T::kNumber ? p.value : p.type == T::kNull ? "null" : JsonString(p.value);
      }
      line += "}";
      break;
  }
  std::fprintf(out_, "%s\n", line.c_str());
  std::fflush(out_);
}

Emitter EmitterFromFlags(std::string_view program) {
  namespace f = sharry::flags;
  f::ExitOnBadFlags(program, f::CheckOneOf("format", FLAGS_format, {"text", "csv", "json"}));
  return Emitter(FLAGS_format == "csv" ? Format::kCsv : FLAGS_format == "json" ? Format::kJson : Format::kText);
}

}  // namespace sharry::cli
