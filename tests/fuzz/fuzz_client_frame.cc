// Fuzzes the parser of the frames WebSocket clients send (core/client_frame.h): never crash,
// never accept something that is not a JSON object, and a message re-serialised for broadcast
// is valid JSON that keeps the bridge's fields.
#include <boost/json/parse.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/client_frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  bridge::core::ClientFrameError error;
  auto frame = bridge::core::ParseClientFrame(text, error);
  if (!frame) {
    if (error.message.empty()) std::abort();
    return 0;
  }
  if (frame->kind != bridge::core::ClientFrame::Kind::kMessage) return 0;
  std::string head, tail;
  bridge::core::BuildClientMessageFrame(std::move(frame->object), "circles/fuzz",
                                        "2026-01-01T00:00:00.000Z", "c-1", head, tail);
  boost::system::error_code ec;
  auto v = boost::json::parse(head + "7" + tail, ec);
  if (ec || !v.is_object() || v.at("offset") != 7 || v.at("channel") != "circles/fuzz") {
    std::abort();
  }
  return 0;
}
