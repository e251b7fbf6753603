// Runs the real strata binary as a user would, capturing exit code, stdout and stderr.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>

#include "common/file.h"

namespace strata::testing {

struct RunResult {
  int exit_code;
  std::string stdout_text;
  std::string stderr_text;
};

inline RunResult RunStrata(const std::string& args) {
  static int counter = 0;
  std::string err_file = std::filesystem::temp_directory_path() /
                         ("strata_cli_" + std::to_string(::getpid()) + "_" +
                          std::to_string(counter++) + ".err");
  std::string cmd = STRATA_BINARY_DIR "/bin/strata " + args + " 2>" + err_file;
  RunResult r;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.stdout_text.append(buf.data(), n);
  int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.stderr_text = ReadFile(err_file).value_or("");
  std::filesystem::remove(err_file);
  return r;
}

}  // namespace strata::testing
