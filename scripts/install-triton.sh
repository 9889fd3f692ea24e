#!/usr/bin/env bash
# Install the real NVIDIA Triton Inference Server 2.51 (CPU build, shipped inside the
# PyPI wheel `nvidia-pytriton`) into DIR (default /opt/stockade/triton), in a layout a
# confined server running as uid 65534 can read and execute:
#
#   DIR/venv/                       Debian python3.11 venv (nvidia-pytriton, numpy, tritonclient)
#   DIR/env.sh                      exports TRITONSERVER TRITON_BACKENDS TRITON_CACHES
#                                   TRITON_REPOAGENTS TRITON_VENV TRITON_PYTHON TRITON_PATH
#   DIR/repoagents/                 empty (the wheel ships none)
#
# Idempotent: a second run only re-checks and re-writes env.sh (a few seconds).
# Set STOCKADE_TRITON_FORCE=1 to reinstall the python packages.
set -euo pipefail

DIR="${1:-/opt/stockade/triton}"
PY=/usr/bin/python3.11          # Debian's python: NOT a pyenv/conda build under /root
PKGS=(nvidia-pytriton numpy "tritonclient[grpc,http]")

log() { printf '[install-triton] %s\n' "$*" >&2; }
die() { printf '[install-triton] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
case "$DIR" in /*) ;; *) die "DIR must be absolute: $DIR" ;; esac

umask 022
t0=$(date +%s)

# --- 1. Debian prerequisites (python3.11 + venv module + libpython for the stub) -----------
need_apt=()
[ -x "$PY" ] || need_apt+=(python3.11)
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv python3.11-venv)
[ -e /usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0 ] || need_apt+=(libpython3.11)
command -v bash >/dev/null || need_apt+=(bash)
if [ "${#need_apt[@]}" -gt 0 ]; then
    log "apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${need_apt[@]}" >/dev/null 2>&1 || {
        apt-get update >/dev/null
        apt-get install -y --no-install-recommends "${need_apt[@]}" >/dev/null
    }
fi
"$PY" -c 'import venv, ensurepip' || die "python3.11 venv module unusable"

# --- 2. every ancestor of DIR must be traversable by uid 65534 -----------------------------
p=$(dirname "$DIR")
while [ "$p" != / ]; do
    if [ -e "$p" ]; then
        perm=$(stat -L -c '%a' "$p")
        if [ $(( 8#$perm & 8#001 )) -eq 0 ]; then
            die "$p (mode $perm) is not world-traversable; uid 65534 could not reach $DIR"
        fi
    fi
    p=$(dirname "$p")
done
mkdir -p "$DIR"
chown root:root "$DIR"
chmod 0755 "$DIR"

VENV="$DIR/venv"
VPY="$VENV/bin/python"

# --- 3. venv (rebuilt if it exists but is not a Debian-python venv) ------------------------
if [ -e "$VENV/pyvenv.cfg" ] && ! grep -qx 'home = /usr/bin' "$VENV/pyvenv.cfg"; then
    log "removing $VENV: not built from $PY ($(grep '^home' "$VENV/pyvenv.cfg"))"
    rm -rf "$VENV"
fi
if [ ! -x "$VPY" ]; then
    log "creating venv $VENV from $PY"
    "$PY" -m venv "$VENV"
fi

# --- 4. python packages --------------------------------------------------------------------
have_pkgs() {
    "$VPY" - <<'PY' >/dev/null 2>&1
import importlib.metadata as m, pathlib, sys
for d in ("nvidia-pytriton", "numpy", "tritonclient", "grpcio", "geventhttpclient"):
    m.version(d)
import numpy, tritonclient.grpc, tritonclient.http, pytriton
p = pathlib.Path(pytriton.__file__).parent / "tritonserver" / "bin" / "tritonserver"
sys.exit(0 if p.is_file() else 1)
PY
}
if [ "${STOCKADE_TRITON_FORCE:-0}" = 1 ] || ! have_pkgs; then
    log "pip install ${PKGS[*]} (cold cache: several minutes, ~1 GB download)"
    "$VPY" -m pip install --disable-pip-version-check --no-input -q --upgrade pip >/dev/null 2>&1 || true
    "$VPY" -m pip install --disable-pip-version-check --no-input -q "${PKGS[@]}"
    have_pkgs || die "packages installed but pytriton/tritonclient/numpy are not importable"
else
    log "python packages already installed"
fi

PYVER=$("$VPY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
TS_ROOT=$("$VPY" -c 'import pathlib, pytriton; print(pathlib.Path(pytriton.__file__).resolve().parent / "tritonserver")')
TRITONSERVER="$TS_ROOT/bin/tritonserver"
BACKENDS="$TS_ROOT/backends"
CACHES="$TS_ROOT/caches"
[ -x "$TRITONSERVER" ] || die "no tritonserver binary at $TRITONSERVER"
[ -f "$BACKENDS/python/libtriton_python.so" ] || die "no python backend in $BACKENDS"

# --- 5. python backend stub for the venv's python --------------------------------------------
STUB_SRC="$TS_ROOT/python_backend_stubs/$PYVER/triton_python_backend_stub"
STUB_DST="$BACKENDS/python/triton_python_backend_stub"
[ -f "$STUB_SRC" ] || die "wheel has no python backend stub for python $PYVER ($STUB_SRC)"
if ! cmp -s "$STUB_SRC" "$STUB_DST"; then
    log "installing stub for python $PYVER"
    install -m 0755 -o root -g root "$STUB_SRC" "$STUB_DST"
fi

# --- 6. repoagents dir (the wheel ships none; Triton accepts an empty dir) -------------------
if [ -d "$TS_ROOT/repoagents" ]; then
    REPOAGENTS="$TS_ROOT/repoagents"
else
    REPOAGENTS="$DIR/repoagents"
    mkdir -p "$REPOAGENTS"
fi
mkdir -p "$CACHES"

# --- 7. env.sh -----------------------------------------------------------------------------
cat >"$DIR/env.sh.tmp" <<ENV
# generated by scripts/install-triton.sh; source it: . $DIR/env.sh
export TRITONSERVER='$TRITONSERVER'
export TRITON_BACKENDS='$BACKENDS'
export TRITON_CACHES='$CACHES'
export TRITON_REPOAGENTS='$REPOAGENTS'
export TRITON_VENV='$VENV'
export TRITON_PYTHON='$VENV/bin/python'
export TRITON_PATH='$VENV/bin:/usr/bin:/bin'
ENV
mv -f "$DIR/env.sh.tmp" "$DIR/env.sh"

# --- 8. ownership and modes: root-owned, dirs 0755, files 0644 (executables keep 0755) ------
# pip honours umask 022 already; this catches anything odd (wheels with 0700 dirs, etc.).
if [ ! -e "$DIR/.perms-ok" ] || [ "$DIR/venv/pyvenv.cfg" -nt "$DIR/.perms-ok" ] \
   || [ -n "$(find "$VENV/lib" -newer "$DIR/.perms-ok" -print -quit 2>/dev/null)" ]; then
    log "normalising ownership/modes under $DIR"
    chown -R root:root "$DIR"
    chmod -R u+rwX,go+rX,go-w "$DIR"
    touch "$DIR/.perms-ok"
fi
chmod 0644 "$DIR/env.sh"

# --- 9. smoke check: binary resolves its libraries and runs as uid 65534 ---------------------
if command -v setpriv >/dev/null; then
    # `tritonserver --help` exits 1 by design; check that it printed its usage.
    help_out=$(setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH="$VENV/bin:/usr/bin:/bin" \
        "$TRITONSERVER" --help 2>&1 || true)
    if ! grep -q '^Usage: tritonserver' <<<"$help_out"; then
        printf '%s\n' "$help_out" | head -5 >&2
        die "tritonserver --help failed as uid 65534 (permissions or missing libraries)"
    fi
fi

cat <<OUT
Triton installed in $DIR ($(( $(date +%s) - t0 ))s)
  env file          : $DIR/env.sh   (. $DIR/env.sh)
  TRITONSERVER      : $TRITONSERVER
  TRITON_BACKENDS   : $BACKENDS
  TRITON_CACHES     : $CACHES
  TRITON_REPOAGENTS : $REPOAGENTS
  TRITON_VENV       : $VENV
  TRITON_PYTHON     : $VENV/bin/python  (python $PYVER)
  TRITON_PATH       : $VENV/bin:/usr/bin:/bin
OUT
