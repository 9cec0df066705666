#include "core/typed_channels.h"

#include <algorithm>

#include "core/channel.h"
#include "core/strings.h"

namespace bridge::core {

namespace pb = gathering::bridge::v1;

namespace {

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += Cat(out.empty() ? "" : ", ", n);
  return out;
}

bool Allows(const TypedChannels::Entry& e, int field) {
  return std::find(e.cases.begin(), e.cases.end(), field) != e.cases.end();
}

}  // namespace

absl::StatusOr<TypedChannels> TypedChannels::Build(
    const std::vector<pb::ChannelTypes>& declarations) {
  const google::protobuf::OneofDescriptor* oneof =
      pb::Event::descriptor()->FindOneofByName("payload");
  const int custom_field = pb::Event::kCustomFieldNumber;
  TypedChannels out;
  for (const auto& d : declarations) {
    const std::string& ns = d.namespace_();
    auto bad = [&ns](std::string_view why) {
      return absl::InvalidArgumentError(
          Cat("events.proto, channel_types of namespace '", ns, "': ", why));
    };
    if (ns.empty() || ns.find('/') != std::string::npos || ns.find('*') != std::string::npos) {
      return bad("not a namespace name");
    }
    if (out.Find(ns) != nullptr) return bad("declared twice");
    Entry e;
    e.ns = ns;
    e.custom = d.custom();
    std::vector<int> listed;
    for (const std::string& name : d.payloads()) {
      const google::protobuf::FieldDescriptor* f = pb::Event::descriptor()->FindFieldByName(name);
      if (f == nullptr || f->containing_oneof() != oneof) {
        return bad(Cat("'", name, "' is not a case of Event.payload"));
      }
      if (f->number() == custom_field) return bad("say `custom: true` rather than list 'custom'");
      if (std::find(listed.begin(), listed.end(), f->number()) != listed.end()) {
        return bad(Cat("'", name, "' is listed twice"));
      }
      listed.push_back(f->number());
    }
    // In proto order, so that messages and the generated clients list the types alike.
    for (int i = 0; i < oneof->field_count(); ++i) {
      int number = oneof->field(i)->number();
      if (std::find(listed.begin(), listed.end(), number) != listed.end()) {
        e.cases.push_back(number);
      }
    }
    if (e.custom) e.cases.push_back(custom_field);
    for (int c : e.cases) {
      e.names.push_back(pb::Event::descriptor()->FindFieldByNumber(c)->name());
    }
    out.entries_.push_back(std::move(e));
  }
  return out;
}

absl::StatusOr<TypedChannels> TypedChannels::Load(const NamespaceRegistry& namespaces,
                                                  std::vector<std::string>* warnings) {
  const auto& options = pb::Event::descriptor()->options();
  std::vector<pb::ChannelTypes> declarations;
  for (int i = 0; i < options.ExtensionSize(pb::channel_types); ++i) {
    declarations.push_back(options.GetExtension(pb::channel_types, i));
  }
  auto built = Build(declarations);
  if (!built.ok()) return built.status();
  return built->ForNamespaces(namespaces, warnings);
}

absl::StatusOr<TypedChannels> TypedChannels::ForNamespaces(
    const NamespaceRegistry& namespaces, std::vector<std::string>* warnings) const {
  TypedChannels out;
  for (const Entry& e : entries_) {
    const NamespaceConfig* ns = namespaces.Find(e.ns);
    if (ns == nullptr) {
      if (warnings != nullptr) {
        warnings->push_back(Cat("events.proto declares the types of namespace '", e.ns,
                                "', which is not configured (--namespaces); ignored"));
      }
      continue;
    }
    if (ns->presence && (!Allows(e, pb::Event::kAgentJoinedFieldNumber) ||
                         !Allows(e, pb::Event::kAgentLeftFieldNumber))) {
      return absl::FailedPreconditionError(
          Cat("namespace '", e.ns,
              "' has presence, so the bridge emits agent_joined and agent_left into its channels, "
              "but events.proto's channel_types for it do not allow both (it allows ",
              Join(e.names), "); add them or turn presence off"));
    }
    if (ns->client_broadcast && !e.custom) {
      return absl::FailedPreconditionError(
          Cat("namespace '", e.ns,
              "' broadcasts client messages, which subscribers receive as events of the "
              "client's own types, but events.proto's channel_types for it do not allow custom; "
              "set `custom: true` or turn broadcast off"));
    }
    out.entries_.push_back(e);
  }
  return out;
}

absl::Status TypedChannels::Check(const pb::Event& event) const {
  if (entries_.empty() || event.payload_case() == pb::Event::PAYLOAD_NOT_SET) {
    return absl::OkStatus();
  }
  const Entry* e = Find(NamespaceOf(event.channel()));
  if (e == nullptr || Allows(*e, event.payload_case())) return absl::OkStatus();
  std::string type = pb::Event::descriptor()->FindFieldByNumber(event.payload_case())->name();
  // The custom type is the publisher's and not validated yet (the hub does it next): named only
  // when it is a plausible one, so that the message stays short and valid UTF-8.
  if (event.has_custom()) {
    const std::string& t = event.custom().type();
    bool plain = !t.empty() && t.size() <= 64;
    for (char c : t) {
      plain = plain && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                        c == '-');
    }
    type = plain ? Cat("custom (type '", t, "')") : std::string("custom");
  }
  return absl::InvalidArgumentError(Cat("channel '", event.channel(), "' does not carry ", type,
                                        " events: namespace '", e->ns, "' is typed and carries ",
                                        Join(e->names), " (events.proto, channel_types)"));
}

const TypedChannels::Entry* TypedChannels::Find(std::string_view ns) const {
  for (const Entry& e : entries_) {
    if (e.ns == ns) return &e;
  }
  return nullptr;
}

}  // namespace bridge::core
