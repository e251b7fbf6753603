// ShutdownSignals: SIGTERM and SIGINT as an event the daemon's main thread waits for.
//
// A handler (not sigwait) catches them, because threads that libraries start before main runs
// (OpenBLAS's pool, for one) do not block them, and a signal delivered to such a thread would
// otherwise kill the process with the default action. The handler only writes the signal number
// to a pipe (async-signal-safe); the main thread polls the pipe. While the daemon starts, the main
// thread blocks both signals so that the threads it creates inherit the block and never see them;
// Wait() unblocks them in the main thread only.
//
// One instance per process, created and used by the main thread.
#pragma once

namespace strata::server {

class ShutdownSignals {
 public:
  ShutdownSignals();  // installs the handlers, blocks both signals in the calling thread
  ~ShutdownSignals();  // restores the default actions
  ShutdownSignals(const ShutdownSignals&) = delete;
  ShutdownSignals& operator=(const ShutdownSignals&) = delete;

  // The signal number once one arrived, or -1 after `timeout_s` without one.
  int Wait(double timeout_s);
};

}  // namespace strata::server
