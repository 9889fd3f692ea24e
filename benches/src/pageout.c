// pageout PID PATH: process_madvise(MADV_PAGEOUT) every read-only or executable mapping of PATH
// in process PID (never a writable one). benches/memory.sh uses it to estimate the steady-state
// footprint of a supervisor whose start-up code (argument parsing, TOML, planning) is no longer
// needed: what the supervisor itself would get with one madvise(MADV_DONTNEED) over its own
// read-only text after the server started. The pages the supervisor still touches fault back in.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: pageout PID PATH\n");
        return 2;
    }
    int pid = atoi(argv[1]);
    int pidfd = syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) { perror("pidfd_open"); return 1; }
    char maps[64], line[4096];
    snprintf(maps, sizeof maps, "/proc/%d/maps", pid);
    FILE *f = fopen(maps, "r");
    if (!f) { perror(maps); return 1; }
    long total = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char perms[8], path[4096] = "";
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %4095s", &lo, &hi, perms, path) < 3) continue;
        if (strcmp(path, argv[2]) || perms[1] == 'w') continue;
        struct iovec iov = {.iov_base = (void *)lo, .iov_len = hi - lo};
        if (syscall(SYS_process_madvise, pidfd, &iov, 1, MADV_PAGEOUT, 0) < 0) {
            perror("process_madvise");
            return 1;
        }
        total += hi - lo;
    }
    printf("%ld\n", total / 1024);
    return 0;
}
