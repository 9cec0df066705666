#include "broker/redis_scripts.h"

#include <openssl/evp.h>

#include <charconv>

namespace bridge::broker {
namespace {

// Offsets are formatted with %d: Lua numbers are doubles, tostring() would switch to exponent
// notation past 1e14.
constexpr std::string_view kPublish = R"lua(
local meta, stream, topic = KEYS[1], KEYS[2], KEYS[3]
local size, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local stream_ttl, meta_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local epoch = redis.call('HGET', meta, 'e')
local bytes = 0
if not epoch then
  -- a new epoch never carries entries of an older one (the meta expired, the stream did not)
  epoch = ARGV[7]
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', epoch)
elseif redis.call('EXISTS', stream) == 1 then
  bytes = tonumber(redis.call('HGET', meta, 'b') or '0')
end
local offset = string.format('%d', redis.call('HINCRBY', meta, 'o', 1))
local text = ARGV[1] .. offset .. ARGV[2]
if size > 0 then
  redis.call('XADD', stream, offset .. '-0', 'd', text)
  bytes = bytes + #text
  local len = redis.call('XLEN', stream)
  while len > 0 and (len > size or (max_bytes > 0 and bytes > max_bytes)) do
    local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
    bytes = bytes - #first[2][2]
    redis.call('XDEL', stream, first[1])
    len = len - 1
  end
  if stream_ttl > 0 then redis.call('EXPIRE', stream, stream_ttl) end
else
  redis.call('DEL', stream)
  bytes = 0
end
redis.call('HSET', meta, 'b', bytes)
if meta_ttl > 0 then redis.call('EXPIRE', meta, meta_ttl) end
redis.call('PUBLISH', topic, offset .. ':' .. epoch .. ':' .. ARGV[8] .. ':' .. text)
return {offset, epoch}
)lua";

// ARGV[3]: a new epoch to create the channel's state with when it has none ('' to read only);
// ARGV[4]: the meta ttl then.
constexpr std::string_view kHistory = R"lua(
local m = redis.call('HMGET', KEYS[1], 'e', 'o')
if not m[1] then
  if ARGV[3] == '' then return {'', '0', {}} end
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', ARGV[3], 'o', 0, 'b', 0)
  if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4])) end
  return {ARGV[3], '0', {}}
end
local entries
if tonumber(ARGV[2]) > 0 then
  entries = redis.call('XRANGE', KEYS[2], ARGV[1], '+', 'COUNT', ARGV[2])
else
  entries = redis.call('XRANGE', KEYS[2], ARGV[1], '+')
end
return {m[1], m[2] or '0', entries}
)lua";

constexpr std::string_view kRotate = R"lua(
local e = redis.call('HGET', KEYS[1], 'e')
if not e then return {'', '0'} end
if e == ARGV[1] then
  e = ARGV[2]
  redis.call('HSET', KEYS[1], 'e', e)
end
return {e, redis.call('HGET', KEYS[1], 'o') or '0'}
)lua";

// Every time from redis.call('TIME') (one clock for every node). Expired nodes go first, so a
// full directory makes room as nodes die; the keys live as long as the longest ttl announced.
constexpr std::string_view kNodesAnnounce = R"lua(
local info, lease = KEYS[1], KEYS[2]
local node, ttl, max, max_bytes = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', lease, '-inf', now)
for _, n in ipairs(dead) do redis.call('HDEL', info, n) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', lease, '-inf', now) end
local full = 0
if redis.call('ZSCORE', lease, node) or redis.call('ZCARD', lease) < max then
  redis.call('ZADD', lease, now + ttl, node)
  redis.call('HSET', info, node, string.format('%d', now) .. '\n' .. ARGV[2])
else
  full = 1
end
for _, k in ipairs(KEYS) do
  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end
local out = {string.format('%d', now), full}
for _, n in ipairs(redis.call('ZRANGE', lease, 0, max - 1)) do
  local v = redis.call('HGET', info, n)
  if v and #v <= max_bytes + 32 then
    out[#out + 1] = n
    out[#out + 1] = v
  end
end
return out
)lua";

constexpr std::string_view kNodesWithdraw = R"lua(
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
)lua";

}  // namespace

std::string Sha1Hex(std::string_view text) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(text.data(), text.size(), digest, &n, EVP_sha1(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

NodeKeys NodeKeysFor(std::string_view prefix) {
  std::string base = std::string(prefix) + ":{#nodes}";
  return NodeKeys{base + ":info", base + ":lease"};
}

std::string StampOrigin(std::string_view origin, int64_t nanos) {
  std::string out(origin);
  out.push_back('@');
  out.append(std::to_string(nanos));
  return out;
}

std::string_view SplitStamp(std::string_view origin, int64_t* nanos) {
  *nanos = -1;
  size_t at = origin.rfind('@');
  if (at == std::string_view::npos) return origin;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(origin.data() + at + 1, origin.data() + origin.size(), v);
  if (ec != std::errc() || end != origin.data() + origin.size() || at + 1 == origin.size()) {
    return origin;
  }
  *nanos = v;
  return origin.substr(0, at);
}

std::string BackendTopic(std::string_view prefix) { return std::string(prefix) + ":backend"; }

ChannelKeys KeysFor(std::string_view prefix, std::string_view channel) {
  std::string topic;
  topic.reserve(prefix.size() + channel.size() + 3);
  topic.append(prefix).append(":{").append(channel).append("}");
  return ChannelKeys{topic + ":meta", topic + ":stream", topic};
}

std::optional<std::string> ChannelOfTopic(std::string_view prefix, std::string_view topic) {
  if (topic.size() < prefix.size() + 3 || topic.substr(0, prefix.size()) != prefix ||
      topic.substr(prefix.size(), 2) != ":{" || topic.back() != '}') {
    return std::nullopt;
  }
  return std::string(topic.substr(prefix.size() + 2, topic.size() - prefix.size() - 3));
}

std::optional<TopicPayload> ParsePayload(std::string_view payload) {
  size_t colon = payload.find(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  TopicPayload out;
  auto [end, ec] = std::from_chars(payload.data(), payload.data() + colon, out.offset);
  if (ec != std::errc() || end != payload.data() + colon || out.offset == 0) return std::nullopt;
  size_t second = payload.find(':', colon + 1);
  if (second == std::string_view::npos) return std::nullopt;
  out.epoch = payload.substr(colon + 1, second - colon - 1);
  size_t third = payload.find(':', second + 1);
  if (third == std::string_view::npos) return std::nullopt;
  out.origin = payload.substr(second + 1, third - second - 1);
  out.text = payload.substr(third + 1);
  return out;
}

const RedisScript& PublishScript() {
  static const RedisScript* script = new RedisScript{kPublish, Sha1Hex(kPublish)};
  return *script;
}

const RedisScript& RotateScript() {
  static const RedisScript* script = new RedisScript{kRotate, Sha1Hex(kRotate)};
  return *script;
}

const RedisScript& NodesAnnounceScript() {
  static const RedisScript* script = new RedisScript{kNodesAnnounce, Sha1Hex(kNodesAnnounce)};
  return *script;
}

const RedisScript& NodesWithdrawScript() {
  static const RedisScript* script = new RedisScript{kNodesWithdraw, Sha1Hex(kNodesWithdraw)};
  return *script;
}

const RedisScript& HistoryScript() {
  static const RedisScript* script = new RedisScript{kHistory, Sha1Hex(kHistory)};
  return *script;
}

}  // namespace bridge::broker
