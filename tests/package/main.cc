// Uses the installed headers and library: a tcp server and client in one
// process, one write and read back. Exit 0 on success.
#include <cstdio>
#include <cstring>
#include <vector>

#include "verbs/transport.h"

struct Nop : sharry::RequestHandler {
  size_t Handle(sharry::ClientId, std::span<const uint8_t>, std::span<uint8_t>) override { return 0; }
};

int main() {
  std::vector<uint8_t> region(1 << 16);
  Nop h;
  sharry::ServerOptions so;
  so.listen_addr = "127.0.0.1";
  so.region = region.data();
  so.region_size = region.size();
  auto server = sharry::TransportServer::Start(sharry::TransportKind::kTcp, so, &h);
  if (!server.ok()) return 1;
  sharry::ClientOptions co;
  co.port = (*server)->port();
  auto client = sharry::TransportClient::Connect(sharry::TransportKind::kTcp, co);
  if (!client.ok()) return 2;
  const char msg[] = "hello far memory";
  char back[sizeof msg] = {};
  if (!(*client)->Write(100, msg, sizeof msg).ok() || !(*client)->Read(100, back, sizeof back).ok()) return 3;
  std::printf("consumer: read back '%s'\n", back);
  return std::memcmp(msg, back, sizeof msg) == 0 ? 0 : 4;
}
