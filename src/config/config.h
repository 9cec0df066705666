// The bridge's configuration as one proto message (proto/gathering/bridge/v1/config.proto):
// defaults from the proto, a JSON file over them, command-line flags over both.
//
// The schema is walked by reflection, so a field added to config.proto is at once a flag, a
// line of --help, a key of the JSON file, a line of `check-config` and of the generated
// reference in docs/operations.md. Nothing here knows one field from another except Validate
// (the rules between fields) and the namespaces conversion.
#ifndef BRIDGE_CONFIG_CONFIG_H_
#define BRIDGE_CONFIG_CONFIG_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/namespaces.h"
#include "gathering/bridge/v1/config.pb.h"

namespace bridge::config {

using gathering::bridge::v1::Config;

// One settable field of the schema: a field of one of Config's sections (listeners, limits, ...)
// or Config.namespaces itself.
struct Field {
  const google::protobuf::FieldDescriptor* section = nullptr;  // Config.<section>
  const google::protobuf::FieldDescriptor* field = nullptr;    // the leaf (or Config.namespaces)
  std::string path;                                            // "limits.max_frame_bytes"
  std::string flag;          // "max_frame_bytes": --max_frame_bytes=...
  std::string help;          // the field's comment in config.proto, as one paragraph
  std::string default_text;  // "65536", "30s", "" for lists
  bool duration = false;
  bool reloadable = false;
};

// A section of the schema (a field of Config): its title and fields, in proto order.
struct Section {
  const google::protobuf::FieldDescriptor* field = nullptr;
  std::string title;  // the section's comment
  std::vector<const Field*> fields;
};

const std::vector<Field>& Fields();
const std::vector<Section>& Sections();
// The field a flag sets, or nullptr.
const Field* FindFlag(std::string_view flag);
// The comment of any element of config.proto by its full name ("gathering.bridge.v1.Namespace"
// or "gathering.bridge.v1.Namespace.name"), as one paragraph; "" when it has none.
std::string CommentOf(std::string_view full_name);

// Applies a JSON file / text over `c`. Unknown fields and values of the wrong type are refused
// with the field's path ("limits.max_frame_byts: unknown field").
absl::Status MergeJsonFile(const std::string& path, Config& c);
absl::Status MergeJson(std::string_view json, Config& c);
// Sets the field of `flag` from its command-line text; lists are comma-separated, and
// --namespaces takes the one-line form.
absl::Status ApplyFlag(std::string_view flag, std::string_view value, Config& c);

// `c` with every field present: defaults filled in, the default namespaces when none is given.
Config Effective(const Config& c);
// Every problem of an effective configuration, each starting with the field's path; empty when
// it can be started. Checks values, files that must be readable, and contradictions.
std::vector<std::string> Validate(const Config& effective);
// The paths of the fields whose values differ ("namespaces" for any change in the list).
std::vector<const Field*> Changed(const Config& a, const Config& b);
// How the namespaces of two effective configurations differ. A reload applies `changes` when
// `same_names` (the same names in the same order); any other change needs a restart.
struct NamespaceDiff {
  struct Change {
    std::string path;  // "namespaces[1].history_size"
    std::string name;  // that namespace's name
    std::string before, after;
  };
  bool same_names = true;
  std::vector<std::string> names_before, names_after;
  std::vector<Change> changes;  // with same_names only: the fields that differ, in order
};
NamespaceDiff DiffNamespaces(const Config& a, const Config& b);
// One field's value as text, as ApplyFlag takes it.
std::string ValueText(const Config& c, const Field& f);

// Pretty JSON with the proto's field names.
std::string ToJson(const Config& c);
// docs/operations.md#configuration-reference: every section and field with its flag, default
// and comment, as Markdown.
std::string ReferenceMarkdown();

// Conversions for the server.
absl::Duration DurationOf(const std::string& text);  // of a validated duration field
absl::StatusOr<core::NamespaceRegistry> Namespaces(const Config& effective);

}  // namespace bridge::config

#endif  // BRIDGE_CONFIG_CONFIG_H_
