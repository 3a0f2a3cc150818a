// MemnodeInfo's JSON (memnode_info.h).
#include "discovery/memnode_info.h"

#include <nlohmann/json.hpp>

#include <chrono>

#include "discovery/etcd_wire.h"

namespace sharry::discovery {

std::string EncodeMemnodeInfo(const MemnodeInfo& info) {
  nlohmann::ordered_json j{{"addr", info.addr},  // (in the documented order)
                           {"transport", info.transport},
                           {"uma_bytes", info.uma_bytes},
                           {"started", info.started_ms}};
  // (replace: a flag's bytes that are not UTF-8 must not throw)
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

StatusOr<MemnodeInfo> DecodeMemnodeInfo(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("memnode info " + wire::Printable(text) + ": " + why);
  };
  if (text.size() > 4096) return bad("over 4096 bytes");
  nlohmann::json j = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  MemnodeInfo info;
  auto addr = j.find("addr");
  if (addr == j.end() || !addr->is_string()) return bad("no \"addr\" string");
  info.addr = addr->get<std::string>();
  auto transport = j.find("transport");
  if (transport == j.end() || !transport->is_string()) return bad("no \"transport\" string");
  info.transport = transport->get<std::string>();
  if (info.transport != "tcp" && info.transport != "verbs") return bad("transport is neither tcp nor verbs");
  auto uma = j.find("uma_bytes");
  if (uma == j.end() || !uma->is_number_unsigned()) return bad("no \"uma_bytes\" unsigned integer");
  info.uma_bytes = uma->get<uint64_t>();
  auto started = j.find("started");
  if (started == j.end() || !started->is_number_integer() ||
      (started->is_number_unsigned() && started->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))) {
    return bad("no \"started\" integer");
  }
  info.started_ms = started->get<int64_t>();
  return info;
}

int64_t UnixMillisNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace sharry::discovery
