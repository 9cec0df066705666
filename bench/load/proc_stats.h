// CPU time and memory of other processes (the server under test), read from /proc.
// A pid of 0 means "this process". Missing processes read as zero.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace bench {

// utime + stime of `pid` (or of one thread: "<pid>/task/<tid>") in seconds.
inline double ProcCpuSeconds(const std::string& proc_path) {
  std::ifstream in("/proc/" + proc_path + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(line.substr(close + 2));
  // Fields after the command: state(3) ppid pgrp session tty tpgid flags minflt cminflt majflt
  // cmajflt utime(14) stime(15).
  std::string skip;
  for (int i = 3; i < 14; ++i) fields >> skip;
  uint64_t utime = 0, stime = 0;
  fields >> utime >> stime;
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// A field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
inline uint64_t ProcStatusKib(const std::string& proc_path, const std::string& field) {
  std::ifstream in("/proc/" + proc_path + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoull(line.substr(field.size() + 1));
  }
  return 0;
}

// Sums over a set of processes (nginx's workers, or one bridge).
struct ProcSet {
  std::vector<std::string> paths;

  double CpuSeconds() const {
    double sum = 0;
    for (const auto& p : paths) sum += ProcCpuSeconds(p);
    return sum;
  }
  uint64_t RssKib() const {
    uint64_t sum = 0;
    for (const auto& p : paths) sum += ProcStatusKib(p, "VmRSS");
    return sum;
  }
  bool empty() const { return paths.empty(); }
};

}  // namespace bench
