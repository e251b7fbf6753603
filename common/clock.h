// Time helpers: monotonic seconds for intervals, Unix seconds for timestamps users see.
// Thread-safe.
#pragma once

#include <chrono>

namespace strata {

inline double NowSeconds() {
  using Clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

// Wall-clock seconds since the Unix epoch (OpenAI's `created` fields).
inline double UnixSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace strata
