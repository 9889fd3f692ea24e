# Shared by scripts/install-{triton,mlserver,bentoml}.sh (sourced, not run): a Debian-python venv
# under DIR that a server confined as uid 65534 can read and execute.
# The caller defines log() and die(), sets DIR and PY, and may pre-fill the array need_apt with
# Debian packages it needs besides python3.11 and its venv module.
# After `prepare_venv`: VENV and VPY are set, DIR exists (root-owned, 0755).

prepare_venv() {
    [ "$(id -u)" = 0 ] || die "must run as root"
    case "$DIR" in /*) ;; *) die "DIR must be absolute: $DIR" ;; esac
    umask 022

    # 1. Debian prerequisites (python3.11 and its venv module, plus the caller's need_apt).
    [ -x "$PY" ] || need_apt+=(python3.11)
    "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv python3.11-venv)
    if [ "${#need_apt[@]}" -gt 0 ]; then
        log "apt-get install ${need_apt[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends "${need_apt[@]}" >/dev/null 2>&1 || {
            apt-get update >/dev/null
            apt-get install -y --no-install-recommends "${need_apt[@]}" >/dev/null
        }
    fi
    "$PY" -c 'import venv, ensurepip' || die "python3.11 venv module unusable"

    # 2. Every ancestor of DIR must be traversable by uid 65534.
    local p perm
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

    # 3. The venv, rebuilt if it exists but was not made from Debian's python.
    VENV="$DIR/venv"
    VPY="$VENV/bin/python"
    if [ -e "$VENV/pyvenv.cfg" ] && ! grep -qx 'home = /usr/bin' "$VENV/pyvenv.cfg"; then
        log "removing $VENV: not built from $PY ($(grep '^home' "$VENV/pyvenv.cfg"))"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VPY" ]; then
        log "creating venv $VENV from $PY"
        "$PY" -m venv "$VENV"
    fi
}
