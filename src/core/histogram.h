// A latency histogram with fixed buckets, written without locks or read-modify-write atomics
// from the delivery hot path and summed when /metrics is scraped.
//
// Cells. The histogram holds one cell per (shard, series) pair: a shard is an io thread, a series
// a label value (a namespace index). A cell is written by its shard's thread only, so Observe is
// a relaxed load and store per field (no lock prefix, no contention): concurrent observers on
// one cell would lose counts, which is why the single-writer rule matters. Cells are cache-line
// aligned so two shards never share a line. Reading (Sum) may happen on any thread at any time;
// it may see a count a moment before its sum, which Prometheus tolerates.
//
// Buckets are fixed at compile time (kBoundsNanos, upper bounds, inclusive), in the
// Prometheus convention: rendered cumulatively with a final +Inf bucket.
#ifndef BRIDGE_CORE_HISTOGRAM_H_
#define BRIDGE_CORE_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace bridge::core {

class ShardedHistogram {
 public:
  // 50 µs to 10 s: what a fan-out over a loopback or a WAN socket spends, from a queue that
  // drains at once to one a slow consumer holds until it is closed.
  static constexpr std::array<int64_t, 17> kBoundsNanos = {
      50'000,      100'000,       250'000,       500'000,       1'000'000,     2'500'000,
      5'000'000,   10'000'000,    25'000'000,    50'000'000,    100'000'000,   250'000'000,
      500'000'000, 1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};
  static constexpr size_t kBuckets = kBoundsNanos.size() + 1;  // the last one is +Inf

  struct Totals {
    std::array<uint64_t, kBuckets> buckets{};  // per bucket, not cumulative
    uint64_t count = 0;
    int64_t sum_nanos = 0;
  };

  // `shards` writers, `series` label values; both fixed for the histogram's life.
  ShardedHistogram(size_t shards, size_t series)
      : shards_(shards), series_(series), cells_(new Cell[shards * series]) {}
  ShardedHistogram(const ShardedHistogram&) = delete;
  ShardedHistogram& operator=(const ShardedHistogram&) = delete;

  size_t shards() const { return shards_; }
  size_t series() const { return series_; }

  // Shard `shard`'s thread only. Out-of-range shards or series are ignored; negative durations
  // (clocks are monotonic, but a frame stamped on another thread may race) count as zero.
  void Observe(size_t shard, size_t series, int64_t nanos) {
    if (shard >= shards_ || series >= series_) return;
    if (nanos < 0) nanos = 0;
    Cell& c = cells_[shard * series_ + series];
    size_t b = 0;
    while (b < kBoundsNanos.size() && nanos > kBoundsNanos[b]) ++b;
    Bump(c.buckets[b], 1);
    Bump(c.sum_nanos, static_cast<uint64_t>(nanos));
  }

  // Any thread. The series' counts over every shard.
  Totals Sum(size_t series) const {
    Totals t;
    if (series >= series_) return t;
    for (size_t s = 0; s < shards_; ++s) {
      const Cell& c = cells_[s * series_ + series];
      for (size_t b = 0; b < kBuckets; ++b) {
        uint64_t n = c.buckets[b].load(std::memory_order_relaxed);
        t.buckets[b] += n;
        t.count += n;
      }
      t.sum_nanos += static_cast<int64_t>(c.sum_nanos.load(std::memory_order_relaxed));
    }
    return t;
  }

 private:
  struct alignas(64) Cell {
    std::array<std::atomic<uint64_t>, kBuckets> buckets{};
    std::atomic<uint64_t> sum_nanos{0};
  };
  // The single writer's increment: a plain add the compiler cannot tear, not a locked RMW.
  static void Bump(std::atomic<uint64_t>& a, uint64_t n) {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  const size_t shards_;
  const size_t series_;
  std::unique_ptr<Cell[]> cells_;
};

}  // namespace bridge::core

#endif  // BRIDGE_CORE_HISTOGRAM_H_
