#ifndef CFERRYSTART_H
#define CFERRYSTART_H

// `ferry run` owns SIGTERM and SIGINT from the first instruction of the process: a constructor
// (start.c) installs a handler that writes each one into a pipe, so a stop request that arrives while
// ferry is still starting waits there instead of killing it (exit 143). The run command reads the pipe.

/// The read end of the pipe SIGTERM and SIGINT are written to (close-on-exec), or -1 for other commands.
int ferry_stop_signal_fd(void);

/// Blocks until the next SIGTERM or SIGINT and returns its number; -1 if the pipe fails.
int ferry_next_stop_signal(int fd);

#endif
