#!/usr/bin/env bash
# Parses the container's ENTRYPOINT and CMD (exec/JSON form) from the Dockerfile, checks their
# shape, and prints the argv the container runs by default, so a local test can run exactly that
# through stockade with the real Triton (no Docker engine needed).
#
#   check-entrypoint.sh [--lines|--nul|--json|--shell] [DOCKERFILE]
#     --lines  one argument per line (default)       mapfile -t argv < <(check-entrypoint.sh)
#     --nul    NUL-terminated arguments               mapfile -d '' -t argv < <(check-entrypoint.sh --nul)
#     --json   one JSON array
#     --shell  shell-quoted words, for eval
#
# Checks (exit 1 with a message on stderr if one fails): both instructions exist and are in exec
# form (a JSON array of strings: the shell form would put /bin/sh, not stockade, at PID 1), the
# entrypoint is `/usr/bin/stockade --profile triton --`, and CMD starts tritonserver with
# --model-repository=/models. The last ENTRYPOINT/CMD of the final stage wins, as in Docker.
set -euo pipefail
fmt=--lines
case "${1:-}" in --lines|--nul|--json|--shell) fmt=$1; shift ;; esac
dockerfile=${1:-$(cd "$(dirname "$0")" && pwd)/Dockerfile}
exec python3 - "$fmt" "$dockerfile" <<'PY'
import json, shlex, sys

fmt, path = sys.argv[1], sys.argv[2]

def die(msg):
    sys.stderr.write(f"check-entrypoint: {path}: {msg}\n")
    sys.exit(1)

# Join continuation lines, drop comments, keep only the final build stage.
logical, buf = [], ""
for raw in open(path, encoding="utf-8"):
    line = raw.rstrip("\n")
    if not buf and line.lstrip().startswith("#"):
        continue
    if line.rstrip().endswith("\\"):
        buf += line.rstrip()[:-1] + " "
        continue
    logical.append(buf + line)
    buf = ""
if buf:
    logical.append(buf)
stage, found = [], {}
for line in logical:
    words = line.strip().split(None, 1)
    if not words:
        continue
    instr = words[0].upper()
    if instr == "FROM":
        found = {}
        continue
    if instr in ("ENTRYPOINT", "CMD"):
        arg = words[1] if len(words) > 1 else ""
        try:
            value = json.loads(arg)
        except json.JSONDecodeError:
            die(f"{instr} is in shell form ({arg!r}); use the exec form, a JSON array")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            die(f"{instr} must be a JSON array of strings, got {arg!r}")
        found[instr] = value

entry, cmd = found.get("ENTRYPOINT"), found.get("CMD")
if entry is None:
    die("no ENTRYPOINT in the final stage")
if cmd is None:
    die("no CMD in the final stage")
if entry != ["/usr/bin/stockade", "--profile", "triton", "--"]:
    die(f"ENTRYPOINT is {entry}, expected stockade with the triton profile and a final --")
if not cmd or cmd[0].rsplit("/", 1)[-1] != "tritonserver":
    die(f"CMD {cmd} does not start tritonserver")
if "--model-repository=/models" not in cmd:
    die(f"CMD {cmd} does not use --model-repository=/models")

argv = entry + cmd
if fmt == "--json":
    print(json.dumps(argv))
elif fmt == "--shell":
    print(" ".join(shlex.quote(a) for a in argv))
elif fmt == "--nul":
    sys.stdout.write("".join(a + "\0" for a in argv))
else:
    if any("\n" in a for a in argv):
        die("an argument contains a newline; use --nul or --json")
    print("\n".join(argv))
PY
