// Process-wide logging on spdlog. Modules log through these macros only; the server decides
// format and level once at start-up (InitLogging). Safe to call from any thread.
#pragma once

#include <string_view>

#include "spdlog/spdlog.h"

#define LOG_DEBUG(...) SPDLOG_DEBUG(__VA_ARGS__)
#define LOG_INFO(...) SPDLOG_INFO(__VA_ARGS__)
#define LOG_WARN(...) SPDLOG_WARN(__VA_ARGS__)
#define LOG_ERROR(...) SPDLOG_ERROR(__VA_ARGS__)

namespace strata {

// level: trace|debug|info|warn|error|off. format: text | json (one object per line with time,
// level and msg; the message itself is not escaped). Messages go to stderr so stdout stays for
// program output. Call once.
void InitLogging(std::string_view level, std::string_view format = "text");

}  // namespace strata
