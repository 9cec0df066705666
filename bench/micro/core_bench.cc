// Micro-benchmarks of the per-event work in src/core: encoding an Event into its frame
// (EncodeEvent), and Hub::Publish with its fan-out to N subscribers. The shard executors run
// tasks inline, so the fan-out figure is the hub's own cost per delivery, without sockets.
//   build/bench/bench/micro/bridge-micro --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>
#include <vector>

#include "core/frame.h"
#include "core/hub.h"
#include "core/metrics.h"
#include "core/namespaces.h"

namespace {

namespace v1 = gathering::bridge::v1;
using bridge::core::FramePtr;

v1::Event BenchEvent(size_t pad) {
  v1::Event event;
  event.set_channel("circles/bench-0");
  v1::Custom* custom = event.mutable_custom();
  custom->set_type("bench");
  auto& fields = *custom->mutable_data()->mutable_fields();
  if (pad > 0) fields["pad"].set_string_value(std::string(pad, 'x'));
  fields["seq"].set_number_value(12345);
  fields["t"].set_number_value(98765432101.0);
  return event;
}

v1::Event AgentMessageEvent() {
  v1::Event event;
  event.set_channel("circles/dev-team");
  v1::AgentMessage* m = event.mutable_agent_message();
  m->set_agent_id(7);
  m->set_agent_name("planner");
  m->set_content("Splitting the task in three: parse, validate, publish. Starting with parse.");
  m->set_message_id("m-000123");
  return event;
}

void BM_EncodeCustom(benchmark::State& state) {
  v1::Event event = BenchEvent(static_cast<size_t>(state.range(0)));
  auto now = std::chrono::system_clock::now();
  size_t bytes = 0;
  for (auto _ : state) {
    auto parts = bridge::core::EncodeEvent(event, now);
    bytes = parts->head.size() + parts->tail.size();
    benchmark::DoNotOptimize(parts);
  }
  state.counters["frame_bytes"] = static_cast<double>(bytes);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EncodeCustom)->Arg(0)->Arg(1024);

void BM_EncodeAgentMessage(benchmark::State& state) {
  v1::Event event = AgentMessageEvent();
  auto now = std::chrono::system_clock::now();
  for (auto _ : state) {
    auto parts = bridge::core::EncodeEvent(event, now);
    benchmark::DoNotOptimize(parts);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EncodeAgentMessage);

class CountingSubscriber : public bridge::core::Subscriber {
 public:
  explicit CountingSubscriber(uint64_t id) : id_(id) {}
  void Deliver(const FramePtr& frame) override {
    ++frames_;
    bytes_ += frame->text.size();
  }
  uint64_t subscriber_id() const override { return id_; }
  const std::string& identity() const override { return identity_; }
  const std::string& connection_id() const override { return connection_id_; }
  uint64_t frames() const { return frames_; }

 private:
  uint64_t id_;
  std::string identity_;
  std::string connection_id_ = "c-bench";
  uint64_t frames_ = 0;
  uint64_t bytes_ = 0;
};

// Hub::Publish of one event to range(0) subscribers of one channel over range(1) shards.
void BM_HubPublishFanout(benchmark::State& state) {
  const int subscribers = static_cast<int>(state.range(0));
  const size_t shards = static_cast<size_t>(state.range(1));
  bridge::core::Metrics metrics;
  std::vector<bridge::core::Hub::Executor> executors(shards,
                                                     [](std::function<void()> task) { task(); });
  bridge::core::Hub hub(executors, bridge::core::NamespaceRegistry::Defaults(), metrics);
  std::vector<std::unique_ptr<CountingSubscriber>> subs;
  const std::string channel = "circles/bench-0";
  for (int i = 0; i < subscribers; ++i) {
    subs.push_back(std::make_unique<CountingSubscriber>(static_cast<uint64_t>(i + 1)));
    hub.Subscribe(static_cast<size_t>(i) % shards, channel, subs.back().get(), std::nullopt);
  }
  v1::Event event = BenchEvent(0);
  for (auto _ : state) {
    auto result = hub.Publish(event);
    benchmark::DoNotOptimize(result);
  }
  for (int i = 0; i < subscribers; ++i) {
    hub.Unsubscribe(static_cast<size_t>(i) % shards, channel, subs[static_cast<size_t>(i)].get());
  }
  state.SetItemsProcessed(state.iterations() * subscribers);  // deliveries
}
BENCHMARK(BM_HubPublishFanout)
    ->Args({1, 1})
    ->Args({100, 1})
    ->Args({1000, 1})
    ->Args({1000, 2})
    ->Args({10000, 2});

// Publishing to range(0) channels with one subscriber each, round robin (the `channels`
// scenario); range(1) = 1 counts the busiest channels as the admin listener does.
void BM_HubPublishManyChannels(benchmark::State& state) {
  const int channels = static_cast<int>(state.range(0));
  const size_t shards = 2;
  bridge::core::Metrics metrics;
  std::vector<bridge::core::Hub::Executor> executors(shards,
                                                     [](std::function<void()> task) { task(); });
  bridge::core::Hub hub(executors, bridge::core::NamespaceRegistry::Defaults(), metrics);
  if (state.range(1) != 0) hub.EnableChannelCounts();
  std::vector<std::unique_ptr<CountingSubscriber>> subs;
  std::vector<v1::Event> events;
  for (int i = 0; i < channels; ++i) {
    std::string channel = "circles/bench-" + std::to_string(i);
    subs.push_back(std::make_unique<CountingSubscriber>(static_cast<uint64_t>(i + 1)));
    hub.Subscribe(static_cast<size_t>(i) % shards, channel, subs.back().get(), std::nullopt);
    events.push_back(BenchEvent(0));
    events.back().set_channel(channel);
  }
  size_t i = 0;
  for (auto _ : state) {
    auto result = hub.Publish(events[i]);
    benchmark::DoNotOptimize(result);
    if (++i == events.size()) i = 0;
  }
  for (int c = 0; c < channels; ++c) {
    hub.Unsubscribe(static_cast<size_t>(c) % shards, "circles/bench-" + std::to_string(c),
                    subs[static_cast<size_t>(c)].get());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HubPublishManyChannels)->Args({5000, 0})->Args({5000, 1})->Args({1, 0})->Args({1, 1});

}  // namespace

BENCHMARK_MAIN();
