//! One seccomp program for the whole policy: the architecture check, the x32 check, then a binary
//! search over ranges of syscall numbers that share an action.
//!
//! seccompiler emits one linear chain per filter and gives a filter a single match action, so a
//! policy with allow, kill and errno answers needs stacked filters, and the kernel's set-up work
//! (its action cache walks every filter for every syscall number) grows with their length: the
//! benchmark measured 0.83 ms for three seccompiler filters against 0.13 ms for this layout.
//! Every action is still constant per syscall number except the argument-checked ones, so the
//! kernel's cache answers hot syscalls without running the program. seccompiler still installs it.
//!
//! Argument-checked syscalls get an ordered list of rules (first match wins), each an AND of
//! masked compares. Conditional jumps reach 255 instructions; longer spans go through JA
//! trampolines, and any offset that still does not fit is an error, never a saturated jump.

use std::collections::BTreeMap;

use seccompiler::sock_filter;

/// What one syscall number gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    KillProcess,
    Errno(u32),
    Log,
    /// Stop for the tracer (`stockade learn`), with this value in the event message.
    Trace(u16),
    /// Decided by the rules in `Policy::conditions[i]`.
    Conditional(usize),
}

/// One argument compare: `(arg & mask) == value`. With `low32` only the low 32 bits are read:
/// the kernel reads `int` and `unsigned int` arguments (socket's domain, ioctl's request, send
/// flags) as 32 bits, so a compare that also looked at the high half would let a caller slip
/// past a deny rule by setting bits the kernel ignores (CVE-2019-10063).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check {
    pub arg: u8,
    pub mask: u64,
    pub value: u64,
    pub low32: bool,
}

impl Check {
    /// Exact 64-bit equality (fail closed for allow rules: extra high bits never match).
    pub fn equals(arg: u8, value: u64) -> Check {
        Check {
            arg,
            mask: u64::MAX,
            value,
            low32: false,
        }
    }

    /// None of `mask`'s bits set.
    pub fn bits_clear(arg: u8, mask: u64, low32: bool) -> Check {
        Check {
            arg,
            mask,
            value: 0,
            low32,
        }
    }

    /// Does the argument match? The reference semantics the program must implement.
    pub fn matches(&self, args: &[u64; 6]) -> bool {
        let v = args[usize::from(self.arg)];
        let v = if self.low32 { v & 0xffff_ffff } else { v };
        v & self.mask == self.value
    }

    /// Can both hold at once? (Used to drop rules that can never match.)
    pub fn compatible(&self, other: &Check) -> bool {
        if self.arg != other.arg {
            return true;
        }
        let width = |c: &Check| if c.low32 { 0xffff_ffff } else { u64::MAX };
        let common = self.mask & other.mask & width(self) & width(other);
        self.value & common == other.value & common
    }

    fn validate(&self) -> Result<(), String> {
        if self.arg > 5 {
            return Err(format!("argument index {} is not 0..=5", self.arg));
        }
        if self.value & !self.mask != 0 {
            return Err(format!(
                "value {:#x} has bits outside the mask {:#x}: the compare could never match",
                self.value, self.mask
            ));
        }
        if self.low32 && self.mask > 0xffff_ffff {
            return Err(format!(
                "mask {:#x} is wider than the 32 bits compared",
                self.mask
            ));
        }
        Ok(())
    }
}

/// All checks hold (AND) → `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub checks: Vec<Check>,
    pub action: Action,
}

/// Ordered rules, first match wins; `otherwise` when none matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub otherwise: Action,
}

impl Rules {
    /// The reference semantics: what the program must answer for these arguments.
    pub fn decide(&self, args: &[u64; 6]) -> Action {
        self.rules
            .iter()
            .find(|r| r.checks.iter().all(|c| c.matches(args)))
            .map_or(self.otherwise, |r| r.action)
    }
}

pub struct Policy {
    /// Actions by syscall number; every other number gets `default`.
    pub actions: BTreeMap<u32, Action>,
    pub default: Action,
    /// For `Action::Conditional(i)`.
    pub conditions: Vec<Rules>,
    /// AUDIT_ARCH_* of the native architecture; anything else is killed.
    pub arch: u32,
}

// Classic BPF opcodes (linux/bpf_common.h).
const LD_W_ABS: u16 = 0x20;
const ALU_AND_K: u16 = 0x54;
const JMP_JA: u16 = 0x05;
const JMP_JEQ_K: u16 = 0x15;
const JMP_JGE_K: u16 = 0x35;
const JMP_JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;

const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARGS: u32 = 16;

/// x32 syscall numbers have this bit set and share x86_64's audit arch.
pub const X32_BIT: u32 = 0x4000_0000;
/// The kernel's limit on a program's length.
pub const MAX_LEN: usize = 4096;
/// Checks per stretch of a rule before a trampoline: at most 5 instructions each, so every
/// conditional jump inside a stretch stays well under 255.
const CHECKS_PER_STRETCH: usize = 40;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_TRACE: u32 = 0x7ff0_0000;
const RET_ERRNO: u32 = 0x0005_0000;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The return value of a constant action; a conditional one has none (it is expanded).
pub fn ret_value(a: Action) -> Result<u32, String> {
    match a {
        Action::Allow => Ok(RET_ALLOW),
        Action::KillProcess => Ok(RET_KILL_PROCESS),
        Action::Errno(e) if e <= 4095 => Ok(RET_ERRNO | e),
        Action::Errno(e) => Err(format!("errno {e} is out of range")),
        Action::Log => Ok(RET_LOG),
        Action::Trace(d) => Ok(RET_TRACE | u32::from(d)),
        Action::Conditional(i) => Err(format!("conditional action {i} has no return value")),
    }
}

/// The learning filter: every syscall of every architecture stops for the tracer.
pub fn learn_program() -> Vec<sock_filter> {
    vec![stmt(RET_K, RET_TRACE)]
}

/// `prog` with one call let through ahead of it: `write` to `fd`, the launcher's report of a
/// failed exec, which is stockade's own and must neither be recorded by the learner nor refused
/// by a replayed profile that lacks `write`. The fd is close-on-exec, so the server never holds
/// it.
pub fn with_report_write(arch: u32, write: u32, fd: u32, prog: &[sock_filter]) -> Vec<sock_filter> {
    let mut out = vec![
        stmt(LD_W_ABS, OFFSET_ARCH),
        jump(JMP_JEQ_K, arch, 0, 5),
        stmt(LD_W_ABS, OFFSET_NR),
        jump(JMP_JEQ_K, write, 0, 3),
        stmt(LD_W_ABS, OFFSET_ARGS),
        jump(JMP_JEQ_K, fd, 0, 1),
        stmt(RET_K, RET_ALLOW),
    ];
    out.extend_from_slice(prog);
    out
}

/// Build the program. Fails if a rule is malformed, a jump cannot be encoded, or the program
/// would exceed the kernel's length limit.
pub fn program(p: &Policy) -> Result<Vec<sock_filter>, String> {
    let mut out = vec![
        stmt(LD_W_ABS, OFFSET_ARCH),
        jump(JMP_JEQ_K, p.arch, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, OFFSET_NR),
        jump(JMP_JGE_K, X32_BIT, 0, 1),
        stmt(RET_K, RET_KILL_PROCESS),
    ];
    out.extend(tree(p, &segments(p))?);
    if out.len() >= MAX_LEN {
        return Err(format!(
            "seccomp program of {} instructions exceeds the kernel's {MAX_LEN}",
            out.len()
        ));
    }
    Ok(out)
}

/// Ranges `[start, next start)` of numbers with one action, covering 0..X32_BIT. A conditional
/// range holds exactly one number.
fn segments(p: &Policy) -> Vec<(u32, Action)> {
    fn push(segs: &mut Vec<(u32, Action)>, start: u32, a: Action) {
        let same = segs
            .last()
            .is_some_and(|(_, b)| *b == a && !matches!(a, Action::Conditional(_)));
        if !same {
            segs.push((start, a));
        }
    }
    let mut segs = Vec::new();
    let mut next = 0u32;
    for (&nr, &a) in p.actions.range(..X32_BIT) {
        if nr > next {
            push(&mut segs, next, p.default);
        }
        push(&mut segs, nr, a);
        next = nr + 1;
    }
    if next < X32_BIT || segs.is_empty() {
        push(&mut segs, next, p.default);
    }
    segs
}

/// Binary search: `A` holds the syscall number at every node (only leaves load arguments).
fn tree(p: &Policy, segs: &[(u32, Action)]) -> Result<Vec<sock_filter>, String> {
    if segs.len() == 1 {
        return leaf(p, segs[0].1);
    }
    let mid = segs.len() / 2;
    let left = tree(p, &segs[..mid])?;
    let right = tree(p, &segs[mid..])?;
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        Ok(skip) => out.push(jump(JMP_JGE_K, segs[mid].0, skip, 0)),
        Err(_) => {
            // Conditional jumps reach 255 instructions; a JA takes the long way round.
            let skip = u32::try_from(left.len()).map_err(|_| "jump too long".to_string())?;
            out.push(jump(JMP_JGE_K, segs[mid].0, 0, 1));
            out.push(stmt(JMP_JA, skip));
        }
    }
    out.extend(left);
    out.extend(right);
    Ok(out)
}

fn leaf(p: &Policy, a: Action) -> Result<Vec<sock_filter>, String> {
    let Action::Conditional(i) = a else {
        return Ok(vec![stmt(RET_K, ret_value(a)?)]);
    };
    let rules = p
        .conditions
        .get(i)
        .ok_or_else(|| format!("conditional action {i} has no rules"))?;
    let mut out = Vec::new();
    for rule in &rules.rules {
        out.extend(rule_code(rule)?);
    }
    out.push(stmt(RET_K, ret_value(rules.otherwise)?));
    Ok(out)
}

/// Where a conditional jump goes when a check fails.
#[derive(Clone, Copy)]
enum Fail {
    /// Not a failure exit: the jump's own offset.
    Keep,
    /// The end of the current stretch (its trampoline, or the end of the rule).
    Out,
}

/// One rule: its checks in stretches, then RET. A failed check leaves the rule: within the last
/// stretch straight to the end, in an earlier one through that stretch's trampoline
/// (`JA +1; JA end`), so no conditional jump spans more than one stretch.
fn rule_code(rule: &Rule) -> Result<Vec<sock_filter>, String> {
    let ret = ret_value(rule.action)?;
    let stretches: Vec<&[Check]> = rule.checks.chunks(CHECKS_PER_STRETCH).collect();
    // Each stretch: instructions with symbolic failure exits, resolved once its length is known.
    let mut code: Vec<Vec<(sock_filter, Fail, Fail)>> = Vec::new();
    for stretch in &stretches {
        let mut s = Vec::new();
        for c in *stretch {
            c.validate()?;
            let lo = OFFSET_ARGS + 8 * u32::from(c.arg);
            // x86_64 and aarch64 are little-endian: the low half comes first.
            let mut halves = vec![(lo, c.mask as u32, c.value as u32)];
            if !c.low32 {
                halves.push((lo + 4, (c.mask >> 32) as u32, (c.value >> 32) as u32));
            }
            for (offset, mask, value) in halves {
                if mask == 0 {
                    continue; // validate() made value 0 too: nothing to compare
                }
                s.push((stmt(LD_W_ABS, offset), Fail::Keep, Fail::Keep));
                if value == 0 && mask != u32::MAX {
                    // Bits clear: any of them set fails.
                    s.push((jump(JMP_JSET_K, mask, 0, 0), Fail::Out, Fail::Keep));
                } else {
                    if mask != u32::MAX {
                        s.push((stmt(ALU_AND_K, mask), Fail::Keep, Fail::Keep));
                    }
                    s.push((jump(JMP_JEQ_K, value, 0, 0), Fail::Keep, Fail::Out));
                }
            }
        }
        code.push(s);
    }
    // Length of everything after stretch k up to the end of the rule (the RET included).
    let trampoline = 2;
    let mut out = Vec::new();
    let n = code.len();
    for (k, s) in code.iter().enumerate() {
        let last = k + 1 == n;
        let len = s.len();
        for (at, (ins, jt, jf)) in s.iter().enumerate() {
            // From the instruction after this one to the exit: the rest of the stretch, then
            // (last stretch) the RET, or (earlier) the `JA +1` to land on the trampoline's JA.
            let to_exit = len - at - 1 + 1;
            let resolve = |f: Fail, own: u8| -> Result<u8, String> {
                match f {
                    Fail::Keep => Ok(own),
                    Fail::Out => u8::try_from(to_exit)
                        .map_err(|_| format!("jump of {to_exit} instructions cannot be encoded")),
                }
            };
            out.push(jump(
                ins.code,
                ins.k,
                resolve(*jt, ins.jt)?,
                resolve(*jf, ins.jf)?,
            ));
        }
        if !last {
            // Success skips the trampoline; the trampoline jumps past the rest of the rule.
            let rest: usize =
                code[k + 1..].iter().map(Vec::len).sum::<usize>() + trampoline * (n - k - 2) + 1;
            out.push(stmt(JMP_JA, 1));
            out.push(stmt(
                JMP_JA,
                u32::try_from(rest).map_err(|_| "jump too long".to_string())?,
            ));
        }
    }
    out.push(stmt(RET_K, ret));
    Ok(out)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A classic-BPF interpreter for the instructions `program` emits, to check the layout over
    /// every syscall number (the kernel tests check the installed result).
    pub fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        for (i, a) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        let word = |off: u32| {
            let o = off as usize;
            u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]])
        };
        let (mut pc, mut acc) = (0usize, 0u32);
        for _ in 0..100_000 {
            let i = &prog[pc];
            match i.code {
                LD_W_ABS => acc = word(i.k),
                ALU_AND_K => acc &= i.k,
                RET_K => return i.k,
                JMP_JA => pc += i.k as usize,
                JMP_JEQ_K | JMP_JGE_K | JMP_JSET_K => {
                    let t = match i.code {
                        JMP_JEQ_K => acc == i.k,
                        JMP_JGE_K => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += usize::from(if t { i.jt } else { i.jf });
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
            pc += 1;
        }
        panic!("no RET within 100000 steps");
    }

    /// What the policy means, without BPF: the program must answer exactly this.
    pub fn reference(p: &Policy, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        if arch != p.arch || nr >= X32_BIT {
            return RET_KILL_PROCESS;
        }
        let a = p.actions.get(&nr).copied().unwrap_or(p.default);
        let a = match a {
            Action::Conditional(i) => p.conditions[i].decide(&args),
            a => a,
        };
        ret_value(a).unwrap()
    }

    const ARCH: u32 = 0xc000_003e;
    const ENOSYS: Action = Action::Errno(38);

    fn low(arg: u8, mask: u64, value: u64) -> Check {
        Check {
            arg,
            mask,
            value,
            low32: true,
        }
    }

    fn policy() -> Policy {
        let mut actions = BTreeMap::new();
        for nr in [0, 1, 2, 3, 9, 10, 11, 60, 231] {
            actions.insert(nr, Action::Allow);
        }
        for nr in [101, 165, 272, 425] {
            actions.insert(nr, Action::KillProcess);
        }
        actions.insert(435, ENOSYS);
        actions.insert(41, Action::Conditional(0));
        actions.insert(56, Action::Conditional(1));
        actions.insert(16, Action::Conditional(2));
        let allow = |checks| Rule {
            checks,
            action: Action::Allow,
        };
        Policy {
            actions,
            default: ENOSYS,
            conditions: vec![
                // socket: AF_UNIX any type; AF_INET stream (type masked) with protocol 0 or 6;
                // other AF_INET types EPROTONOSUPPORT; everything else EAFNOSUPPORT.
                Rules {
                    rules: vec![
                        allow(vec![low(0, 0xffff_ffff, 1)]),
                        allow(vec![
                            low(0, 0xffff_ffff, 2),
                            low(1, 0xf, 1),
                            low(2, 0xffff_ffff, 0),
                        ]),
                        allow(vec![
                            low(0, 0xffff_ffff, 2),
                            low(1, 0xf, 1),
                            low(2, 0xffff_ffff, 6),
                        ]),
                        Rule {
                            checks: vec![low(0, 0xffff_ffff, 2)],
                            action: Action::Errno(93),
                        },
                    ],
                    otherwise: Action::Errno(97),
                },
                // clone: no namespace flags (64-bit).
                Rules {
                    rules: vec![allow(vec![Check::bits_clear(0, 0x7E02_0000, false)])],
                    otherwise: ENOSYS,
                },
                // ioctl: TIOCSTI and TIOCLINUX refused on the low 32 bits, the rest allowed.
                Rules {
                    rules: vec![
                        Rule {
                            checks: vec![low(1, 0xffff_ffff, 0x5412)],
                            action: Action::Errno(1),
                        },
                        Rule {
                            checks: vec![low(1, 0xffff_ffff, 0x541c)],
                            action: Action::Errno(1),
                        },
                    ],
                    otherwise: Action::Allow,
                },
            ],
            arch: ARCH,
        }
    }

    /// Argument values that sit on every edge the checks above care about.
    fn corpus() -> Vec<u64> {
        let mut v = vec![
            0, 1, 2, 3, 5, 6, 10, 16, 17, 0x5412, 0x541c, 0x5413, 0x20000000,
        ];
        v.extend([
            0x801,
            0x80001,
            0x80801,
            0x81,
            0x11,
            0x7E02_0000,
            0x0011_0000,
            0x1000_0000,
        ]);
        let base = v.clone();
        for x in base {
            v.push(x | (1 << 32));
            v.push(x | 0xffff_ffff_0000_0000);
        }
        v
    }

    #[test]
    fn every_number_and_argument_gets_its_action() {
        let p = policy();
        let prog = program(&p).unwrap();
        for nr in 0..1024u32 {
            assert_eq!(
                run(&prog, ARCH, nr, [0; 6]),
                reference(&p, ARCH, nr, [0; 6]),
                "nr {nr}"
            );
        }
        let c = corpus();
        for nr in [41u32, 56, 16] {
            for a in &c {
                for b in &c {
                    for d in [0u64, 6, 17, 132, 262, 1 << 32 | 6] {
                        let args = [*a, *b, d, 0, 0, 0];
                        assert_eq!(
                            run(&prog, ARCH, nr, args),
                            reference(&p, ARCH, nr, args),
                            "nr {nr} args {args:x?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn deny_rules_read_only_the_low_32_bits() {
        let p = policy();
        let prog = program(&p).unwrap();
        let eperm = ret_value(Action::Errno(1)).unwrap();
        for req in [0x5412u64, 0x541c, (1 << 32) | 0x5412, 0xdead_beef_0000_541c] {
            assert_eq!(
                run(&prog, ARCH, 16, [0, req, 0, 0, 0, 0]),
                eperm,
                "{req:#x}"
            );
        }
        assert_eq!(run(&prog, ARCH, 16, [0, 0x5413, 0, 0, 0, 0]), RET_ALLOW);
        // Allow rules compare the low half too: AF_INET with junk above is AF_INET, type masked.
        assert_eq!(
            run(&prog, ARCH, 41, [2 | (1 << 32), 0x80801, 6, 0, 0, 0]),
            RET_ALLOW
        );
        assert_eq!(
            run(&prog, ARCH, 41, [2, 2, 0, 0, 0, 0]),
            ret_value(Action::Errno(93)).unwrap()
        );
        assert_eq!(
            run(&prog, ARCH, 41, [2, 1, 262, 0, 0, 0]),
            ret_value(Action::Errno(93)).unwrap()
        );
        assert_eq!(
            run(&prog, ARCH, 41, [16, 3, 0, 0, 0, 0]),
            ret_value(Action::Errno(97)).unwrap()
        );
        assert_eq!(run(&prog, ARCH, X32_BIT | 39, [0; 6]), RET_KILL_PROCESS);
        assert_eq!(run(&prog, 0x4000_0003, 20, [0; 6]), RET_KILL_PROCESS);
    }

    /// A small deterministic generator: random policies against the reference semantics.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_check(r: &mut Rng) -> Check {
        let low32 = r.below(2) == 0;
        let width = if low32 { 0xffff_ffff } else { u64::MAX };
        let mask = match r.below(4) {
            0 => width,
            1 => 0xf,
            2 => 0x2000_0000,
            _ => r.next() & width,
        };
        let value = match r.below(3) {
            0 => 0,
            1 => mask,
            _ => r.next() & mask,
        };
        Check {
            arg: r.below(3) as u8,
            mask,
            value,
            low32,
        }
    }

    fn interesting(r: &mut Rng, checks: &[Check]) -> [u64; 6] {
        // Mostly values that satisfy some check, with noise in the high half or low bits.
        let mut args = [0u64; 6];
        for a in args.iter_mut().take(3) {
            *a = match (
                r.below(4),
                checks.get(r.below(checks.len().max(1) as u64) as usize),
            ) {
                (0, _) | (_, None) => r.next(),
                (1, Some(c)) => c.value | (r.next() << 32),
                (2, Some(c)) => c.value ^ (1 << r.below(64)),
                (_, Some(c)) => c.value,
            };
        }
        args
    }

    #[test]
    fn random_rules_match_the_reference() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let mut actions = BTreeMap::new();
            let mut conditions = Vec::new();
            let mut all = Vec::new();
            for nr in 0..4u32 {
                let mut rules = Vec::new();
                for _ in 0..r.below(5) {
                    let checks: Vec<Check> = (0..r.below(if round % 10 == 0 { 90 } else { 5 }))
                        .map(|_| random_check(&mut r))
                        .collect();
                    all.extend(checks.clone());
                    let action = [Action::Allow, Action::Errno(97), Action::KillProcess]
                        [r.below(3) as usize];
                    rules.push(Rule { checks, action });
                }
                actions.insert(nr * 7, Action::Conditional(conditions.len()));
                conditions.push(Rules {
                    rules,
                    otherwise: Action::Errno(38),
                });
            }
            let p = Policy {
                actions,
                default: Action::Errno(1),
                conditions,
                arch: ARCH,
            };
            let prog = program(&p).unwrap();
            for _ in 0..200 {
                let nr = r.below(4) as u32 * 7;
                let args = interesting(&mut r, &all);
                assert_eq!(
                    run(&prog, ARCH, nr, args),
                    reference(&p, ARCH, nr, args),
                    "round {round} nr {nr} args {args:x?}"
                );
            }
        }
    }

    /// The review's finding: 65 ANDed checks on one syscall let a call through when the last one
    /// failed, because the failure jump saturated at 255 instead of leaving the rule.
    #[test]
    fn long_rules_never_let_a_failed_check_through() {
        for (n, at) in [39usize, 40, 41, 64, 65, 66, 80, 81, 200, 500]
            .into_iter()
            .flat_map(|n| [0, 1, n / 2, n - 2, n - 1].map(|at| (n, at)))
        {
            // Every check on arg 0 but one, at `at`, on arg 1.
            // Equality and bits-clear checks mixed: on b33bc58 a saturated jump landed on a
            // JSET with the failed value still loaded and carried on.
            let mut checks: Vec<Check> = (0..n)
                .map(|i| {
                    if i % 3 == 0 {
                        Check::bits_clear(0, 0x100, false)
                    } else {
                        Check::equals(0, 0)
                    }
                })
                .collect();
            checks[at] = Check::equals(1, 0);
            let mut actions = BTreeMap::new();
            actions.insert(110, Action::Conditional(0));
            let p = Policy {
                actions,
                default: ENOSYS,
                conditions: vec![Rules {
                    rules: vec![Rule {
                        checks,
                        action: Action::Allow,
                    }],
                    otherwise: ENOSYS,
                }],
                arch: ARCH,
            };
            let prog = program(&p).unwrap();
            let enosys = ret_value(ENOSYS).unwrap();
            let what = format!("{n} checks, failing at {at}");
            assert_eq!(run(&prog, ARCH, 110, [0, 7, 0, 0, 0, 0]), enosys, "{what}");
            assert_eq!(run(&prog, ARCH, 110, [1, 0, 0, 0, 0, 0]), enosys, "{what}");
            assert_eq!(
                run(&prog, ARCH, 110, [0x100, 0, 0, 0, 0, 0]),
                enosys,
                "{what}"
            );
            assert_eq!(run(&prog, ARCH, 110, [0; 6]), RET_ALLOW, "{what}");
        }
    }

    #[test]
    fn malformed_rules_are_errors_not_guesses() {
        let one = |c: Check| {
            let mut actions = BTreeMap::new();
            actions.insert(1, Action::Conditional(0));
            program(&Policy {
                actions,
                default: ENOSYS,
                conditions: vec![Rules {
                    rules: vec![Rule {
                        checks: vec![c],
                        action: Action::Allow,
                    }],
                    otherwise: ENOSYS,
                }],
                arch: ARCH,
            })
        };
        assert!(
            one(low(0, 0xf, 0x10))
                .unwrap_err()
                .contains("outside the mask")
        );
        assert!(one(low(0, 1 << 40, 0)).unwrap_err().contains("wider than"));
        assert!(one(Check::equals(6, 0)).unwrap_err().contains("not 0..=5"));
        // A conditional action that points nowhere, or an errno out of range.
        let mut actions = BTreeMap::new();
        actions.insert(1, Action::Conditional(3));
        let p = Policy {
            actions,
            default: ENOSYS,
            conditions: vec![],
            arch: ARCH,
        };
        assert!(program(&p).unwrap_err().contains("no rules"));
        assert!(ret_value(Action::Errno(5000)).is_err());
        assert!(ret_value(Action::Conditional(0)).is_err());
    }

    #[test]
    fn long_branches_use_ja() {
        // Alternate allow/kill over 600 numbers: subtrees longer than 255 instructions.
        let actions = (0..600u32)
            .map(|n| {
                (
                    n,
                    if n % 2 == 0 {
                        Action::Allow
                    } else {
                        Action::KillProcess
                    },
                )
            })
            .collect();
        let p = Policy {
            actions,
            default: ENOSYS,
            conditions: vec![],
            arch: ARCH,
        };
        let prog = program(&p).unwrap();
        assert!(prog.iter().any(|i| i.code == JMP_JA));
        for nr in 0..700u32 {
            assert_eq!(
                run(&prog, ARCH, nr, [0; 6]),
                reference(&p, ARCH, nr, [0; 6]),
                "nr {nr}"
            );
        }
    }
}
