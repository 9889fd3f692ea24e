//! A classic-BPF interpreter and load-time checker for seccomp programs, independent of the
//! generator in `bpf`: the unit tests and fuzz/ (target `seccomp_bpf`) run `bpf::program`'s
//! output through it and compare with a plain lookup of the policy. It follows the kernel
//! (`bpf_check_classic` and `seccomp_check_filter`): the checker refuses what the kernel would
//! refuse to load, and `run` answers what the kernel would return for one `seccomp_data`.

use seccompiler::sock_filter;

/// `struct seccomp_data` (little-endian, as on x86_64 and aarch64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Data {
    pub nr: u32,
    pub arch: u32,
    pub instruction_pointer: u64,
    pub args: [u64; 6],
}

/// `sizeof(struct seccomp_data)`.
pub const DATA_LEN: u32 = 64;
/// BPF_MAXINSNS.
pub const MAX_INSNS: usize = 4096;
const MEM_WORDS: u32 = 16;

// linux/bpf_common.h classes, sizes, modes, operations and sources.
const LD: u16 = 0x00;
const LDX: u16 = 0x01;
const ST: u16 = 0x02;
const STX: u16 = 0x03;
const ALU: u16 = 0x04;
const JMP: u16 = 0x05;
const RET: u16 = 0x06;
const MISC: u16 = 0x07;
const W: u16 = 0x00;
const IMM: u16 = 0x00;
const ABS: u16 = 0x20;
const MEM: u16 = 0x60;
const LEN: u16 = 0x80;
const K: u16 = 0x00;
const X: u16 = 0x08;
const A: u16 = 0x10;
const ADD: u16 = 0x00;
const SUB: u16 = 0x10;
const MUL: u16 = 0x20;
const DIV: u16 = 0x30;
const OR: u16 = 0x40;
const AND: u16 = 0x50;
const LSH: u16 = 0x60;
const RSH: u16 = 0x70;
const NEG: u16 = 0x80;
const XOR: u16 = 0xa0;
const JA: u16 = 0x00;
const JEQ: u16 = 0x10;
const JGT: u16 = 0x20;
const JGE: u16 = 0x30;
const JSET: u16 = 0x40;
const TAX: u16 = 0x00;
const TXA: u16 = 0x80;

impl Data {
    fn bytes(&self) -> [u8; DATA_LEN as usize] {
        let mut b = [0u8; DATA_LEN as usize];
        b[0..4].copy_from_slice(&self.nr.to_le_bytes());
        b[4..8].copy_from_slice(&self.arch.to_le_bytes());
        b[8..16].copy_from_slice(&self.instruction_pointer.to_le_bytes());
        for (i, a) in self.args.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        b
    }
}

fn word(b: &[u8], offset: u32) -> Option<u32> {
    let o = usize::try_from(offset).ok()?;
    let w = b.get(o..o.checked_add(4)?)?;
    Some(u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

/// What the kernel checks before it installs a seccomp program: length, known opcodes (the
/// seccomp subset), aligned in-bounds `seccomp_data` loads, scratch indices, no division by
/// constant zero or oversized shifts, jumps that land inside the program, a RET at the end.
pub fn validate(prog: &[sock_filter]) -> Result<(), String> {
    if prog.is_empty() || prog.len() > MAX_INSNS {
        return Err(format!("length {} outside 1..={MAX_INSNS}", prog.len()));
    }
    for (pc, i) in prog.iter().enumerate() {
        let bad = |why: &str| Err(format!("instruction {pc} (code {:#06x}): {why}", i.code));
        let target = |off: u32| pc as u64 + 1 + u64::from(off) < prog.len() as u64;
        match i.code {
            c if c == LD | W | ABS => {
                if i.k % 4 != 0 || i.k >= DATA_LEN {
                    return bad("load outside seccomp_data or unaligned");
                }
            }
            c if c == LD | W | LEN || c == LDX | W | LEN => {}
            c if c == LD | IMM || c == LDX | IMM => {}
            c if c == LD | MEM || c == LDX | MEM || c == ST || c == STX => {
                if i.k >= MEM_WORDS {
                    return bad("scratch index out of range");
                }
            }
            c if c & 0x07 == ALU => {
                let (op, src) = (c & 0xf0, c & X);
                if c & !0xf8 != ALU
                    || !matches!(op, ADD | SUB | MUL | DIV | OR | AND | LSH | RSH | NEG | XOR)
                {
                    return bad("unknown ALU operation");
                }
                if src == K && op == DIV && i.k == 0 {
                    return bad("division by constant zero");
                }
                if src == K && matches!(op, LSH | RSH) && i.k >= 32 {
                    return bad("shift by 32 or more");
                }
            }
            c if c == JMP | JA => {
                if !target(i.k) {
                    return bad("JA lands outside the program");
                }
            }
            c if c & 0x07 == JMP => {
                if c & !0xf8 != JMP || !matches!(c & 0xf0, JEQ | JGT | JGE | JSET) {
                    return bad("unknown jump");
                }
                if !target(u32::from(i.jt)) || !target(u32::from(i.jf)) {
                    return bad("conditional jump lands outside the program");
                }
            }
            c if c == RET | K || c == RET | A => {}
            c if c == MISC | TAX || c == MISC | TXA => {}
            _ => return bad("opcode not allowed in seccomp programs"),
        }
    }
    match prog.last().map(|i| i.code) {
        Some(c) if c == RET | K || c == RET | A => Ok(()),
        _ => Err("the last instruction is not a RET".into()),
    }
}

/// The value the program returns for `d`. Errors on what `validate` refuses (reached at run
/// time) and on a read of a scratch word never written (the kernel refuses that at load).
pub fn run(prog: &[sock_filter], d: &Data) -> Result<u32, String> {
    let bytes = d.bytes();
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [None::<u32>; MEM_WORDS as usize];
    let mut pc = 0usize;
    // Jumps only go forward, so a program ends within its length.
    loop {
        let i = prog
            .get(pc)
            .ok_or_else(|| format!("fell off the program at {pc}"))?;
        let err = |why: &str| format!("instruction {pc} (code {:#06x}): {why}", i.code);
        let slot = |k: u32| usize::try_from(k).ok().filter(|k| *k < MEM_WORDS as usize);
        let mut next = pc + 1;
        match i.code {
            c if c == LD | W | ABS => {
                if i.k % 4 != 0 {
                    return Err(err("unaligned load"));
                }
                a = word(&bytes, i.k).ok_or_else(|| err("load outside seccomp_data"))?;
            }
            c if c == LD | W | LEN => a = DATA_LEN,
            c if c == LDX | W | LEN => x = DATA_LEN,
            c if c == LD | IMM => a = i.k,
            c if c == LDX | IMM => x = i.k,
            c if c == LD | MEM || c == LDX | MEM => {
                let v = slot(i.k)
                    .and_then(|s| mem[s])
                    .ok_or_else(|| err("read of an unwritten scratch word"))?;
                if c == LD | MEM {
                    a = v;
                } else {
                    x = v;
                }
            }
            c if c == ST || c == STX => {
                let s = slot(i.k).ok_or_else(|| err("scratch index out of range"))?;
                mem[s] = Some(if c == ST { a } else { x });
            }
            c if c & 0x07 == ALU => {
                let v = if c & X == X { x } else { i.k };
                a = match c & 0xf0 {
                    ADD => a.wrapping_add(v),
                    SUB => a.wrapping_sub(v),
                    MUL => a.wrapping_mul(v),
                    // Classic BPF: division by a zero X returns 0 from the whole program.
                    DIV if v == 0 => return Ok(0),
                    DIV => a / v,
                    OR => a | v,
                    AND => a & v,
                    LSH if v < 32 => a << v,
                    RSH if v < 32 => a >> v,
                    LSH | RSH => 0,
                    NEG => a.wrapping_neg(),
                    XOR => a ^ v,
                    _ => return Err(err("unknown ALU operation")),
                };
            }
            c if c == JMP | JA => next += i.k as usize,
            c if c & 0x07 == JMP => {
                let v = if c & X == X { x } else { i.k };
                let taken = match c & 0xf0 {
                    JEQ => a == v,
                    JGT => a > v,
                    JGE => a >= v,
                    JSET => a & v != 0,
                    _ => return Err(err("unknown jump")),
                };
                next += usize::from(if taken { i.jt } else { i.jf });
            }
            c if c == RET | K => return Ok(i.k),
            c if c == RET | A => return Ok(a),
            c if c == MISC | TAX => x = a,
            c if c == MISC | TXA => a = x,
            _ => return Err(err("opcode not allowed in seccomp programs")),
        }
        pc = next;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::bpf::{self, Action, Check, Policy};
    use std::collections::BTreeMap;

    fn ins(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
        sock_filter { code, jt, jf, k }
    }

    #[test]
    fn runs_loads_alu_jumps_and_scratch() {
        // A = args[1] low word & 0xff; if A == 7 return A + 1 (via scratch) else return 0.
        let prog = [
            ins(LD | W | ABS, 0, 0, 24),
            ins(ALU | AND | K, 0, 0, 0xff),
            ins(JMP | JEQ | K, 0, 4, 7),
            ins(ALU | ADD | K, 0, 0, 1),
            ins(ST, 0, 0, 3),
            ins(LD | MEM, 0, 0, 3),
            ins(RET | A, 0, 0, 0),
            ins(RET | K, 0, 0, 0),
        ];
        validate(&prog).unwrap();
        let mut d = Data::default();
        d.args[1] = 0x1207;
        assert_eq!(run(&prog, &d), Ok(8));
        d.args[1] = 0x08;
        assert_eq!(run(&prog, &d), Ok(0));
    }

    #[test]
    fn checker_refuses_what_the_kernel_refuses() {
        let ret = || ins(RET | K, 0, 0, 0);
        for bad in [
            vec![],
            vec![ins(LD | W | ABS, 0, 0, 64), ret()],
            vec![ins(LD | W | ABS, 0, 0, 2), ret()],
            vec![ins(JMP | JEQ | K, 1, 0, 0), ret()],
            vec![ins(JMP | JA, 0, 0, 1), ret()],
            vec![ins(ALU | DIV | K, 0, 0, 0), ret()],
            vec![ins(LD | W | ABS, 0, 0, 0)],
            vec![ins(0x30, 0, 0, 0), ret()],
            vec![ret(); MAX_INSNS + 1],
        ] {
            assert!(validate(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn generator_output_passes_the_checker_and_matches_the_policy() {
        let arch = 0xc000_003e;
        let mut actions = BTreeMap::new();
        actions.insert(0, Action::Allow);
        actions.insert(1, Action::KillProcess);
        actions.insert(5, Action::Conditional(0));
        let p = Policy {
            actions,
            default: Action::Errno(38),
            conditions: vec![bpf::Rules {
                rules: vec![bpf::Rule {
                    checks: vec![Check::equals(2, 1 << 40)],
                    action: Action::Allow,
                }],
                otherwise: Action::Errno(38),
            }],
            arch,
        };
        let prog = bpf::program(&p).unwrap();
        validate(&prog).unwrap();
        let call = |nr, arg2| {
            let mut d = Data {
                nr,
                arch,
                ..Data::default()
            };
            d.args[2] = arg2;
            run(&prog, &d).unwrap()
        };
        assert_eq!(call(0, 0), 0x7fff_0000);
        assert_eq!(call(1, 0), 0x8000_0000);
        assert_eq!(call(2, 0), 0x0005_0026);
        assert_eq!(call(5, 1 << 40), 0x7fff_0000);
        assert_eq!(call(5, 1), 0x0005_0026);
    }
}
