// Fuzzes the request-target and channel parsers (core/uri.h, core/channel.h): never crash, and a
// channel that validates is one the frame encoder can embed without escaping.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/channel.h"
#include "core/uri.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto target = bridge::core::ParseRequestTarget(text);
  if (target) {
    if (auto channel = bridge::core::ChannelFromWsPath(target->path)) {
      if (bridge::core::ValidateChannel(*channel).ok()) {
        for (char c : *channel) {
          if (c == '"' || c == '\\' || static_cast<unsigned char>(c) < 0x20) std::abort();
        }
        if (channel->size() > bridge::core::kMaxChannelBytes) std::abort();
      }
    }
    (void)target->Param("since");
  }
  (void)bridge::core::ValidatePattern(text);
  (void)bridge::core::PatternMatches(text, "circles/x");
  return 0;
}
