//! Just enough eBPF to load one program of our own: an assembler with labels, and the
//! `bpf(2)` commands that create an array map (memory-mapped into our process), load a
//! `BPF_PROG_TYPE_SCHED_CLS` program and attach it to an interface's ingress with a TCX
//! link (Linux ≥ 6.6).
//!
//! No compiler, no ELF, no library: the program is built here, instruction by
//! instruction (reflex.rs), so the stable toolchain and a kernel are all it takes. A TCX
//! link lives as long as its file descriptor: when the process ends — even by SIGKILL —
//! the kernel closes it and the program is gone from the interface, as the nftables
//! guard's owned table is (nothing to clean up, nothing left behind).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// Instruction classes and fields (include/uapi/linux/bpf.h, bpf_common.h).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_ST: u8 = 0x02;
const BPF_STX: u8 = 0x03;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_K: u8 = 0x00;
const BPF_X: u8 = 0x08;
const BPF_MEM: u8 = 0x60;
const BPF_IMM: u8 = 0x00;
const BPF_ATOMIC: u8 = 0xc0;
const BPF_MOV: u8 = 0xb0;
const BPF_END: u8 = 0xd0;
const BPF_TO_BE: u8 = 0x08;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;
const BPF_JA: u8 = 0x00;
/// `BPF_CMPXCHG`: compare R0 with the memory word, write src if equal; R0 gets the old.
const BPF_CMPXCHG: i32 = 0xf0 | 0x01;
/// `BPF_OR | BPF_FETCH`: or src into the memory word; src gets the old value.
const BPF_FETCH_OR: i32 = 0x40 | 0x01;
const BPF_PSEUDO_MAP_FD: u8 = 1;

/// Register numbers: R0 return value, R1–R5 arguments (clobbered by calls), R6–R9 kept
/// across calls, R10 the read-only frame pointer.
pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R3: u8 = 3;
pub const R4: u8 = 4;
pub const R5: u8 = 5;
pub const R6: u8 = 6;
pub const R7: u8 = 7;
pub const R8: u8 = 8;
pub const R9: u8 = 9;
pub const R10: u8 = 10;

/// Access sizes.
#[derive(Clone, Copy)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
    Dw = 0x18,
}

/// ALU operations (the `op` field).
#[derive(Clone, Copy)]
pub enum Alu {
    Add = 0x00,
    Sub = 0x10,
    Lsh = 0x60,
    Rsh = 0x70,
    And = 0x50,
    Or = 0x40,
    Xor = 0xa0,
}

/// Conditional jumps (unsigned comparisons).
#[derive(Clone, Copy)]
pub enum Jmp {
    Eq = 0x10,
    Gt = 0x20,
    Ge = 0x30,
    Ne = 0x50,
    Lt = 0xa0,
    Le = 0xb0,
}

/// One 8-byte instruction, as the kernel reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    fn bytes(self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.src << 4) | (self.dst & 0x0f);
        b[2..4].copy_from_slice(&self.off.to_ne_bytes());
        b[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        b
    }
}

/// An assembler: instructions in order, jumps to named labels resolved by [`Asm::finish`].
#[derive(Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: HashMap<String, usize>,
    jumps: Vec<(usize, String)>,
}

impl Asm {
    fn push(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            dst,
            src,
            off,
            imm,
        });
    }

    pub fn label(&mut self, name: &str) {
        let here = self.insns.len();
        let old = self.labels.insert(name.to_string(), here);
        debug_assert!(old.is_none(), "label {name} twice");
    }

    pub fn mov_imm(&mut self, dst: u8, imm: i32) {
        self.push(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm);
    }
    pub fn mov(&mut self, dst: u8, src: u8) {
        self.push(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0);
    }
    pub fn alu_imm(&mut self, op: Alu, dst: u8, imm: i32) {
        self.push(BPF_ALU64 | op as u8 | BPF_K, dst, 0, 0, imm);
    }
    pub fn alu(&mut self, op: Alu, dst: u8, src: u8) {
        self.push(BPF_ALU64 | op as u8 | BPF_X, dst, src, 0, 0);
    }
    /// Host order to big-endian (network order) of the low `bits` of `dst`, zero above.
    pub fn to_be(&mut self, dst: u8, bits: i32) {
        self.push(BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, bits);
    }
    /// `dst = *(size *)(src + off)`.
    pub fn load(&mut self, size: Size, dst: u8, src: u8, off: i16) {
        self.push(BPF_LDX | BPF_MEM | size as u8, dst, src, off, 0);
    }
    /// `*(size *)(dst + off) = src`.
    pub fn store(&mut self, size: Size, dst: u8, off: i16, src: u8) {
        self.push(BPF_STX | BPF_MEM | size as u8, dst, src, off, 0);
    }
    /// `*(size *)(dst + off) = imm`.
    pub fn store_imm(&mut self, size: Size, dst: u8, off: i16, imm: i32) {
        self.push(BPF_ST | BPF_MEM | size as u8, dst, 0, off, imm);
    }
    /// 32-bit compare-and-exchange at `dst + off`: if it holds R0, it becomes `src`; R0
    /// gets what it held either way.
    pub fn cmpxchg32(&mut self, dst: u8, off: i16, src: u8) {
        self.push(
            BPF_STX | BPF_ATOMIC | Size::W as u8,
            dst,
            src,
            off,
            BPF_CMPXCHG,
        );
    }
    /// 32-bit fetch-and-or at `dst + off`: `src` is or-ed in and gets what the word held.
    /// Fully ordered, as every `BPF_FETCH` atomic (x86: `lock xadd`/`cmpxchg`, arm64:
    /// the `…al` forms): an or of 0 is a load that later loads cannot pass.
    pub fn fetch_or32(&mut self, dst: u8, off: i16, src: u8) {
        self.push(
            BPF_STX | BPF_ATOMIC | Size::W as u8,
            dst,
            src,
            off,
            BPF_FETCH_OR,
        );
    }
    /// `dst` = the map `fd` (two instruction slots).
    pub fn load_map(&mut self, dst: u8, fd: i32) {
        self.push(
            BPF_LD | BPF_IMM | Size::Dw as u8,
            dst,
            BPF_PSEUDO_MAP_FD,
            0,
            fd,
        );
        self.push(0, 0, 0, 0, 0);
    }
    pub fn jump_imm(&mut self, op: Jmp, dst: u8, imm: i32, to: &str) {
        self.jumps.push((self.insns.len(), to.to_string()));
        self.push(BPF_JMP | op as u8 | BPF_K, dst, 0, 0, imm);
    }
    pub fn jump(&mut self, op: Jmp, dst: u8, src: u8, to: &str) {
        self.jumps.push((self.insns.len(), to.to_string()));
        self.push(BPF_JMP | op as u8 | BPF_X, dst, src, 0, 0);
    }
    pub fn goto(&mut self, to: &str) {
        self.jumps.push((self.insns.len(), to.to_string()));
        self.push(BPF_JMP | BPF_JA, 0, 0, 0, 0);
    }
    pub fn call(&mut self, helper: i32) {
        self.push(BPF_JMP | BPF_CALL, 0, 0, 0, helper);
    }
    pub fn exit(&mut self) {
        self.push(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    }

    /// The program, every jump resolved: an unknown label or a backward jump (the
    /// programs here only go forward, so every one ends) is a bug in the caller.
    pub fn finish(mut self) -> Result<Vec<Insn>, String> {
        for (at, name) in &self.jumps {
            let Some(&to) = self.labels.get(name) else {
                return Err(format!("eBPF: no label {name}"));
            };
            if to <= *at {
                return Err(format!("eBPF: jump from {at} back to {name} ({to})"));
            }
            self.insns[*at].off = i16::try_from(to - at - 1)
                .map_err(|_| format!("eBPF: jump from {at} to {name} is too long"))?;
        }
        Ok(self.insns)
    }
}

// bpf(2) commands and types.
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_PROG_ARRAY: u32 = 3;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_F_MMAPABLE: u32 = 1 << 10;
/// `BPF_TCX_INGRESS`, `BPF_TCX_EGRESS` in `enum bpf_attach_type` (Linux 6.6).
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
/// Bytes of `union bpf_attr` we pass (zeros past the fields we set; the kernel reads what
/// it knows and checks that the rest is zero).
const ATTR_LEN: usize = 128;

/// bpf(2): its return value.
fn bpf_rc(cmd: libc::c_long, attr: &mut [u8; ATTR_LEN]) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, writable buffer of ATTR_LEN bytes laid out as the
    // command's part of `union bpf_attr`; every pointer in it points at memory that
    // outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), ATTR_LEN) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

/// bpf(2) for a command that returns a new descriptor.
fn bpf(cmd: libc::c_long, attr: &mut [u8; ATTR_LEN]) -> io::Result<OwnedFd> {
    let rc = bpf_rc(cmd, attr)?;
    let fd = i32::try_from(rc).map_err(|_| io::Error::other("bpf(2) returned no descriptor"))?;
    // SAFETY: these commands return a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn put32(attr: &mut [u8; ATTR_LEN], at: usize, v: u32) {
    attr[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put64(attr: &mut [u8; ATTR_LEN], at: usize, v: u64) {
    attr[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// An array map of `entries` values of `value_size` bytes (a multiple of 8), mapped into
/// our memory: we read and write its values without a system call, as the program does.
pub struct SharedArray {
    fd: OwnedFd,
    base: *mut u8,
    len: usize,
    value_size: usize,
    entries: usize,
}

impl SharedArray {
    pub fn new(name: &str, value_size: usize, entries: usize) -> io::Result<SharedArray> {
        if !value_size.is_multiple_of(8) || entries == 0 {
            return Err(io::Error::other("eBPF array: bad shape"));
        }
        let fd = map_create(
            name,
            BPF_MAP_TYPE_ARRAY,
            value_size as u32,
            entries as u32,
            BPF_F_MMAPABLE,
        )?;
        let page = 4096;
        let len = (value_size * entries).div_ceil(page) * page;
        // SAFETY: a new shared mapping of the map's values, which the kernel sized to at
        // least `len` bytes (value_size × entries, page-rounded); unmapped in Drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedArray {
            fd,
            base: base.cast(),
            len,
            value_size,
            entries,
        })
    }

    pub fn fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// A descriptor of the map of one's own (the map lives while any is open).
    pub fn clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    pub fn entries(&self) -> usize {
        self.entries
    }

    /// The 32-bit words of value `i` (all of a value's bytes, in memory order).
    pub fn words(&self, i: usize) -> &[std::sync::atomic::AtomicU32] {
        assert!(i < self.entries, "eBPF array index out of range");
        // SAFETY: value i lies within the mapping (i < entries, value_size × entries ≤
        // len), is 8-byte aligned (page-aligned base, value_size a multiple of 8) and
        // lives as long as `self`; the kernel program writes it concurrently, which is
        // why it is only ever touched through atomics.
        unsafe {
            std::slice::from_raw_parts(
                self.base.add(i * self.value_size).cast(),
                self.value_size / 4,
            )
        }
    }
}

// SAFETY: the mapping belongs to the process, not to a thread; its words are only touched
// through atomics, and it is unmapped once, by whoever drops it.
unsafe impl Send for SharedArray {}

impl Drop for SharedArray {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`; no reference into it
        // outlives `self`.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// A program array of `entries` slots, for `bpf_tail_call`: a program jumps to the one in
/// a slot, or goes on when the slot is empty. The kernel empties it when the last
/// descriptor of it closes (the programs that jump through it then go on at every jump).
pub fn prog_array(name: &str, entries: u32) -> io::Result<OwnedFd> {
    // Its values are program descriptors: 4 bytes.
    map_create(name, BPF_MAP_TYPE_PROG_ARRAY, 4, entries, 0)
}

/// A new map keyed by a 4-byte index, named `name` (15 bytes of it kept).
fn map_create(
    name: &str,
    map_type: u32,
    value_size: u32,
    entries: u32,
    flags: u32,
) -> io::Result<OwnedFd> {
    let mut attr = [0u8; ATTR_LEN];
    put32(&mut attr, 0, map_type);
    put32(&mut attr, 4, 4);
    put32(&mut attr, 8, value_size);
    put32(&mut attr, 12, entries);
    put32(&mut attr, 16, flags);
    let name = name.as_bytes();
    let n = name.len().min(15);
    attr[28..28 + n].copy_from_slice(&name[..n]);
    bpf(BPF_MAP_CREATE, &mut attr)
}

/// Put `prog` in slot `index` of the program array `array` (a program jumping there from
/// now on runs it; one that already jumped finishes in the one it found).
pub fn set_prog(array: &OwnedFd, index: u32, prog: &OwnedFd) -> io::Result<()> {
    let key = index.to_ne_bytes();
    let value = (prog.as_raw_fd() as u32).to_ne_bytes();
    let mut attr = [0u8; ATTR_LEN];
    put32(&mut attr, 0, array.as_raw_fd() as u32);
    put64(&mut attr, 8, key.as_ptr() as u64);
    put64(&mut attr, 16, value.as_ptr() as u64);
    // BPF_ANY (0): made or replaced.
    bpf_rc(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Load a `SCHED_CLS` program; on the verifier's refusal the error carries its log.
pub fn load_sched_cls(name: &str, insns: &[Insn]) -> io::Result<OwnedFd> {
    let code: Vec<u8> = insns.iter().flat_map(|i| i.bytes()).collect();
    let license = b"Dual MIT/GPL\0";
    let attempt = |log: &mut Vec<u8>| {
        let mut attr = [0u8; ATTR_LEN];
        put32(&mut attr, 0, BPF_PROG_TYPE_SCHED_CLS);
        put32(&mut attr, 4, insns.len() as u32);
        put64(&mut attr, 8, code.as_ptr() as u64);
        put64(&mut attr, 16, license.as_ptr() as u64);
        if !log.is_empty() {
            put32(&mut attr, 24, 1);
            put32(&mut attr, 28, log.len() as u32);
            put64(&mut attr, 32, log.as_mut_ptr() as u64);
        }
        let name = name.as_bytes();
        let n = name.len().min(15);
        attr[48..48 + n].copy_from_slice(&name[..n]);
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    match attempt(&mut Vec::new()) {
        Ok(fd) => Ok(fd),
        Err(e)
            if e.raw_os_error() == Some(libc::EINVAL) || e.raw_os_error() == Some(libc::EACCES) =>
        {
            // Once more with the verifier's log, for a message that says why.
            let mut log = vec![0u8; 1 << 16];
            let again = attempt(&mut log);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let tail: String = text
                .lines()
                .rev()
                .take(12)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            match again {
                Ok(fd) => Ok(fd),
                Err(_) => Err(io::Error::new(
                    e.kind(),
                    format!("{e}; the verifier said:\n{tail}"),
                )),
            }
        }
        Err(e) => Err(e),
    }
}

/// Attach `prog` to the ingress (or egress) of interface `ifindex` (of this network
/// namespace) by a TCX link; the returned descriptor is the attachment: closing it
/// detaches.
pub fn attach_tcx(prog: &OwnedFd, ifindex: u32, ingress: bool) -> io::Result<OwnedFd> {
    let mut attr = [0u8; ATTR_LEN];
    put32(&mut attr, 0, prog.as_raw_fd() as u32);
    put32(&mut attr, 4, ifindex);
    put32(
        &mut attr,
        8,
        if ingress {
            BPF_TCX_INGRESS
        } else {
            BPF_TCX_EGRESS
        },
    );
    bpf(BPF_LINK_CREATE, &mut attr)
}

/// Run `prog` once on `frame` (`BPF_PROG_TEST_RUN`: the kernel builds a packet of it on
/// this namespace's loopback device and runs the program, redirects and all, without
/// sending anything): its verdict and the frame as it left it. For tests.
pub fn test_run(prog: &OwnedFd, frame: &[u8]) -> io::Result<(i32, Vec<u8>)> {
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    let mut out = vec![0u8; frame.len() + 4096];
    let mut attr = [0u8; ATTR_LEN];
    put32(&mut attr, 0, prog.as_raw_fd() as u32);
    put32(&mut attr, 8, frame.len() as u32);
    put32(&mut attr, 12, out.len() as u32);
    put64(&mut attr, 16, frame.as_ptr() as u64);
    put64(&mut attr, 24, out.as_mut_ptr() as u64);
    put32(&mut attr, 32, 1);
    // It returns 0, not a descriptor; `frame` and `out` outlive the call, `out` is
    // writable for the size given.
    bpf_rc(BPF_PROG_TEST_RUN, &mut attr)?;
    let retval = i32::from_ne_bytes([attr[4], attr[5], attr[6], attr[7]]);
    let len = u32::from_ne_bytes([attr[12], attr[13], attr[14], attr[15]]) as usize;
    out.truncate(len.min(out.len()));
    Ok((retval, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_resolve_forward_and_refuse_backward_or_unknown() {
        let mut a = Asm::default();
        a.jump_imm(Jmp::Eq, R1, 0, "out");
        a.mov_imm(R0, 1);
        a.label("out");
        a.exit();
        let p = a.finish().unwrap();
        assert_eq!(p[0].off, 1);
        assert_eq!(p[0].bytes()[1], 0x01);

        let mut a = Asm::default();
        a.label("top");
        a.goto("top");
        assert!(a.finish().is_err());

        let mut a = Asm::default();
        a.goto("nowhere");
        assert!(a.finish().is_err());
    }

    #[test]
    fn encodes_as_the_kernel_reads_it() {
        let mut a = Asm::default();
        // r2 = *(u32 *)(r6 + 76): class LDX, mode MEM, size W.
        a.load(Size::W, R2, R6, 76);
        // A 64-bit immediate takes two slots.
        a.load_map(R1, 7);
        a.cmpxchg32(R8, 0, R1);
        let p = a.finish().unwrap();
        assert_eq!(p[0].bytes(), [0x61, 0x62, 76, 0, 0, 0, 0, 0]);
        assert_eq!(p[1].bytes(), [0x18, 0x11, 0, 0, 7, 0, 0, 0]);
        assert_eq!(
            p[2],
            Insn {
                code: 0,
                dst: 0,
                src: 0,
                off: 0,
                imm: 0
            }
        );
        assert_eq!(p[3].bytes(), [0xc3, 0x18, 0, 0, 0xf1, 0, 0, 0]);
    }
}
