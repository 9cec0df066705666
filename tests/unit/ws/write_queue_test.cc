// The write queue without sockets: bounds, the three slow-consumer policies, control frames and
// the close frame, and what one gather write carries.
#include "ws/write_queue.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include "core/channel.h"
#include "core/protocol.h"

namespace bridge::ws {
namespace {

class WriteQueueTest : public testing::Test {
 protected:
  WriteQueueTest()
      : hub_({},
             *core::NamespaceRegistry::Parse(
                 "circles,drops:slow=drop_oldest,state:slow=latest_only"),
             metrics_) {}

  core::FramePtr Event(const std::string& channel, uint64_t offset, size_t size = 100) {
    auto f = std::make_shared<core::Frame>();
    f->channel = channel;
    f->offset = offset;
    f->ns = hub_.namespaces().IndexOf(core::NamespaceOf(channel));
    f->text = std::string(size, 'x');
    return f;
  }
  WriteQueue::Limits Small() {
    WriteQueue::Limits l;
    l.max_bytes = 1000;
    l.control_allowance = 500;
    return l;
  }
  // Concatenates what one write would send.
  std::string Drain(WriteQueue& q) {
    std::vector<boost::asio::const_buffer> b;
    std::string out;
    if (!q.Prepare(b)) return out;
    for (auto& x : b) out.append(static_cast<const char*>(x.data()), x.size());
    q.Written();
    return out;
  }

  core::Metrics metrics_;
  core::Hub hub_;
};

TEST_F(WriteQueueTest, EventsOverTheBoundDisconnectByDefault) {
  WriteQueue q(Small(), hub_, metrics_);
  for (uint64_t i = 1; i <= 10; ++i) {
    EXPECT_EQ(q.PushFrame(Event("circles/a", i)), WriteQueue::Push::kQueued) << i;
  }
  EXPECT_EQ(q.PushFrame(Event("circles/a", 11)), WriteQueue::Push::kSlow);
  EXPECT_EQ(q.queued_bytes(), 1000u);
  EXPECT_EQ(metrics_.queued_bytes_current.load(), 1000);
}

TEST_F(WriteQueueTest, ControlFramesUseOnlyTheirAllowance) {
  WriteQueue q(Small(), hub_, metrics_);
  for (uint64_t i = 1; i <= 10; ++i) q.PushFrame(Event("circles/a", i));
  // The queue is full of events: an error frame still fits (allowance), not forever.
  EXPECT_EQ(q.PushFrame(core::ErrorFrame(core::ErrorCode::kRateLimited, "x")),
            WriteQueue::Push::kQueued);
  int queued = 0;
  while (q.PushFrame(core::PongFrame()) == WriteQueue::Push::kQueued) ++queued;
  EXPECT_GT(queued, 0);
  EXPECT_LE(q.queued_bytes(), 1500u);
}

TEST_F(WriteQueueTest, RawPongsAreBoundedWhileAWriteIsStuck) {
  WriteQueue q(Small(), hub_, metrics_);
  std::vector<boost::asio::const_buffer> b;
  ASSERT_EQ(q.PushRaw(core::BuildWsControlFrame(core::WsOpcode::kPong, "p")),
            WriteQueue::Push::kQueued);
  ASSERT_TRUE(q.Prepare(b));  // in flight and never completing: the client reads nothing
  std::string payload(125, 'p');
  int queued = 0;
  while (q.PushRaw(core::BuildWsControlFrame(core::WsOpcode::kPong, payload)) ==
         WriteQueue::Push::kQueued) {
    ASSERT_LT(++queued, 1000) << "pongs are not bounded";
  }
  EXPECT_LE(q.control_bytes(), 500u);
  EXPECT_GT(queued, 0);
}

TEST_F(WriteQueueTest, DropOldestLeavesAGapFrameWhereTheEventsWere) {
  WriteQueue q(Small(), hub_, metrics_);
  for (uint64_t i = 1; i <= 10; ++i) q.PushFrame(Event("drops/a", i));
  EXPECT_EQ(q.PushFrame(Event("drops/a", 11, 300)), WriteQueue::Push::kQueued);
  std::vector<boost::asio::const_buffer> b;
  ASSERT_TRUE(q.Prepare(b));
  // First frame after the header: the gap for offsets 1..3.
  std::string first(static_cast<const char*>(b[1].data()), b[1].size());
  auto gap = boost::json::parse(first);
  EXPECT_EQ(gap.at("type"), "gap");
  EXPECT_EQ(gap.at("from"), 1);
  EXPECT_EQ(gap.at("to"), 3);
  EXPECT_EQ(hub_.namespace_stats(hub_.namespaces().IndexOf("drops")).dropped.load(), 3u);
}

TEST_F(WriteQueueTest, LatestOnlyKeepsTheNewestOfAChannel) {
  WriteQueue q(Small(), hub_, metrics_);
  for (uint64_t i = 1; i <= 5; ++i) q.PushFrame(Event("state/a", i, 150));
  q.PushFrame(Event("state/b", 1, 150));
  EXPECT_EQ(q.PushFrame(Event("state/a", 6, 150)), WriteQueue::Push::kQueued);
  EXPECT_EQ(q.queued_frames(), 2u);  // state/b 1 and state/a 6
}

TEST_F(WriteQueueTest, FramesInFlightAreNeverDropped) {
  WriteQueue q(Small(), hub_, metrics_);
  for (uint64_t i = 1; i <= 10; ++i) q.PushFrame(Event("drops/a", i));
  std::vector<boost::asio::const_buffer> b;
  ASSERT_TRUE(q.Prepare(b));  // all ten in flight
  EXPECT_EQ(q.PushFrame(Event("drops/a", 11)), WriteQueue::Push::kSlow);
  EXPECT_EQ(q.Written().frames, 10u);
  EXPECT_EQ(q.queued_bytes(), 0u);
}

TEST_F(WriteQueueTest, CloseDropsEventsKeepsControlFramesAndGoesLast) {
  WriteQueue q(Small(), hub_, metrics_);
  q.PushFrame(Event("circles/a", 1));
  q.PushFrame(core::ErrorFrame(core::ErrorCode::kForbidden, "no"));
  q.PushFrame(Event("circles/a", 2));
  EXPECT_EQ(q.Close(core::BuildWsCloseFrame(4003, "forbidden")), 2u);
  EXPECT_EQ(q.PushFrame(Event("circles/a", 3)), WriteQueue::Push::kQueued);  // dropped
  EXPECT_EQ(q.queued_frames(), 1u);
  std::vector<boost::asio::const_buffer> b;
  ASSERT_TRUE(q.Prepare(b));
  std::string last(static_cast<const char*>(b.back().data()), b.back().size());
  EXPECT_EQ(static_cast<uint8_t>(last[0]), 0x88);  // FIN + close
  EXPECT_TRUE(q.Written().close);
  EXPECT_FALSE(q.Prepare(b));
  EXPECT_EQ(metrics_.queued_bytes_current.load(), 0);
}

// Shutdown: every queued event goes out, in order, then the close frame (over several writes
// when the backlog is longer than one).
TEST_F(WriteQueueTest, CloseKeepingEventsSendsTheBacklogThenTheClose) {
  WriteQueue q(Small(), hub_, metrics_);
  for (uint64_t i = 1; i <= 9; ++i) q.PushFrame(Event("circles/a", i, 10));
  q.PushFrame(core::ReconnectFrame("server shutting down", {{"circles/a", "e1", 9}}));
  EXPECT_EQ(q.Close(core::BuildWsCloseFrame(1001, "server shutting down"), true), 0u);
  EXPECT_EQ(q.PushFrame(Event("circles/a", 10, 10)), WriteQueue::Push::kQueued);  // dropped
  EXPECT_EQ(q.queued_frames(), 10u);
  std::vector<boost::asio::const_buffer> b;
  ASSERT_TRUE(q.Prepare(b));
  // 10 text frames (header + payload each), then the close.
  ASSERT_EQ(b.size(), 21u);
  std::string reconnect(static_cast<const char*>(b[19].data()), b[19].size());
  EXPECT_EQ(reconnect, R"({"type":"reconnect","reason":"server shutting down",)"
                       R"("positions":{"circles/a":{"epoch":"e1","offset":9}}})");
  EXPECT_EQ(static_cast<uint8_t>(*static_cast<const char*>(b[20].data())), 0x88);
  EXPECT_TRUE(q.Written().close);
  EXPECT_EQ(metrics_.queued_bytes_current.load(), 0);
}

TEST_F(WriteQueueTest, OneWriteCarriesRawControlFramesFirstThenFrames) {
  WriteQueue q(Small(), hub_, metrics_);
  q.PushFrame(Event("circles/a", 1, 3));
  q.PushRaw(core::BuildWsControlFrame(core::WsOpcode::kPong, "hi"));
  std::string out = Drain(q);
  ASSERT_EQ(out.size(), 4u + 2u + 3u);
  EXPECT_EQ(static_cast<uint8_t>(out[0]), 0x8A);  // pong first
  EXPECT_EQ(static_cast<uint8_t>(out[4]), 0x81);  // then the text frame
  EXPECT_FALSE(q.has_pending());
}

TEST_F(WriteQueueTest, DestroyingTheQueueReleasesItsBytes) {
  {
    WriteQueue q(Small(), hub_, metrics_);
    q.PushFrame(Event("circles/a", 1));
    EXPECT_EQ(metrics_.queued_bytes_current.load(), 100);
  }
  EXPECT_EQ(metrics_.queued_bytes_current.load(), 0);
  EXPECT_EQ(metrics_.frames_dropped_total.load(), 1u);
}

}  // namespace
}  // namespace bridge::ws
