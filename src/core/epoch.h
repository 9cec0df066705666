// A channel's epoch: 12 random hex digits naming one life of its offsets (docs/protocol.md,
// "History and recovery"). A new one is drawn whenever a channel's state is created.
//
// Any thread (each keeps its own generator).
#ifndef BRIDGE_CORE_EPOCH_H_
#define BRIDGE_CORE_EPOCH_H_

#include <string>

namespace bridge::core {

std::string NewEpoch();

}  // namespace bridge::core

#endif  // BRIDGE_CORE_EPOCH_H_
