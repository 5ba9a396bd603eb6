#define _GNU_SOURCE
#include "CFerryStart.h"
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static int stop_pipe[2] = {-1, -1};

// Async-signal-safe: one byte into a non-blocking pipe (a full pipe already holds enough stops).
static void forward_stop(int signal_number) {
    int saved = errno;
    unsigned char byte = (unsigned char)signal_number;
    ssize_t ignored = write(stop_pipe[1], &byte, 1);
    (void)ignored;
    errno = saved;
}

// The daemon's heap in two malloc arenas (the main one and one more) instead of glibc's one per thread
// that allocates, up to 8 per core: memory a backlog freed in one thread's arena is reused by the others,
// instead of each keeping its own partly used pages, which malloc_trim cannot return (the 200,000-file
// soak: 8 arenas of 5-12 MB resident after a 73,000-file backlog was sent, with 5-6 MB live in all;
// docs/operations.md, "Memory"). ferry's allocations are few for its CPU (about 1.4 ms per file sent),
// so threads seldom wait for an arena. Set before any thread exists; an operator's MALLOC_ARENA_MAX or
// GLIBC_TUNABLES arena_max wins.
static void ferry_limit_malloc_arenas(char **envp) {
    for (char **entry = envp; entry && *entry; entry++) {
        if (strncmp(*entry, "MALLOC_ARENA_MAX=", 17) == 0) return;
        if (strncmp(*entry, "GLIBC_TUNABLES=", 15) == 0 && strstr(*entry, "arena_max") != NULL) return;
    }
    mallopt(M_ARENA_MAX, 2);
}

// Run from .preinit_array: before the initializers of every shared library (the Swift runtime,
// Foundation, ICU, which take tens of milliseconds), the earliest code of the process after the
// dynamic loader. glibc calls it with (argc, argv, envp). Only `ferry run` takes the signals over: every
// other command keeps the default action, so `ferry status` still ends at once on Ctrl-C. A handler
// rather than a blocked mask: the runtimes started after this constructor reset the main thread's mask,
// and a caught signal is delivered to whichever thread can take it. exec() resets caught signals to
// their default, so children are not affected.
static void ferry_take_stop_signals(int argc, char **argv, char **envp) {
    if (argc < 2 || strcmp(argv[1], "run") != 0) return;
    ferry_limit_malloc_arenas(envp);
    if (pipe2(stop_pipe, O_CLOEXEC) != 0) return;
    fcntl(stop_pipe[1], F_SETFL, fcntl(stop_pipe[1], F_GETFL) | O_NONBLOCK);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = forward_stop;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
}

int ferry_stop_signal_fd(void) { return stop_pipe[0]; }

int ferry_next_stop_signal(int fd) {
    unsigned char byte;
    for (;;) {
        ssize_t n = read(fd, &byte, 1);
        if (n == 1) return byte;
        if (n < 0 && errno == EINTR) continue;
        return -1;
    }
}

__attribute__((section(".preinit_array"), used))
static void (*const ferry_take_stop_signals_early)(int, char **, char **) = ferry_take_stop_signals;
