#include "core/client_frame.h"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cmath>

#include "core/frame.h"
#include "core/protocol.h"

namespace bridge::core {
namespace {

std::string StringField(const boost::json::object& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end() || !it->value().is_string()) return "";
  const auto& s = it->value().get_string();
  return std::string(s.data(), s.size());
}

// Boost.JSON reads an overflowing number ("1e99999") as infinity but refuses it when reading its
// own output back; no JSON peer can rely on such numbers, so they are refused up front.
bool AllNumbersFinite(const boost::json::value& v) {
  switch (v.kind()) {
    case boost::json::kind::double_:
      return std::isfinite(v.get_double());
    case boost::json::kind::array:
      for (const auto& e : v.get_array()) {
        if (!AllNumbersFinite(e)) return false;
      }
      return true;
    case boost::json::kind::object:
      for (const auto& kv : v.get_object()) {
        if (!AllNumbersFinite(kv.value())) return false;
      }
      return true;
    default:
      return true;
  }
}

}  // namespace

std::optional<ClientFrame> ParseClientFrame(std::string_view text, ClientFrameError& error) {
  boost::json::parse_options opts;
  opts.max_depth = 32;
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec, {}, opts);
  if (ec) {
    error = {ErrorCode::kInvalidJson, "frame is not valid JSON"};
    return std::nullopt;
  }
  if (!v.is_object()) {
    error = {ErrorCode::kNotAnObject, "frame must be a JSON object"};
    return std::nullopt;
  }
  if (!AllNumbersFinite(v)) {  // depth is bounded by max_depth above
    error = {ErrorCode::kInvalidJson, "numbers must be finite"};
    return std::nullopt;
  }
  ClientFrame f;
  f.object = std::move(v.get_object());
  if (auto it = f.object.find("type"); it != f.object.end() && !it->value().is_string()) {
    error = {ErrorCode::kInvalidType, "\"type\" must be a string"};
    return std::nullopt;
  }
  if (auto it = f.object.find("channel"); it != f.object.end() && !it->value().is_string()) {
    error = {ErrorCode::kInvalidChannel, "\"channel\" must be a string"};
    return std::nullopt;
  }
  f.type = StringField(f.object, "type");
  f.channel = StringField(f.object, "channel");
  if (auto it = f.object.find("id"); it != f.object.end()) {
    const auto& iv = it->value();
    const bool ok = (iv.is_string() && iv.get_string().size() <= 64) || iv.is_uint64() ||
                    (iv.is_int64() && iv.get_int64() >= 0);
    if (!ok) {
      error = {ErrorCode::kInvalidId,
               "\"id\" must be a string of at most 64 bytes or a non-negative integer"};
      return std::nullopt;
    }
    f.id = boost::json::serialize(iv);
  }
  auto read_count = [&](const char* key, std::optional<uint64_t>& out) {
    auto it = f.object.find(key);
    if (it == f.object.end()) return true;
    const auto& v = it->value();
    if (v.is_uint64()) {
      out = v.get_uint64();
    } else if (v.is_int64() && v.get_int64() >= 0) {
      out = static_cast<uint64_t>(v.get_int64());
    } else {
      return false;
    }
    return true;
  };
  if (f.type == "ping") {
    f.kind = ClientFrame::Kind::kPing;
  } else if (f.type == "pong") {
    f.kind = ClientFrame::Kind::kPong;
  } else if (f.type == "auth") {
    f.kind = ClientFrame::Kind::kAuth;
    f.token = StringField(f.object, "token");
  } else if (f.type == "history" || f.type == "presence") {
    f.kind = f.type == "history" ? ClientFrame::Kind::kHistory : ClientFrame::Kind::kPresence;
    if (f.channel.empty()) {
      error = {ErrorCode::kInvalidChannel, f.type + " needs a \"channel\""};
      return std::nullopt;
    }
    if (!read_count("since", f.since)) {
      error = {ErrorCode::kInvalidSince, "\"since\" must be a non-negative integer"};
      return std::nullopt;
    }
    if (!read_count("limit", f.limit)) {
      error = {ErrorCode::kInvalidLimit, "\"limit\" must be a non-negative integer"};
      return std::nullopt;
    }
  } else if (f.type == "subscribe" || f.type == "unsubscribe") {
    f.kind =
        f.type == "subscribe" ? ClientFrame::Kind::kSubscribe : ClientFrame::Kind::kUnsubscribe;
    if (f.channel.empty()) {
      error = {ErrorCode::kInvalidChannel, f.type + " needs a \"channel\""};
      return std::nullopt;
    }
    if (auto it = f.object.find("since"); it != f.object.end()) {
      const auto& sv = it->value();
      if (sv.is_uint64()) {
        f.since = sv.get_uint64();
      } else if (sv.is_int64() && sv.get_int64() >= 0) {
        f.since = static_cast<uint64_t>(sv.get_int64());
      } else {
        error = {ErrorCode::kInvalidSince, "\"since\" must be a non-negative integer"};
        return std::nullopt;
      }
    }
    f.epoch = StringField(f.object, "epoch");
  } else {
    if (IsReservedType(f.type)) {
      error = {ErrorCode::kReservedType, "type '" + f.type + "' is reserved for the bridge"};
      return std::nullopt;
    }
    f.kind = ClientFrame::Kind::kMessage;
  }
  return f;
}

void BuildClientMessageFrame(boost::json::object object, std::string_view channel,
                             std::string_view timestamp, std::string_view sender, std::string& head,
                             std::string& tail) {
  object.erase("channel");
  object.erase("offset");
  object.erase("timestamp");
  object.erase("sender");
  object.erase("id");
  head = boost::json::serialize(object);
  head.pop_back();  // the closing brace
  if (!object.empty()) head.push_back(',');
  head += "\"channel\":";
  head += JsonQuote(channel);
  head += ",\"offset\":";
  tail = ",\"timestamp\":";
  tail += JsonQuote(timestamp);
  tail += ",\"sender\":";
  tail += JsonQuote(sender);
  tail += "}";
}

}  // namespace bridge::core
