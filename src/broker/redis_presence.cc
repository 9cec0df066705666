#include "broker/redis_presence.h"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <charconv>
#include <utility>

#include "absl/strings/str_cat.h"

namespace bridge::broker {
namespace asio = boost::asio;
namespace {

// Shared by every script. Times are milliseconds on the server's clock, formatted with %d (Lua
// numbers are doubles; tostring() would switch to exponent notation).
//   info value:    "<node>\n<joined ms>\n<identity>" (the identity last: it may hold anything)
//   members value: "<connections>:<identity's joined ms>"
constexpr std::string_view kPrelude = R"lua(
local info, lease, members = KEYS[1], KEYS[2], KEYS[3]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fmt(n) return string.format('%d', n) end
local function split_info(v)
  local a = string.find(v, '\n', 1, true)
  local b = string.find(v, '\n', a + 1, true)
  return string.sub(v, b + 1), string.sub(v, a + 1, b - 1)
end
local function split_member(m)
  local sep = string.find(m, ':', 1, true)
  return tonumber(string.sub(m, 1, sep - 1)), string.sub(m, sep + 1)
end
-- One connection of `identity` fewer; 1 when it was the last one.
local function drop(identity)
  local m = redis.call('HGET', members, identity)
  if not m then return 1 end
  local count, since = split_member(m)
  if count <= 1 then
    redis.call('HDEL', members, identity)
    return 1
  end
  redis.call('HSET', members, identity, fmt(count - 1) .. ':' .. since)
  return 0
end
local function touch(ttl)
  if ttl > 0 then
    redis.call('PEXPIRE', info, ttl)
    redis.call('PEXPIRE', lease, ttl)
    redis.call('PEXPIRE', members, ttl)
  end
end
)lua";

// ARGV: connection, identity, node, lease ms, key ttl ms, joined ms hint (0: now), unconfirmed.
// Returns {1 if the identity's count went 0 -> 1 else 0, the connection's joined ms}. A connection
// already there only gets its lease pushed forward (0), except with `unconfirmed` = 1 (a restore
// of a Join whose reply was lost: it may have run) when it is the identity's only one (1).
constexpr std::string_view kJoin = R"lua(
local conn, identity, node = ARGV[1], ARGV[2], ARGV[3]
local now = now_ms()
local joined = tonumber(ARGV[6])
if joined <= 0 then joined = now end
local changed = 0
local existing = redis.call('HGET', info, conn)
if existing then
  local _, at = split_info(existing)
  joined = tonumber(at)
  if ARGV[7] == '1' then
    local m = redis.call('HGET', members, identity)
    if m and split_member(m) == 1 then changed = 1 end
  end
else
  redis.call('HSET', info, conn, node .. '\n' .. fmt(joined) .. '\n' .. identity)
  local m = redis.call('HGET', members, identity)
  local count, since = 0, fmt(joined)
  if m then count, since = split_member(m) end
  if count <= 0 then
    changed = 1
    since = fmt(joined)
  end
  redis.call('HSET', members, identity, fmt(count + 1) .. ':' .. since)
end
redis.call('ZADD', lease, fmt(now + tonumber(ARGV[4])), conn)
touch(tonumber(ARGV[5]))
return {changed, fmt(joined)}
)lua";

// ARGV: connection. Returns 1 if it was the identity's last connection, 0 otherwise (absent too).
constexpr std::string_view kLeave = R"lua(
local conn = ARGV[1]
redis.call('ZREM', lease, conn)
local v = redis.call('HGET', info, conn)
if not v then return 0 end
redis.call('HDEL', info, conn)
return drop((split_info(v)))
)lua";

// ARGV: lease ms, key ttl ms, connection ids... Pushes each present connection's expiry to now +
// lease (lease 0: expired now). Returns the ids that are not there any more (swept).
constexpr std::string_view kRenew = R"lua(
local expiry = fmt(now_ms() + tonumber(ARGV[1]))
local missing = {}
for i = 3, #ARGV do
  if redis.call('HEXISTS', info, ARGV[i]) == 1 then
    redis.call('ZADD', lease, expiry, ARGV[i])
  else
    redis.call('ZREM', lease, ARGV[i])
    missing[#missing + 1] = ARGV[i]
  end
end
touch(tonumber(ARGV[2]))
return missing
)lua";

// ARGV: at most this many connections. Removes connections whose lease passed (expiry <= now);
// returns the identities whose last connection went.
constexpr std::string_view kExpire = R"lua(
local gone = {}
local expired = redis.call('ZRANGEBYSCORE', lease, '-inf', now_ms(), 'LIMIT', 0, ARGV[1])
for _, conn in ipairs(expired) do
  redis.call('ZREM', lease, conn)
  local v = redis.call('HGET', info, conn)
  if v then
    redis.call('HDEL', info, conn)
    local identity = split_info(v)
    if drop(identity) == 1 then gone[#gone + 1] = identity end
  end
end
return gone
)lua";

// No ARGV. Returns {identity, connections, joined ms, ...} without the contributions of
// connections whose lease passed; unsorted.
constexpr std::string_view kList = R"lua(
local all = redis.call('HGETALL', members)
local counts, since = {}, {}
for i = 1, #all, 2 do counts[all[i]], since[all[i]] = split_member(all[i + 1]) end
for _, conn in ipairs(redis.call('ZRANGEBYSCORE', lease, '-inf', now_ms())) do
  local v = redis.call('HGET', info, conn)
  if v then
    local identity = split_info(v)
    if counts[identity] then counts[identity] = counts[identity] - 1 end
  end
end
local out = {}
for i = 1, #all, 2 do
  local identity = all[i]
  if counts[identity] > 0 then
    out[#out + 1] = identity
    out[#out + 1] = fmt(counts[identity])
    out[#out + 1] = since[identity]
  end
end
return out
)lua";

enum Script { kJoinScript, kLeaveScript, kRenewScript, kExpireScript, kListScript, kScripts };

// The prelude and a body, named by their SHA1. The texts live as long as the process.
const RedisScript& ScriptOf(int which) {
  struct Scripts {
    std::string texts[kScripts];
    RedisScript scripts[kScripts];
  };
  static const Scripts* all = [] {
    const std::string_view bodies[kScripts] = {kJoin, kLeave, kRenew, kExpire, kList};
    auto* out = new Scripts;
    for (int i = 0; i < kScripts; ++i) {
      out->texts[i] = std::string(kPrelude).append(bodies[i]);
      out->scripts[i].body = out->texts[i];
      out->scripts[i].sha1 = Sha1Hex(out->texts[i]);
    }
    return out;
  }();
  return all->scripts[which];
}

std::vector<const RedisScript*> AllScripts() {
  std::vector<const RedisScript*> all;
  for (int i = 0; i < kScripts; ++i) all.push_back(&ScriptOf(i));
  return all;
}

bool ParseInt(std::string_view s, int64_t& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

// A failed command or an error reply as a Status; OK for a usable reply.
absl::Status Failure(const char* what, const absl::StatusOr<RedisReply>& r) {
  if (!r.ok()) return r.status();
  if (r->is_error()) return absl::InternalError(absl::StrCat(what, ": ", r->str));
  return absl::OkStatus();
}

absl::Status BadReply(const char* what, const RedisReply& r) {
  return absl::InternalError(absl::StrCat(what, ": unexpected reply ", r.DebugString()));
}

absl::Status Cancelled() { return absl::CancelledError("presence stopped"); }

}  // namespace

absl::StatusOr<std::shared_ptr<RedisPresence>> RedisPresence::Create(asio::any_io_executor executor,
                                                                     RedisConnection& connection,
                                                                     RedisPresenceOptions options) {
  if (options.node_id.empty() || options.node_id.find('\n') != std::string::npos) {
    return absl::InvalidArgumentError("presence node id must be non-empty and without newlines");
  }
  if (options.lease.count() <= 0) return absl::InvalidArgumentError("presence lease must be > 0");
  if (options.renew_interval.count() == 0) options.renew_interval = options.lease / 3;
  if (options.renew_interval.count() <= 0 || options.renew_interval >= options.lease) {
    return absl::InvalidArgumentError(
        absl::StrCat("presence renew interval ", options.renew_interval.count(),
                     "ms must be > 0 and below the lease ", options.lease.count(), "ms"));
  }
  if (options.key_ttl.count() == 0) options.key_ttl = 3 * options.lease;
  if (options.key_ttl < options.lease) {
    return absl::InvalidArgumentError("presence key ttl must be at least the lease");
  }
  if (options.renew_batch == 0 || options.expire_batch == 0) {
    return absl::InvalidArgumentError("presence batches must be > 0");
  }
  return std::shared_ptr<RedisPresence>(
      new RedisPresence(std::move(executor), connection, std::move(options)));
}

RedisPresence::RedisPresence(asio::any_io_executor executor, RedisConnection& connection,
                             RedisPresenceOptions options)
    : executor_(std::move(executor)),
      conn_(connection),
      scripts_(ScriptRunner::Create(connection, AllScripts())),
      options_(std::move(options)),
      timer_(executor_) {}

RedisPresence::~RedisPresence() = default;

RedisPresence::Keys RedisPresence::KeysOf(const std::string& channel) const {
  std::string base = absl::StrCat(options_.prefix, ":{", channel, "}:presence");
  return Keys{base, base + ":lease", base + ":members"};
}

void RedisPresence::Start() {
  asio::post(executor_, [self = shared_from_this()] {
    if (self->started_ || self->stopped_) return;
    self->started_ = true;
    // Members joined while no link was up are registered by the next one (connects grows).
    self->seen_connects_ = self->conn_.stats().connects.load(std::memory_order_relaxed);
    self->CheckLink();
    self->ScheduleTick();
  });
}

void RedisPresence::Stop() {
  asio::post(executor_, [self = shared_from_this()] { self->DoStop(/*release=*/true); });
}

void RedisPresence::AbandonForTesting() {
  asio::post(executor_, [self = shared_from_this()] { self->DoStop(/*release=*/false); });
}

void RedisPresence::DoStop(bool release) {
  if (stopped_) return;
  stopped_ = true;
  timer_.cancel();
  if (release && conn_.state() == RedisConnectionState::kReady) {
    for (const auto& [channel, ch] : channels_) {
      if (!ch.connections.empty()) Renew(channel, ch, std::chrono::milliseconds(0));
    }
  }
  channels_.clear();
}

void RedisPresence::SetExpiredHandler(ExpiredHandler handler) {
  asio::post(executor_, [self = shared_from_this(), handler = std::move(handler)]() mutable {
    self->expired_ = std::move(handler);
  });
}

void RedisPresence::SetRestoredHandler(RestoredHandler handler) {
  asio::post(executor_, [self = shared_from_this(), handler = std::move(handler)]() mutable {
    self->restored_ = std::move(handler);
  });
}

void RedisPresence::OnConnectionState(RedisConnectionState /*state*/, const absl::Status&) {
  if (started_ && !stopped_) CheckLink();
}

void RedisPresence::RunScript(int which, const std::string& channel, std::vector<std::string> args,
                              RedisConnection::ReplyCallback done) {
  Keys keys = KeysOf(channel);
  std::vector<std::string> cmd;
  cmd.reserve(args.size() + 4);
  cmd.push_back("3");
  cmd.push_back(std::move(keys.info));
  cmd.push_back(std::move(keys.lease));
  cmd.push_back(std::move(keys.members));
  for (auto& a : args) cmd.push_back(std::move(a));
  scripts_->Run(ScriptOf(which), std::move(cmd), conn_.options().command_timeout, std::move(done));
}

void RedisPresence::Join(const std::string& channel, const std::string& identity,
                         const std::string& connection_id, ChangeCallback done) {
  asio::post(executor_, [self = shared_from_this(), channel, identity, connection_id,
                         done = std::move(done)]() mutable {
    self->DoJoin(channel, identity, connection_id, std::move(done));
  });
}

void RedisPresence::DoJoin(const std::string& channel, const std::string& identity,
                           const std::string& connection_id, ChangeCallback done) {
  if (stopped_) return done(Cancelled());
  if (started_) CheckLink();  // a new link re-registers first, even without a forwarded state
  // Local first: a Join that fails for want of Redis is registered when Redis is back.
  channels_[channel].connections.try_emplace(connection_id, Local{identity, 0});
  RunScript(kJoinScript, channel,
            {connection_id, identity, options_.node_id, std::to_string(options_.lease.count()),
             std::to_string(options_.key_ttl.count()), "0", "0"},
            [this, self = shared_from_this(), channel, connection_id,
             done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
              if (absl::Status s = Failure("presence join", r); !s.ok()) {
                stats_.failures.fetch_add(1, std::memory_order_relaxed);
                return done(std::move(s));
              }
              int64_t joined = 0;
              if (!r->is_array() || r->elements.size() != 2 || !r->elements[0].is_integer() ||
                  !r->elements[1].is_text() || !ParseInt(r->elements[1].str, joined)) {
                stats_.failures.fetch_add(1, std::memory_order_relaxed);
                return done(BadReply("presence join", *r));
              }
              stats_.joins.fetch_add(1, std::memory_order_relaxed);
              if (auto ch = channels_.find(channel); ch != channels_.end()) {
                if (auto c = ch->second.connections.find(connection_id);
                    c != ch->second.connections.end()) {
                  c->second.joined_ms = joined;
                }
              }
              done(r->elements[0].integer == 1);
            });
}

void RedisPresence::Leave(const std::string& channel, const std::string& /*identity*/,
                          const std::string& connection_id, ChangeCallback done) {
  asio::post(executor_,
             [self = shared_from_this(), channel, connection_id, done = std::move(done)]() mutable {
               self->DoLeave(channel, connection_id, std::move(done));
             });
}

void RedisPresence::DoLeave(const std::string& channel, const std::string& connection_id,
                            ChangeCallback done) {
  if (stopped_) return done(Cancelled());
  if (started_) CheckLink();  // a new link re-registers first, even without a forwarded state
  if (auto ch = channels_.find(channel); ch != channels_.end()) {
    ch->second.connections.erase(connection_id);
    DropIfIdle(channel);
  }
  RunScript(kLeaveScript, channel, {connection_id},
            [this, self = shared_from_this(),
             done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
              if (absl::Status s = Failure("presence leave", r); !s.ok()) {
                stats_.failures.fetch_add(1, std::memory_order_relaxed);
                return done(std::move(s));
              }
              if (!r->is_integer()) {
                stats_.failures.fetch_add(1, std::memory_order_relaxed);
                return done(BadReply("presence leave", *r));
              }
              stats_.leaves.fetch_add(1, std::memory_order_relaxed);
              done(r->integer == 1);
            });
}

void RedisPresence::List(const std::string& channel, ListCallback done) {
  asio::post(executor_, [self = shared_from_this(), channel, done = std::move(done)]() mutable {
    self->DoList(channel, std::move(done));
  });
}

void RedisPresence::DoList(const std::string& channel, ListCallback done) {
  if (stopped_) return done(Cancelled());
  if (started_) CheckLink();  // a new link re-registers first, even without a forwarded state
  RunScript(kListScript, channel, {},
            [this, self = shared_from_this(),
             done = std::move(done)](absl::StatusOr<RedisReply> r) mutable {
              if (absl::Status s = Failure("presence list", r); !s.ok()) {
                stats_.failures.fetch_add(1, std::memory_order_relaxed);
                return done(std::move(s));
              }
              if (!r->is_array() || r->elements.size() % 3 != 0) {
                stats_.failures.fetch_add(1, std::memory_order_relaxed);
                return done(BadReply("presence list", *r));
              }
              core::PresenceSnapshot out;
              out.members.reserve(r->elements.size() / 3);
              for (size_t i = 0; i < r->elements.size(); i += 3) {
                int64_t count = 0, joined = 0;
                if (!r->elements[i].is_text() || !ParseInt(r->elements[i + 1].str, count) ||
                    !ParseInt(r->elements[i + 2].str, joined) || count <= 0) {
                  stats_.failures.fetch_add(1, std::memory_order_relaxed);
                  return done(BadReply("presence list entry", *r));
                }
                out.members.push_back(core::PresenceMember{
                    std::move(r->elements[i].str), static_cast<uint32_t>(count),
                    std::chrono::system_clock::time_point(std::chrono::milliseconds(joined))});
                out.connection_count += static_cast<uint32_t>(count);
              }
              std::sort(out.members.begin(), out.members.end(),
                        [](const core::PresenceMember& a, const core::PresenceMember& b) {
                          return a.identity < b.identity;
                        });
              done(std::move(out));
            });
}

void RedisPresence::Watch(const std::string& channel) {
  asio::post(executor_, [self = shared_from_this(), channel] {
    if (!self->stopped_) self->channels_[channel].watched = true;
  });
}

void RedisPresence::Unwatch(const std::string& channel) {
  asio::post(executor_, [self = shared_from_this(), channel] {
    if (auto ch = self->channels_.find(channel); ch != self->channels_.end()) {
      ch->second.watched = false;
      self->DropIfIdle(channel);
    }
  });
}

void RedisPresence::DropIfIdle(const std::string& channel) {
  auto ch = channels_.find(channel);
  if (ch != channels_.end() && ch->second.connections.empty() && !ch->second.watched) {
    channels_.erase(ch);
  }
}

void RedisPresence::Restore(const std::string& channel, const std::string& connection_id) {
  auto ch = channels_.find(channel);
  if (ch == channels_.end()) return;
  auto c = ch->second.connections.find(connection_id);
  if (c == ch->second.connections.end()) return;
  RunScript(kJoinScript, channel,
            {connection_id, c->second.identity, options_.node_id,
             std::to_string(options_.lease.count()), std::to_string(options_.key_ttl.count()),
             std::to_string(c->second.joined_ms), c->second.joined_ms == 0 ? "1" : "0"},
            [this, self = shared_from_this(), channel,
             identity = c->second.identity](absl::StatusOr<RedisReply> r) {
              if (!Failure("presence restore", r).ok() || !r->is_array() ||
                  r->elements.size() != 2 || !r->elements[0].is_integer()) {
                // The next link (or the next renew) tries again.
                stats_.failures.fetch_add(1, std::memory_order_relaxed);
                return;
              }
              stats_.joins.fetch_add(1, std::memory_order_relaxed);
              if (r->elements[0].integer != 1 || stopped_) return;
              stats_.restored.fetch_add(1, std::memory_order_relaxed);
              if (restored_) restored_(channel, identity);
            });
}

void RedisPresence::Renew(const std::string& channel, const Channel& ch,
                          std::chrono::milliseconds lease) {
  auto it = ch.connections.begin();
  while (it != ch.connections.end()) {
    std::vector<std::string> args = {std::to_string(lease.count()),
                                     std::to_string(options_.key_ttl.count())};
    for (size_t n = 0; n < options_.renew_batch && it != ch.connections.end(); ++n, ++it) {
      args.push_back(it->first);
    }
    stats_.renews.fetch_add(1, std::memory_order_relaxed);
    RunScript(kRenewScript, channel, std::move(args),
              [this, self = shared_from_this(), channel](absl::StatusOr<RedisReply> r) {
                if (!Failure("presence renew", r).ok() || !r->is_array()) {
                  stats_.failures.fetch_add(1, std::memory_order_relaxed);
                  return;
                }
                if (stopped_) return;
                // Swept while this node could not renew: another node reported them left.
                for (const RedisReply& missing : r->elements) {
                  if (missing.is_text()) Restore(channel, missing.str);
                }
              });
  }
}

void RedisPresence::Expire(const std::string& channel) {
  stats_.expiry_runs.fetch_add(1, std::memory_order_relaxed);
  RunScript(kExpireScript, channel, {std::to_string(options_.expire_batch)},
            [this, self = shared_from_this(), channel](absl::StatusOr<RedisReply> r) {
              if (!Failure("presence expire", r).ok() || !r->is_array()) {
                stats_.failures.fetch_add(1, std::memory_order_relaxed);
                return;
              }
              if (stopped_) return;
              for (const RedisReply& identity : r->elements) {
                if (!identity.is_text()) continue;
                stats_.expired.fetch_add(1, std::memory_order_relaxed);
                if (expired_) expired_(channel, identity.str);
              }
            });
}

void RedisPresence::CheckLink() {
  if (conn_.state() != RedisConnectionState::kReady) return;
  const uint64_t connects = conn_.stats().connects.load(std::memory_order_relaxed);
  if (connects == seen_connects_) return;
  seen_connects_ = connects;
  // A new link: Redis may have restarted empty, or this node's leases may have passed while it
  // could not renew. Register every local member again, pipelined.
  stats_.resyncs.fetch_add(1, std::memory_order_relaxed);
  for (const auto& [channel, ch] : channels_) {
    for (const auto& [connection_id, local] : ch.connections) Restore(channel, connection_id);
  }
}

void RedisPresence::ScheduleTick() {
  timer_.expires_after(options_.renew_interval);
  std::weak_ptr<RedisPresence> weak = weak_from_this();
  timer_.async_wait([weak](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->Tick();
  });
}

void RedisPresence::Tick() {
  if (stopped_) return;
  CheckLink();
  if (conn_.state() == RedisConnectionState::kReady) {
    // Per channel, the renew goes before the expiry (one connection, FIFO), so this node never
    // sweeps its own members.
    for (const auto& [channel, ch] : channels_) {
      if (!ch.connections.empty()) Renew(channel, ch, options_.lease);
      Expire(channel);
    }
  }
  ScheduleTick();
}

}  // namespace bridge::broker
