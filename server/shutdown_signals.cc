#include "server/shutdown_signals.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

namespace strata::server {
namespace {

int g_pipe[2] = {-1, -1};

extern "C" void OnShutdownSignal(int sig) {
  const int saved = errno;
  const char c = static_cast<char>(sig);
  (void)!::write(g_pipe[1], &c, 1);  // a full pipe already holds a pending shutdown
  errno = saved;
}

sigset_t ShutdownSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

ShutdownSignals::ShutdownSignals() {
  (void)!::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK);
  struct sigaction sa = {};
  sa.sa_handler = OnShutdownSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  const sigset_t set = ShutdownSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

ShutdownSignals::~ShutdownSignals() {
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  ::close(g_pipe[0]);
  ::close(g_pipe[1]);
  g_pipe[0] = g_pipe[1] = -1;
}

int ShutdownSignals::Wait(double timeout_s) {
  const sigset_t set = ShutdownSet();
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);  // pending ones are handled right here
  pollfd p{g_pipe[0], POLLIN, 0};
  int sig = -1;
  if (::poll(&p, 1, static_cast<int>(timeout_s * 1000)) > 0) {
    char c = 0;
    if (::read(g_pipe[0], &c, 1) == 1) sig = c;
  }
  return sig;
}

}  // namespace strata::server
