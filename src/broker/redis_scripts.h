// The Redis broker's key layout and its two server-side Lua scripts (see docs/broker.md).
//
// Every key of a channel shares the hash tag `{<channel>}`, so the layout works on Redis Cluster:
//   <prefix>:{<channel>}:meta    hash: e (epoch), o (last offset), b (bytes in the stream)
//   <prefix>:{<channel>}:stream  stream: entry id `<offset>-0`, one field d (the frame text)
//   <prefix>:{<channel>}         the pub/sub channel; payload `<offset>:<epoch>:<frame text>`
// Pure data and functions; any thread.
#ifndef BRIDGE_BROKER_REDIS_SCRIPTS_H_
#define BRIDGE_BROKER_REDIS_SCRIPTS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace bridge::broker {

struct ChannelKeys {
  std::string meta;
  std::string stream;
  std::string topic;  // pub/sub channel
};

ChannelKeys KeysFor(std::string_view prefix, std::string_view channel);

// The pub/sub topic of backend messages (`<prefix>:backend`, payload `<origin>:<bytes>`): not a
// channel topic (no `{`).
std::string BackendTopic(std::string_view prefix);

// The channel a pub/sub topic of KeysFor(prefix, ...) belongs to; nullopt for foreign topics.
std::optional<std::string> ChannelOfTopic(std::string_view prefix, std::string_view topic);

// A pub/sub payload split into its parts; nullopt when malformed.
// `<offset>:<epoch>:<origin>:<text>`.
struct TopicPayload {
  uint64_t offset = 0;
  std::string_view epoch;
  std::string_view origin;
  std::string_view text;
};
std::optional<TopicPayload> ParsePayload(std::string_view payload);

struct RedisScript {
  std::string_view body;
  std::string sha1;  // lowercase hex, as EVALSHA wants it
};

// KEYS: meta, stream, topic. ARGV: head, tail, size, max_bytes, stream ttl (s), meta ttl (s),
// a fresh epoch (used only when the meta is new). Returns {offset (string), epoch}.
const RedisScript& PublishScript();
// KEYS: meta, stream. ARGV: first stream id wanted (`<since+1>-0`), COUNT (0: all).
// Returns {epoch or "", top offset (string), XRANGE entries}.
const RedisScript& HistoryScript();
// KEYS: meta; ARGV: the epoch to replace, the new one. Returns {epoch, offset} after it.
const RedisScript& RotateScript();

}  // namespace bridge::broker

#endif  // BRIDGE_BROKER_REDIS_SCRIPTS_H_
