// A trivial WebSocket broadcaster inside bridge-load, on one io thread of its own, to measure the
// load tool's own ceiling: accepts upgrades on any path, treats the path as the channel, and
// writes every broadcast body, framed once, to each session of that path (one writev of up to 64
// queued frames in flight, a queue bounded at 100,000 frames per session; beyond that the session
// is closed).
//
// Start() and Broadcast() may be called from any thread; Broadcast posts to the io thread.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace bench {

class SinkServer {
 public:
  SinkServer();
  ~SinkServer();

  // Listens on 127.0.0.1, port 0; returns the port.
  uint16_t Start();
  void Broadcast(const std::string& path, const std::string& body);
  // The io thread's id, for its CPU time in /proc/self/task/<tid>/stat.
  pid_t tid() const { return tid_.load(); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::atomic<pid_t> tid_{0};
};

}  // namespace bench
