// The JSON frames the bridge sends, built once per event and shared by every subscriber.
//
// A published frame is split around its offset (`head` + offset + `tail`) so that the hub can
// assign the channel offset under its lock with a cheap concatenation, after the expensive
// payload serialisation has run outside it. Pure functions; any thread.
#ifndef BRIDGE_CORE_FRAME_H_
#define BRIDGE_CORE_FRAME_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "gathering/bridge/v1/events.pb.h"

namespace bridge::core {

// One frame on its way to sockets. Immutable once built; shared by pointer.
struct Frame {
  // Empty for control frames (pong, error, ...), except `subscribed`, which names its channel.
  std::string channel;
  uint64_t offset = 0;  // 0 for control frames
  int ns = -1;          // the channel's namespace index in the registry; -1 for control frames
  std::string text;     // the JSON text sent as one WebSocket text frame
  // When the hub accepted the publish (steady_clock, ns since its epoch), for the
  // publish-to-socket-write histogram; 0: not measured (control frames, history replays).
  int64_t accepted_nanos = 0;
  // A `subscribed` frame's epoch: the channel's offsets that follow it belong to this epoch (the
  // session remembers it for the resume positions it tells at shutdown). Empty otherwise.
  std::string epoch;
  bool is_control() const { return offset == 0; }
};
using FramePtr = std::shared_ptr<const Frame>;

// An event frame waiting for its offset.
struct FrameParts {
  std::string type;
  std::string head;  // `{"type":…,"channel":…,"offset":`
  std::string tail;  // `,"timestamp":…,"data":…}`
  std::string timestamp;
};

// RFC 3339, UTC, milliseconds: "2026-11-25T17:00:00.123Z".
std::string FormatTimestamp(int64_t seconds, int32_t nanos);
std::string FormatTimestamp(std::chrono::system_clock::time_point t);

// Validates `event` (channel, payload, custom type) and serialises it. `now` stamps events whose
// timestamp is unset. INVALID_ARGUMENT says what is wrong.
absl::StatusOr<FrameParts> EncodeEvent(const gathering::bridge::v1::Event& event,
                                       std::chrono::system_clock::time_point now);

// A control frame (no channel, no offset) of `text`. The bridge's own control frames are built
// in core/protocol.h.
FramePtr MakeControlFrame(std::string text);

// Escapes `s` as a JSON string, with the quotes.
std::string JsonQuote(std::string_view s);

}  // namespace bridge::core

#endif  // BRIDGE_CORE_FRAME_H_
