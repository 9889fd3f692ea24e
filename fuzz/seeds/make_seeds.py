#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/ from the test suites' inputs.

Re-run after the tests change: python3 fuzz/seeds/make_seeds.py (from the repository root).
profile: profiles/*.toml, the test sandbox's profile and every tests/bad_input.rs edit of it.
triton_argv: every string array in src/triton/tests.rs (byte 0 picks the policy, NUL-separated).
seccomp_bpf: the policies of src/bpf.rs's tests, in the target's byte format.
ready: the URLs of src/ready.rs's tests and the profiles, and status lines.
"""
import glob, hashlib, os, re, struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fuzz", "seeds")


def rust_str(s):
    """Decodes the body of a (non-raw) Rust string literal."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            n = s[i + 1]
            if n == "\n":  # line continuation: skip the newline and leading spaces
                i += 2
                while i < len(s) and s[i] in " \t":
                    i += 1
                continue
            out.append({"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", '"': '"', "'": "'"}.get(n, n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


STR = r'"((?:[^"\\]|\\.)*)"'


def write(target, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def profile():
    for p in sorted(glob.glob(os.path.join(ROOT, "profiles", "*.toml"))):
        write("profile", open(p).read())
    common = open(os.path.join(ROOT, "tests", "common", "mod.rs")).read()
    seccomp = rust_str(re.search(r'pub const TEST_SECCOMP: &str = r#"(.*?)"#;', common, re.S).group(1).replace("\\", "\\\\"))
    good = (
        'version = 1\ndescription = "test"\n[identity]\nuser = "nobody"\ngroup = "nogroup"\n[landlock]\n'
        'read_exec = ["/usr", "/bin", "/lib", { path = "/lib64", optional = true }, "/srv/sb/bin"]\n'
        'read_only = ["/etc", "/proc", "/dev/urandom", "/srv/sb/ro"]\n'
        'read_write = ["/srv/sb/rw", "/dev/null"]\nbind_tcp = [8000]\nconnect_tcp = []\n'
        + seccomp + '[env]\nset = { PATH = "/usr/bin:/bin" }\n'
    )
    write("profile", good)
    bad = open(os.path.join(ROOT, "tests", "bad_input.rs")).read()
    for case in re.finditer(r"Case \{(.*?)\n    \},", bad, re.S):
        body = case.group(1)
        text = good
        edit = re.search(r"edit: &\[(.*?)\],\n", body, re.S)
        if edit:
            for a, b in re.findall(r"\(\s*" + STR + r"\s*,\s*" + STR + r"\s*,?\s*\)", edit.group(1), re.S):
                text = text.replace(rust_str(a), rust_str(b), 1)
        app = re.search(r"append:\s*" + STR, body, re.S)
        if app:
            text += rust_str(app.group(1))
        write("profile", text)
    # The supervise tests' readiness and restart sections.
    sup = open(os.path.join(ROOT, "tests", "supervise.rs")).read()
    for s in re.findall(STR, sup, re.S):
        s = rust_str(s)
        if s.startswith("[supervise"):
            write("profile", good + s.replace("{port}", "8000") + "\n")


def triton():
    src = open(os.path.join(ROOT, "src", "triton", "tests.rs")).read()
    arrays = set()
    for m in re.finditer(r"&\[((?:\s*" + STR + r"\s*,?)+)\s*\]", src, re.S):
        arrays.add(tuple(rust_str(s) for s in re.findall(STR, m.group(1))))
    for argv in sorted(arrays):
        for which in (b"\0", b"\1"):
            write("triton_argv", which + b"\0".join(a.encode() for a in argv))
    # Paths only the fixture has.
    for which, argv in [
        (0, ["--backend-directory=@ROOT@/install/backends", "--cache-config=local,size=1048576",
             "--cache-directory=@ROOT@/install/caches"]),
        (0, ["--log-file=@ROOT@/log/triton.log", "--log-verbose=1", "--strict-model-config=false"]),
        (0, ["--grpc-use-ssl-mutual=true", "--grpc-server-cert=@ROOT@/tls/server.crt",
             "--grpc-server-key=@ROOT@/tls/server.key", "--grpc-root-cert=@ROOT@/tls/ca.crt",
             "--allow-grpc=1"]),
        (0, ["--model-store=@ROOT@/repo2", "--http-restricted-api=inference:x-op=0123456789abcdefXYZ",
             "--backend-config=python,shm-default-byte-size=1048576"]),
        (1, ["--load-model=add", "--model-control-mode=explicit", "--rate-limit=execution_count",
             "--rate-limit-resource=R1:10:0"]),
    ]:
        write("triton_argv", bytes([which]) + b"\0".join(a.encode() for a in argv))


def seccomp():
    x86 = 0

    def act(kind, extra=b""):
        return bytes([kind]) + extra

    def policy(default, conds, entries, tail=b""):
        b = bytes([x86]) + default + bytes([len(conds)])
        for alts in conds:
            b += bytes([len(alts)])
            for checks in alts:
                b += bytes([len(checks)])
                for kind, arg, v in checks:
                    b += bytes([(arg << 1) | kind]) + struct.pack("<Q", v)
        for nr, a in entries:
            b += bytes([0]) + struct.pack("<H", nr) + a
        return b + tail.ljust(58, b"\0")

    enosys = act(2, struct.pack("<H", 38))
    # bpf.rs tests::policy
    entries = [(n, act(0)) for n in [0, 1, 2, 3, 9, 10, 11, 60, 231]]
    entries += [(n, act(1)) for n in [101, 165, 272, 425]]
    entries += [(435, enosys), (41, act(4, b"\0")), (56, act(4, b"\1"))]
    conds = [[[(0, 0, 1)], [(0, 0, 2)], [(0, 0, 10)]], [[(1, 0, 0x7E020000)]]]
    write("seccomp_bpf", policy(enosys, conds, entries))
    write("seccomp_bpf", policy(enosys, conds, entries, struct.pack("<Q", 1)))
    # tests::long_branches_use_ja
    write("seccomp_bpf", policy(enosys, [], [(n, act(n % 2)) for n in range(600)]))
    # several ANDed checks in one alternative (the profile's allow_if rules on one syscall)
    write("seccomp_bpf", policy(enosys, [[[(0, a % 6, a) for a in range(12)]]], [(110, act(4, b"\0"))]))


def ready():
    for u in ["http://127.0.0.1:8000/v2/health/ready", "http://[::1]:9/x", "http://localhost",
              "http://127.1.2.3:1/", "http://10.0.0.1:8000/", "http://0.0.0.0:8000/", "http://example.com/",
              "http://user@127.0.0.1/", "http://127.0.0.1:0/", "http://127.0.0.1:99999/",
              "http://127.0.0.1:80/a b", "http://[::2]:80/", "http://:80/", "http://[::ffff:127.0.0.1]:80/"]:
        write("ready", b"\1" + u.encode())
    for s in [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.0 400 Bad Request\r\nServer: x\r\n\r\n", b"",
              b"garbage\n", b"HTTP/1.1 abc\r\n", b"HTTP/1.1 99999 x\r\n"]:
        write("ready", b"\0" + s)


profile()
triton()
seccomp()
ready()
