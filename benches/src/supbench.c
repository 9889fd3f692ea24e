// Supervisor micro-benchmarks (benches/supervise.sh):
//
//   supbench drive N CMD...   run CMD (a supervisor wrapping `supbench echo`) with fd 3 = the
//                             write end of a pipe; N times: send SIGUSR1 to CMD's process and
//                             time until the echo server reports it received the signal.
//                             Prints `median_us p90_us p99_us min_us` and exits with 0.
//   supbench echo             the server: waits for SIGUSR1 (sigwaitinfo), writes one byte to
//                             fd 3 per signal; exits on SIGTERM.
//   supbench orphans N        the server: makes N orphans at once (an intermediate process
//                             forks N children, then exits, so they are reparented to the
//                             subreaper / PID 1), releases them all together, and measures
//                             until every one has been reaped by its new parent (kill(pid, 0)
//                             answers ESRCH). Prints `orphans N reaped_ms` and exits 0.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sched.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what) {
    fprintf(stderr, "supbench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int echo(void) {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    sigaddset(&s, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &s, NULL)) die("sigprocmask");
    if (write(3, "R", 1) != 1) die("write ready");
    for (;;) {
        int sig = sigwaitinfo(&s, NULL);
        if (sig == SIGTERM) return 0;
        if (sig == SIGUSR1 && write(3, "s", 1) != 1) die("write");
    }
}

static int drive(long n, char **cmd) {
    int p[2];
    if (pipe2(p, 0)) die("pipe2");
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        close(p[0]);
        if (p[1] != 3) {
            if (dup2(p[1], 3) < 0) die("dup2");
            close(p[1]);
        }
        execvp(cmd[0], cmd);
        die(cmd[0]);
    }
    close(p[1]);
    char c;
    if (read(p[0], &c, 1) != 1) {
        fprintf(stderr, "supbench: the echo server never became ready\n");
        kill(pid, SIGKILL);
        return 1;
    }
    usleep(100000); // let the supervisor finish installing its handlers
    double *lat = calloc(n, sizeof *lat);
    if (!lat) die("calloc");
    for (long i = 0; i < n; i++) {
        double t0 = now_us();
        if (kill(pid, SIGUSR1)) die("kill");
        if (read(p[0], &c, 1) != 1) {
            fprintf(stderr, "supbench: the echo server went away after %ld signals\n", i);
            return 1;
        }
        lat[i] = now_us() - t0;
        usleep(200); // one signal at a time: standard signals do not queue
    }
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    qsort(lat, n, sizeof *lat, cmp);
    printf("%.1f %.1f %.1f %.1f\n", lat[n / 2], lat[n * 9 / 10], lat[n * 99 / 100], lat[0]);
    return 0;
}

static int orphans(long n) {
    pid_t *pids = mmap(NULL, n * sizeof(pid_t), PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (pids == MAP_FAILED) die("mmap");
    int p[2];
    if (pipe2(p, 0)) die("pipe2");
    pid_t mid = fork();
    if (mid < 0) die("fork");
    if (mid == 0) {
        for (long i = 0; i < n; i++) {
            pid_t c = fork();
            if (c < 0) die("fork orphan");
            if (c == 0) {
                close(p[1]);
                char x;
                while (read(p[0], &x, 1) < 0 && errno == EINTR) {
                }
                _exit(0);
            }
            pids[i] = c;
        }
        _exit(0); // the n children are now orphans: reparented to the subreaper / PID 1
    }
    int st;
    if (waitpid(mid, &st, 0) != mid) die("waitpid");
    close(p[0]);
    usleep(200000); // all n are blocked in read()
    double t0 = now_us();
    close(p[1]); // EOF: all n exit at once and become zombies of the supervisor
    for (long i = 0; i < n; i++) {
        while (kill(pids[i], 0) == 0) sched_yield();
    }
    double t1 = now_us();
    printf("orphans %ld %.2f\n", n, (t1 - t0) / 1000.0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "drive")) return drive(atol(argv[2]), argv + 3);
    if (argc == 2 && !strcmp(argv[1], "echo")) return echo();
    if (argc == 3 && !strcmp(argv[1], "orphans")) return orphans(atol(argv[2]));
    fprintf(stderr, "usage: supbench drive N CMD... | echo | orphans N\n");
    return 2;
}
