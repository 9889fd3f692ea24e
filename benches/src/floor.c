// The confinement floor: the kernel steps of `stockade --profile minimal -- CMD` (as root, fresh
// root, PID namespace on), in stockade's order, done by the leanest program that can do them: no
// profile, no plan, no parsing, no read-backs. Every syscall is checked; a failure prints
// `floor: STEP: CALL: error` and exits 125, so no step can be skipped silently. The steps and
// their arguments were taken from `strace -f` of stockade and src/ (docs/PERFORMANCE.md, "The
// confinement floor"):
//
//   relay (the started process): open the Landlock paths O_PATH; unshare(CLONE_NEWPID); fork;
//     drop all capabilities and set no_new_privs (supcaps); wait; exit with PID 1's status
//   PID 1: PR_SET_PDEATHSIG; fork the server; keep only CAP_KILL, no_new_privs (supcaps); reap
//     until no child is left; exit with the server's status (128+N for signal N)
//   server: setpgid(0,0); close_range(3,~0,CLOEXEC); RLIMIT_CORE 0 (rlimits);
//     mounts: unshare(CLONE_NEWNS); / rslave; open_tree(CLONE|RECURSIVE) of the six binds; a
//       tmpfs over /tmp as the new root; per bind mkdir (or create a file for a device node),
//       move_mount, mount_setattr(AT_RECURSIVE, the bind's flags); a fresh /proc
//       (hidepid=invisible) (proc); the four usr symlinks; root read-only; pivot_root(".",".");
//       umount2(".", MNT_DETACH); chdir("/")
//     caps: securebits (noroot, no ambient raise, all locked); PR_CAPBSET_DROP 0..cap_last_cap
//     ids: setgroups(0); setresgid(65534 x3); setresuid(65534 x3)
//     caps: PR_CAP_AMBIENT_CLEAR_ALL; capset(all zero)
//     PR_SET_PDEATHSIG (the id change cleared it); no_new_privs (nnp)
//     landlock: ruleset (fs: all 16 ABI-5 rights, net: bind+connect TCP, scopes: abstract UNIX
//       socket + signal; the 48-byte attr of the landlock crate stockade uses), the ten path rules
//       of the minimal profile, bind TCP 8080, /proc (opened after pivot_root),
//       landlock_restrict_self(LOG_NEW_EXEC_ON)
//     seccomp: seccomp(SET_MODE_FILTER, 0) of stockade's own program (the file given with --bpf,
//       dumped from a running stockade server with --dump-bpf)
//     execve(CMD) with PATH, HOME=/nonexistent and LANG (if set): the minimal profile's [env]
//
//   floor [--skip=LIST] [--bpf=FILE] -- CMD [ARGS]     (FLOOR_SKIP / FLOOR_BPF in the
//                                                      environment work too)
//   floor --dump-bpf PID FILE     write the seccomp program of PID (ptrace, CAP_SYS_ADMIN)
//
// LIST: comma-separated steps to leave out: pidns, supcaps, rlimits, mounts, proc, caps, ids,
// nnp, landlock, seccomp; `all` leaves out every one (fork, wait, exec only). Without pidns the
// started process is the supervisor (stockade's pid_namespace = "never"). Without nnp, Landlock
// and seccomp fail (EPERM) once the capabilities are gone: that is the kernel's rule.
// Not done (stockade-only, not confinement): the reset of 64 signal dispositions, the
// read-backs of mountinfo, ids, caps and /proc/self/status, stat calls and symlink walks.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/securebits.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Newer uapi than this system's headers.
#define OPEN_TREE_CLONE_ 1
#define AT_RECURSIVE_ 0x8000
#define MOVE_MOUNT_F_EMPTY_PATH_ 0x4
#define MOUNT_ATTR_RDONLY_ 0x1
#define MOUNT_ATTR_NOSUID_ 0x2
#define MOUNT_ATTR_NODEV_ 0x4
#define MOUNT_ATTR_NOEXEC_ 0x8
struct mount_attr_ { uint64_t attr_set, attr_clr, propagation, userns_fd; };
#define LL_EXECUTE (1ULL << 0)
#define LL_WRITE_FILE (1ULL << 1)
#define LL_READ_FILE (1ULL << 2)
#define LL_READ_DIR (1ULL << 3)
#define LL_REMOVE_DIR (1ULL << 4)
#define LL_REMOVE_FILE (1ULL << 5)
#define LL_MAKE_DIR (1ULL << 7)
#define LL_MAKE_REG (1ULL << 8)
#define LL_MAKE_SOCK (1ULL << 9)
#define LL_MAKE_FIFO (1ULL << 10)
#define LL_MAKE_SYM (1ULL << 12)
#define LL_REFER (1ULL << 13)
#define LL_TRUNCATE (1ULL << 14)
#define LL_IOCTL_DEV (1ULL << 15)
#define LL_FS_ALL 0xffffULL
#define LL_BIND_TCP 1ULL
#define LL_CONNECT_TCP 2ULL
#define LL_SCOPE_ABSTRACT_UNIX 1ULL
#define LL_SCOPE_SIGNAL 2ULL
#define LL_RULE_PATH_BENEATH 1
#define LL_RULE_NET_PORT 2
#define LL_RESTRICT_SELF_LOG_NEW_EXEC_ON 2
struct ll_ruleset_attr { uint64_t fs, net, scoped, quiet_fs, quiet_net, quiet_scoped; };
struct ll_path_attr { uint64_t allowed; int32_t parent_fd; } __attribute__((packed));
struct ll_port_attr { uint64_t allowed; uint64_t port; };

#define RO (LL_READ_FILE | LL_READ_DIR)
#define RX (LL_EXECUTE | LL_READ_FILE | LL_READ_DIR)
#define RW_DIR (LL_WRITE_FILE | LL_READ_FILE | LL_READ_DIR | LL_REMOVE_DIR | LL_REMOVE_FILE | \
                LL_MAKE_DIR | LL_MAKE_REG | LL_MAKE_SOCK | LL_MAKE_FIFO | LL_MAKE_SYM |       \
                LL_REFER | LL_TRUNCATE | LL_IOCTL_DEV)
// The minimal profile's Landlock paths, in stockade's order (read_only, read_exec, read_write;
// /bin, /sbin, /lib, /lib64 resolved to /usr/...), with the rights stockade grants each (a file
// gets only the file rights).
static const struct { const char *path; uint64_t rights; } ll_paths[] = {
    {"/etc", RO},
    {"/sys/devices/system/cpu", RO},
    {"/dev/urandom", LL_READ_FILE},
    {"/usr", RX},
    {"/usr/bin", RX},
    {"/usr/sbin", RX},
    {"/usr/lib", RX},
    {"/usr/lib64", RX},
    {"/tmp", RW_DIR},
    {"/dev/null", LL_WRITE_FILE | LL_READ_FILE | LL_TRUNCATE | LL_IOCTL_DEV},
};
#define NLL (sizeof ll_paths / sizeof ll_paths[0])
static int ll_fd[NLL];

// The fresh root's binds, in stockade's order: source (same path inside), is a device node,
// mount_setattr flags. /proc is mounted after the third (as stockade does).
static const struct { const char *path; int dev; uint64_t attr; } binds[] = {
    {"/etc", 0, MOUNT_ATTR_RDONLY_ | MOUNT_ATTR_NOSUID_ | MOUNT_ATTR_NODEV_ | MOUNT_ATTR_NOEXEC_},
    {"/tmp", 0, MOUNT_ATTR_NOSUID_ | MOUNT_ATTR_NODEV_ | MOUNT_ATTR_NOEXEC_},
    {"/usr", 0, MOUNT_ATTR_RDONLY_ | MOUNT_ATTR_NOSUID_ | MOUNT_ATTR_NODEV_},
    {"/dev/null", 1, MOUNT_ATTR_NOSUID_ | MOUNT_ATTR_NOEXEC_},
    {"/dev/urandom", 1, MOUNT_ATTR_RDONLY_ | MOUNT_ATTR_NOSUID_ | MOUNT_ATTR_NOEXEC_},
    {"/sys/devices/system/cpu", 0,
     MOUNT_ATTR_RDONLY_ | MOUNT_ATTR_NOSUID_ | MOUNT_ATTR_NODEV_ | MOUNT_ATTR_NOEXEC_},
};
#define NBIND (sizeof binds / sizeof binds[0])
#define STAGE "/tmp" // stockade stages the new root on a tmpfs mounted over /tmp

// Built with -DFLOOR_TIMES (benches/floor.sh builds `floor-times` so): each step's end is stamped
// (CLOCK_MONOTONIC, vDSO, no syscall) into a page shared by the three processes, and the relay
// prints `label microseconds-since-start` lines to stderr at the end. The stamps cost ~25 ns each.
#ifdef FLOOR_TIMES
#include <sys/mman.h>
#include <time.h>
enum { T_START, T_PREP, T_RELAY_FORKED, T_PID1_START, T_PID1_FORKED, T_SRV_START, T_SRV_RLIMITS,
       T_MNT_NS, T_MNT_OPEN_TREE, T_MNT_BUILT, T_MNT_PIVOT, T_MNT_DETACH, T_BOUNDING, T_IDS,
       T_CAPS_NNP, T_LANDLOCK, T_SECCOMP, T_SRV_REAPED, T_PID1_DONE, T_PID1_REAPED,
       T_RELAY_SUPCAPS, T_PID1_SUPCAPS, T_N };
static const char *t_name[T_N] = {
    "start", "prep (bpf file, Landlock O_PATH opens)", "relay: unshare(NEWPID)+fork returned",
    "pid1: running", "pid1: fork returned", "server: running", "server: setpgid, close_range, rlimits",
    "server: unshare(NEWNS), rslave", "server: open_tree x6", "server: tmpfs, binds, /proc, symlinks, ro",
    "server: pivot_root", "server: umount2(old root, MNT_DETACH)", "server: securebits, bounding set",
    "server: setgroups, setresgid, setresuid", "server: ambient, capset, pdeathsig, nnp",
    "server: landlock", "server: seccomp (then execve)", "pid1: server reaped",
    "pid1: done", "relay: pid1 reaped", "relay: own caps dropped", "pid1: own caps dropped"};
static volatile long *t_page;
static void stamp(int i) {
    struct timespec ts;
    if (!t_page) return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    t_page[i] = ts.tv_sec * 1000000000L + ts.tv_nsec;
}
static void stamps_init(void) {
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("floor: mmap"); _exit(125); }
    t_page = p;
    stamp(T_START);
}
static void stamps_print(void) {
    int i;
    for (i = 1; i < T_N; i++)
        if (t_page[i])
            fprintf(stderr, "floor-time\t%s\t%.1f\n", t_name[i], (t_page[i] - t_page[0]) / 1e3);
}
#define STAMP(i) stamp(i)
#else
#define STAMP(i) do { } while (0)
#endif

#define NOBODY 65534
#define MAXINSN 4096
static struct sock_filter bpf[MAXINSN];
static unsigned short bpf_len;
static const char *skip = "";

static void die(const char *step, const char *call) {
    int e = errno;
    // stderr is the caller's: tell which step failed, then stop everything.
    fprintf(stderr, "floor: %s: %s: %s\n", step, call, strerror(e));
    _exit(125);
}
#define CHECK(step, expr) do { if ((long)(expr) < 0) die(step, #expr); } while (0)

// Is STEP to be done (not in the skip list)?
static int on(const char *step) {
    size_t n = strlen(step);
    const char *p = skip;
    if (strcmp(skip, "all") == 0) return 0;
    while ((p = strstr(p, step)) != NULL) {
        if ((p == skip || p[-1] == ',') && (p[n] == '\0' || p[n] == ',')) return 0;
        p += n;
    }
    return 1;
}

static void capset_to(uint32_t eff, uint32_t perm) {
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {{eff, perm, 0}, {0, 0, 0}};
    CHECK("caps", syscall(SYS_capset, &h, d));
}

// Drop every capability from the bounding set but KEEP (-1: none); stop at the first number the
// kernel does not know (EINVAL past cap_last_cap), which must lie past CAP_CHECKPOINT_RESTORE.
static void drop_bounding(int keep) {
    int c;
    for (c = 0;; c++) {
        if (c == keep) continue;
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
            if (errno == EINVAL && c > CAP_CHECKPOINT_RESTORE) return;
            die("caps", "prctl(PR_CAPBSET_DROP)");
        }
    }
}

// What stockade's relay (keep = -1) and PID-1 supervisor (keep = CAP_KILL) do to themselves.
static void drop_own(int keep) {
    drop_bounding(keep);
    CHECK("supcaps", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0));
    uint32_t k = keep < 0 ? 0 : 1u << keep;
    capset_to(k, k);
    CHECK("supcaps", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
}

static void mounts(void) {
    int fd[NBIND];
    size_t i;
    CHECK("mounts", unshare(CLONE_NEWNS));
    CHECK("mounts", mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL));
    STAMP(T_MNT_NS);
    for (i = 0; i < NBIND; i++)
        CHECK("mounts", fd[i] = syscall(SYS_open_tree, AT_FDCWD, binds[i].path,
                                        OPEN_TREE_CLONE_ | O_CLOEXEC | AT_RECURSIVE_));
    STAMP(T_MNT_OPEN_TREE);
    CHECK("mounts", mount("stockade-root", STAGE, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                          "mode=0755,size=1m"));
    for (i = 0; i < NBIND; i++) {
        char t[128];
        snprintf(t, sizeof t, STAGE "%s", binds[i].path);
        if (binds[i].dev) {
            if (mkdir(STAGE "/dev", 0777) < 0 && errno != EEXIST) die("mounts", "mkdir(/dev)");
            int f;
            CHECK("mounts", f = open(t, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666));
            CHECK("mounts", close(f));
        } else {
            // mkdir -p, as stockade does (its parents first when missing).
            char *s;
            for (s = t + strlen(STAGE) + 1; (s = strchr(s, '/')) != NULL; s++) {
                *s = '\0';
                if (mkdir(t, 0777) < 0 && errno != EEXIST) die("mounts", "mkdir(parent)");
                *s = '/';
            }
            CHECK("mounts", mkdir(t, 0777));
        }
        CHECK("mounts", syscall(SYS_move_mount, fd[i], "", AT_FDCWD, t, MOVE_MOUNT_F_EMPTY_PATH_));
        struct mount_attr_ a = {binds[i].attr, 0, 0, 0};
        CHECK("mounts", syscall(SYS_mount_setattr, AT_FDCWD, t, AT_RECURSIVE_, &a, sizeof a));
        if (i == 2 && on("proc")) {
            CHECK("proc", mkdir(STAGE "/proc", 0777));
            CHECK("proc", mount("proc", STAGE "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                                "hidepid=invisible"));
        }
    }
    for (i = 0; i < NBIND; i++) CHECK("mounts", close(fd[i]));
    CHECK("mounts", symlink("usr/bin", STAGE "/bin"));
    CHECK("mounts", symlink("usr/sbin", STAGE "/sbin"));
    CHECK("mounts", symlink("usr/lib", STAGE "/lib"));
    CHECK("mounts", symlink("usr/lib64", STAGE "/lib64"));
    struct mount_attr_ ro = {MOUNT_ATTR_RDONLY_ | MOUNT_ATTR_NOSUID_ | MOUNT_ATTR_NODEV_ |
                             MOUNT_ATTR_NOEXEC_, 0, 0, 0};
    CHECK("mounts", syscall(SYS_mount_setattr, AT_FDCWD, STAGE, 0, &ro, sizeof ro));
    STAMP(T_MNT_BUILT);
    CHECK("mounts", chdir(STAGE));
    CHECK("mounts", syscall(SYS_pivot_root, ".", "."));
    STAMP(T_MNT_PIVOT);
    CHECK("mounts", umount2(".", MNT_DETACH));
    CHECK("mounts", chdir("/"));
    STAMP(T_MNT_DETACH);
}

static void landlock(void) {
    struct ll_ruleset_attr ra = {LL_FS_ALL, LL_BIND_TCP | LL_CONNECT_TCP,
                                 LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL, 0, 0, 0};
    int rs, p;
    size_t i;
    CHECK("landlock", rs = syscall(SYS_landlock_create_ruleset, &ra, sizeof ra, 0));
    for (i = 0; i < NLL; i++) {
        struct ll_path_attr pa = {ll_paths[i].rights, ll_fd[i]};
        CHECK("landlock", syscall(SYS_landlock_add_rule, rs, LL_RULE_PATH_BENEATH, &pa, 0));
    }
    struct ll_port_attr na = {LL_BIND_TCP, 8080};
    CHECK("landlock", syscall(SYS_landlock_add_rule, rs, LL_RULE_NET_PORT, &na, 0));
    // /proc is the fresh one: opened after pivot_root, as stockade does (none without it).
    if (on("proc") || !on("mounts")) {
        CHECK("landlock", p = open("/proc", O_PATH | O_CLOEXEC));
        struct ll_path_attr pp = {RO, p};
        CHECK("landlock", syscall(SYS_landlock_add_rule, rs, LL_RULE_PATH_BENEATH, &pp, 0));
        CHECK("landlock", close(p));
    }
    CHECK("landlock", syscall(SYS_landlock_restrict_self, rs, LL_RESTRICT_SELF_LOG_NEW_EXEC_ON));
    CHECK("landlock", close(rs));
}

static void server(char **argv) {
    STAMP(T_SRV_START);
    CHECK("setpgid", setpgid(0, 0));
    CHECK("close_range", syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */));
    if (on("rlimits")) {
        struct rlimit z = {0, 0};
        CHECK("rlimits", prlimit(0, RLIMIT_CORE, &z, NULL));
    }
    STAMP(T_SRV_RLIMITS);
    if (on("mounts")) mounts();
    if (on("caps")) {
        CHECK("caps", prctl(PR_SET_SECUREBITS,
                            SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED |
                                SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                                SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
                            0, 0, 0));
        drop_bounding(-1);
    }
    STAMP(T_BOUNDING);
    if (on("ids")) {
        CHECK("ids", setgroups(0, NULL));
        CHECK("ids", setresgid(NOBODY, NOBODY, NOBODY));
        CHECK("ids", setresuid(NOBODY, NOBODY, NOBODY));
    }
    STAMP(T_IDS);
    if (on("caps")) {
        CHECK("caps", prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0));
        capset_to(0, 0);
    }
    CHECK("pdeathsig", prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0));
    if (on("nnp")) CHECK("nnp", prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
    STAMP(T_CAPS_NNP);
    if (on("landlock")) landlock();
    STAMP(T_LANDLOCK);
    if (on("seccomp")) {
        struct sock_fprog fp = {bpf_len, bpf};
        CHECK("seccomp", syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fp));
    }
    STAMP(T_SECCOMP);
    char lang[256];
    char *envp[4] = {"HOME=/nonexistent", "PATH=/usr/local/bin:/usr/bin:/bin", NULL, NULL};
    const char *l = getenv("LANG");
    if (l && snprintf(lang, sizeof lang, "LANG=%s", l) < (int)sizeof lang) envp[2] = lang;
    execve(argv[0], argv, envp);
    fprintf(stderr, "floor: execve: %s: %s\n", argv[0], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
}

static int code_of(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st); }

// Fork the server, then reap every child (PID 1 of the namespace inherits orphans); the
// server's status is the result.
static int supervise(char **argv) {
    pid_t s, w;
    int st, code = 0;
    CHECK("fork", s = fork());
    if (s == 0) server(argv);
    STAMP(T_PID1_FORKED);
    if (on("supcaps")) drop_own(CAP_KILL);
    STAMP(T_PID1_SUPCAPS);
    while ((w = wait(&st)) != -1 || errno == EINTR)
        if (w == s) { code = code_of(st); STAMP(T_SRV_REAPED); }
    if (errno != ECHILD) die("supervise", "wait");
    STAMP(T_PID1_DONE);
    return code;
}

static int dump_bpf(pid_t pid, const char *out) {
    int st, f;
    long n;
    CHECK("dump", ptrace(PTRACE_SEIZE, pid, 0, 0));
    CHECK("dump", ptrace(PTRACE_INTERRUPT, pid, 0, 0));
    CHECK("dump", waitpid(pid, &st, __WALL));
    CHECK("dump", n = ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, NULL));
    if (n > MAXINSN) { fprintf(stderr, "floor: dump: %ld instructions\n", n); return 125; }
    CHECK("dump", ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 0, bpf));
    // stockade installs one program: a second one would have to be dumped too.
    if (ptrace(PTRACE_SECCOMP_GET_FILTER, pid, 1, NULL) >= 0 || errno != ENOENT) {
        fprintf(stderr, "floor: dump: pid %d has more than one seccomp filter\n", pid);
        return 125;
    }
    CHECK("dump", ptrace(PTRACE_DETACH, pid, 0, 0));
    CHECK("dump", f = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (write(f, bpf, n * sizeof bpf[0]) != (ssize_t)(n * sizeof bpf[0])) die("dump", "write");
    CHECK("dump", close(f));
    fprintf(stderr, "floor: %ld instructions of pid %d written to %s\n", n, pid, out);
    return 0;
}

static void read_bpf(const char *path) {
    int f;
    ssize_t n;
    if (!path) { errno = EINVAL; die("seccomp", "no --bpf=FILE (or FLOOR_BPF)"); }
    CHECK("seccomp", f = open(path, O_RDONLY | O_CLOEXEC));
    CHECK("seccomp", n = read(f, bpf, sizeof bpf));
    CHECK("seccomp", close(f));
    if (n == 0 || n % sizeof bpf[0] || n == (ssize_t)sizeof bpf) {
        errno = EINVAL;
        die("seccomp", "the --bpf file's size");
    }
    bpf_len = n / sizeof bpf[0];
}

int main(int argc, char **argv) {
    const char *bpf_path = getenv("FLOOR_BPF");
    int i = 1;
#ifdef FLOOR_TIMES
    stamps_init();
#endif
    if (argc == 4 && strcmp(argv[1], "--dump-bpf") == 0) return dump_bpf(atoi(argv[2]), argv[3]);
    if (getenv("FLOOR_SKIP")) skip = getenv("FLOOR_SKIP");
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strncmp(argv[i], "--skip=", 7) == 0) skip = argv[i] + 7;
        else if (strncmp(argv[i], "--bpf=", 6) == 0) bpf_path = argv[i] + 6;
        else break;
    }
    if (i + 1 >= argc || strcmp(argv[i], "--") != 0) {
        fprintf(stderr, "usage: floor [--skip=LIST] [--bpf=FILE] -- CMD [ARGS]\n"
                        "       floor --dump-bpf PID FILE\n");
        return 2;
    }
    argv += i + 1;
    if (on("seccomp")) read_bpf(bpf_path);
    if (on("landlock")) {
        size_t k;
        for (k = 0; k < NLL; k++)
            CHECK("landlock", ll_fd[k] = open(ll_paths[k].path, O_PATH | O_CLOEXEC));
    }
    STAMP(T_PREP);
    if (!on("pidns")) {
        int code = supervise(argv);
#ifdef FLOOR_TIMES
        stamps_print();
#endif
        return code;
    }
    pid_t p1;
    int st;
    CHECK("pidns", unshare(CLONE_NEWPID));
    CHECK("pidns", p1 = fork());
    if (p1 == 0) {
        STAMP(T_PID1_START);
        CHECK("pidns", prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0));
        _exit(supervise(argv));
    }
    STAMP(T_RELAY_FORKED);
    if (on("supcaps")) drop_own(-1);
    STAMP(T_RELAY_SUPCAPS);
    while (waitpid(p1, &st, 0) < 0)
        if (errno != EINTR) die("pidns", "waitpid");
    STAMP(T_PID1_REAPED);
#ifdef FLOOR_TIMES
    stamps_print();
#endif
    return code_of(st);
}
