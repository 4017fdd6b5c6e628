//! The nftables guard: keeps the kernel from answering our hand-made connections.
//!
//! The kernel has no socket for the connections tcpshake makes over raw sockets, so a
//! SYN-ACK for one of them makes it send a RST (RFC 9293 §3.10.7.1, segment arrives for a
//! CLOSED connection), which would kill the connection at the peer. The guard installs,
//! in one nfnetlink batch:
//!
//! ```text
//! table inet tcpshake_<pid> {                      # flags owner (Linux ≥ 5.12)
//!     set ports { type inet_service; }            # a survey's: flags dynamic (a hash table)
//!     chain output {
//!         type filter hook output priority 0; policy accept;
//!         meta l4proto tcp meta mark != <mark> tcp flags & rst != 0 tcp sport @ports drop
//!     }
//!     chain prerouting {
//!         type filter hook prerouting priority raw; policy accept;
//!         meta l4proto tcp tcp dport @ports drop
//!     }
//! }
//! ```
//!
//! Segments for a protected port are read by tcpshake's AF_PACKET tap, which sees them
//! before the IP layer; the prerouting rule then keeps them from the kernel's TCP, which
//! would only answer with RST. On a host whose bridges run the IP hooks for the frames
//! they carry (`br_netfilter` with `bridge-nf-call-iptables`, as Docker sets it) and that
//! has a bridge port, that chain hooks input instead (still named `prerouting`): in the
//! bridge, on the port, prerouting would drop a reply before the bridge device, where the
//! tap listens, had it. Should one get through anyway (another path in, a kernel
//! that hooks differently), the output rule drops the kernel's RST: our own raw packets
//! carry SO_MARK `<mark>` and pass.
//!
//! With `NFT_TABLE_F_OWNER` the table belongs to our netlink socket: the kernel deletes it
//! the moment that socket closes — on exit, panic or SIGKILL — so it can never outlive
//! us. The socket therefore lives inside [`Guard`]. Kernels older than 5.12 refuse the
//! flag; then the table is made without it, [`Drop`] deletes it, and every install first
//! sweeps `tcpshake_<pid>` tables whose process is gone ([`sweep_stale`]).
//!
//! The rules match the port alone, on every address: so a guarded port must be ours on
//! every address, or the guard would drop another program's connection that has it on some
//! other address. `ports::PortReservation` binds the port dual-stack on the wildcard.
//!
//! Everything here acts on the network namespace of the thread that calls `install`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::anyhow;

use super::EnvironmentError;

use super::netlink::{
    MsgBuf, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NlSocket, errno_of, find_attr,
    read_str, read_u32_be,
};

// linux/netfilter/nfnetlink.h, linux/netfilter/nf_tables.h
/// The socket mark on every packet tcpshake sends ("tcps"); the guard's rule lets marked
/// packets pass and drops the kernel's unmarked RSTs for our ports.
pub const MARK: u32 = 0x7463_7073;

const NETLINK_NETFILTER: libc::c_int = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFPROTO_INET: u8 = 1;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NLM_F_APPEND: u16 = 0x800;

const NFTA_TABLE_NAME: u16 = 1;
const NFTA_TABLE_FLAGS: u16 = 2;
const NFT_TABLE_F_OWNER: u32 = 0x2;

const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_ID: u16 = 10;
/// `flags dynamic`: a set the packet path may update, which the kernel backends with a
/// hash table whatever the key's size.
const NFT_SET_EVAL: u32 = 0x20;
/// nft's datatype number for `inet_service` (a port, big endian): nft's `TYPE_INET_SERVICE`.
const TYPE_INET_SERVICE: u32 = 13;

const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_POLICY: u16 = 5;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NF_INET_LOCAL_OUT: u32 = 3;
const NF_INET_PRE_ROUTING: u32 = 0;
const NF_INET_LOCAL_IN: u32 = 1;
/// NF_IP_PRI_RAW: before conntrack (-200) and every usual filter.
const NF_IP_PRI_RAW: i32 = -300;
const NF_DROP: u32 = 0;
const NF_ACCEPT: u32 = 1;

const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFTA_DATA_VERDICT: u16 = 2;
const NFTA_VERDICT_CODE: u16 = 1;
const NFT_REG_VERDICT: u32 = 0;
const NFT_REG_1: u32 = 1;

const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFT_META_MARK: u32 = 3;
const NFT_META_L4PROTO: u32 = 16;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_SET_ID: u16 = 4;
const NFTA_IMMEDIATE_DREG: u16 = 1;
const NFTA_IMMEDIATE_DATA: u16 = 2;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;

const TABLE_PREFIX: &str = "tcpshake_";
const SET_NAME: &str = "ports";
const SET_ID: u32 = 1;
const CHAIN_NAME: &str = "output";
const PREROUTING_CHAIN_NAME: &str = "prerouting";
/// TCP header offsets (RFC 9293 §3.1): source port at 0, flags at 13; RST is bit 0x04.
const TCP_SPORT_OFFSET: u32 = 0;
const TCP_DPORT_OFFSET: u32 = 2;
const TCP_FLAGS_OFFSET: u32 = 13;
const TCP_FLAG_RST: u8 = 0x04;
const IPPROTO_TCP: u8 = 6;

/// Guards installed so far by this process, to give each its own table name.
static INSTANCES: AtomicU32 = AtomicU32::new(0);

/// The installed nftables guard. See the module docs.
#[derive(Debug)]
pub struct Guard {
    /// The socket that owns the table (owner flag): closing it deletes the table.
    sock: NlSocket,
    table: String,
    owner: bool,
    /// The table is gone already ([`Guard::remove`]).
    removed: bool,
    /// Protected ports and how many holders each has: an IPv4 and an IPv6 probe may use the
    /// same port number at once, and the first to end must not unguard the other.
    ports: BTreeMap<u16, u32>,
}

impl Guard {
    /// Installs the guard table; packets carrying SO_MARK `mark` are never dropped.
    pub fn install(mark: u32) -> anyhow::Result<Guard> {
        Guard::install_with(mark, true, PortSet::Bitmap)
    }

    /// [`Guard::install`] for a survey, whose port set holds hundreds of ports and changes
    /// by the batch thousands of times a second: backed by a hash table (`flags dynamic`)
    /// instead of the bitmap the kernel picks for a 2-byte key, whose insert and delete
    /// walk every element (20% of the port keeper's time; with the hash, 11.9 → 9.9 µs per
    /// probe and ~5% more probes per second in the bench). Not the default: for the few
    /// ports of a probe or a scan the bitmap is cheaper in the receive path — with the hash
    /// set, single probes' incoming segments reached the taps a median 0.1 µs later, and
    /// once in ten runs 19 µs later.
    pub fn install_for_survey(mark: u32) -> anyhow::Result<Guard> {
        Guard::install_with(mark, true, PortSet::Hash)
    }

    fn install_with(mark: u32, try_owner: bool, set: PortSet) -> anyhow::Result<Guard> {
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let table = match n {
            0 => format!("{TABLE_PREFIX}{}", std::process::id()),
            n => format!("{TABLE_PREFIX}{}_{n}", std::process::id()),
        };
        let mut sock = open_nfnetlink()?;
        sweep_with(&mut sock)?;
        let owner = if try_owner {
            match create_table(&mut sock, &table, mark, true, set) {
                Ok(()) => true,
                // Before Linux 5.12 an unknown table flag is refused (EOPNOTSUPP); be
                // lenient with EINVAL too. Fall back to an unowned table and Drop.
                Err(e) if matches!(errno_of(&e), Some(libc::EOPNOTSUPP | libc::EINVAL)) => {
                    create_table(&mut sock, &table, mark, false, set)?;
                    false
                }
                Err(e) => return Err(e),
            }
        } else {
            create_table(&mut sock, &table, mark, false, set)?;
            false
        };
        Ok(Guard {
            sock,
            table,
            owner,
            removed: false,
            ports: BTreeMap::new(),
        })
    }

    /// Drops the kernel's RSTs from local port `port` from now on. Each call is one
    /// holder; the port stays protected until every holder released it.
    pub fn protect_port(&mut self, port: u16) -> anyhow::Result<()> {
        self.protect_ports(&[port])
    }

    /// Lets the kernel answer on local port `port` again once its last holder released it.
    /// Releasing a port that is not protected does nothing.
    pub fn release_port(&mut self, port: u16) -> anyhow::Result<()> {
        self.release_ports(&[port])
    }

    /// [`Guard::protect_port`] for several ports in one nftables transaction: one netlink
    /// round trip however many (a survey starts many probes at once).
    pub fn protect_ports(&mut self, ports: &[u16]) -> anyhow::Result<()> {
        let mut new: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| !self.ports.contains_key(p))
            .collect();
        new.sort_unstable();
        new.dedup();
        if !new.is_empty() {
            let what = match new.as_slice() {
                [one] => format!("protecting local port {one}"),
                many => format!("protecting {} local ports", many.len()),
            };
            self.set_elements(NFT_MSG_NEWSETELEM, NLM_F_CREATE, &new, &what)?;
        }
        for &p in ports {
            *self.ports.entry(p).or_insert(0) += 1;
        }
        Ok(())
    }

    /// [`Guard::release_port`] for several ports in one transaction.
    pub fn release_ports(&mut self, ports: &[u16]) -> anyhow::Result<()> {
        let mut last: Vec<u16> = Vec::new();
        for &p in ports {
            if let Some(holders) = self.ports.get_mut(&p) {
                *holders -= 1;
                if *holders == 0 {
                    self.ports.remove(&p);
                    last.push(p);
                }
            }
        }
        if last.is_empty() {
            return Ok(());
        }
        let what = match last.as_slice() {
            [one] => format!("releasing local port {one}"),
            many => format!("releasing {} local ports", many.len()),
        };
        self.set_elements(NFT_MSG_DELSETELEM, 0, &last, &what)
    }

    /// Add or delete `ports` in the set; `what` names that for an error message.
    fn set_elements(
        &mut self,
        ty: u16,
        flags: u16,
        ports: &[u16],
        what: &str,
    ) -> anyhow::Result<()> {
        let mut b = Batch::new(&mut self.sock);
        let m = b
            .msg(&mut self.sock, ty, flags)
            .attr_str(NFTA_SET_ELEM_LIST_TABLE, &self.table)
            .attr_str(NFTA_SET_ELEM_LIST_SET, SET_NAME)
            .nest(NFTA_SET_ELEM_LIST_ELEMENTS);
        for p in ports {
            m.nest(NFTA_LIST_ELEM)
                .nest(NFTA_SET_ELEM_KEY)
                .attr(NFTA_DATA_VALUE, &p.to_be_bytes())
                .end_nest()
                .end_nest();
        }
        m.end_nest().end();
        b.commit(&mut self.sock).map_err(|e| explain(e, what))
    }

    /// Delete the table now, when nothing needs it any more. Dropping the guard does the
    /// same and then closes its socket, which waits for the kernel's worker to finish the
    /// deletion (an RCU grace period, 10–20 ms here); deleted earlier, that worker's wait
    /// passes beside whatever this process does next.
    pub fn remove(&mut self) -> anyhow::Result<()> {
        if !self.removed {
            delete_table(&mut self.sock, &self.table)
                .map_err(|e| explain(e, &format!("deleting table inet {}", self.table)))?;
            self.removed = true;
            self.ports.clear();
        }
        Ok(())
    }

    /// `tcpshake_<pid>` (`tcpshake_<pid>_<n>` for later guards of the same process).
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Whether the kernel accepted NFT_TABLE_F_OWNER, i.e. the table dies with us even on
    /// SIGKILL. When false, a SIGKILL leaves it behind until the next install sweeps it.
    pub fn owner_flag(&self) -> bool {
        self.owner
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Deleted by a transaction even with the owner flag: closing `sock` (dropped right
        // after this) would delete the table too, but through the kernel's release path,
        // which waits out RCU grace periods one after the other (22–35 ms here, measured
        // with strace), where a transaction's delete leaves the waiting to a worker and
        // the close waits for that worker only (one grace period, ~10 ms). Without the
        // owner flag it is the only way. Nothing to report on failure: the close (owner
        // flag) or the next install's sweep removes what is left.
        if !self.removed {
            let _ = delete_table(&mut self.sock, &self.table);
        }
    }
}

/// Deletes `tcpshake_<pid>` tables (in the calling thread's network namespace) whose
/// process no longer exists, as left behind by a killed tcpshake on a kernel without the
/// owner flag. Returns how many were deleted.
pub fn sweep_stale() -> anyhow::Result<usize> {
    let mut sock = open_nfnetlink()?;
    sweep_with(&mut sock)
}

fn sweep_with(sock: &mut NlSocket) -> anyhow::Result<usize> {
    let mut swept = 0;
    for (name, flags) in list_tables(sock)? {
        let Some(pid) = table_pid(&name) else {
            continue;
        };
        // An owned table belongs to a live socket; it vanishes with it on its own.
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if alive || flags & NFT_TABLE_F_OWNER != 0 {
            continue;
        }
        match delete_table(sock, &name) {
            Ok(()) => swept += 1,
            // Someone else swept it first.
            Err(e) if errno_of(&e) == Some(libc::ENOENT) => {}
            Err(e) => return Err(explain(e, &format!("deleting stale table inet {name}"))),
        }
    }
    Ok(swept)
}

/// The pid in `tcpshake_<pid>` or `tcpshake_<pid>_<n>`.
fn table_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TABLE_PREFIX)?;
    let pid = rest.split_once('_').map_or(rest, |(p, _)| p);
    pid.parse().ok()
}

fn open_nfnetlink() -> anyhow::Result<NlSocket> {
    NlSocket::open(NETLINK_NETFILTER).map_err(|e| {
        let unsupported = e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.raw_os_error())
                == Some(libc::EPROTONOSUPPORT)
        });
        if unsupported {
            anyhow::Error::new(EnvironmentError(
                "nftables guard: this kernel has no nfnetlink (CONFIG_NETFILTER_NETLINK); tcpshake needs nftables to keep the kernel from resetting its connections".into(),
            ))
        } else {
            e.context("nftables guard: opening a NETLINK_NETFILTER socket")
        }
    })
}

/// Turns the kernel's refusals while `doing` something into what the user can do about
/// them. The result is the whole message, `nftables guard: ` once and `doing` once: add no
/// context of your own around it.
fn explain(e: anyhow::Error, doing: &str) -> anyhow::Error {
    match errno_of(&e) {
        Some(libc::EPERM) => {
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "<path to tcpshake>".into());
            anyhow::Error::new(EnvironmentError(format!(
                "nftables guard: permission denied ({doing}): run as root (sudo) or grant capabilities: setcap cap_net_raw,cap_net_admin+ep {exe}"
            )))
        }
        Some(libc::EOPNOTSUPP) | Some(libc::EAFNOSUPPORT) => e.context(EnvironmentError(format!(
            "nftables guard: nf_tables (with the inet family) is not available in this kernel ({doing}): needs CONFIG_NF_TABLES and CONFIG_NF_TABLES_INET (try `modprobe nf_tables`)"
        ))),
        Some(libc::ENOENT) => e.context(EnvironmentError(format!(
            "nftables guard: the kernel lacks an nftables feature the guard needs ({doing}): filter chains, meta, payload, bitwise, lookup, or sets (try `modprobe nf_tables`)"
        ))),
        _ => e.context(format!("nftables guard: {doing}")),
    }
}

/// One nfnetlink transaction: BATCH_BEGIN, messages, BATCH_END, applied atomically.
struct Batch {
    m: MsgBuf,
    first: u32,
    acks: Vec<u32>,
}

impl Batch {
    fn new(sock: &mut NlSocket) -> Batch {
        let first = sock.next_seq();
        let mut m = MsgBuf::new();
        // The batch header's res_id names the subsystem, in network byte order.
        m.begin(NFNL_MSG_BATCH_BEGIN, 0, first)
            .header(&nfgenmsg(libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES))
            .end();
        Batch {
            m,
            first,
            acks: Vec::new(),
        }
    }

    /// Starts an nftables message (inet family) that asks for an ack; end it with `end()`.
    fn msg(&mut self, sock: &mut NlSocket, ty: u16, flags: u16) -> &mut MsgBuf {
        let seq = sock.next_seq();
        self.acks.push(seq);
        self.m
            .begin((NFNL_SUBSYS_NFTABLES << 8) | ty, flags | NLM_F_ACK, seq)
            .header(&nfgenmsg(NFPROTO_INET, 0))
    }

    fn commit(mut self, sock: &mut NlSocket) -> anyhow::Result<()> {
        let last = sock.next_seq();
        self.m
            .begin(NFNL_MSG_BATCH_END, 0, last)
            .header(&nfgenmsg(libc::AF_UNSPEC as u8, NFNL_SUBSYS_NFTABLES))
            .end();
        sock.exchange(self.m.as_bytes(), self.first..=last, &self.acks)
            .map(drop)
    }
}

/// `struct nfgenmsg { u8 nfgen_family; u8 version; __be16 res_id; }`, version NFNETLINK_V0.
fn nfgenmsg(family: u8, res_id: u16) -> [u8; 4] {
    let r = res_id.to_be_bytes();
    [family, 0, r[0], r[1]]
}

/// How the kernel stores the guarded ports (see [`Guard::install_for_survey`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PortSet {
    Bitmap,
    Hash,
}

fn create_table(
    sock: &mut NlSocket,
    table: &str,
    mark: u32,
    owner: bool,
    set: PortSet,
) -> anyhow::Result<()> {
    let mut b = Batch::new(sock);
    let excl = NLM_F_CREATE | NLM_F_EXCL;
    b.msg(sock, NFT_MSG_NEWTABLE, excl)
        .attr_str(NFTA_TABLE_NAME, table)
        .attr_be32(NFTA_TABLE_FLAGS, if owner { NFT_TABLE_F_OWNER } else { 0 })
        .end();
    b.msg(sock, NFT_MSG_NEWSET, excl)
        .attr_str(NFTA_SET_TABLE, table)
        .attr_str(NFTA_SET_NAME, SET_NAME)
        .attr_be32(
            NFTA_SET_FLAGS,
            match set {
                PortSet::Bitmap => 0,
                PortSet::Hash => NFT_SET_EVAL,
            },
        )
        .attr_be32(NFTA_SET_KEY_TYPE, TYPE_INET_SERVICE)
        .attr_be32(NFTA_SET_KEY_LEN, 2)
        .attr_be32(NFTA_SET_ID, SET_ID)
        .end();
    // Where our segments are kept from the kernel's TCP: in prerouting, before anything
    // else looks at them — unless bridged frames run that hook inside the bridge
    // (br_netfilter), where it would drop a reply before the bridge device's tap saw it;
    // then in input, which only what is delivered to this host reaches.
    let keep_out = match super::route::bridge_netfilter() {
        true => NF_INET_LOCAL_IN,
        false => NF_INET_PRE_ROUTING,
    };
    for (chain, hook, priority) in [
        (CHAIN_NAME, NF_INET_LOCAL_OUT, 0),
        (PREROUTING_CHAIN_NAME, keep_out, NF_IP_PRI_RAW),
    ] {
        b.msg(sock, NFT_MSG_NEWCHAIN, excl)
            .attr_str(NFTA_CHAIN_TABLE, table)
            .attr_str(NFTA_CHAIN_NAME, chain)
            .nest(NFTA_CHAIN_HOOK)
            .attr_be32(NFTA_HOOK_HOOKNUM, hook)
            .attr_be32(NFTA_HOOK_PRIORITY, priority as u32)
            .end_nest()
            .attr_be32(NFTA_CHAIN_POLICY, NF_ACCEPT)
            .attr_str(NFTA_CHAIN_TYPE, "filter")
            .end();
        let m = b.msg(sock, NFT_MSG_NEWRULE, NLM_F_CREATE | NLM_F_APPEND);
        m.attr_str(NFTA_RULE_TABLE, table)
            .attr_str(NFTA_RULE_CHAIN, chain)
            .nest(NFTA_RULE_EXPRESSIONS);
        if hook == NF_INET_LOCAL_OUT {
            output_rule(m, mark);
        } else {
            prerouting_rule(m);
        }
        m.end_nest().end();
    }
    b.commit(sock).map_err(|e| {
        if owner && matches!(errno_of(&e), Some(libc::EOPNOTSUPP | libc::EINVAL)) {
            // Let install() see the raw refusal and fall back.
            return e;
        }
        if errno_of(&e) == Some(libc::EEXIST) {
            return anyhow!(
                "nftables guard: table inet {table} already exists (left by an earlier process with the same pid?): delete it with `nft delete table inet {table}`"
            );
        }
        explain(e, &format!("creating table inet {table}"))
    })
}

/// `meta l4proto tcp meta mark != <mark> tcp flags & rst != 0 tcp sport @ports drop`
fn output_rule(m: &mut MsgBuf, mark: u32) {
    meta(m, NFT_META_L4PROTO);
    cmp(m, NFT_CMP_EQ, &[IPPROTO_TCP]);
    // skb->mark is loaded into the register as a host-order u32.
    meta(m, NFT_META_MARK);
    cmp(m, NFT_CMP_NEQ, &mark.to_ne_bytes());
    tcp_field(m, TCP_FLAGS_OFFSET, 1);
    expr(m, "bitwise", |m| {
        m.attr_be32(NFTA_BITWISE_SREG, NFT_REG_1)
            .attr_be32(NFTA_BITWISE_DREG, NFT_REG_1)
            .attr_be32(NFTA_BITWISE_LEN, 1);
        value(m, NFTA_BITWISE_MASK, &[TCP_FLAG_RST]);
        value(m, NFTA_BITWISE_XOR, &[0]);
    });
    cmp(m, NFT_CMP_NEQ, &[0]);
    tcp_field(m, TCP_SPORT_OFFSET, 2);
    lookup_ports(m);
    verdict_drop(m);
}

/// `meta l4proto tcp tcp dport @ports drop`, in prerouting before conntrack: segments for
/// our connections have already been read by the tap (AF_PACKET sees them before the IP
/// layer), so the kernel's TCP need not see them at all. It then has nothing to answer,
/// and handling our connections' segments costs the receive path (and our reaction time)
/// almost nothing.
fn prerouting_rule(m: &mut MsgBuf) {
    meta(m, NFT_META_L4PROTO);
    cmp(m, NFT_CMP_EQ, &[IPPROTO_TCP]);
    tcp_field(m, TCP_DPORT_OFFSET, 2);
    lookup_ports(m);
    verdict_drop(m);
}

fn expr(m: &mut MsgBuf, name: &str, data: impl FnOnce(&mut MsgBuf)) {
    m.nest(NFTA_LIST_ELEM)
        .attr_str(NFTA_EXPR_NAME, name)
        .nest(NFTA_EXPR_DATA);
    data(m);
    m.end_nest().end_nest();
}

fn value(m: &mut MsgBuf, ty: u16, bytes: &[u8]) {
    m.nest(ty).attr(NFTA_DATA_VALUE, bytes).end_nest();
}

fn meta(m: &mut MsgBuf, key: u32) {
    expr(m, "meta", |m| {
        m.attr_be32(NFTA_META_DREG, NFT_REG_1)
            .attr_be32(NFTA_META_KEY, key);
    });
}

fn cmp(m: &mut MsgBuf, op: u32, bytes: &[u8]) {
    expr(m, "cmp", |m| {
        m.attr_be32(NFTA_CMP_SREG, NFT_REG_1)
            .attr_be32(NFTA_CMP_OP, op);
        value(m, NFTA_CMP_DATA, bytes);
    });
}

fn tcp_field(m: &mut MsgBuf, offset: u32, len: u32) {
    expr(m, "payload", |m| {
        m.attr_be32(NFTA_PAYLOAD_DREG, NFT_REG_1)
            .attr_be32(NFTA_PAYLOAD_BASE, NFT_PAYLOAD_TRANSPORT_HEADER)
            .attr_be32(NFTA_PAYLOAD_OFFSET, offset)
            .attr_be32(NFTA_PAYLOAD_LEN, len);
    });
}

fn lookup_ports(m: &mut MsgBuf) {
    expr(m, "lookup", |m| {
        m.attr_str(NFTA_LOOKUP_SET, SET_NAME)
            .attr_be32(NFTA_LOOKUP_SET_ID, SET_ID)
            .attr_be32(NFTA_LOOKUP_SREG, NFT_REG_1);
    });
}

fn verdict_drop(m: &mut MsgBuf) {
    expr(m, "immediate", |m| {
        m.attr_be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT)
            .nest(NFTA_IMMEDIATE_DATA)
            .nest(NFTA_DATA_VERDICT)
            .attr_be32(NFTA_VERDICT_CODE, NF_DROP)
            .end_nest()
            .end_nest();
    });
}

fn delete_table(sock: &mut NlSocket, table: &str) -> anyhow::Result<()> {
    let mut b = Batch::new(sock);
    b.msg(sock, NFT_MSG_DELTABLE, 0)
        .attr_str(NFTA_TABLE_NAME, table)
        .end();
    b.commit(sock)
}

/// Name and flags of every inet table in the socket's namespace.
fn list_tables(sock: &mut NlSocket) -> anyhow::Result<Vec<(String, u32)>> {
    let seq = sock.next_seq();
    let mut m = MsgBuf::new();
    m.begin(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE,
        NLM_F_DUMP,
        seq,
    )
    .header(&nfgenmsg(NFPROTO_INET, 0))
    .end();
    let replies = sock
        .request(&m, seq)
        .map_err(|e| explain(e, "listing tables"))?;
    Ok(replies
        .iter()
        .filter(|r| r.ty == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE)
        .filter_map(|r| {
            let a = r.payload.get(4..)?;
            let name = read_str(find_attr(a, NFTA_TABLE_NAME)?);
            let flags = find_attr(a, NFTA_TABLE_FLAGS)
                .and_then(read_u32_be)
                .unwrap_or(0);
            Some((name, flags))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's refusal becomes one message: `nftables guard` once, what was being
    /// done once (a user saw `nftables guard: listing tables: nftables guard: permission
    /// denied`).
    #[test]
    fn a_refusal_names_the_guard_once() {
        for errno in [libc::EPERM, libc::EOPNOTSUPP, libc::ENOENT, libc::EBUSY] {
            let e = anyhow::Error::new(crate::netlink::NlError {
                errno,
                seq: 1,
                msg: None,
            });
            let msg = format!("{:#}", explain(e, "listing tables"));
            assert_eq!(msg.matches("nftables guard").count(), 1, "{msg}");
            assert_eq!(msg.matches("listing tables").count(), 1, "{msg}");
        }
    }
    use crate::netns::testutil::{in_fresh_netns, require_root};
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::{Duration, Instant};

    const MARK: u32 = 0x7463_7073;

    fn tables() -> Vec<(String, u32)> {
        list_tables(&mut open_nfnetlink().unwrap()).unwrap()
    }

    fn has_table(name: &str) -> bool {
        tables().iter().any(|(n, _)| n == name)
    }

    #[test]
    fn table_names_carry_the_pid() {
        assert_eq!(table_pid("tcpshake_123"), Some(123));
        assert_eq!(table_pid("tcpshake_123_4"), Some(123));
        assert_eq!(table_pid("tcpshake_x"), None);
        assert_eq!(table_pid("filter"), None);
    }

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn survey_guard_keeps_its_ports_in_a_hash_set() {
        require_root("survey_guard_keeps_its_ports_in_a_hash_set");
        in_fresh_netns(|| {
            let mut g = Guard::install_for_survey(MARK).unwrap();
            let name = g.table_name().to_string();
            let ports: Vec<u16> = (40_000..40_300).collect();
            g.protect_ports(&ports).unwrap();
            g.release_ports(&ports[..299]).unwrap();
            let out = std::process::Command::new("nft")
                .args(["list", "table", "inet", &name])
                .output()
                .expect("nft(8) is installed by scripts/test");
            let text = String::from_utf8_lossy(&out.stdout);
            let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(out.status.success(), "{text}");
            for want in [
                "flags dynamic",
                "elements = { 40299 }",
                "tcp dport @ports drop",
            ] {
                assert!(text.contains(want), "missing {want:?} in: {text}");
            }
            drop(g);
            assert!(!has_table(&name), "owner table must vanish with its socket");
        })
        .unwrap();
    }

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn install_creates_owned_table_and_drop_removes_it() {
        require_root("install_creates_owned_table_and_drop_removes_it");
        in_fresh_netns(|| {
            let mut g = Guard::install(MARK).unwrap();
            let name = g.table_name().to_string();
            assert!(name.starts_with(&format!("tcpshake_{}", std::process::id())));
            assert!(g.owner_flag(), "kernel ≥ 5.12 should accept the owner flag");
            let listed = tables();
            let flags = listed.iter().find(|(n, _)| *n == name).unwrap().1;
            assert_eq!(flags & NFT_TABLE_F_OWNER, NFT_TABLE_F_OWNER);
            g.protect_port(8080).unwrap();
            g.protect_port(8080).unwrap(); // a second holder
            g.protect_port(443).unwrap();
            g.release_port(443).unwrap();
            g.release_port(9).unwrap(); // never protected: no-op
            g.release_port(8080).unwrap(); // one holder left: still protected

            // Read it back with nft(8) when it is installed: the child process inherits
            // this thread's network namespace.
            match std::process::Command::new("nft")
                .args(["list", "table", "inet", &name])
                .output()
            {
                Ok(out) => {
                    let text = String::from_utf8_lossy(&out.stdout);
                    assert!(out.status.success(), "{text}");
                    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    for want in [
                        "flags owner",
                        "type inet_service",
                        "elements = { 8080 }",
                        "type filter hook output priority filter; policy accept;",
                        // nft leaves out `meta l4proto tcp`: `tcp ...` implies it.
                        "meta mark != 0x74637073 tcp flags",
                        "tcp sport @ports drop",
                    ] {
                        assert!(text.contains(want), "missing {want:?} in: {text}");
                    }
                    assert!(
                        text.contains("tcp flags & rst != 0")
                            || text.contains("tcp flags & rst == rst")
                            || text.contains("tcp flags rst"),
                        "{text}"
                    );
                }
                Err(e) => eprintln!("nft(8) not runnable ({e}); checked via netlink only"),
            }
            drop(g);
            assert!(!has_table(&name), "owner table must vanish with its socket");
        })
        .unwrap();
    }

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn unowned_fallback_table_is_deleted_on_drop_and_stale_ones_swept() {
        require_root("unowned_fallback_table_is_deleted_on_drop_and_stale_ones_swept");
        in_fresh_netns(|| {
            let g = Guard::install_with(MARK, false, PortSet::Bitmap).unwrap();
            let name = g.table_name().to_string();
            assert!(!g.owner_flag());
            assert_eq!(tables().iter().find(|(n, _)| *n == name).unwrap().1, 0);
            drop(g);
            assert!(!has_table(&name));

            // A leftover of a dead process (no pid is above pid_max, 2^22) and one of a
            // live process (pid 1).
            let mut sock = open_nfnetlink().unwrap();
            create_table(&mut sock, "tcpshake_99999999", MARK, false, PortSet::Bitmap).unwrap();
            create_table(&mut sock, "tcpshake_1_3", MARK, false, PortSet::Bitmap).unwrap();
            assert_eq!(sweep_stale().unwrap(), 1);
            assert!(!has_table("tcpshake_99999999"));
            assert!(has_table("tcpshake_1_3"));
            // install() sweeps too.
            create_table(&mut sock, "tcpshake_99999998", MARK, false, PortSet::Bitmap).unwrap();
            let g = Guard::install(MARK).unwrap();
            assert!(!has_table("tcpshake_99999998"));
            drop(g);
        })
        .unwrap();
    }

    /// A TCP header (no options) from `sport` to `dport` on 127.0.0.1, checksummed.
    fn tcp_segment(sport: u16, dport: u16, flags: u8) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0..2].copy_from_slice(&sport.to_be_bytes());
        h[2..4].copy_from_slice(&dport.to_be_bytes());
        h[4..8].copy_from_slice(&0x1000_0000u32.to_be_bytes());
        h[8..12].copy_from_slice(&0x2000_0000u32.to_be_bytes());
        h[12] = 5 << 4;
        h[13] = flags;
        h[14..16].copy_from_slice(&65535u16.to_be_bytes());
        // RFC 9293 §3.1: checksum over the pseudo-header and the segment.
        let mut sum: u32 = 0x7f00 + 0x0001 + 0x7f00 + 0x0001 + 6 + 20;
        for w in h.chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        h[16..18].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        h
    }

    /// Sends `seg` over a raw socket (with SO_MARK `mark` if given) and reports whether a
    /// TCP segment with `want_flags` from `sport` to `dport` shows up on lo within 300 ms.
    fn sees_after_send(
        raw: &Socket,
        seg: &[u8],
        mark: Option<u32>,
        (sport, dport, want_flags): (u16, u16, u8),
    ) -> bool {
        let dst = SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let tx = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).unwrap();
        if let Some(m) = mark {
            tx.set_mark(m).unwrap();
        }
        if let Err(e) = tx.send_to(seg, &dst) {
            // nftables' drop of a locally made packet shows up as EPERM to its sender.
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
            return false;
        }
        let deadline = Instant::now() + Duration::from_millis(300);
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            use std::io::Read;
            let Ok(n) = (&*raw).read(&mut buf) else {
                continue;
            };
            let pkt = &buf[..n];
            if pkt.is_empty() {
                continue;
            }
            let ihl = usize::from(pkt[0] & 0x0f) * 4;
            let Some(t) = pkt.get(ihl..ihl + 20) else {
                continue;
            };
            let (s, d) = (
                u16::from_be_bytes([t[0], t[1]]),
                u16::from_be_bytes([t[2], t[3]]),
            );
            if s == sport && d == dport && t[13] & want_flags == want_flags {
                return true;
            }
        }
        false
    }

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn kernel_rst_for_protected_port_is_dropped_and_marked_rst_passes() {
        require_root("kernel_rst_for_protected_port_is_dropped_and_marked_rst_passes");
        in_fresh_netns(|| {
            crate::netns::set_link_up_by_name("lo").unwrap();
            // Reserve a local port the way probes do: bound, not listening.
            let reserved = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            reserved
                .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
                .unwrap();
            let port = reserved.local_addr().unwrap().as_socket().unwrap().port();
            let peer_port = 40404;
            let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::TCP)).unwrap();
            raw.set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let syn_ack = tcp_segment(peer_port, port, 0x12);
            let kernel_rst = (port, peer_port, TCP_FLAG_RST);

            let mut g = Guard::install(MARK).unwrap();
            // Unprotected: the kernel answers the stray SYN-ACK with RST (RFC 9293 §3.10.7.1).
            assert!(sees_after_send(&raw, &syn_ack, None, kernel_rst));
            g.protect_port(port).unwrap();
            assert!(
                !sees_after_send(&raw, &syn_ack, None, kernel_rst),
                "RST not dropped"
            );
            // Our own RSTs carry the mark and pass; unmarked ones from that port do not.
            let our_rst = tcp_segment(port, peer_port, 0x14);
            assert!(sees_after_send(&raw, &our_rst, Some(MARK), kernel_rst));
            assert!(!sees_after_send(&raw, &our_rst, None, kernel_rst));
            g.release_port(port).unwrap();
            assert!(sees_after_send(&raw, &syn_ack, None, kernel_rst));
        })
        .unwrap();
    }

    /// Clears CAP_NET_ADMIN from the calling thread's effective set (capabilities are
    /// per thread, so the rest of the test process keeps them).
    fn drop_cap_net_admin_on_this_thread() {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
        const CAP_NET_ADMIN: u32 = 12;
        let mut hdr = Header {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        }; 2];
        // SAFETY: capget(2) with a valid v3 header and room for the two data words v3 uses.
        let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
        assert_eq!(rc, 0, "capget: {}", std::io::Error::last_os_error());
        data[0].effective &= !(1 << CAP_NET_ADMIN);
        // SAFETY: as above; capset(2) with pid 0 changes only the calling thread.
        let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
        assert_eq!(rc, 0, "capset: {}", std::io::Error::last_os_error());
    }

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn without_cap_net_admin_the_error_says_what_to_do() {
        require_root("without_cap_net_admin_the_error_says_what_to_do");
        in_fresh_netns(|| {
            drop_cap_net_admin_on_this_thread();
            let err = Guard::install(MARK).unwrap_err();
            let msg = format!("{err:#}");
            assert!(
                msg.contains("run as root (sudo) or grant capabilities: setcap cap_net_raw,cap_net_admin+ep /"),
                "{msg}"
            );
        })
        .unwrap();
    }

    /// Env var that turns `sigkill_holder` into the guard-holding child process.
    const HOLDER_ENV: &str = "TCPSHAKE_GUARD_HOLDER";

    #[test]
    #[ignore = "child process of owner_table_vanishes_after_sigkill; does nothing alone"]
    fn sigkill_holder() {
        if std::env::var_os(HOLDER_ENV).is_none() {
            return;
        }
        in_fresh_netns(|| {
            let mut g = Guard::install(MARK).unwrap();
            g.protect_port(8080).unwrap();
            // SAFETY: gettid(2) cannot fail.
            let tid = unsafe { libc::gettid() };
            println!("READY {tid} {} {}", g.table_name(), g.owner_flag());
            use std::io::Write;
            std::io::stdout().flush().unwrap();
            // Wait to be killed; give up after 30 s so a lost parent leaves nothing behind.
            std::thread::sleep(Duration::from_secs(30));
        })
        .unwrap();
    }

    #[test]
    #[ignore = "needs root: run with `cargo nextest run --run-ignored all` (scripts/test does)"]
    fn owner_table_vanishes_after_sigkill() {
        require_root("owner_table_vanishes_after_sigkill");
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "guard::tests::sigkill_holder",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOLDER_ENV, "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                // The harness prints "test <name> ... " before our output on that line.
                if let Some((_, rest)) = line.split_once("READY ") {
                    let _ = tx.send(rest.to_string());
                    break;
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("guard holder child never became ready");
            }
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        let (tid, table, owner) = (f[0], f[1].to_string(), f[2] == "true");
        // Hold the child's namespace open so it outlives the child.
        let ns = std::fs::File::open(format!("/proc/{}/task/{tid}/ns/net", child.id()));
        let ns = match ns {
            Ok(ns) => ns,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("opening the holder's netns: {e}");
            }
        };
        if !owner {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kernel refused the owner flag; nothing to measure");
        }
        let elapsed = std::thread::scope(|s| {
            s.spawn(|| {
                use std::os::fd::AsFd;
                crate::netns::setns_net(ns.as_fd()).unwrap();
                assert!(has_table(&table), "holder's table missing before the kill");
                let t0 = Instant::now();
                child.kill().unwrap(); // SIGKILL, to our own child by pid
                child.wait().unwrap();
                let reaped = t0.elapsed();
                while has_table(&table) {
                    assert!(
                        t0.elapsed() < Duration::from_secs(1),
                        "table outlived SIGKILL by 1 s"
                    );
                    std::thread::sleep(Duration::from_millis(1));
                }
                (reaped, t0.elapsed())
            })
            .join()
            .unwrap()
        });
        reader.join().unwrap();
        let (reaped, gone) = elapsed;
        eprintln!(
            "owner table {table} gone {gone:?} after SIGKILL (child reaped after {reaped:?})"
        );
    }
}
