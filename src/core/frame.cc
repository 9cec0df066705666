#include "core/frame.h"

#include <ctime>

#include "core/channel.h"
#include "core/protocol.h"
#include "core/strings.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"

namespace bridge::core {
namespace {

namespace pb = gathering::bridge::v1;
using google::protobuf::Message;

bool ValidCustomType(std::string_view t) {
  if (t.empty() || t.size() > 64 || !(t[0] >= 'a' && t[0] <= 'z')) return false;
  for (char c : t) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return true;
}

const google::protobuf::OneofDescriptor* PayloadOneof() {
  static const auto* oneof = pb::Event::descriptor()->FindOneofByName("payload");
  return oneof;
}

}  // namespace

std::string FormatTimestamp(int64_t seconds, int32_t nanos) {
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  int n = std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                        static_cast<int>(nanos / 1000000));
  return std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
}

std::string FormatTimestamp(std::chrono::system_clock::time_point t) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  int64_t s = ns / 1000000000;
  int64_t rem = ns % 1000000000;
  if (rem < 0) {
    rem += 1000000000;
    --s;
  }
  return FormatTimestamp(s, static_cast<int32_t>(rem));
}

absl::StatusOr<FrameParts> EncodeEvent(const pb::Event& event,
                                       std::chrono::system_clock::time_point now) {
  if (absl::Status s = ValidateChannel(event.channel()); !s.ok()) return s;
  if (event.payload_case() == pb::Event::PAYLOAD_NOT_SET) {
    return absl::InvalidArgumentError("event has no payload");
  }
  const Message* payload = nullptr;
  FrameParts parts;
  if (event.has_custom()) {
    const std::string& t = event.custom().type();
    if (!ValidCustomType(t)) {
      return absl::InvalidArgumentError("custom type must match [a-z][a-z0-9_.-]{0,63}");
    }
    if (IsReservedType(t)) {
      return absl::InvalidArgumentError(Cat("custom type '", t, "' is reserved"));
    }
    parts.type = t;
    payload = &event.custom().data();
  } else {
    const auto* field = event.GetReflection()->GetOneofFieldDescriptor(event, PayloadOneof());
    parts.type = field->name();
    payload = &event.GetReflection()->GetMessage(event, field);
  }

  std::string data;
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  auto st = google::protobuf::util::MessageToJsonString(*payload, &data, opts);
  if (!st.ok()) {
    return absl::InvalidArgumentError(Cat("payload cannot be printed as JSON: ", st.ToString()));
  }

  if (event.has_timestamp()) {
    const auto& ts = event.timestamp();
    if (ts.seconds() < 0 || ts.seconds() > 253402300799 || ts.nanos() < 0 ||
        ts.nanos() > 999999999) {
      return absl::InvalidArgumentError("timestamp out of range");
    }
    parts.timestamp = FormatTimestamp(ts.seconds(), ts.nanos());
  } else {
    parts.timestamp = FormatTimestamp(now);
  }
  // Type and channel were validated to need no escaping.
  parts.head =
      Cat(R"({"type":")", parts.type, R"(","channel":")", event.channel(), R"(","offset":)");
  parts.tail = Cat(R"(,"timestamp":")", parts.timestamp, R"(","data":)", data, "}");
  return parts;
}

FramePtr MakeControlFrame(std::string text) {
  auto f = std::make_shared<Frame>();
  f->text = std::move(text);
  return f;
}

std::string JsonQuote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace bridge::core
