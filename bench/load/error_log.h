// Counts errors from any thread and keeps the first few distinct messages for the report.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace bench {

class ErrorLog {
 public:
  static constexpr size_t kMaxSamples = 8;

  void Add(const std::string& what) {
    std::lock_guard lock(mu_);
    ++count_;
    for (const auto& s : samples_) {
      if (s == what) return;
    }
    if (samples_.size() < kMaxSamples) samples_.push_back(what);
  }

  uint64_t count() const {
    std::lock_guard lock(mu_);
    return count_;
  }
  std::vector<std::string> samples() const {
    std::lock_guard lock(mu_);
    return samples_;
  }

 private:
  mutable std::mutex mu_;
  uint64_t count_ = 0;
  std::vector<std::string> samples_;
};

}  // namespace bench
