// A token bucket: `rate` tokens per second, holding at most `burst`. Not thread-safe: each owner
// (a session on its io thread, or a caller holding a lock) keeps its own.
#ifndef BRIDGE_CORE_TOKEN_BUCKET_H_
#define BRIDGE_CORE_TOKEN_BUCKET_H_

#include <algorithm>
#include <chrono>

namespace bridge::core {

class TokenBucket {
 public:
  using Clock = std::chrono::steady_clock;

  // rate <= 0 means unlimited: Take() always succeeds.
  TokenBucket(double rate, double burst, Clock::time_point now = Clock::now())
      : rate_(rate), burst_(std::max(burst, 1.0)), tokens_(burst_), last_(now) {}

  // Takes one token if there is one.
  bool Take(Clock::time_point now = Clock::now()) {
    if (rate_ <= 0) return true;
    std::chrono::duration<double> dt = now - last_;
    last_ = now;
    tokens_ = std::min(burst_, tokens_ + dt.count() * rate_);
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }

 private:
  double rate_;
  double burst_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace bridge::core

#endif  // BRIDGE_CORE_TOKEN_BUCKET_H_
