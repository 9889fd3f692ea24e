// Install time of seccomp filter layouts for the same action map as stockade's triton profile
// (benches/filter-install.sh passes the syscall numbers from `stockade --dry-run --format json`):
//
//   bpfinstall TRIALS ALLOW_NRS KILL_NRS ENOSYS_NRS     (comma-separated syscall numbers)
//
// Layouts (x86_64 arch check and x32 kill in each, socket(2) family and clone(2) namespace-flag
// argument checks as in the profile, default errno ENOSYS):
//   linear3  three filters like stockade's (ENOSYS set, kill set, allow-list), each a linear
//            `jeq nr; ret` chain, 2 instructions per syscall (seccompiler emits more)
//   tree1    ONE filter: a binary search over the ranges of syscall numbers with the same
//            action, leaves are `ret` (or the two argument checks)
// For each trial a fresh child sets no_new_privs, times its seccomp(SECCOMP_SET_MODE_FILTER)
// calls with CLOCK_MONOTONIC, checks the filter works (getppid allowed, getpgid, unlisted,
// answers ENOSYS) and reports. Prints `layout filters instructions median_us p90_us`.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXNR 512
#define MAXI 4096
enum { DEF = 0, ALLOW, KILL, ENOSYS_, SOCK, CLONE };
static int act[MAXNR];

static struct sock_filter prog[3][MAXI];
static int plen[3];

static void emit(int p, struct sock_filter f) {
    if (plen[p] >= MAXI) { fprintf(stderr, "program too long\n"); exit(1); }
    prog[p][plen[p]++] = f;
}
#define RET(a) ((struct sock_filter)BPF_STMT(BPF_RET | BPF_K, (a)))
#define R_ALLOW SECCOMP_RET_ALLOW
#define R_KILL SECCOMP_RET_KILL_PROCESS
#define R_ENOSYS (SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA))
#define ARG0 offsetof(struct seccomp_data, args[0])

static void prologue(int p) {
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
    emit(p, RET(R_KILL));
    emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1));
    emit(p, RET(R_KILL));
}

static void leaf(int p, int a) {
    switch (a) {
    case ALLOW: emit(p, RET(R_ALLOW)); break;
    case KILL: emit(p, RET(R_KILL)); break;
    case SOCK: // AF_UNIX, AF_INET, AF_INET6
        emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0));
        emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 1, 3, 0));
        emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 2, 2, 0));
        emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 10, 1, 0));
        emit(p, RET(R_ENOSYS));
        emit(p, RET(R_ALLOW));
        break;
    case CLONE: // no namespace flags
        emit(p, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG0));
        emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x7E020000, 0, 1));
        emit(p, RET(R_ENOSYS));
        emit(p, RET(R_ALLOW));
        break;
    default: emit(p, RET(R_ENOSYS));
    }
}

// Ranges [lo[i], lo[i+1]) of equal action.
static int rlo[MAXNR + 1], ract[MAXNR + 1], nr_ranges;

// Emit a subtree for ranges [a, b) into a scratch buffer, return its instructions.
static int tree(int p, int a, int b) {
    int start = plen[p];
    if (b - a == 1) {
        leaf(p, ract[a]);
        return plen[p] - start;
    }
    int m = (a + b) / 2; // nr >= rlo[m] -> right [m, b), else left [a, m)
    // Lay out the left subtree first into a temporary copy to learn its size.
    int save = plen[p];
    emit(p, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, rlo[m], 0, 0));
    int left = tree(p, a, m);
    if (left <= 255) {
        prog[p][save].jt = left;
        prog[p][save].jf = 0;
    } else { // too far for a conditional jump: go through a BPF_JA
        memmove(&prog[p][save + 2], &prog[p][save + 1], left * sizeof(struct sock_filter));
        plen[p]++;
        prog[p][save].jt = 0;
        prog[p][save].jf = 1;
        prog[p][save + 1] = (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, left);
    }
    tree(p, m, b);
    return plen[p] - start;
}

static void parse(const char *s, int a) {
    char *d = strdup(s), *t, *sp;
    for (t = strtok_r(d, ",", &sp); t; t = strtok_r(NULL, ",", &sp)) {
        int n = atoi(t);
        if (n >= 0 && n < MAXNR) act[n] = a;
    }
    free(d);
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static int check_enosys;

static void measure(const char *name, int first, int nprog, int trials) {
    double *t = calloc(trials, sizeof *t);
    int total = 0;
    for (int i = first; i < first + nprog; i++) total += plen[i];
    for (int k = 0; k < trials; k++) {
        int fd[2];
        if (pipe(fd)) { perror("pipe"); exit(1); }
        pid_t c = fork();
        if (c == 0) {
            if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) _exit(3);
            double t0 = now_us();
            for (int i = first; i < first + nprog; i++) {
                struct sock_fprog fp = {.len = plen[i], .filter = prog[i]};
                if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp)) _exit(4);
            }
            double dt = now_us() - t0;
            if (syscall(SYS_getppid) < 0) _exit(5);
            errno = 0; // an unlisted syscall must answer ENOSYS
            if (check_enosys && (syscall(SYS_getpgid, 0) != -1 || errno != ENOSYS)) _exit(6);
            if (write(fd[1], &dt, sizeof dt) != sizeof dt) _exit(7);
            _exit(0);
        }
        close(fd[1]);
        int st;
        if (read(fd[0], &t[k], sizeof t[k]) != sizeof t[k]) t[k] = -1;
        close(fd[0]);
        waitpid(c, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) {
            fprintf(stderr, "bpfinstall: %s: child failed (status %#x)\n", name, st);
            exit(1);
        }
    }
    qsort(t, trials, sizeof *t, cmp);
    printf("%s %d %d %.1f %.1f\n", name, nprog, total, t[trials / 2], t[trials * 9 / 10]);
    free(t);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: bpfinstall TRIALS ALLOW_NRS KILL_NRS ENOSYS_NRS\n");
        return 2;
    }
    int trials = atoi(argv[1]);
    parse(argv[2], ALLOW);
    parse(argv[3], KILL);
    parse(argv[4], ENOSYS_);
    act[SYS_socket] = SOCK;
    act[SYS_clone] = CLONE;
    check_enosys = act[SYS_getpgid] == DEF;

    // linear3: filter 0 = ENOSYS set (installed first), 1 = kill set, 2 = allow-list.
    for (int p = 0; p < 3; p++) prologue(p);
    for (int n = 0; n < MAXNR; n++) {
        if (act[n] == ENOSYS_) {
            emit(0, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, n, 0, 1));
            emit(0, RET(R_ENOSYS));
        }
        if (act[n] == KILL) {
            emit(1, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, n, 0, 1));
            emit(1, RET(R_KILL));
        }
        if (act[n] == ALLOW || act[n] == ENOSYS_ || act[n] == SOCK || act[n] == CLONE) {
            int l0 = plen[2];
            emit(2, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, n, 0, 0));
            leaf(2, act[n] == ENOSYS_ ? ALLOW : act[n]);
            prog[2][l0].jf = plen[2] - l0 - 1;
        }
    }
    emit(0, RET(R_ALLOW));
    emit(1, RET(R_ALLOW));
    emit(2, RET(R_ENOSYS));
    measure("linear3", 0, 3, trials);

    // tree1: one program, ranges of equal action (ENOSYS set and default are both ENOSYS).
    for (int n = 0; n < MAXNR; n++)
        if (act[n] == ENOSYS_) act[n] = DEF;
    nr_ranges = 0;
    for (int n = 0; n < MAXNR; n++)
        if (n == 0 || act[n] != act[n - 1]) {
            rlo[nr_ranges] = n;
            ract[nr_ranges++] = act[n];
        }
    plen[0] = 0;
    prologue(0);
    tree(0, 0, nr_ranges);
    measure("tree1", 0, 1, trials);
    return 0;
}
