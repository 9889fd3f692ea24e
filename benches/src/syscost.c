// Per-syscall cost of the hot syscalls of an inference server, for comparing a process with
// and without stockade's seccomp filters (benches/seccomp.sh runs it bare and confined).
//
//   syscost ITERATIONS [REPEATS [FILTER]]
//
// FILTER (installed by syscost itself before measuring, to separate the costs):
//   none      (default) whatever the process inherited
//   allow1    one filter, one instruction: `ret ALLOW` (constant: the kernel's action cache
//             answers, no BPF runs; what remains is the cost of seccomp being on at all)
//   argload   one linear filter of 300 never-matching `jeq nr` tests, then a load of args[0],
//             then allow: not constant, so the cache cannot answer and the BPF runs on every
//             syscall (what an argument check on a hot syscall, or a kernel without the action
//             cache, costs with a linear allow-list of this size)
//
// Prints one line per syscall: `name ns_per_op_median ns_per_op_min`. Each op is one raw
// syscall (syscall(2), so libc caching cannot skip the kernel); the pairs (write+read,
// sendto+recvfrom) count as one op of two syscalls. Exits 1 if a syscall fails (e.g. ENOSYS
// from a filter that does not allow it), so a silently refused syscall cannot look fast.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
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

static void install(const char *mode) {
    struct sock_filter allow1[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
    static struct sock_filter argload[310];
    int k = 0;
    argload[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    argload[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
    argload[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    argload[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (int i = 0; i < 300; i++)
        argload[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 100000 + i, 0, 0);
    argload[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
    argload[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog fp;
    if (!strcmp(mode, "none")) return;
    if (!strcmp(mode, "allow1")) fp = (struct sock_fprog){1, allow1};
    else if (!strcmp(mode, "argload")) fp = (struct sock_fprog){(unsigned short)k, argload};
    else { fprintf(stderr, "syscost: unknown filter %s\n", mode); exit(2); }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) die("no_new_privs");
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp)) die("seccomp");
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 200000;
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    install(argc > 3 ? argv[3] : "none");
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
