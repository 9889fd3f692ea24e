#!/usr/bin/env bash
# Checks a stockade .deb on this machine (root; dpkg-based):
#   lintian (no errors; warnings are shown), its contents, `dpkg -i`, what it installed
#   (binary, reference profiles equal to the built-ins, man page, completions, systemd unit
#   verified by systemd-analyze), `stockade --version` and a dry run, then `dpkg -r` and
#   `dpkg --purge` (also straight `--purge` after an operator enabled the unit): the file list of
#   every directory the package touches is compared before and after, and nothing may be left.
#
#   packaging/deb/check-deb.sh PATH/TO/stockade_*.deb
# Prints `ok`/`FAIL` lines and `N passed, M failed`; exits non-zero on a failure.
set -uo pipefail
deb=${1:?usage: check-deb.sh PATH/TO/stockade.deb}
deb=$(realpath "$deb")
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
pkg=stockade
unit=stockade-triton.service

passed=0 failed=0
ok()   { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
[ "$(id -u)" = 0 ] || { echo "check-deb: needs root (dpkg -i)" >&2; exit 2; }

# Every directory the package or its maintainer scripts may write to.
roots=(/usr/bin /usr/share/stockade /usr/share/doc /usr/share/man/man1 /usr/share/bash-completion
       /usr/share/zsh /usr/share/fish /usr/lib/systemd /lib/systemd /etc /var/lib/systemd)
snapshot() { # the file list of the roots, plus dpkg's own view of the package
    { find "${roots[@]}" -xdev 2>/dev/null | grep -v '^/etc/ld.so.cache$'
      find /var/lib/dpkg/info -name "$pkg.*" 2>/dev/null
      dpkg-query -W -f='dpkg-status: ${db:Status-Abbrev}\n' "$pkg" 2>/dev/null; } | sort
}
same_as_baseline() { # label
    snapshot > "$work/$1.list"
    if diff -u "$work/baseline.list" "$work/$1.list" > "$work/$1.diff"; then
        return 0
    fi
    sed -n '3,$p' "$work/$1.diff" | grep '^[-+]' | sed 's/^/     | /' | head -40
    return 1
}

work=$(mktemp -d /tmp/stockade-deb-check.XXXXXX)
trap 'rm -rf -- "$work"' EXIT

# 0. A clean start: an earlier run or a hand install must not hide leftovers.
if dpkg-query -W "$pkg" >/dev/null 2>&1; then
    echo "note: $pkg is installed or has leftovers; purging it first"
    dpkg --purge "$pkg" >/dev/null
fi
snapshot > "$work/baseline.list"

# 1. lintian: no errors (warnings and infos are printed for the record).
lintian --tag-display-limit 0 --display-info "$deb" > "$work/lintian.txt" 2>&1; lrc=$?
sed 's/^/     | /' "$work/lintian.txt"
errors=$(grep -c '^E: ' "$work/lintian.txt" || true)
check "lintian: no errors ($errors errors, $(grep -c '^W: ' "$work/lintian.txt" || true) warnings, exit $lrc)" \
    test "$errors" = 0

# 2. Contents and dependencies. The binaries need GLIBC_ABI_DT_RELR (glibc 2.36, the packed
#    relocations of .cargo/config.toml), which dpkg-shlibdeps does not map: Cargo.toml names it.
depends=$(dpkg-deb -f "$deb" Depends)
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/stockade > "$work/stockade.bin"
if readelf -V "$work/stockade.bin" | grep -q GLIBC_ABI_DT_RELR; then
    check "Depends names libc6 (>= 2.36), for GLIBC_ABI_DT_RELR ($depends)" \
        grep -q 'libc6 (>= 2.36)' <<<"$depends"
else
    ok "the binary needs no GLIBC_ABI_DT_RELR (Depends: $depends)"
fi
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' > "$work/contents.txt"
for f in /usr/bin/stockade /usr/bin/stockade-learn /usr/share/man/man1/stockade.1.gz \
         /usr/share/man/man1/stockade-learn.1.gz \
         /usr/share/bash-completion/completions/stockade /usr/share/zsh/vendor-completions/_stockade \
         /usr/share/fish/vendor_completions.d/stockade.fish /usr/share/doc/stockade/copyright \
         /usr/share/doc/stockade/changelog.Debian.gz /usr/lib/systemd/system/$unit; do
    check "package contains $f" grep -qx "$f" "$work/contents.txt"
done
for p in "$repo"/profiles/*.toml; do
    check "package contains /usr/share/stockade/profiles/$(basename "$p")" \
        grep -qx "/usr/share/stockade/profiles/$(basename "$p")" "$work/contents.txt"
done
check "nothing under /etc (operators' copies live there, not the package's)" \
    bash -c "! grep -q '^/etc/' '$work/contents.txt'"

# 3. Install and use.
check "dpkg -i" dpkg -i "$deb"
version=$(dpkg-deb -f "$deb" Version)
out=$(stockade --version 2>&1)
check "stockade --version: '$out' matches the package version $version" test "$out" = "stockade ${version%-*}"
check "stockade --profile minimal --dry-run -- /bin/true" \
    bash -c 'stockade --profile minimal --dry-run -- /bin/true >/dev/null'
for p in /usr/share/stockade/profiles/*.toml; do
    name=$(basename "$p" .toml)
    check "$p equals the built-in (stockade --print-profile $name)" \
        bash -c "stockade --print-profile '$name' | cmp -s - '$p'"
done
check "man page renders (man stockade)" bash -c 'MANWIDTH=80 man -P cat stockade 2>/dev/null | grep -q -- "--dry-run"'
check "stockade learn reaches the installed stockade-learn" \
    bash -c 'stockade learn --help | grep -q -- "--verify"'
check "bash completion completes --profile" \
    bash -c 'source /usr/share/bash-completion/completions/stockade && grep -q -- "--profile" /usr/share/bash-completion/completions/stockade'
check "systemd-analyze verify $unit (installed)" \
    bash -c "systemd-analyze verify /usr/lib/systemd/system/$unit 2>&1 | tee '$work/verify.txt' | sed 's/^/     | /'; [ \${PIPESTATUS[0]} = 0 ] && [ ! -s '$work/verify.txt' ]"
check "unit installed but not enabled" bash -c "! ls /etc/systemd/system/*.wants/$unit >/dev/null 2>&1"

# 4. dpkg -r: the package's files go; only the unit's mask (deb-systemd-helper) and dpkg's
#    config-files state may stay until purge.
check "dpkg -r" dpkg -r "$pkg"
check "binary removed" test ! -e /usr/bin/stockade
check "learner removed" test ! -e /usr/bin/stockade-learn
check "profiles removed" test ! -e /usr/share/stockade
snapshot > "$work/removed.list"
comm -13 "$work/baseline.list" "$work/removed.list" > "$work/after-remove.txt"
sed 's/^/     | left after -r: /' "$work/after-remove.txt"
check "after -r only systemd mask state and the dpkg 'rc' entry remain" \
    bash -c "! grep -vE '^(/etc/systemd/system/$unit|/var/lib/systemd/deb-systemd-helper-(masked|enabled)(/$unit(\\.dsh-also)?)?|dpkg-status: rc.*|/var/lib/dpkg/info/$pkg\\.(list|md5sums|postrm))$' '$work/after-remove.txt'"
check "dpkg --purge" dpkg --purge "$pkg"
check "after -r and --purge the file list equals the one before install" same_as_baseline purge1

# 5. Install, an operator enables the unit, straight --purge: still nothing left.
check "dpkg -i (again)" dpkg -i "$deb"
check "operator enables the unit (systemctl enable)" \
    bash -c "systemctl enable $unit >/dev/null 2>&1 && test -L /etc/systemd/system/multi-user.target.wants/$unit"
check "dpkg --purge" dpkg --purge "$pkg"
check "after --purge the file list equals the one before install" same_as_baseline purge2

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
