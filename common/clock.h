// Monotonic time helpers. Thread-safe.
#pragma once

#include <chrono>

namespace strata {

inline double NowSeconds() {
  using Clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(Clock::now().time_since_epoch()).count();
}

}  // namespace strata
