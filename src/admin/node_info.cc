#include "admin/node_info.h"

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <cmath>
#include <cstdio>

#include "core/frame.h"
#include "core/strings.h"
#include "core/utf8.h"

namespace bridge::admin {

namespace json = boost::json;

namespace {

bool AcceptableText(std::string_view s) {
  if (s.size() > kMaxNodeField || !core::IsValidUtf8(s)) return false;
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return true;
}

}  // namespace

std::string EncodeAnnounce(const NodeInfo& n) {
  return core::Cat(R"({"ws":)", core::JsonQuote(n.ws), R"(,"grpc":)", core::JsonQuote(n.grpc),
                   R"(,"admin":)", core::JsonQuote(n.admin), R"(,"connections":)", n.connections,
                   R"(,"subscriptions":)", n.subscriptions, R"(,"channels":)", n.channels,
                   R"(,"published":)", JsonRate(n.published), R"(,"client_messages":)",
                   JsonRate(n.client_messages), R"(,"frames_sent":)", JsonRate(n.frames_sent),
                   R"(,"broker_up":)", n.broker_up ? "true" : "false", R"(,"uptime_s":)",
                   n.uptime_s, R"(,"version":)", core::JsonQuote(n.version), "}");
}

std::optional<NodeInfo> ParseAnnounce(std::string_view node, std::string_view text) {
  if (node.empty() || !AcceptableText(node)) return std::nullopt;
  boost::system::error_code ec;
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec || !v.is_object()) return std::nullopt;
  NodeInfo n;
  n.node = std::string(node);
  for (const auto& [key, value] : v.as_object()) {
    const std::string_view k(key.data(), key.size());
    auto text_field = [&](std::string& out) {
      if (!value.is_string()) return false;
      const std::string_view s(value.as_string().data(), value.as_string().size());
      if (!AcceptableText(s)) return false;
      out = std::string(s);
      return true;
    };
    auto count_field = [&](int64_t& out) {
      if (value.is_int64() && value.as_int64() >= 0) {
        out = value.as_int64();
      } else if (value.is_uint64() && value.as_uint64() <= INT64_MAX) {
        out = static_cast<int64_t>(value.as_uint64());
      } else {
        return false;
      }
      return true;
    };
    auto rate_field = [&](double& out) {
      if (!value.is_number()) return false;
      boost::system::error_code e;
      const double d = value.to_number<double>(e);
      if (e || !std::isfinite(d) || d < 0) return false;
      out = d;
      return true;
    };
    bool ok = true;
    if (k == "ws") {
      ok = text_field(n.ws);
    } else if (k == "grpc") {
      ok = text_field(n.grpc);
    } else if (k == "admin") {
      ok = text_field(n.admin);
    } else if (k == "version") {
      ok = text_field(n.version);
    } else if (k == "connections") {
      ok = count_field(n.connections);
    } else if (k == "subscriptions") {
      ok = count_field(n.subscriptions);
    } else if (k == "channels") {
      ok = count_field(n.channels);
    } else if (k == "uptime_s") {
      ok = count_field(n.uptime_s);
    } else if (k == "published") {
      ok = rate_field(n.published);
    } else if (k == "client_messages") {
      ok = rate_field(n.client_messages);
    } else if (k == "frames_sent") {
      ok = rate_field(n.frames_sent);
    } else if (k == "broker_up") {
      ok = value.is_bool();
      if (ok) n.broker_up = value.as_bool();
    }  // unknown fields: a newer node's; ignored
    if (!ok) return std::nullopt;
  }
  return n;
}

std::string NodesJson(const std::vector<NodeInfo>& nodes) {
  std::string o = "[";
  bool comma = false;
  for (const NodeInfo& n : nodes) {
    o += core::Cat(comma ? "," : "", R"({"node":)", core::JsonQuote(n.node), R"(,"self":)",
                   n.self ? "true" : "false", R"(,"last_seen_ms":)", n.last_seen_ms, ",");
    o += EncodeAnnounce(n).substr(1);  // the rest of the object
    comma = true;
  }
  o += "]";
  return o;
}

std::string JsonRate(double v) {
  if (!std::isfinite(v) || v < 0) v = 0;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f", v);
  std::string s(buf);
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  return s;
}

}  // namespace bridge::admin
