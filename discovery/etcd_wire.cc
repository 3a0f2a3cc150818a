// The etcd v3 JSON gateway's wire format (etcd_wire.h): request bodies and
// bounded, exception-free reply parsers over nlohmann::json.
#include "discovery/etcd_wire.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>

namespace sharry::discovery::wire {
namespace {

using Json = nlohmann::json;

Status Bad(std::string what) { return Status::Protocol("bad reply: " + std::move(what)); }

// Nesting depth of JSON text (brackets outside strings), so that a hostile
// reply of a million '[' is refused before the parser sees it.
bool TooDeep(std::string_view text) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

// The body parsed, as an object.
StatusOr<Json> ParseObject(std::string_view text) {
  if (TooDeep(text)) return Bad("JSON nested deeper than " + std::to_string(kMaxJsonDepth));
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Bad("not JSON: " + Printable(text));
  if (!j.is_object()) return Bad("not a JSON object: " + Printable(text));
  return j;
}

// obj[name] if obj is an object that has it, else nullptr.
const Json* Field(const Json& obj, const char* name) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(name);
  return it == obj.end() ? nullptr : &*it;
}

// An int64 field: a decimal string (the gateway's form) or a JSON integer;
// missing: `def` if given, else an error.
StatusOr<int64_t> Int64Field(const Json& obj, const char* name, std::optional<int64_t> def = 0) {
  const Json* f = Field(obj, name);
  if (f == nullptr || f->is_null()) {
    if (def) return *def;
    return Bad(std::string("no \"") + name + "\"");
  }
  if (f->is_number_integer()) {
    if (f->is_number_unsigned() && f->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      return Bad(std::string("\"") + name + "\" out of range");
    }
    return f->get<int64_t>();
  }
  if (f->is_string()) {
    const std::string& s = f->get_ref<const std::string&>();
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc() && p == s.data() + s.size() && !s.empty()) return v;
  }
  return Bad(std::string("\"") + name +
             "\" is not an int64: " + Printable(f->dump(-1, ' ', false, Json::error_handler_t::replace)));
}

// A bytes field (base64); missing: "" unless required.
StatusOr<std::string> BytesField(const Json& obj, const char* name, bool required) {
  const Json* f = Field(obj, name);
  if (f == nullptr || f->is_null()) {
    if (required) return Bad(std::string("no \"") + name + "\"");
    return std::string();
  }
  if (!f->is_string()) return Bad(std::string("\"") + name + "\" is not a string");
  auto d = Base64Decode(f->get_ref<const std::string&>());
  if (!d.ok()) return Bad(std::string("\"") + name + "\": " + d.status().message());
  // A required field is a key: etcd has no empty key (found by etcd_reply_fuzz).
  if (required && d->empty()) return Bad(std::string("\"") + name + "\" is empty");
  return std::move(*d);
}

bool BoolField(const Json& obj, const char* name) {
  const Json* f = Field(obj, name);
  return f != nullptr && f->is_boolean() && f->get<bool>();
}

// The header's revision: etcd always sends it, and it is >= 1.
StatusOr<int64_t> HeaderRevision(const Json& obj) {
  const Json* h = Field(obj, "header");
  if (h == nullptr || !h->is_object()) return Bad("no \"header\"");
  auto rev = Int64Field(*h, "revision", std::nullopt);
  if (!rev.ok()) return rev.status();
  if (*rev < 1) return Bad("header revision " + std::to_string(*rev));
  return *rev;
}

// A streamed reply's {"result": {...}} (or the object itself, unwrapped).
StatusOr<const Json*> StreamResult(const Json& obj) {
  if (Field(obj, "error") != nullptr) {
    return ParseErrorReply(200, obj.dump(-1, ' ', false, Json::error_handler_t::replace));
  }
  if (const Json* r = Field(obj, "result")) {
    if (!r->is_object()) return Bad("\"result\" is not an object");
    return r;
  }
  return &obj;
}

StatusCode CodeOfGrpc(int64_t grpc) {
  switch (grpc) {
    case 1: return StatusCode::kDisconnected;       // CANCELLED
    case 3: return StatusCode::kInvalidArgument;    // INVALID_ARGUMENT
    case 4: return StatusCode::kTimeout;            // DEADLINE_EXCEEDED
    case 5: return StatusCode::kNotFound;           // NOT_FOUND
    case 7: return StatusCode::kPermissionDenied;   // PERMISSION_DENIED
    case 8: return StatusCode::kResourceExhausted;  // RESOURCE_EXHAUSTED
    case 9: return StatusCode::kInvalidArgument;    // FAILED_PRECONDITION
    case 11: return StatusCode::kOutOfRange;        // OUT_OF_RANGE
    case 16: return StatusCode::kPermissionDenied;  // UNAUTHENTICATED
    default: return StatusCode::kUnavailable;       // UNKNOWN, ABORTED, INTERNAL, UNAVAILABLE, ...
  }
}

StatusCode CodeOfHttp(long http) {
  switch (http) {
    case 400: return StatusCode::kInvalidArgument;
    case 401:
    case 403: return StatusCode::kPermissionDenied;
    case 404: return StatusCode::kNotFound;
    case 408:
    case 504: return StatusCode::kTimeout;
    default: return http >= 500 ? StatusCode::kUnavailable : StatusCode::kProtocol;
  }
}

constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

std::string Base64Encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16 | static_cast<uint8_t>(bytes[i + 1]) << 8 |
                 static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (size_t rest = bytes.size() - i; rest > 0) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (rest == 2) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

StatusOr<std::string> Base64Decode(std::string_view text) {
  static const std::array<int8_t, 256> kValue = [] {
    std::array<int8_t, 256> t{};
    t.fill(-1);
    for (size_t i = 0; i < kAlphabet.size(); ++i) t[static_cast<uint8_t>(kAlphabet[i])] = static_cast<int8_t>(i);
    return t;
  }();
  if (text.size() % 4 != 0) return Status::Protocol("base64 of length " + std::to_string(text.size()));
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = text.size() >= 2 && text[text.size() - 2] == '=' ? 2 : 1;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t v = 0;
    const bool last = i + 4 == text.size();
    for (size_t k = 0; k < 4; ++k) {
      char c = text[i + k];
      int8_t d;
      if (c == '=' && last && k >= 4 - pad) {
        d = 0;
      } else {
        d = kValue[static_cast<uint8_t>(c)];
        if (d < 0) return Status::Protocol("not base64: " + Printable(text, 40));
      }
      v = v << 6 | static_cast<uint32_t>(d);
    }
    out += static_cast<char>(v >> 16);
    if (!last || pad < 2) out += static_cast<char>((v >> 8) & 0xff);
    if (!last || pad < 1) out += static_cast<char>(v & 0xff);
  }
  return out;
}

std::string PrefixRangeEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<uint8_t>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

std::string LeaseGrantRequest(int64_t ttl_s) { return Json{{"TTL", std::to_string(ttl_s)}}.dump(); }

std::string LeaseIdRequest(int64_t lease_id) { return Json{{"ID", std::to_string(lease_id)}}.dump(); }

std::string PutRequest(std::string_view key, std::string_view value, int64_t lease_id) {
  Json j{{"key", Base64Encode(key)}, {"value", Base64Encode(value)}};
  if (lease_id != 0) j["lease"] = std::to_string(lease_id);
  return j.dump();
}

std::string DeleteRequest(std::string_view key) { return Json{{"key", Base64Encode(key)}}.dump(); }

std::string RangePrefixRequest(std::string_view prefix) {
  return Json{{"key", Base64Encode(prefix)}, {"range_end", Base64Encode(PrefixRangeEnd(prefix))}}.dump();
}

std::string WatchCreateRequest(std::string_view prefix, int64_t start_revision) {
  Json create{{"key", Base64Encode(prefix)},
              {"range_end", Base64Encode(PrefixRangeEnd(prefix))},
              {"start_revision", std::to_string(start_revision)}};
  return Json{{"create_request", std::move(create)}}.dump();
}

StatusOr<int64_t> ParseLeaseGrantReply(std::string_view body) {
  auto j = ParseObject(body);
  if (!j.ok()) return j.status();
  if (const Json* e = Field(*j, "error"); e != nullptr && e->is_string() && !e->get_ref<const std::string&>().empty()) {
    return Status::Unavailable(e->get<std::string>());  // LeaseGrantResponse.error
  }
  auto id = Int64Field(*j, "ID", std::nullopt);
  if (!id.ok()) return id.status();
  if (*id <= 0) return Bad("lease id " + std::to_string(*id));
  return *id;
}

StatusOr<int64_t> ParseKeepAliveReply(std::string_view body) {
  auto j = ParseObject(body);
  if (!j.ok()) return j.status();
  auto r = StreamResult(*j);
  if (!r.ok()) return r.status();
  auto ttl = Int64Field(**r, "TTL");
  if (!ttl.ok()) return ttl.status();
  if (*ttl < 0) return Bad("TTL " + std::to_string(*ttl));
  return *ttl;
}

StatusOr<int64_t> ParseHeaderRevision(std::string_view body) {
  auto j = ParseObject(body);
  if (!j.ok()) return j.status();
  return HeaderRevision(*j);
}

StatusOr<int64_t> ParseDeleteReply(std::string_view body) {
  auto j = ParseObject(body);
  if (!j.ok()) return j.status();
  if (auto rev = HeaderRevision(*j); !rev.ok()) return rev.status();
  auto n = Int64Field(*j, "deleted");
  if (!n.ok()) return n.status();
  if (*n < 0) return Bad("deleted " + std::to_string(*n));
  return *n;
}

StatusOr<RangeResult> ParseRangeReply(std::string_view body) {
  auto j = ParseObject(body);
  if (!j.ok()) return j.status();
  RangeResult out;
  auto rev = HeaderRevision(*j);
  if (!rev.ok()) return rev.status();
  out.revision = *rev;
  const Json* kvs = Field(*j, "kvs");
  if (kvs == nullptr || kvs->is_null()) return out;
  if (!kvs->is_array()) return Bad("\"kvs\" is not a list");
  out.kvs.reserve(kvs->size());
  for (const Json& e : *kvs) {
    if (!e.is_object()) return Bad("a kv is not an object");
    KeyValue kv;
    auto key = BytesField(e, "key", /*required=*/true);
    if (!key.ok()) return key.status();
    auto value = BytesField(e, "value", /*required=*/false);
    if (!value.ok()) return value.status();
    auto mod = Int64Field(e, "mod_revision");
    if (!mod.ok()) return mod.status();
    auto lease = Int64Field(e, "lease");
    if (!lease.ok()) return lease.status();
    kv.key = std::move(*key);
    kv.value = std::move(*value);
    kv.mod_revision = *mod;
    kv.lease = *lease;
    out.kvs.push_back(std::move(kv));
  }
  return out;
}

StatusOr<WatchLine> ParseWatchLine(std::string_view line) {
  auto j = ParseObject(line);
  if (!j.ok()) return j.status();
  auto r = StreamResult(*j);
  if (!r.ok()) return r.status();
  const Json& res = **r;
  WatchLine out;
  // (etcd leaves the revision out of a cancellation's header)
  if (const Json* h = Field(res, "header"); h != nullptr) {
    auto rev = Int64Field(*h, "revision");
    if (!rev.ok()) return rev.status();
    out.revision = *rev;
  }
  out.created = BoolField(res, "created");
  out.canceled = BoolField(res, "canceled");
  auto compact = Int64Field(res, "compact_revision");
  if (!compact.ok()) return compact.status();
  out.compact_revision = *compact;
  if (const Json* reason = Field(res, "cancel_reason"); reason != nullptr && reason->is_string()) {
    out.cancel_reason = reason->get<std::string>();
  }
  const Json* events = Field(res, "events");
  if (events == nullptr || events->is_null()) return out;
  if (!events->is_array()) return Bad("\"events\" is not a list");
  for (const Json& e : *events) {
    if (!e.is_object()) return Bad("an event is not an object");
    WatchEvent ev;
    if (const Json* type = Field(e, "type"); type != nullptr && !type->is_null()) {
      if (type->is_string() && type->get_ref<const std::string&>() == "PUT") {
        ev.type = WatchEvent::Type::kPut;
      } else if (type->is_string() && type->get_ref<const std::string&>() == "DELETE") {
        ev.type = WatchEvent::Type::kDelete;
      } else if (type->is_number_integer() && (type->get<int64_t>() == 0 || type->get<int64_t>() == 1)) {
        ev.type = type->get<int64_t>() == 0 ? WatchEvent::Type::kPut : WatchEvent::Type::kDelete;
      } else {
        return Bad("event type " + Printable(type->dump(-1, ' ', false, Json::error_handler_t::replace)));
      }
    }
    const Json* kv = Field(e, "kv");
    if (kv == nullptr || !kv->is_object()) return Bad("an event without \"kv\"");
    auto key = BytesField(*kv, "key", /*required=*/true);
    if (!key.ok()) return key.status();
    auto value = BytesField(*kv, "value", /*required=*/false);
    if (!value.ok()) return value.status();
    auto mod = Int64Field(*kv, "mod_revision");
    if (!mod.ok()) return mod.status();
    ev.key = std::move(*key);
    if (ev.type == WatchEvent::Type::kPut) ev.value = std::move(*value);
    ev.mod_revision = *mod;
    out.events.push_back(std::move(ev));
  }
  return out;
}

Status ParseErrorReply(long http_code, std::string_view body) {
  const std::string http = http_code == 200 ? "" : "HTTP " + std::to_string(http_code) + ": ";
  Json j;
  if (!TooDeep(body)) j = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    // {"error": "...", "message": "...", "code": 5}, or a stream's
    // {"error": {"grpc_code": 5, "http_code": 404, "message": "..."}}.
    const Json* e = &j;
    if (const Json* inner = Field(j, "error"); inner != nullptr && inner->is_object()) e = inner;
    const Json* msg = Field(*e, "message");
    if (msg == nullptr || !msg->is_string()) msg = Field(*e, "error");
    const Json* code = Field(*e, "code");
    if (code == nullptr) code = Field(*e, "grpc_code");
    if (msg != nullptr && msg->is_string()) {
      StatusCode c =
          code != nullptr && code->is_number_integer() ? CodeOfGrpc(code->get<int64_t>()) : CodeOfHttp(http_code);
      return Status(c, http + Printable(msg->get_ref<const std::string&>(), 200));
    }
  }
  if (body.empty()) return Status(CodeOfHttp(http_code), http + "empty reply");
  return Status(http_code == 200 ? StatusCode::kProtocol : CodeOfHttp(http_code),
                http + "bad reply: " + Printable(body));
}

std::string Printable(std::string_view text, size_t max) {
  std::string out;
  out.reserve(std::min(text.size(), max) + 3);
  for (size_t i = 0; i < text.size() && i < max; ++i) {
    char c = text[i];
    out += (c >= 0x20 && c < 0x7f) ? c : '?';
  }
  if (text.size() > max) out += "...";
  return out;
}

}  // namespace sharry::discovery::wire
