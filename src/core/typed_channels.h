// Typed channels: which payload types each namespace's channels carry, as events.proto declares
// them with the `channel_types` option on `Event` (proto/gathering/bridge/v1/options.proto).
//
// Built once at start-up from the compiled descriptor and read-only afterwards, so any thread
// may call Check(). A namespace without a declaration is untyped: Check() accepts anything.
// docs/protocol.md ("Typed channels") is the user-facing description.
#ifndef BRIDGE_CORE_TYPED_CHANNELS_H_
#define BRIDGE_CORE_TYPED_CHANNELS_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/namespaces.h"
#include "gathering/bridge/v1/events.pb.h"
#include "gathering/bridge/v1/options.pb.h"

namespace bridge::core {

class TypedChannels {
 public:
  // What one typed namespace carries.
  struct Entry {
    std::string ns;
    // Field numbers of the allowed `Event.payload` cases (Custom's included when `custom`),
    // in proto order.
    std::vector<int> cases;
    // Their names, in the same order ("custom" last when allowed): for messages and logs.
    std::vector<std::string> names;
    bool custom = false;
  };

  // No typed namespace: every publish passes.
  TypedChannels() = default;

  // Checks `declarations` against Event's `payload` oneof: INVALID_ARGUMENT for an empty or
  // repeated namespace, a payload name that is not a case of the oneof (or "custom", which is
  // the `custom` flag's), or one named twice.
  static absl::StatusOr<TypedChannels> Build(
      const std::vector<gathering::bridge::v1::ChannelTypes>& declarations);

  // The declarations compiled into this binary (Event's `channel_types` options), built and
  // then checked against the configured namespaces: FAILED_PRECONDITION when a typed namespace
  // has presence but not agent_joined and agent_left, or broadcasts client messages but does
  // not allow custom. A declaration of a namespace `namespaces` lacks is not an error: it is
  // reported in `warnings` (may be null) and left out.
  static absl::StatusOr<TypedChannels> Load(const NamespaceRegistry& namespaces,
                                            std::vector<std::string>* warnings);

  // Load's checks against `namespaces`, for declarations already built.
  absl::StatusOr<TypedChannels> ForNamespaces(const NamespaceRegistry& namespaces,
                                              std::vector<std::string>* warnings) const;

  // OK when `event`'s channel is untyped or carries the event's payload type; else
  // INVALID_ARGUMENT naming the channel, the type and the allowed types. An event without a
  // payload passes (the hub refuses it with its own message).
  absl::Status Check(const gathering::bridge::v1::Event& event) const;

  // The namespace's declaration, or nullptr when it is untyped.
  const Entry* Find(std::string_view ns) const;
  const std::vector<Entry>& entries() const { return entries_; }

 private:
  std::vector<Entry> entries_;  // a handful: searched linearly
};

}  // namespace bridge::core

#endif  // BRIDGE_CORE_TYPED_CHANNELS_H_
