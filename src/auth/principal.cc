#include "auth/principal.h"

#include "auth/channel_pattern.h"

namespace bridge::auth {

bool Principal::CanSubscribe(std::string_view channel) const {
  return AnyMatches(channels, channel);
}

bool Principal::CanPublish(std::string_view channel) const { return AnyMatches(publish, channel); }

}  // namespace bridge::auth
