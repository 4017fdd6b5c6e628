//! A small hand-rolled netlink client (RFC 3549, `linux/netlink.h`) shared by the route
//! lookup, the lab namespaces (rtnetlink) and the nftables guard (nfnetlink).
//!
//! Building: [`MsgBuf`] writes one or more messages into one buffer (a batch), with nested
//! attributes and the 4-byte alignment netlink requires (`NLMSG_ALIGN`, `NLA_ALIGN`).
//! Receiving: [`NlSocket::exchange`] sends a buffer and reads replies until every request
//! that asked for an ack has been answered, turning a non-zero `nlmsgerr` into an
//! [`NlError`] that callers can inspect (`err.downcast_ref::<NlError>()`) to pick a
//! fallback or word an actionable message. Nothing here panics on what the kernel sends:
//! every length is checked before it is used.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

// linux/netlink.h
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_ROOT: u16 = 0x100;
pub const NLM_F_MATCH: u16 = 0x200;
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLMSG_ERROR: u16 = 0x2;
pub const NLMSG_DONE: u16 = 0x3;
pub const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NLMSG_HDRLEN: usize = 16;
const NLA_HDRLEN: usize = 4;

/// How long one exchange may wait for the kernel before giving up. The kernel answers
/// netlink requests synchronously, so this only trips if something is badly wrong.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on reply messages read in one exchange (dumps of a lab namespace or of
/// our own nftables tables are tiny; this only bounds the loop).
const MAX_REPLIES: usize = 100_000;
/// Bytes read per `recv`: more than the largest datagram a dump sends (the kernel sizes
/// those by the reader's past reads, up to 32 KiB).
const RX_BUFFER: usize = 64 * 1024;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// Writes netlink messages, one after another, into one buffer.
#[derive(Debug, Default)]
pub struct MsgBuf {
    buf: Vec<u8>,
    /// Offset of the message being written (its `nlmsghdr`), if one is open.
    msg_start: Option<usize>,
    /// Offsets of the open nested attributes, innermost last.
    nests: Vec<usize>,
}

impl MsgBuf {
    pub fn new() -> MsgBuf {
        MsgBuf::default()
    }

    /// Starts a message; `end` closes it. `flags` gets `NLM_F_REQUEST` added.
    pub fn begin(&mut self, ty: u16, flags: u16, seq: u32) -> &mut Self {
        debug_assert!(
            self.msg_start.is_none(),
            "MsgBuf::begin inside an open message"
        );
        self.pad();
        self.msg_start = Some(self.buf.len());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched by end()
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf
            .extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0 = to the kernel
        self
    }

    /// Appends the family header (`rtmsg`, `ifinfomsg`, `nfgenmsg`, ...) as raw bytes.
    pub fn header(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self.pad();
        self
    }

    pub fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        // An attribute longer than u16 cannot be expressed; none of ours comes close.
        let len = u16::try_from(NLA_HDRLEN + data.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    pub fn attr_u8(&mut self, ty: u16, v: u8) -> &mut Self {
        self.attr(ty, &[v])
    }

    /// A host-order u32 (rtnetlink's convention).
    pub fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }

    /// A network-order u32 (nftables' convention for every integer attribute).
    pub fn attr_be32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }

    /// A NUL-terminated string (`NLA_NUL_STRING` / `NLA_STRING` both accept it).
    pub fn attr_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v)
    }

    /// Opens a nested attribute; close it with `end_nest`.
    pub fn nest(&mut self, ty: u16) -> &mut Self {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        self
    }

    pub fn end_nest(&mut self) -> &mut Self {
        if let Some(start) = self.nests.pop() {
            let len = u16::try_from(self.buf.len() - start).unwrap_or(u16::MAX);
            self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    /// Closes the current message by writing its length.
    pub fn end(&mut self) -> &mut Self {
        debug_assert!(self.nests.is_empty(), "MsgBuf::end with open nests");
        if let Some(start) = self.msg_start.take() {
            let len = u32::try_from(self.buf.len() - start).unwrap_or(u32::MAX);
            self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    fn pad(&mut self) {
        let n = align4(self.buf.len());
        self.buf.resize(n, 0);
    }
}

/// One received netlink message (header fields plus the payload after `nlmsghdr`).
#[derive(Debug, Clone)]
pub struct Message {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: Vec<u8>,
}

/// The kernel refused a request: `errno` as the kernel reported it (positive), and the
/// sequence number of the message it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    pub errno: i32,
    pub seq: u32,
    /// The kernel's own explanation (extended ack, `NLMSGERR_ATTR_MSG`), when it gave one.
    pub msg: Option<String>,
}

impl std::fmt::Display for NlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "kernel refused netlink request: {}",
            io::Error::from_raw_os_error(self.errno)
        )?;
        match &self.msg {
            Some(m) => write!(f, " ({m})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for NlError {}

/// The errno of a netlink refusal anywhere in an error chain, if that is what it was.
pub fn errno_of(err: &anyhow::Error) -> Option<i32> {
    err.chain()
        .find_map(|e| e.downcast_ref::<NlError>())
        .map(|e| e.errno)
}

/// Iterates over the attributes in `data` as `(type without flags, payload)`. Stops at the
/// first malformed attribute instead of failing: a truncated tail is simply not seen.
pub fn attrs(data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let len = usize::from(u16::from_ne_bytes([*rest.first()?, *rest.get(1)?]));
        let ty = u16::from_ne_bytes([*rest.get(2)?, *rest.get(3)?]) & NLA_TYPE_MASK;
        let payload = rest.get(NLA_HDRLEN..len)?;
        rest = rest.get(align4(len)..).unwrap_or(&[]);
        Some((ty, payload))
    })
}

/// The first attribute of type `ty` in `data`.
pub fn find_attr(data: &[u8], ty: u16) -> Option<&[u8]> {
    attrs(data).find(|(t, _)| *t == ty).map(|(_, p)| p)
}

pub fn read_u32_ne(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}

pub fn read_u32_be(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// A NUL-terminated (or not) string attribute.
pub fn read_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// The extended-ack message of an `NLMSG_ERROR` (linux/netlink.h: `struct nlmsgerr`, then
/// the request — only its header when `NLM_F_CAPPED` — then TLVs if `NLM_F_ACK_TLVS`).
fn ext_ack_msg(m: &Message) -> Option<String> {
    if m.flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let orig_len = if m.flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        read_u32_ne(m.payload.get(4..)?)? as usize
    };
    let tlvs = m.payload.get(4 + align4(orig_len)..)?;
    find_attr(tlvs, NLMSGERR_ATTR_MSG).map(read_str)
}

/// Splits a datagram from the kernel into messages. Malformed tails end the walk.
fn parse_messages(mut data: &[u8], out: &mut Vec<Message>) {
    while data.len() >= NLMSG_HDRLEN {
        let len = read_u32_ne(data).unwrap_or(0) as usize;
        if len < NLMSG_HDRLEN || len > data.len() {
            break;
        }
        out.push(Message {
            ty: u16::from_ne_bytes([data[4], data[5]]),
            flags: u16::from_ne_bytes([data[6], data[7]]),
            seq: read_u32_ne(&data[8..]).unwrap_or(0),
            payload: data[NLMSG_HDRLEN..len].to_vec(),
        });
        data = data.get(align4(len)..).unwrap_or(&[]);
    }
}

/// A netlink socket of one protocol, bound to the network namespace of the thread that
/// opened it (for as long as it lives, whatever thread uses it later).
#[derive(Debug)]
pub struct NlSocket {
    fd: OwnedFd,
    seq: u32,
    /// The receive buffer, kept from one exchange to the next: a survey asks the kernel
    /// for a route per new target and the port keeper updates the guard's set per probe,
    /// and a fresh zeroed 64 KiB for each was ~1 µs of memset plus a trip through
    /// malloc's large bins every time.
    rx: Vec<u8>,
}

impl NlSocket {
    /// Opens `socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol)`.
    pub fn open(protocol: libc::c_int) -> anyhow::Result<NlSocket> {
        // SAFETY: plain socket(2) call with constant arguments; the result is checked.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            let e = io::Error::last_os_error();
            return Err(e)
                .with_context(|| format!("opening a netlink socket (protocol {protocol})"));
        }
        // SAFETY: `raw` is a fresh descriptor we own and nothing else will close.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let timeout = libc::timeval {
            tv_sec: EXCHANGE_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        super::set_sockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &timeout)
            .context("setting SO_RCVTIMEO on netlink socket")?;
        // Ask for the kernel's error strings, and not for our request echoed back in
        // every error. Both are optional (Linux ≥ 4.12 / 4.3): ignore refusals.
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            let _ = super::set_sockopt(&fd, SOL_NETLINK, opt, &1 as &libc::c_int);
        }
        // Start sequence numbers somewhere unlikely to collide with a previous socket's
        // replies; uniqueness only matters within this socket.
        let seq = (std::process::id() << 8) ^ 0x5eed;
        Ok(NlSocket {
            fd,
            seq,
            rx: Vec::new(),
        })
    }

    /// A fresh sequence number for the next message.
    pub fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send(&self, data: &[u8]) -> anyhow::Result<()> {
        // SAFETY: an all-zero sockaddr_nl is valid; we then set the family. nl_pid 0 is
        // the kernel.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `data` and `addr` are valid for the lengths passed for the whole call.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error()).context("sending a netlink request");
        }
        if n as usize != data.len() {
            bail!(
                "netlink request truncated: sent {n} of {} bytes",
                data.len()
            );
        }
        Ok(())
    }

    fn recv(&self, buf: &mut [u8]) -> anyhow::Result<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(0); // a signal: the caller's bounded loop reads again
            }
            if matches!(e.raw_os_error(), Some(libc::EAGAIN)) {
                bail!("no answer from the kernel on netlink within {EXCHANGE_TIMEOUT:?}");
            }
            return Err(e).context("receiving a netlink reply");
        }
        let n = n as usize;
        if n > buf.len() {
            bail!(
                "netlink reply of {n} bytes did not fit a {}-byte buffer",
                buf.len()
            );
        }
        Ok(n)
    }

    /// Sends `data` (one message or a batch) whose messages carry sequence numbers in
    /// `seqs` (inclusive range), and collects replies until every sequence number in
    /// `wait` is finished: by an ack (`NLMSG_ERROR` with errno 0) or by `NLMSG_DONE` (end
    /// of a dump). A refusal of any message in `seqs` ends the exchange with [`NlError`].
    /// Replies to earlier exchanges (other sequence numbers) are skipped.
    pub fn exchange(
        &mut self,
        data: &[u8],
        seqs: std::ops::RangeInclusive<u32>,
        wait: &[u32],
    ) -> anyhow::Result<Vec<Message>> {
        self.send(data)?;
        let mut pending: Vec<u32> = wait.to_vec();
        let mut out = Vec::new();
        let mut buf = std::mem::take(&mut self.rx);
        buf.resize(RX_BUFFER, 0);
        let result = self.collect(&mut buf, seqs, &mut pending, &mut out);
        self.rx = buf;
        result.map(|()| out)
    }

    /// [`NlSocket::exchange`]'s reading part: replies into `out` until `pending` is empty.
    fn collect(
        &mut self,
        buf: &mut [u8],
        seqs: std::ops::RangeInclusive<u32>,
        pending: &mut Vec<u32>,
        out: &mut Vec<Message>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + EXCHANGE_TIMEOUT;
        let mut seen = 0usize;
        while !pending.is_empty() {
            if Instant::now() > deadline || seen > MAX_REPLIES {
                bail!("netlink exchange did not finish within {EXCHANGE_TIMEOUT:?}");
            }
            let n = self.recv(buf)?;
            let mut msgs = Vec::new();
            parse_messages(&buf[..n], &mut msgs);
            for m in msgs {
                seen += 1;
                if !seqs.contains(&m.seq) {
                    continue;
                }
                match m.ty {
                    NLMSG_ERROR => {
                        // struct nlmsgerr { int error; struct nlmsghdr msg; ... }
                        let err = read_u32_ne(&m.payload).map(|v| v as i32).unwrap_or(0);
                        if err != 0 {
                            return Err(NlError {
                                errno: -err,
                                seq: m.seq,
                                msg: ext_ack_msg(&m),
                            }
                            .into());
                        }
                        pending.retain(|&s| s != m.seq);
                    }
                    NLMSG_DONE => pending.retain(|&s| s != m.seq),
                    _ => out.push(m),
                }
            }
        }
        Ok(())
    }

    /// Sends one request built with sequence number `seq` (it must ask for an ack, or be
    /// a dump) and returns its replies.
    pub fn request(&mut self, msg: &MsgBuf, seq: u32) -> anyhow::Result<Vec<Message>> {
        self.exchange(msg.as_bytes(), seq..=seq, &[seq])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_aligns_and_nests() {
        let mut b = MsgBuf::new();
        b.begin(0x10, NLM_F_ACK, 7)
            .header(&[1, 2, 3])
            .attr_str(1, "ab")
            .nest(2)
            .attr_u8(3, 9)
            .end_nest()
            .end();
        let bytes = b.as_bytes();
        assert_eq!(bytes.len() % 4, 0);
        let mut msgs = Vec::new();
        parse_messages(bytes, &mut msgs);
        assert_eq!(msgs.len(), 1);
        let m = &msgs[0];
        assert_eq!((m.ty, m.flags, m.seq), (0x10, NLM_F_ACK | NLM_F_REQUEST, 7));
        assert_eq!(&m.payload[..3], &[1, 2, 3]);
        let a: Vec<_> = attrs(&m.payload[4..]).collect();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0], (1, &b"ab\0"[..]));
        assert_eq!(a[1].0, 2);
        assert_eq!(find_attr(a[1].1, 3), Some(&[9u8][..]));
        // The nested attribute's length covers its padded child (4 + 8).
        assert_eq!(a[1].1.len(), 8);
    }

    #[test]
    fn attrs_stop_at_malformed_input() {
        assert_eq!(attrs(&[]).count(), 0);
        assert_eq!(attrs(&[8, 0, 1]).count(), 0);
        // Claims 200 bytes, has 8.
        assert_eq!(attrs(&[200, 0, 1, 0, 0, 0, 0, 0]).count(), 0);
        // One good attribute then garbage.
        assert_eq!(attrs(&[5, 0, 1, 0, 7, 0, 0, 0, 1]).count(), 1);
        // Length smaller than the header.
        assert_eq!(attrs(&[2, 0, 1, 0]).count(), 0);
        let mut msgs = Vec::new();
        parse_messages(&[255; 15], &mut msgs);
        parse_messages(&[8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], &mut msgs);
        assert!(msgs.is_empty());
    }
}
