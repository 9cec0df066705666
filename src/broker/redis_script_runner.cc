#include "broker/redis_script_runner.h"

#include <utility>

namespace bridge::broker {

std::shared_ptr<ScriptRunner> ScriptRunner::Create(RedisConnection& connection,
                                                   std::vector<const RedisScript*> scripts) {
  std::vector<std::string_view> bodies;
  bodies.reserve(scripts.size());
  for (const RedisScript* s : scripts) bodies.push_back(s->body);
  connection.LoadScriptsOnConnect(bodies);
  return std::shared_ptr<ScriptRunner>(new ScriptRunner(connection, std::move(scripts)));
}

ScriptRunner::ScriptRunner(RedisConnection& connection, std::vector<const RedisScript*> scripts)
    : conn_(connection), scripts_(std::move(scripts)) {}

void ScriptRunner::Run(const RedisScript& script, std::vector<std::string> keys_and_args,
                       std::chrono::milliseconds timeout, RedisConnection::ReplyCallback done) {
  Call call{&script, std::move(keys_and_args), timeout, std::move(done)};
  if (reloading_ && held_.size() < conn_.options().max_pending) {
    held_.push_back(std::move(call));
    return;
  }
  Send(std::move(call));
}

void ScriptRunner::Send(Call call) {
  std::vector<std::string> cmd;
  cmd.reserve(call.args.size() + 2);
  cmd.push_back("EVALSHA");
  cmd.push_back(call.script->sha1);
  // A copy: Command() consumes its arguments, and a NOSCRIPT answer needs them again.
  cmd.insert(cmd.end(), call.args.begin(), call.args.end());
  const std::chrono::milliseconds timeout = call.timeout;
  conn_.Command(
      std::move(cmd), timeout,
      [weak = weak_from_this(), call = std::move(call)](absl::StatusOr<RedisReply> r) mutable {
        auto self = weak.lock();
        if (!self || !r.ok() || !r->is_error() || r->str.rfind("NOSCRIPT", 0) != 0) {
          return call.done(std::move(r));
        }
        self->Retry(std::move(call));
      });
}

void ScriptRunner::Retry(Call call) {
  // NOSCRIPT: nothing ran, so running it now is safe. EVAL runs it and caches it again. Replies
  // come in the order commands were sent, so the retries leave in call order.
  std::vector<std::string> cmd;
  cmd.reserve(call.args.size() + 2);
  cmd.push_back("EVAL");
  cmd.emplace_back(call.script->body);
  for (auto& a : call.args) cmd.push_back(std::move(a));
  conn_.Command(std::move(cmd), call.timeout, std::move(call.done));
  if (reloading_) return;
  // The first NOSCRIPT: every EVALSHA sent before this point fails too, and is retried when its
  // reply arrives, before the replies of what is sent now. The SCRIPT LOADs (which also spare
  // the held calls a second NOSCRIPT) mark the end of those retries.
  reloading_ = true;
  ++reloads_;
  std::vector<std::vector<std::string>> marks;
  for (const RedisScript* s : scripts_) marks.push_back({"SCRIPT", "LOAD", std::string(s->body)});
  if (marks.empty()) marks.push_back({"PING"});
  for (size_t i = 0; i < marks.size(); ++i) {
    const bool last = i + 1 == marks.size();
    conn_.Command(std::move(marks[i]), [weak = weak_from_this(), last](absl::StatusOr<RedisReply>) {
      auto self = weak.lock();
      if (self && last) self->Release();
    });
  }
}

void ScriptRunner::Release() {
  reloading_ = false;
  std::deque<Call> held = std::move(held_);
  held_.clear();
  // Command() never completes inside the call, so nothing can start a reload in this loop.
  for (Call& call : held) Send(std::move(call));
}

}  // namespace bridge::broker
