// Autobahn category 7 (close handling), against the real server.
#include <string>

#include "raw_client.h"

namespace bridge::conformance {
namespace {

TEST_F(ConformanceTest, Case7NormalCloseIsAnsweredAndTheServerClosesTcp) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kFin | kClose, ClosePayload(1000))));
  EXPECT_TRUE(AnswersClose(*c, 1000));
}

TEST_F(ConformanceTest, Case7EmptyCloseIsAnswered) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kFin | kClose, "")));
  EXPECT_TRUE(AnswersClose(*c, 1005));
}

TEST_F(ConformanceTest, Case7OneBytePayloadIsAProtocolError) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kFin | kClose, "\x03")));
  EXPECT_TRUE(ClosesWith(*c, 1002));
}

TEST_F(ConformanceTest, Case7ValidCodesAreAnswered) {
  for (uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                        3000, 3999, 4000, 4999}) {
    SCOPED_TRACE(code);
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->Send(Frame(kFin | kClose, ClosePayload(code, "bye"))));
    EXPECT_TRUE(AnswersClose(*c, code));
  }
}

TEST_F(ConformanceTest, Case7CodesAPeerMayNotSendAreProtocolErrors) {
  for (uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    SCOPED_TRACE(code);
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->Send(Frame(kFin | kClose, ClosePayload(code))));
    EXPECT_TRUE(ClosesWith(*c, 1002));
  }
}

TEST_F(ConformanceTest, Case7LongestValidReasonIsAccepted) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kFin | kClose, ClosePayload(1000, std::string(123, 'r')))));
  EXPECT_TRUE(AnswersClose(*c, 1000));
  // 126 bytes is over the control-frame limit.
  auto d = Connect();
  ASSERT_NE(d, nullptr);
  ASSERT_TRUE(d->Send(Frame(kFin | kClose, ClosePayload(1000, std::string(124, 'r')))));
  EXPECT_TRUE(ClosesWith(*d, 1002));
}

TEST_F(ConformanceTest, Case7Utf8ReasonIsAccepted) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(
      Frame(kFin | kClose, ClosePayload(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"))));
  EXPECT_TRUE(AnswersClose(*c, 1000));
}

TEST_F(ConformanceTest, Case7InvalidUtf8ReasonCloses1007) {
  for (const std::string& reason : {std::string("\xce\xba\xe1\xbd\xb9\xed\xa0\x80"),
                                    std::string("cut \xe2\x82"), std::string("\xff")}) {
    SCOPED_TRACE(::testing::PrintToString(reason));
    auto c = Connect();
    ASSERT_NE(c, nullptr);
    ASSERT_TRUE(c->Send(Frame(kFin | kClose, ClosePayload(1000, reason))));
    EXPECT_TRUE(ClosesWith(*c, 1007));
  }
}

TEST_F(ConformanceTest, Case7DataAfterCloseIsIgnored) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  // In the same write as the close: a text message, a ping and a second close.
  ASSERT_TRUE(c->Send(Frame(kFin | kClose, ClosePayload(1000)) + Frame(kFin | kText, JsonPing(30)) +
                      Frame(kFin | kPing, "late") + Frame(kFin | kClose, ClosePayload(3000))));
  EXPECT_TRUE(AnswersClose(*c, 1000));  // nothing but the close, then the end
}

TEST_F(ConformanceTest, Case7DataSentLaterAfterCloseIsIgnored) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kFin | kClose, ClosePayload(1000))));
  auto f = c->Read();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->opcode, kClose);
  // The server already closed its side; what we send now is not answered.
  c->Send(Frame(kFin | kText, JsonPing(30)) + Frame(kFin | kPing, "late"));
  EXPECT_TRUE(c->AwaitEof());
}

TEST_F(ConformanceTest, Case7CloseInTheMiddleOfAFragmentedMessageIsAnswered) {
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kText, "{\"type\":") + Frame(kFin | kClose, ClosePayload(1000))));
  EXPECT_TRUE(AnswersClose(*c, 1000));
}

TEST_F(ConformanceTest, Case7ServerClosesTcpOnceTheClientClosed) {
  // The client answers the server's close and half-closes: the server ends the connection.
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  ASSERT_TRUE(c->Send(Frame(kFin | kPing, std::string(126, 'x'))));  // makes the server close
  auto f = c->Read();
  ASSERT_TRUE(f);
  EXPECT_EQ(f->opcode, kClose);
  EXPECT_EQ(f->close_code(), 1002);
  ASSERT_TRUE(c->Send(Frame(kFin | kClose, f->payload.substr(0, 2))));
  c->ShutdownSend();
  EXPECT_TRUE(c->AwaitEof());
}

}  // namespace
}  // namespace bridge::conformance
