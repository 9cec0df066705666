// The hub's broker mode: this node's part of channels shared with other nodes through a
// core::Broker (offsets, history, pub/sub) and a core::PresenceManager (members). The embedded
// mode is hub.cc; the asynchronous entry points below serve both.
//
// Per channel with local subscribers the node holds a link to the broker:
//   kNone -> Subscribe sent (kSubscribing) -> Open sent for the top (kOpening) -> kLive.
// While live, deliveries are posted to the shards in offset order: a duplicate is dropped, a
// jump past the next offset holds later deliveries and reads the missing range from the
// broker's history (Repair); what history cannot fill becomes a `gap` frame. A delivery with
// another epoch (the channel's state was lost in the broker) resets the subscriptions, which
// are told with a `subscribed` frame carrying the new epoch and `recovered:false`.
//
// A new subscription is registered on its shard at once, pending: it buffers what arrives.
// Without recovery on a live channel it is answered at once with the last delivered position;
// otherwise it waits for the link and, when recovering, for a History read, then merges the two
// by offset.
//
// Locks: the hub's stripe lock is never held while calling the broker or the presence manager
// (the memory broker calls back inline, under its own lock).
#include <algorithm>
#include <charconv>
#include <limits>

#include "core/channel.h"
#include "core/hub.h"
#include "core/protocol.h"
#include "core/strings.h"
#include "gathering/bridge/v1/events.pb.h"

namespace bridge::core {
namespace {

constexpr uint64_t kTopOnly = std::numeric_limits<uint64_t>::max();

PublishResult ToResult(const StreamPosition& p) { return PublishResult{p.offset, p.epoch}; }

}  // namespace

BrokerHealth Hub::broker_health() const {
  if (broker_ == nullptr) return BrokerHealth{true, true, ""};
  return broker_->Health();
}

HistoryPolicy Hub::PolicyFor(const NamespaceConfig* ns) const {
  HistoryPolicy p;
  if (ns == nullptr || ns->history_max_bytes == 0) return p;  // keep none, as embedded
  p.size = ns->history_size;
  p.ttl = ns->history_ttl;
  p.max_bytes = ns->history_max_bytes;
  return p;
}

FramePtr Hub::MakeFrame(const std::string& channel, uint64_t offset, std::string text,
                        int64_t accepted_nanos) const {
  auto f = std::make_shared<Frame>();
  f->channel = channel;
  f->offset = offset;
  f->ns = namespaces_.IndexOf(NamespaceOf(channel));
  f->accepted_nanos = accepted_nanos;
  f->text = std::move(text);
  return f;
}

// ---------------------------------------------------------------------------------------------
// Publishing

void Hub::PublishAsync(const gathering::bridge::v1::Event& event, PublishCallback done) {
  if (broker_ == nullptr) return done(Publish(event));
  auto parts = EncodeForPublish(event);
  if (!parts.ok()) return done(parts.status());
  PublishFrameAsync(event.channel(), parts->head, parts->tail, 0,
                    [this, done = std::move(done)](absl::StatusOr<PublishResult> r) mutable {
                      if (r.ok()) {
                        metrics_.events_published_total.fetch_add(1, std::memory_order_relaxed);
                      }
                      done(std::move(r));
                    });
}

void Hub::PublishFrameAsync(const std::string& channel, std::string_view head,
                            std::string_view tail, uint64_t exclude_id, PublishCallback done) {
  if (broker_ == nullptr) {
    PublishResult r = PublishFrame(channel, head, tail, exclude_id);
    if (!done) return;
    if (r.offset == 0)
      return done(absl::ResourceExhaustedError("the bridge holds too many channels"));
    return done(r);
  }
  const NamespaceConfig* ns = namespaces_.Find(NamespaceOf(channel));
  // The origin names this node and, for a client's message, the sender, who must not get it
  // back: every node receives its own publishes, so the exclusion is applied at delivery.
  std::string origin = exclude_id == 0 ? node_id_ : Cat(node_id_, "/", exclude_id);
  broker_->Publish(
      channel, head, tail, PolicyFor(ns), origin,
      [this, channel, done = std::move(done)](absl::StatusOr<StreamPosition> r) mutable {
        if (r.ok()) {
          // Remembered for the pub/sub probe (SweepClustered): a publish that succeeds but never
          // comes back means the subscriber link lost it.
          Stripe& stripe = StripeFor(channel);
          std::lock_guard lock(stripe.mu);
          CountPublishLocked(stripe, channel);
          auto it = stripe.channels.find(channel);
          if (it != stripe.channels.end() && it->second.delivered.epoch == r->epoch) {
            it->second.published = std::max(it->second.published, r->offset);
          }
        }
        if (!done) return;
        if (!r.ok()) return done(r.status());
        done(ToResult(*r));
      });
}

void Hub::PublishPresenceChange(const std::string& channel, const std::string& identity,
                                bool joined, std::string_view reason) {
  if (identity.empty()) return;  // anonymous connections are counted, never announced
  gathering::bridge::v1::Event e;
  e.set_channel(channel);
  if (joined) {
    e.mutable_agent_joined()->set_identity(identity);
  } else {
    e.mutable_agent_left()->set_identity(identity);
    e.mutable_agent_left()->set_reason(std::string(reason));
  }
  auto parts = EncodeEvent(e, std::chrono::system_clock::now());
  if (parts.ok()) PublishFrameAsync(channel, parts->head, parts->tail, 0, nullptr);
}

// ---------------------------------------------------------------------------------------------
// Reading

void Hub::HistoryAsync(const std::string& channel, uint64_t since, size_t limit,
                       HistoryCallback done) {
  if (broker_ == nullptr) return done(History(channel, since, limit));
  broker_->History(
      channel, since, limit,
      [this, channel, done = std::move(done)](absl::StatusOr<BrokerHistory> h) mutable {
        if (!h.ok()) return done(h.status());
        HistoryResult out;
        out.epoch = h->top.epoch;
        out.offset = h->top.offset;
        out.complete = h->complete;
        out.frames.reserve(h->frames.size());
        for (auto& f : h->frames) {
          out.frames.push_back(MakeFrame(channel, f.offset, std::move(f.text)));
        }
        done(std::move(out));
      });
}

void Hub::PresenceAsync(const std::string& channel, PresenceCallback done) {
  if (broker_ == nullptr) return done(Presence(channel));
  presence_->List(channel, [done = std::move(done)](absl::StatusOr<PresenceSnapshot> p) mutable {
    if (!p.ok()) return done(p.status());
    PresenceResult out;
    out.connection_count = p->connection_count;
    for (auto& m : p->members) {
      if (m.identity.empty()) continue;  // anonymous connections: counted, not listed
      out.members.push_back({std::move(m.identity), m.connections, m.joined_at});
    }
    done(std::move(out));
  });
}

// ---------------------------------------------------------------------------------------------
// Subscribing

std::string Hub::PresenceConnection(const Subscriber& s) const {
  return Cat(node_id_, "/", s.connection_id());
}

void Hub::SubscribeClustered(size_t shard, const std::string& channel, Subscriber* s,
                             const std::optional<RecoveryRequest>& recovery,
                             SubscribeCallback done) {
  const uint64_t token = next_token_.fetch_add(1, std::memory_order_relaxed);
  bool link = false;
  bool recover = false;
  bool is_new = false;
  SubscribeResult now_result;
  bool answer_now = false;
  uint64_t generation = 0;
  bool join = false;   // a new entry in a presence namespace: it joins, and will leave
  bool watch = false;  // a new link in a presence namespace: dead nodes' members are reaped
  const NamespaceConfig* ns = namespaces_.Find(NamespaceOf(channel));
  const bool presence = ns != nullptr && ns->presence;
  {
    Stripe& stripe = StripeFor(channel);
    std::lock_guard lock(stripe.mu);
    ChannelState* found = FindOrCreateLocked(stripe, channel);
    if (found == nullptr) {
      now_result.refused = true;
      answer_now = true;
    } else {
      ChannelState& state = *found;
      generation = state.generation;
      ShardChannel& sc = shards_[shard]->channels[channel];
      sc.generation = state.generation;
      auto pos = std::find_if(sc.entries.begin(), sc.entries.end(),
                              [s](const Entry& e) { return e.subscriber == s; });
      if (pos == sc.entries.end()) {
        sc.entries.push_back(Entry{s, 0, nullptr, presence});
        pos = sc.entries.end() - 1;
        is_new = true;
        join = presence;
        ++state.connections;
        if (state.shard_subscribers.empty()) state.shard_subscribers.resize(shards_.size());
        ++state.shard_subscribers[shard];
      }
      Entry& entry = *pos;
      if (state.link == ChannelState::Link::kLive && !recovery.has_value()) {
        // The answer is known: the position last delivered here; later frames follow it.
        entry.pending.reset();
        entry.last_offset = std::max(entry.last_offset, state.delivered.offset);
        now_result.epoch = state.delivered.epoch;
        now_result.offset = state.delivered.offset;
        answer_now = true;
      } else {
        entry.pending = std::make_unique<Entry::Pending>();
        entry.pending->token = token;
        entry.pending->recovery = recovery;
        // The presence join follows the answer, so the member's own agent_joined comes after
        // the position the subscription starts from (as embedded).
        entry.pending->done = [this, channel, join, identity = s->identity(),
                               connection = PresenceConnection(*s),
                               done = std::move(done)](SubscribeResult r) mutable {
          const bool ok = !r.refused && r.error.ok();
          done(std::move(r));
          if (ok && join) JoinPresence(channel, identity, connection);
        };
        if (state.link == ChannelState::Link::kLive) {
          recover = true;
        } else if (state.link == ChannelState::Link::kNone) {
          state.link = ChannelState::Link::kSubscribing;
          link = true;
          watch = presence && !state.watched;
          state.watched = state.watched || presence;
        }
      }
    }
  }
  if (now_result.refused) return done(std::move(now_result));
  if (is_new) {
    CountSubscription(channel, 1);
    ForwardLifecycle(channel, *s, true, "");
  }
  if (answer_now) {
    // Registered before the answer, as embedded: a Presence read after `subscribed` lists it.
    // Its agent_joined still follows the answer (it is delivered through the shard's queue).
    if (join) JoinPresence(channel, s->identity(), PresenceConnection(*s));
    return done(std::move(now_result));
  }
  if (link) LinkChannel(channel, generation, watch);
  if (recover) StartRecovery(shard, channel, token, recovery->since);
}

void Hub::JoinPresence(const std::string& channel, const std::string& identity,
                       const std::string& connection) {
  // Anonymous connections are registered too (identity ""): Presence counts every connection,
  // and lists identified members only.
  presence_->Join(channel, identity, connection,
                  [this, channel, identity](absl::StatusOr<bool> changed) {
                    if (changed.ok() && *changed)
                      PublishPresenceChange(channel, identity, true, "");
                  });
}

void Hub::LinkChannel(const std::string& channel, uint64_t generation, bool watch) {
  cluster_stats_.linked_channels.fetch_add(1, std::memory_order_relaxed);
  // A node with subscribers in a presence channel also reaps dead nodes' members there.
  if (watch) presence_->Watch(channel);
  broker_->Subscribe(channel, [this, channel, generation](absl::Status s) {
    OnLinked(channel, generation, std::move(s));
  });
}

void Hub::OnLinked(const std::string& channel, uint64_t generation, absl::Status s) {
  {
    Stripe& stripe = StripeFor(channel);
    std::lock_guard lock(stripe.mu);
    auto it = stripe.channels.find(channel);
    if (it == stripe.channels.end() || it->second.generation != generation ||
        it->second.link != ChannelState::Link::kSubscribing) {
      return;
    }
    ChannelState& state = it->second;
    if (!s.ok()) {
      state.link = ChannelState::Link::kNone;
      cluster_stats_.linked_channels.fetch_sub(1, std::memory_order_relaxed);
      FailPendingLocked(channel, state, s);
      // The broker keeps the interest until it is dropped: drop it, the next subscriber links
      // again.
    } else {
      state.link = ChannelState::Link::kOpening;
    }
  }
  if (!s.ok()) {
    broker_->Unsubscribe(channel);
    return;
  }
  broker_->Open(channel, kTopOnly, 0, [this, channel, generation](absl::StatusOr<BrokerHistory> h) {
    OnOpened(channel, generation, std::move(h));
  });
}

void Hub::OnOpened(const std::string& channel, uint64_t generation,
                   absl::StatusOr<BrokerHistory> h) {
  Deferred deferred;
  bool unlink = false;
  {
    Stripe& stripe = StripeFor(channel);
    std::lock_guard lock(stripe.mu);
    auto it = stripe.channels.find(channel);
    if (it == stripe.channels.end() || it->second.generation != generation ||
        it->second.link != ChannelState::Link::kOpening) {
      return;
    }
    ChannelState& state = it->second;
    if (!h.ok()) {
      state.link = ChannelState::Link::kNone;
      state.held.clear();
      cluster_stats_.linked_channels.fetch_sub(1, std::memory_order_relaxed);
      FailPendingLocked(channel, state, h.status());
      unlink = true;
    } else {
      state.link = ChannelState::Link::kLive;
      state.delivered = h->top;
      state.published = h->top.offset;
      // The pending subscriptions learn the top before any later frame reaches their shard.
      for (size_t i = 0; i < state.shard_subscribers.size(); ++i) {
        if (state.shard_subscribers[i] == 0) continue;
        shards_[i]->executor(
            [this, i, channel, top = h->top] { ActivatePending(i, channel, top); });
      }
      auto held = std::move(state.held);
      state.held.clear();
      for (auto& m : held) {
        if (state.repairing) {
          state.held.push_back(std::move(m));
        } else {
          DeliverLocked(channel, state, std::move(m), deferred);
        }
      }
    }
  }
  if (unlink) broker_->Unsubscribe(channel);
  RunDeferred(deferred);
}

void Hub::FailPendingLocked(const std::string& channel, ChannelState& state,
                            const absl::Status& why) {
  cluster_stats_.subscribe_failures.fetch_add(1, std::memory_order_relaxed);
  for (size_t i = 0; i < state.shard_subscribers.size(); ++i) {
    if (state.shard_subscribers[i] == 0) continue;
    Shard* shard = shards_[i].get();
    shard->executor([shard, channel, why] {
      auto it = shard->channels.find(channel);
      if (it == shard->channels.end()) return;
      // Answered after the loop: a callback may unsubscribe, which edits the entries.
      std::vector<SubscribeCallback> failed;
      for (Entry& e : it->second.entries) {
        if (!e.pending) continue;
        failed.push_back(std::move(e.pending->done));
        e.pending.reset();
      }
      for (auto& done : failed) {
        SubscribeResult r;
        r.error = why;
        done(std::move(r));  // the session unsubscribes, which removes the entry
      }
    });
  }
}

void Hub::ActivatePending(size_t shard, const std::string& channel, StreamPosition top) {
  auto it = shards_[shard]->channels.find(channel);
  if (it == shards_[shard]->channels.end()) return;
  std::vector<std::pair<SubscribeCallback, SubscribeResult>> answers;
  std::vector<std::pair<uint64_t, uint64_t>> recoveries;  // (token, since)
  for (Entry& e : it->second.entries) {
    if (!e.pending) continue;
    if (e.pending->recovery.has_value()) {
      recoveries.emplace_back(e.pending->token, e.pending->recovery->since);
      continue;
    }
    SubscribeResult r;
    r.epoch = top.epoch;
    r.offset = top.offset;
    e.last_offset = top.offset;
    for (auto& f : e.pending->frames) {
      if (f->offset > e.last_offset) {
        e.last_offset = f->offset;
        r.missed.push_back(std::move(f));
      }
    }
    answers.emplace_back(std::move(e.pending->done), std::move(r));
    e.pending.reset();
  }
  for (auto& [done, r] : answers) done(std::move(r));
  for (auto [token, since] : recoveries) StartRecovery(shard, channel, token, since);
}

void Hub::StartRecovery(size_t shard, const std::string& channel, uint64_t token, uint64_t since) {
  broker_->History(
      channel, since, 0, [this, shard, channel, token](absl::StatusOr<BrokerHistory> h) mutable {
        shards_[shard]->executor([this, shard, channel, token, h = std::move(h)]() mutable {
          CompleteRecovery(shard, channel, token, std::move(h));
        });
      });
}

void Hub::CompleteRecovery(size_t shard, const std::string& channel, uint64_t token,
                           absl::StatusOr<BrokerHistory> h) {
  auto it = shards_[shard]->channels.find(channel);
  if (it == shards_[shard]->channels.end()) return;
  auto pos =
      std::find_if(it->second.entries.begin(), it->second.entries.end(),
                   [token](const Entry& e) { return e.pending && e.pending->token == token; });
  if (pos == it->second.entries.end()) return;  // unsubscribed, or subscribed again
  Entry& e = *pos;
  std::unique_ptr<Entry::Pending> pending = std::move(e.pending);
  SubscribeResult r;
  if (!h.ok()) {
    cluster_stats_.subscribe_failures.fetch_add(1, std::memory_order_relaxed);
    r.error = h.status();
    return pending->done(std::move(r));  // the session unsubscribes
  }
  const RecoveryRequest& rec = *pending->recovery;
  r.epoch = h->top.epoch;
  r.offset = h->top.offset;
  const bool same_epoch = rec.epoch == h->top.epoch || (rec.epoch.empty() && rec.since == 0);
  uint64_t last = h->top.offset;
  if (!same_epoch || rec.since > h->top.offset) {
    r.recovered = false;
  } else if (rec.since == h->top.offset) {
    r.recovered = true;
  } else {
    r.recovered = h->complete;
    for (auto& f : h->frames) {
      if (f.offset <= rec.since) continue;
      r.missed.push_back(MakeFrame(channel, f.offset, std::move(f.text)));
    }
  }
  // What arrived while the read was in flight follows, without what the read already had.
  uint64_t next = r.missed.empty() ? last : std::max(last, r.missed.back()->offset);
  for (auto& f : pending->frames) {
    if (f->offset <= next) continue;
    next = f->offset;
    r.missed.push_back(std::move(f));
  }
  if (pending->dropped_from != 0) {
    r.missed.push_back(GapFrame(channel, pending->dropped_from, pending->dropped_to));
    next = std::max(next, pending->dropped_to);
  }
  e.last_offset = next;
  pending->done(std::move(r));
}

void Hub::UnsubscribeClustered(size_t shard, const std::string& channel, Subscriber* s,
                               std::string_view reason) {
  bool presence = false;
  if (!RemoveFromShard(shard, channel, s, &presence)) return;
  {
    Stripe& stripe = StripeFor(channel);
    std::lock_guard lock(stripe.mu);
    auto found = stripe.channels.find(channel);
    if (found != stripe.channels.end()) {
      ChannelState& state = found->second;
      if (state.connections > 0) --state.connections;
      if (shard < state.shard_subscribers.size() && state.shard_subscribers[shard] > 0) {
        --state.shard_subscribers[shard];
      }
      // The broker link stays for link_linger_ (SweepClustered): a quick resubscribe, a
      // reconnecting page, keeps it.
      if (state.connections == 0) state.last_active = std::chrono::steady_clock::now();
    }
  }
  // As it joined (the namespace's policy may have changed since: a reload).
  if (presence) {
    presence_->Leave(channel, s->identity(), PresenceConnection(*s),
                     [this, channel, identity = s->identity(),
                      reason = std::string(reason)](absl::StatusOr<bool> changed) {
                       if (changed.ok() && *changed && !identity.empty()) {
                         PublishPresenceChange(channel, identity, false, reason);
                       }
                     });
  }
  ForwardLifecycle(channel, *s, false, reason);
}

// ---------------------------------------------------------------------------------------------
// Delivering

void Hub::OnBrokerMessage(BrokerMessage m) {
  Deferred deferred;
  {
    Stripe& stripe = StripeFor(m.channel);
    std::lock_guard lock(stripe.mu);
    auto it = stripe.channels.find(m.channel);
    if (it == stripe.channels.end()) return;  // no local subscriber (any more)
    ChannelState& state = it->second;
    switch (state.link) {
      case ChannelState::Link::kNone:
        return;
      case ChannelState::Link::kSubscribing:
      case ChannelState::Link::kOpening:
        if (state.held.size() < max_pending_frames_.load(std::memory_order_relaxed)) {
          state.held.push_back(std::move(m));
        }
        return;
      case ChannelState::Link::kLive:
        break;
    }
    if (state.repairing) {
      if (state.held.size() < max_pending_frames_.load(std::memory_order_relaxed)) {
        state.held.push_back(std::move(m));
      }
      return;
    }
    std::string channel = m.channel;
    DeliverLocked(channel, state, std::move(m), deferred, true);
  }
  RunDeferred(deferred);
}

void Hub::DeliverLocked(const std::string& channel, ChannelState& state, BrokerMessage m,
                        Deferred& deferred, bool live) {
  if (!state.retired_epoch.empty() && m.epoch == state.retired_epoch) {
    cluster_stats_.duplicates.fetch_add(1, std::memory_order_relaxed);
    return;  // published before the rotation, delivered after it
  }
  if (m.epoch != state.delivered.epoch) {
    // The channel's state was lost in the broker (expiry, a restart without persistence, a
    // fail-over) and created again: offsets start over, which no client may take for the old
    // ones. Every subscription is told the new epoch.
    cluster_stats_.epoch_changes.fetch_add(1, std::memory_order_relaxed);
    state.delivered = StreamPosition{0, m.epoch};
    state.published = 0;
    PostControlLocked(channel, state, SubscribedFrame(channel, m.epoch, 0, false), true);
  }
  if (m.offset <= state.delivered.offset) {
    cluster_stats_.duplicates.fetch_add(1, std::memory_order_relaxed);
    // Pub/sub delivers each message once: a repeat straight from it is either one a repair
    // already read back (the top is at or past what was delivered) or offsets that went back
    // under this epoch (a fail-over to a replica missing the last writes). Check which.
    if (live && !state.checking) {
      state.checking = true;
      deferred.check.emplace_back(channel, state.delivered.offset);
    }
    return;
  }
  if (m.offset != state.delivered.offset + 1) {
    // Pub/sub lost something: read it back before going on.
    state.repairing = true;
    state.held.push_back(std::move(m));
    deferred.repair.push_back(channel);
    return;
  }
  uint64_t exclude_id = 0;
  if (size_t slash = m.origin.rfind('/');
      slash != std::string::npos && std::string_view(m.origin).substr(0, slash) == node_id_) {
    std::from_chars(m.origin.data() + slash + 1, m.origin.data() + m.origin.size(), exclude_id);
  }
  state.delivered.offset = m.offset;
  // The node's clock starts here: the publish was accepted by whichever node's hub took it, and
  // steady clocks of two machines cannot be compared.
  const int64_t arrived = std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::steady_clock::now().time_since_epoch())
                              .count();
  PostFrameLocked(state, MakeFrame(channel, m.offset, std::move(m.text), arrived), exclude_id);
}

void Hub::PostFrameLocked(ChannelState& state, const FramePtr& frame, uint64_t exclude_id) {
  if (stopped_.load(std::memory_order_relaxed)) return;
  const uint64_t generation = state.generation;
  for (size_t i = 0; i < state.shard_subscribers.size(); ++i) {
    if (state.shard_subscribers[i] == 0) continue;
    Shard* s = shards_[i].get();
    s->executor([s, frame, exclude_id, generation] { s->Deliver(frame, exclude_id, generation); });
  }
}

void Hub::PostControlLocked(const std::string& channel, ChannelState& state, const FramePtr& frame,
                            bool reset) {
  if (stopped_.load(std::memory_order_relaxed)) return;
  for (size_t i = 0; i < state.shard_subscribers.size(); ++i) {
    if (state.shard_subscribers[i] == 0) continue;
    Shard* s = shards_[i].get();
    s->executor([s, channel, frame, reset] { s->DeliverControl(channel, frame, reset); });
  }
}

void Hub::Shard::DeliverControl(const std::string& channel, const FramePtr& frame, bool reset) {
  auto it = channels.find(channel);
  if (it == channels.end()) return;
  for (Entry& e : it->second.entries) {
    if (e.pending) continue;  // its answer tells the position
    if (reset) e.last_offset = 0;
    e.subscriber->Deliver(frame);
  }
}

void Hub::RunDeferred(Deferred& deferred) {
  for (const auto& channel : deferred.repair) Repair(channel);
  for (const auto& [channel, delivered] : deferred.check) CheckRewind(channel, delivered);
}

void Hub::CheckRewind(const std::string& channel, uint64_t delivered) {
  // `delivered` was reached before the read is sent, so a top read afterwards is at least that
  // unless the offsets went back (deliveries may pass the read meanwhile: compare with it).
  broker_->History(
      channel, kTopOnly, 0, [this, channel, delivered](absl::StatusOr<BrokerHistory> h) {
        std::string epoch;
        {
          Stripe& stripe = StripeFor(channel);
          std::lock_guard lock(stripe.mu);
          CountPublishLocked(stripe, channel);
          auto it = stripe.channels.find(channel);
          if (it == stripe.channels.end()) return;
          ChannelState& state = it->second;
          state.checking = false;
          if (!h.ok() || h->top.epoch != state.delivered.epoch || h->top.offset >= delivered) {
            return;  // a plain duplicate (or an epoch change, handled at its delivery)
          }
          epoch = state.delivered.epoch;
        }
        // The offsets went back: the epoch must change before a client takes a reused offset.
        broker_->RotateEpoch(
            channel, epoch, [this, channel, epoch](absl::StatusOr<StreamPosition> top) {
              if (!top.ok() || top->epoch.empty() || top->epoch == epoch) return;
              // Rotated (here, or by another node that saw it too): counted even when a delivery
              // of the new epoch already reset this node's subscriptions.
              cluster_stats_.rewinds.fetch_add(1, std::memory_order_relaxed);
              Stripe& stripe = StripeFor(channel);
              std::lock_guard lock(stripe.mu);
              auto it = stripe.channels.find(channel);
              if (it == stripe.channels.end()) return;
              ChannelState& state = it->second;
              if (state.delivered.epoch != epoch) return;
              state.retired_epoch = epoch;
              state.delivered = *top;
              state.published = top->offset;
              PostControlLocked(channel, state,
                                SubscribedFrame(channel, top->epoch, top->offset, false), true);
            });
      });
}

void Hub::Repair(const std::string& channel) {
  uint64_t from = 0;
  uint64_t generation = 0;
  uint64_t seq = 0;
  {
    Stripe& stripe = StripeFor(channel);
    std::lock_guard lock(stripe.mu);
    auto it = stripe.channels.find(channel);
    if (it == stripe.channels.end() || it->second.link != ChannelState::Link::kLive) return;
    it->second.repairing = true;
    from = it->second.delivered.offset;
    generation = it->second.generation;
    seq = ++it->second.repair_seq;
  }
  cluster_stats_.repairs.fetch_add(1, std::memory_order_relaxed);
  broker_->History(channel, from, 0,
                   [this, channel, generation, seq](absl::StatusOr<BrokerHistory> h) {
                     OnRepaired(channel, generation, seq, std::move(h));
                   });
}

void Hub::OnRepaired(const std::string& channel, uint64_t generation, uint64_t seq,
                     absl::StatusOr<BrokerHistory> h) {
  Deferred deferred;
  {
    Stripe& stripe = StripeFor(channel);
    std::lock_guard lock(stripe.mu);
    auto it = stripe.channels.find(channel);
    if (it == stripe.channels.end() || it->second.generation != generation) return;
    ChannelState& state = it->second;
    if (state.repair_seq != seq) return;  // a newer read is in flight
    state.repairing = false;
    if (state.link != ChannelState::Link::kLive) return;
    if (h.ok() && !h->top.epoch.empty() && h->top.epoch != state.delivered.epoch) {
      // The channel's state was lost while pub/sub was away (a Redis restart) and created again
      // by a publish this node did not receive: tell the subscriptions, then read the new epoch
      // from its start.
      cluster_stats_.epoch_changes.fetch_add(1, std::memory_order_relaxed);
      const std::string old_epoch = state.delivered.epoch;
      state.delivered = StreamPosition{0, h->top.epoch};
      state.published = 0;
      PostControlLocked(channel, state, SubscribedFrame(channel, h->top.epoch, 0, false), true);
      std::erase_if(state.held, [&](const BrokerMessage& m) { return m.epoch == old_epoch; });
      state.repairing = true;
      deferred.repair.push_back(channel);
    } else {
      // Rebuilt from history first, then from what was held, all in offset order.
      std::vector<BrokerMessage> sequence;
      if (h.ok() && h->top.epoch == state.delivered.epoch) {
        for (auto& f : h->frames) {
          // History frames carry no origin: a client's own message read back reaches it too.
          sequence.push_back(BrokerMessage{channel, f.offset, h->top.epoch, std::move(f.text), ""});
        }
        cluster_stats_.repaired_frames.fetch_add(h->frames.size(), std::memory_order_relaxed);
      }
      // Otherwise the epoch changed meanwhile: the held deliveries of the new one reset.
      // Held deliveries came from the broker in offset order.
      auto held = std::move(state.held);
      state.held.clear();
      for (auto& m : held) sequence.push_back(std::move(m));
      // What still does not follow on is lost for good: say so, and go on after it.
      for (auto& m : sequence) {
        if (state.repairing) {
          state.held.push_back(std::move(m));
          continue;
        }
        if (m.epoch == state.delivered.epoch && m.offset > state.delivered.offset + 1) {
          cluster_stats_.unrecoverable_gaps.fetch_add(1, std::memory_order_relaxed);
          PostControlLocked(channel, state,
                            GapFrame(channel, state.delivered.offset + 1, m.offset - 1), false);
          state.delivered.offset = m.offset - 1;
        }
        DeliverLocked(channel, state, std::move(m), deferred);
      }
      if (!h.ok()) {
        // Not read: the next delivery or the next kUp tries again.
        deferred.repair.clear();
      }
    }
  }
  RunDeferred(deferred);
}

void Hub::OnBrokerState(BrokerState state, const absl::Status& why) {
  if (state == BrokerState::kDown) {
    broker_down_.store(true);
    (void)why;
    return;
  }
  if (!broker_down_.exchange(false)) return;
  // Back: whatever pub/sub lost while down is read back, channel by channel (pipelined).
  std::vector<std::string> live;
  for (size_t i = 0; i < kStripes; ++i) {
    std::lock_guard lock(stripes_[i].mu);
    for (auto& [name, st] : stripes_[i].channels) {
      if (st.link == ChannelState::Link::kLive && !st.repairing) live.push_back(name);
    }
  }
  for (const auto& channel : live) Repair(channel);
}

size_t Hub::SweepClustered(std::chrono::steady_clock::time_point now) {
  std::vector<std::string> unlink;
  std::vector<std::string> unwatch;
  std::vector<std::string> probe;
  size_t freed = 0;
  const std::chrono::milliseconds linger = link_linger_.load(std::memory_order_relaxed);
  for (size_t i = 0; i < kStripes; ++i) {
    std::lock_guard lock(stripes_[i].mu);
    auto& channels = stripes_[i].channels;
    for (auto it = channels.begin(); it != channels.end();) {
      ChannelState& st = it->second;
      if (st.connections == 0 && now - st.last_active >= linger) {
        if (st.link != ChannelState::Link::kNone) {
          unlink.push_back(it->first);
          cluster_stats_.linked_channels.fetch_sub(1, std::memory_order_relaxed);
        }
        if (st.watched) unwatch.push_back(it->first);
        it = channels.erase(it);
        channel_count_.fetch_sub(1, std::memory_order_relaxed);
        metrics_.channels_current.fetch_sub(1, std::memory_order_relaxed);
        metrics_.channels_evicted_total.fetch_add(1, std::memory_order_relaxed);
        ++freed;
        continue;
      }
      // The pub/sub probe: this node's own publishes must come back within two sweeps.
      if (st.link == ChannelState::Link::kLive && !st.repairing &&
          st.published > st.delivered.offset) {
        if (++st.stall_ticks >= 2) {
          st.stall_ticks = 0;
          cluster_stats_.pubsub_stalls.fetch_add(1, std::memory_order_relaxed);
          probe.push_back(it->first);
        }
      } else {
        st.stall_ticks = 0;
      }
      ++it;
    }
  }
  for (const auto& channel : unlink) broker_->Unsubscribe(channel);
  for (const auto& channel : unwatch) presence_->Unwatch(channel);
  for (const auto& channel : probe) Repair(channel);
  return freed;
}

// ---------------------------------------------------------------------------------------------
// Client messages to backends on other nodes

void ToProto(const ClientMessageRecord& r, gathering::bridge::v1::ClientMessage* out) {
  using Pb = gathering::bridge::v1::ClientMessage;
  out->set_channel(r.channel);
  out->set_connection_id(r.connection_id);
  out->set_identity(r.identity);
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(r.received_at.time_since_epoch())
                .count();
  out->mutable_received_at()->set_seconds(ns / 1000000000);
  out->mutable_received_at()->set_nanos(static_cast<int32_t>(ns % 1000000000));
  out->set_json(r.json);
  out->set_reason(r.reason);
  switch (r.kind) {
    case ClientMessageRecord::Kind::kMessage:
      out->set_kind(Pb::MESSAGE);
      break;
    case ClientMessageRecord::Kind::kSubscribed:
      out->set_kind(Pb::SUBSCRIBED);
      break;
    case ClientMessageRecord::Kind::kUnsubscribed:
      out->set_kind(Pb::UNSUBSCRIBED);
      break;
  }
}

ClientMessagePtr FromProto(const gathering::bridge::v1::ClientMessage& m) {
  using Pb = gathering::bridge::v1::ClientMessage;
  auto r = std::make_shared<ClientMessageRecord>();
  r->channel = m.channel();
  r->connection_id = m.connection_id();
  r->identity = m.identity();
  r->received_at = std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(m.received_at().seconds()) +
          std::chrono::nanoseconds(m.received_at().nanos())));
  r->json = m.json();
  r->reason = m.reason();
  r->kind = m.kind() == Pb::SUBSCRIBED     ? ClientMessageRecord::Kind::kSubscribed
            : m.kind() == Pb::UNSUBSCRIBED ? ClientMessageRecord::Kind::kUnsubscribed
                                           : ClientMessageRecord::Kind::kMessage;
  return r;
}

void Hub::ForwardToOtherNodes(const ClientMessagePtr& message) {
  gathering::bridge::v1::ClientMessage m;
  ToProto(*message, &m);
  cluster_stats_.backend_forwarded.fetch_add(1, std::memory_order_relaxed);
  broker_->PublishBackendMessage(node_id_, m.SerializeAsString());
}

void Hub::OnBackendMessage(std::string origin, std::string payload) {
  if (origin == node_id_) return;  // its own: already forwarded locally
  if (sink_count() == 0) return;
  gathering::bridge::v1::ClientMessage m;
  if (!m.ParseFromString(payload)) {
    cluster_stats_.backend_malformed.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  cluster_stats_.backend_received.fetch_add(1, std::memory_order_relaxed);
  ForwardToLocalBackends(FromProto(m));
}

std::string Hub::RenderClusterMetrics() const {
  MetricFamilies f;
  CollectClusterMetrics(f);
  return RenderPrometheus(f);
}

void Hub::CollectClusterMetrics(MetricFamilies& out) const {
  if (broker_ == nullptr) return;
  const BrokerHealth h = broker_->Health();
  const BrokerStats& b = broker_->stats();
  auto line = [&](const char* name, const char* type, const char* help, uint64_t v) {
    out.push_back({Cat("bridge_broker_", name), type, help, {{"", {}, static_cast<double>(v)}}});
  };
  line("up", "gauge", "1 when publishing and pub/sub both work.", h.ok() ? 1 : 0);
  line("publish_up", "gauge", "1 when the broker's store answers.", h.publish_up ? 1 : 0);
  line("pubsub_up", "gauge", "1 when deliveries can arrive.", h.pubsub_up ? 1 : 0);
  line("published_total", "counter", "Publishes the broker confirmed.", b.published.load());
  line("publish_failed_total", "counter", "Publishes that failed.", b.publish_failed.load());
  line("delivered_total", "counter", "Messages the broker delivered to this node.",
       b.delivered.load());
  line("reconnects_total", "counter", "Times the broker came back after being down.",
       b.reconnects.load());
  line("errors_total", "counter", "Other broker failures.", b.errors.load());
  const ClusterStats& c = cluster_stats_;
  line("repairs_total", "counter", "Ranges read back after a pub/sub gap.", c.repairs.load());
  line("repaired_frames_total", "counter", "Frames those reads delivered.",
       c.repaired_frames.load());
  line("unrecoverable_gaps_total", "counter", "Gaps history could not fill (gap frames sent).",
       c.unrecoverable_gaps.load());
  line("epoch_changes_total", "counter", "Live channels whose broker state was lost.",
       c.epoch_changes.load());
  line("duplicates_total", "counter", "Deliveries dropped as already delivered.",
       c.duplicates.load());
  line("rewinds_total", "counter", "Channels whose offsets went back under one epoch (rotated).",
       c.rewinds.load());
  line("pubsub_stalls_total", "counter", "Own publishes that did not come back in time.",
       c.pubsub_stalls.load());
  line("subscribe_failures_total", "counter", "Subscriptions refused while the broker was down.",
       c.subscribe_failures.load());
  line("backend_forwarded_total", "counter", "Client messages sent to other nodes' backends.",
       c.backend_forwarded.load());
  line("backend_received_total", "counter", "Client messages from other nodes to local backends.",
       c.backend_received.load());
  line("backend_malformed_total", "counter", "Backend messages from the broker that did not parse.",
       c.backend_malformed.load());
  line("linked_channels", "gauge", "Channels this node subscribes to in the broker.",
       static_cast<uint64_t>(std::max<int64_t>(0, c.linked_channels.load())));
  // Broker lag (no labels): cumulative buckets in seconds, as bridge_delivery_latency_seconds.
  auto histogram = [&](const char* name, const char* help, const ShardedHistogram& hist) {
    MetricFamily h{Cat("bridge_broker_", name), "histogram", help, {}};
    const ShardedHistogram::Totals t = hist.Sum(0);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < ShardedHistogram::kBuckets; ++i) {
      cumulative += t.buckets[i];
      std::string le = "+Inf";
      if (i < ShardedHistogram::kBoundsNanos.size()) {
        const int64_t us = ShardedHistogram::kBoundsNanos[i] / 1000;
        std::string frac = Cat(1000000 + us % 1000000).substr(1);
        while (!frac.empty() && frac.back() == '0') frac.pop_back();
        le = frac.empty() ? Cat(us / 1000000) : Cat(us / 1000000, ".", frac);
      }
      h.samples.push_back({"_bucket", {{"le", le}}, static_cast<double>(cumulative)});
    }
    h.samples.push_back({"_sum", {}, static_cast<double>(t.sum_nanos) / 1e9});
    h.samples.push_back({"_count", {}, static_cast<double>(t.count)});
    out.push_back(std::move(h));
  };
  histogram("publish_seconds",
            "From a Publish call to the broker's answer (Redis: the script's reply).",
            b.publish_latency);
  histogram("delivery_lag_seconds",
            "From a Publish call to the frame's arrival back at this node (own publishes).",
            b.delivery_lag);
}

}  // namespace bridge::core
