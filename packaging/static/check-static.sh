#!/usr/bin/env bash
# Proves that a stockade binary is static and self-sufficient: it runs as the only program in an
# otherwise empty root (a chroot holding just it, a static busybox payload, /etc/passwd,
# /etc/group, an empty /proc mount point and /tmp), resolves a user and groups *by name* from that
# chroot's /etc files, and the payload really runs with the target ids, no capabilities,
# no_new_privs, seccomp and Landlock.
#
#   packaging/static/check-static.sh [BINARY]     (root; default: the musl release build)
#
# Prints one `ok`/`FAIL` line per check and `N passed, M failed`; exits non-zero on a failure.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$repo/target}
bin=${1:-$target_dir/x86_64-unknown-linux-musl/release/stockade}
busybox=${BUSYBOX:-/bin/busybox}

passed=0 failed=0
ok()   { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

[ "$(id -u)" = 0 ] || { echo "check-static: needs root (chroot, setuid)" >&2; exit 2; }
[ -x "$bin" ] || { echo "check-static: no binary at $bin" >&2; exit 2; }
[ -x "$busybox" ] || { echo "check-static: no static busybox at $busybox (apt-get install busybox-static)" >&2; exit 2; }

# 1. Static by construction: no program interpreter and no DT_NEEDED libraries.
check "no ELF interpreter (PT_INTERP) in $bin" bash -c "! readelf -lW '$bin' | grep -q 'Requesting program interpreter'"
check "no shared library dependencies (DT_NEEDED)" bash -c "! readelf -dW '$bin' | grep -q NEEDED"
check "payload busybox is static too" bash -c "! readelf -lW '$busybox' | grep -q 'Requesting program interpreter'"

# 2. The empty root.
root=$(mktemp -d /tmp/stockade-chroot.XXXXXX)
cleanup() {
    mountpoint -q "$root/proc" && umount "$root/proc"
    mountpoint -q "$root" && umount "$root"
    rm -rf -- "$root"
}
trap cleanup EXIT
chmod 0755 "$root"   # mktemp makes it 0700: the target uid must traverse /
mkdir -p "$root"/{bin,etc,proc,tmp}
chmod 1777 "$root/tmp"
install -m 0755 "$bin" "$root/stockade"
install -m 0755 "$busybox" "$root/bin/busybox"
for applet in sh id cat; do ln -s busybox "$root/bin/$applet"; done
cat > "$root/etc/passwd" <<'PW'
root:x:0:0:root:/:/bin/sh
stockade-probe:x:4242:4243:stockade static proof:/tmp:/bin/sh
PW
cat > "$root/etc/group" <<'GR'
root:x:0:
stockade-probe:x:4243:
probe-extra:x:4244:stockade-probe
GR
install -m 0644 "$here/chroot-profile.toml" "$root/profile.toml"
sed 's/^user = "stockade-probe"/user = "no-such-user"/' "$here/chroot-profile.toml" > "$root/unknown-user.toml"
# The root is bind-mounted onto itself, as chroot tools do (arch-chroot, systemd-nspawn): as
# root, stockade makes its own mount namespace (a private /proc for its PID namespace, the
# profile's [mounts]) and first marks "/" as a slave mount, which needs "/" to be a mount point.
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
echo "chroot: $(cd "$root" && find . -mindepth 1 -maxdepth 2 -not -path './proc/*' | sort | tr '\n' ' ')"

# 3. It runs there, and --version / --dry-run need nothing from the host.
out=$(chroot "$root" /stockade --version 2>&1); rc=$?
check "--version in the empty root (rc=$rc: $out)" test "$rc" = 0
chroot "$root" /stockade --profile /profile.toml --dry-run -- /bin/id > "$root/tmp/dry-run.txt" 2>&1; rc=$?
check "--dry-run in the empty root resolves stockade-probe (rc=$rc)" \
    bash -c "[ $rc = 0 ] && grep -q 'uid 4242 (stockade-probe)' '$root/tmp/dry-run.txt'"

# 4. The real launch: the payload reports its own ids and confinement from /proc.
out=$(chroot "$root" /stockade --profile /profile.toml -- /bin/sh -c 'id; cat /proc/self/status' 2>&1); rc=$?
echo "$out" | grep -E '^(uid=|Uid:|Gid:|Groups:|CapEff:|CapBnd:|NoNewPrivs:|Seccomp:)' | sed 's/^/     | /'
check "payload exited 0 (rc=$rc)" test "$rc" = 0
check "id: uid=4242 gid=4243, supplementary 4244" bash -c "grep -Eq '^uid=4242.* gid=4243.* groups=4244' <<<\"\$1\"" _ "$out"
check "/proc/self/status Uid 4242 (real, effective, saved, fs)" bash -c "grep -Pq '^Uid:\t4242\t4242\t4242\t4242$' <<<\"\$1\"" _ "$out"
check "/proc/self/status Gid 4243" bash -c "grep -Pq '^Gid:\t4243\t4243\t4243\t4243$' <<<\"\$1\"" _ "$out"
check "/proc/self/status Groups 4244 only" bash -c "grep -Pq '^Groups:\t4244 ?$' <<<\"\$1\"" _ "$out"
check "no effective capabilities" bash -c "grep -Pq '^CapEff:\t0000000000000000$' <<<\"\$1\"" _ "$out"
check "empty bounding set" bash -c "grep -Pq '^CapBnd:\t0000000000000000$' <<<\"\$1\"" _ "$out"
check "no_new_privs set" bash -c "grep -Pq '^NoNewPrivs:\t1$' <<<\"\$1\"" _ "$out"
check "seccomp filter mode" bash -c "grep -Pq '^Seccomp:\t2$' <<<\"\$1\"" _ "$out"

# 5. Landlock holds inside the chroot: /etc is read-only for the payload.
chroot "$root" /stockade --profile /profile.toml -- /bin/sh -c 'echo x > /etc/landlock-probe' >/dev/null 2>&1
check "Landlock refuses a write to /etc" test ! -e "$root/etc/landlock-probe"
chroot "$root" /stockade --profile /profile.toml -- /bin/sh -c 'echo x > /tmp/landlock-probe' >/dev/null 2>&1
check "Landlock allows a write to /tmp (owned by uid 4242)" \
    bash -c "[ \"\$(stat -c %u '$root/tmp/landlock-probe' 2>/dev/null)\" = 4242 ]"

# 6. Names come from the chroot's /etc/passwd: a name absent there is refused (exit 67).
chroot "$root" /stockade --profile /unknown-user.toml -- /bin/id >/dev/null 2>&1; rc=$?
check "a user missing from the chroot's /etc/passwd exits 67 (rc=$rc)" test "$rc" = 67

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
