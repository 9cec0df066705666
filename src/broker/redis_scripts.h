// The Redis broker's key layout and its two server-side Lua scripts (see docs/broker.md).
//
// Every key of a channel shares the hash tag `{<channel>}`, so the layout works on Redis Cluster:
//   <prefix>:{<channel>}:meta    hash: e (epoch), o (last offset), b (bytes in the stream)
//   <prefix>:{<channel>}:stream  stream: entry id `<offset>-0`, one field d (the frame text)
//   <prefix>:{<channel>}         the pub/sub channel; payload `<offset>:<epoch>:<frame text>`
// and the node directory's two keys (NodeKeysFor), under the tag `{#nodes}` (no channel's).
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

// The origin field of a payload may end in `@<nanos>`: the publishing node's steady clock at
// Publish, read back by that node only (its delivery lag). StampOrigin appends it; SplitStamp
// returns the origin without it and sets `*nanos` (-1 when there is none).
std::string StampOrigin(std::string_view origin, int64_t nanos);
std::string_view SplitStamp(std::string_view origin, int64_t* nanos);

// The node directory: `info` hash (node -> `<announced ms>\n<info>`) and `lease` sorted set
// (node -> expiry ms), both on the server's clock.
struct NodeKeys {
  std::string info;
  std::string lease;
};
NodeKeys NodeKeysFor(std::string_view prefix);

struct RedisScript {
  std::string_view body;
  std::string sha1;  // lowercase hex, as EVALSHA wants it
};

// The SHA1 of `text` in lowercase hex: a script's name for EVALSHA.
std::string Sha1Hex(std::string_view text);

// KEYS: meta, stream, topic. ARGV: head, tail, size, max_bytes, stream ttl (s), meta ttl (s),
// a fresh epoch (used only when the meta is new). Returns {offset (string), epoch}.
const RedisScript& PublishScript();
// KEYS: meta, stream. ARGV: first stream id wanted (`<since+1>-0`), COUNT (0: all).
// Returns {epoch or "", top offset (string), XRANGE entries}.
const RedisScript& HistoryScript();
// KEYS: meta; ARGV: the epoch to replace, the new one. Returns {epoch, offset} after it.
const RedisScript& RotateScript();
// KEYS: info, lease. ARGV: node, info, ttl (ms), max nodes, max info bytes. Drops expired nodes,
// adds or refreshes `node` unless max others are live, returns {now ms, 1 if refused, node,
// `<announced ms>\n<info>`, ...} (at most max nodes).
const RedisScript& NodesAnnounceScript();
// KEYS: info, lease. ARGV: node. Removes it.
const RedisScript& NodesWithdrawScript();

}  // namespace bridge::broker

#endif  // BRIDGE_BROKER_REDIS_SCRIPTS_H_
