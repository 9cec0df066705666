// TopChannels: which channels were published to most since the last Take, in a fixed table.
//
// One table per hub stripe, touched under that stripe's lock (so it needs none of its own): the
// hub counts each publish once (never per delivery) and the admin sampler takes the tables once
// a second. The table holds at most kCapacity channels; a channel that is not in a full table
// replaces the least counted one and inherits its count plus one (the Space-Saving algorithm):
// every channel published more than 1/kCapacity of its stripe's messages in the interval is
// listed, and a count can only be too high, by at most the count it inherited (`error`).
#ifndef BRIDGE_CORE_HUB_TOP_CHANNELS_H_
#define BRIDGE_CORE_HUB_TOP_CHANNELS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bridge::core {

struct ChannelCount {
  std::string channel;
  uint64_t messages = 0;  // publishes in the interval (an upper bound, see `error`)
  uint64_t error = 0;     // how much of `messages` may belong to channels it replaced
};

class TopChannels {
 public:
  static constexpr size_t kCapacity = 16;

  // Counts one publish to `channel`. O(kCapacity) comparisons, no allocation once the table's
  // strings have grown to the channels' length.
  void Count(const std::string& channel) {
    size_t min = 0;
    for (size_t i = 0; i < used_; ++i) {
      Slot& s = slots_[i];
      if (s.channel.size() == channel.size() && s.channel == channel) {
        ++s.count;
        return;
      }
      if (s.count < slots_[min].count) min = i;
    }
    if (used_ < kCapacity) {
      slots_[used_++] = Slot{channel, 1, 0};
      return;
    }
    Slot& s = slots_[min];
    s.channel.assign(channel);
    s.error = s.count;
    ++s.count;
  }

  // Appends the counted channels to `out` and starts a new interval.
  void TakeInto(std::vector<ChannelCount>& out) {
    for (size_t i = 0; i < used_; ++i) {
      out.push_back(ChannelCount{slots_[i].channel, slots_[i].count, slots_[i].error});
    }
    used_ = 0;
  }

 private:
  struct Slot {
    std::string channel;
    uint64_t count = 0;
    uint64_t error = 0;
  };
  std::array<Slot, kCapacity> slots_;
  size_t used_ = 0;
};

}  // namespace bridge::core

#endif  // BRIDGE_CORE_HUB_TOP_CHANNELS_H_
