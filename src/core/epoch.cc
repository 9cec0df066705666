#include "core/epoch.h"

#include <chrono>
#include <cstdint>
#include <random>

namespace bridge::core {

// 48 random bits in 12 hex digits (short enough for std::string's inline buffer, so copying it
// into results allocates nothing). A generator per thread, seeded once from the OS.
std::string NewEpoch() {
  thread_local std::mt19937_64 gen([] {
    std::random_device rd;
    return (static_cast<uint64_t>(rd()) << 32) ^ rd() ^
           static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }());
  uint64_t v = gen();
  static const char kHex[] = "0123456789abcdef";
  std::string s(12, '0');
  for (char& c : s) {
    c = kHex[v & 15];
    v >>= 4;
  }
  return s;
}

}  // namespace bridge::core
