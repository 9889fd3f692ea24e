// Per-syscall cost of the hot syscalls of an inference server, for comparing a process with
// and without stockade's seccomp filters (benches/seccomp.sh runs it bare and confined).
//
//   syscost ITERATIONS [REPEATS]
//
// Prints one line per syscall: `name ns_per_op_median ns_per_op_min`. Each op is one raw
// syscall (syscall(2), so libc caching cannot skip the kernel); the pairs (write+read,
// sendto+recvfrom) count as one op of two syscalls. Exits 1 if a syscall fails (e.g. ENOSYS
// from a filter that does not allow it), so a silently refused syscall cannot look fast.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "syscost: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int pfd[2], sfd[2], ep;
static uint32_t futex_word;
static char buf[64];

#define CHECK(expr, name)                                                                      \
    do {                                                                                       \
        if ((long)(expr) < 0) die(name);                                                       \
    } while (0)

static void op_getppid(void) { syscall(SYS_getppid); }
static void op_futex(void) {
    CHECK(syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0), "futex");
}
static void op_epoll_wait(void) {
    struct epoll_event ev[8];
    CHECK(syscall(SYS_epoll_wait, ep, ev, 8, 0), "epoll_wait");
}
static void op_epoll_pwait(void) {
    struct epoll_event ev[8];
    CHECK(syscall(SYS_epoll_pwait, ep, ev, 8, 0, NULL, 8), "epoll_pwait");
}
static void op_epoll_ctl(void) {
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = pfd[0]};
    CHECK(syscall(SYS_epoll_ctl, ep, EPOLL_CTL_MOD, pfd[0], &ev), "epoll_ctl");
}
static void op_write_read(void) {
    CHECK(syscall(SYS_write, pfd[1], buf, 1), "write");
    CHECK(syscall(SYS_read, pfd[0], buf, 1), "read");
}
static void op_sendto_recvfrom(void) {
    CHECK(syscall(SYS_sendto, sfd[0], buf, 1, MSG_DONTWAIT, NULL, 0), "sendto");
    CHECK(syscall(SYS_recvfrom, sfd[1], buf, sizeof buf, MSG_DONTWAIT, NULL, NULL), "recvfrom");
}

struct op {
    const char *name;
    void (*fn)(void);
};

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    if (n <= 0 || reps <= 0 || reps > 100) {
        fprintf(stderr, "usage: syscost ITERATIONS [REPEATS]\n");
        return 2;
    }
    if (pipe2(pfd, 0)) die("pipe2");
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sfd)) die("socketpair");
    ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = pfd[0]};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, pfd[0], &ev)) die("epoll_ctl ADD");

    struct op ops[] = {
        {"getppid", op_getppid},
        {"futex(WAKE)", op_futex},
        {"epoll_wait(0)", op_epoll_wait},
        {"epoll_pwait(0)", op_epoll_pwait},
        {"epoll_ctl(MOD)", op_epoll_ctl},
        {"write+read(pipe,1B)", op_write_read},
        {"sendto+recvfrom(unix,1B)", op_sendto_recvfrom},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        double r[100];
        for (long k = 0; k < n / 10; k++) ops[i].fn(); // warm up
        for (int j = 0; j < reps; j++) {
            double t0 = now_ns();
            for (long k = 0; k < n; k++) ops[i].fn();
            r[j] = (now_ns() - t0) / n;
        }
        qsort(r, reps, sizeof r[0], cmp);
        printf("%s %.1f %.1f\n", ops[i].name, r[reps / 2], r[0]);
    }
    return 0;
}
