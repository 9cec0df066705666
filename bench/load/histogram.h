// A log-bucketed latency histogram (HDR-like) for bridge-load.
//
// Values are nanoseconds. Values below 128 ns are counted exactly; above that, every power of two
// is split into 64 linear sub-buckets, so a recorded value is known within 1/64 (~1.6%). Values
// at or above 2^36 ns (~68 s) are clamped into the last bucket; max() keeps the true maximum.
// Not thread-safe: each io thread owns one and they are merged after the threads stopped.
#pragma once

#include <array>
#include <bit>
#include <cstdint>

namespace bench {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 6;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  static constexpr uint64_t kMaxValue = (uint64_t{1} << 36) - 1;
  static constexpr int kBuckets = 2048;

  void Record(uint64_t ns) {
    if (ns > max_) max_ = ns;
    ++counts_[Index(ns > kMaxValue ? kMaxValue : ns)];
    ++count_;
  }

  void Merge(const LatencyHistogram& other) {
    for (int i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    if (other.max_ > max_) max_ = other.max_;
  }

  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }

  // The value at quantile q (0..1) in nanoseconds: the middle of the bucket holding it. 0 when
  // empty.
  uint64_t Quantile(double q) const {
    if (count_ == 0) return 0;
    uint64_t rank = static_cast<uint64_t>(q * static_cast<double>(count_ - 1)) + 1;
    uint64_t seen = 0;
    for (int i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        uint64_t mid = Middle(i);
        return mid > max_ ? max_ : mid;
      }
    }
    return max_;
  }

  static int Index(uint64_t v) {
    if (v < 2 * kSub) return static_cast<int>(v);
    int e = 63 - std::countl_zero(v);  // >= 7
    int shift = e - kSubBits;
    return shift * static_cast<int>(kSub) + static_cast<int>(v >> shift);
  }

  static uint64_t Middle(int index) {
    if (index < static_cast<int>(2 * kSub)) return static_cast<uint64_t>(index);
    int shift = index / static_cast<int>(kSub) - 1;
    uint64_t mantissa = static_cast<uint64_t>(index) - static_cast<uint64_t>(shift) * kSub;
    uint64_t low = mantissa << shift;
    return low + ((uint64_t{1} << shift) >> 1);
  }

 private:
  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t max_ = 0;
};

}  // namespace bench
