//! The seccomp program generator (`bpf::program`) against a plain table lookup.
//!
//! A random policy (actions per syscall number, a default, argument-checked alternatives) is
//! compiled; the program must pass the kernel's load-time checks (`bpf_interp::validate`) and, run
//! through `bpf_interp::run` for every syscall number that can behave differently (each policy
//! entry and the number after it (between two entries every number behaves alike), 0..=16, random
//! numbers, the x32 and 32-bit boundaries), under the native and foreign
//! architectures, with random arguments and arguments built to satisfy each alternative, return
//! exactly what `reference` (below: a lookup in the policy, no BPF) says.
//!
//! The policy has ordered rules per conditional number (first match wins, each with its own
//! action, `otherwise` when none matches) of masked compares, 64-bit or on the low 32 bits.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use stockade::bpf::{self, Action, Check, Policy, Rule, Rules, X32_BIT};
use stockade::bpf_interp::{self, Data};

const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
const AUDIT_ARCH_I386: u32 = 0x4000_0003;

const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_LOG: u32 = 0x7ffc_0000;
const RET_ERRNO: u32 = 0x0005_0000;

/// Little-endian reader that yields zeros once the input is used up.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// Action byte: low 3 bits choose the kind; Errno takes a u16, Conditional a u8 index.
fn action(b: &mut Bytes, conditional: bool) -> Action {
    match b.u8() % if conditional { 6 } else { 5 } {
        0 => Action::Allow,
        1 => Action::KillProcess,
        2 => Action::Errno(u32::from(b.u16() % 4096)),
        3 => Action::Log,
        4 => Action::Trace(b.u16()),
        _ => Action::Conditional(usize::from(b.u8())),
    }
}

/// Format: arch byte; default action; condition count, then per condition an `otherwise`
/// action, a rule count, per rule an action and a check count, per check a byte (bit 0 low32,
/// rest arg % 6) and two u64 (mask, value; the value is cut to the mask so the check is valid);
/// then entries to the end: a number (u16, or u32 when the byte before says so) and an action.
fn decode(data: &[u8]) -> Policy {
    let mut b = Bytes(data);
    let arch = match b.u8() % 4 {
        0 => AUDIT_ARCH_X86_64,
        1 => AUDIT_ARCH_AARCH64,
        2 => AUDIT_ARCH_I386,
        _ => b.u32(),
    };
    let default = action(&mut b, false);
    let mut conditions = Vec::new();
    for _ in 0..b.u8() % 8 {
        let otherwise = action(&mut b, false);
        let mut rules = Vec::new();
        for _ in 0..b.u8() % 8 {
            let act = action(&mut b, false);
            let mut checks = Vec::new();
            for _ in 0..b.u8() {
                let k = b.u8();
                let low32 = k & 1 == 1;
                let arg = (k >> 1) % 6;
                let mut mask = b.u64();
                if low32 {
                    mask &= 0xffff_ffff;
                }
                let value = b.u64() & mask;
                checks.push(Check {
                    arg,
                    mask,
                    value,
                    low32,
                });
            }
            rules.push(Rule {
                checks,
                action: act,
            });
        }
        conditions.push(Rules { rules, otherwise });
    }
    let mut actions = BTreeMap::new();
    while !b.done() && actions.len() < 128 {
        let nr = match b.u8() {
            0xff => b.u32(),
            0xfe => X32_BIT - 1 - u32::from(b.u16()),
            _ => u32::from(b.u16() % 1024),
        };
        actions.insert(nr, action(&mut b, true));
    }
    Policy {
        actions,
        default,
        conditions,
        arch,
    }
}

fn holds(c: &Check, args: &[u64; 6]) -> bool {
    let v = args[usize::from(c.arg)];
    let v = if c.low32 { v & 0xffff_ffff } else { v };
    v & c.mask == c.value
}

fn ret(a: Action) -> u32 {
    match a {
        Action::Allow => RET_ALLOW,
        Action::KillProcess => RET_KILL_PROCESS,
        Action::Errno(e) => RET_ERRNO | e,
        Action::Log => RET_LOG,
        Action::Trace(d) => 0x7ff0_0000 | u32::from(d),
        Action::Conditional(_) => unreachable!("resolved by reference()"),
    }
}

/// What the policy says, without BPF.
fn reference(p: &Policy, d: &Data) -> u32 {
    if d.arch != p.arch || d.nr >= X32_BIT {
        return RET_KILL_PROCESS;
    }
    match p.actions.get(&d.nr).copied().unwrap_or(p.default) {
        Action::Conditional(i) => match p.conditions.get(i) {
            Some(r) => ret(r
                .rules
                .iter()
                .find(|rule| rule.checks.iter().all(|c| holds(c, &d.args)))
                .map_or(r.otherwise, |rule| rule.action)),
            None => RET_KILL_PROCESS,
        },
        a => ret(a),
    }
}

fuzz_target!(|data: &[u8]| {
    // The last 58 bytes seed the argument values and three syscall numbers.
    let split = data.len().saturating_sub(58);
    let p = decode(&data[..split]);
    let mut seed = Bytes(&data[split..]);
    let random: [u64; 6] = std::array::from_fn(|_| seed.u64());

    // A refusal (too long, too many checks) fails closed: nothing to compare.
    let Ok(prog) = bpf::program(&p) else {
        return;
    };
    if let Err(e) = bpf_interp::validate(&prog) {
        panic!("the kernel would refuse the program: {e}");
    }

    let mut nrs: Vec<u32> = (0..=16).collect();
    nrs.extend([seed.u16().into(), seed.u32() % X32_BIT, seed.u32()]);
    // Segments start at an entry or right after one: these numbers cover every segment.
    for &nr in p.actions.keys() {
        nrs.extend([nr, nr.wrapping_add(1)]);
    }
    nrs.extend([X32_BIT - 1, X32_BIT, X32_BIT | 1, u32::MAX, 0x8000_0000]);
    let arches = [
        p.arch,
        p.arch ^ 1,
        AUDIT_ARCH_X86_64,
        AUDIT_ARCH_I386,
        AUDIT_ARCH_AARCH64,
    ];

    for (n, &nr) in nrs.iter().enumerate() {
        // Arguments: random; for a conditional number also zero, and one set built to satisfy each alternative, plus the same
        // with the high half of the first checked argument flipped.
        let cond = match p.actions.get(&nr).copied().unwrap_or(p.default) {
            Action::Conditional(i) if nr < X32_BIT => p.conditions.get(i),
            _ => None,
        };
        let mut arg_sets = vec![random];
        if cond.is_some() {
            arg_sets.push([0; 6]);
        }
        for rule in cond.into_iter().flat_map(|r| r.rules.iter()) {
            let mut a = random;
            for c in &rule.checks {
                let i = usize::from(c.arg);
                a[i] = (a[i] & !c.mask) | c.value;
            }
            arg_sets.push(a);
            if let Some(c) = rule.checks.first() {
                let mut flipped = a;
                flipped[usize::from(c.arg)] ^= 1 << 32;
                arg_sets.push(flipped);
            }
        }
        for &arch in &arches {
            // The architecture check comes first: a few numbers suffice for foreign ones.
            let sets: &[[u64; 6]] = match arch == p.arch {
                true => &arg_sets,
                false if n < 4 => &arg_sets[..1],
                false => &[],
            };
            for args in sets {
                let d = Data {
                    nr,
                    arch,
                    instruction_pointer: 0,
                    args: *args,
                };
                let got = bpf_interp::run(&prog, &d).unwrap_or_else(|e| panic!("{e}"));
                let want = reference(&p, &d);
                assert_eq!(
                    got, want,
                    "nr {nr} arch {arch:#x} args {args:x?}: program returns {got:#x}, policy says {want:#x}\npolicy: default {:?}, actions {:?}, conditions {:?}",
                    p.default, p.actions, p.conditions
                );
            }
        }
    }
});
