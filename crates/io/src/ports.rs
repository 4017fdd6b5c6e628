//! Source ports: [`PortReservation`], one port held for one probe, and for surveys the
//! [`PortKeeper`], which keeps them ready on a helper thread so the event loop does not
//! pay for them.
//!
//! Every probe needs a port of its own: reserved from the kernel by a bound socket (so no
//! other program is handed it) and guarded in nftables (so the kernel never answers on it).
//! Reserving costs three system calls, giving back one more (a TCP socket's teardown), and
//! guarding an nftables transaction: together a fifth of a survey loop's time, measured.
//! The keeper does that work on another CPU: it keeps a stock of reserved and guarded ports
//! per source address, and it unguards and closes the ports of finished probes in batches.
//! The loop only takes a port from the stock, and when the stock is empty (the first
//! probes, a burst) reserves one itself as before.
//!
//! No port serves two probes: a port given back is released, never stocked again. Ports
//! are taken in turn through the ephemeral range from a random start (the kernel's own
//! `bind` starts anew at random each time), so a survey uses each port once before it
//! uses any twice: a capture of up to ~28 000 probes can be split into probes by source
//! port alone.

use super::guard::Guard;
use anyhow::Context as _;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What the keeper and the loop share.
pub struct PortKeeper<'g> {
    state: Mutex<State>,
    wake: Condvar,
    guard: Mutex<&'g mut Guard>,
    /// How many ports one guard transaction adds or removes at most.
    batch: usize,
    /// Ports per source address to keep in stock: a few batches, so a burst of new
    /// probes (the survey's start, many ending at once) does not empty it before the
    /// keeper's next turn.
    stock_target: usize,
    /// The kernel's ephemeral range: ports outside it are not stocked (the taps'
    /// filter only passes the range).
    range: (u16, u16),
    /// `net.ipv4.ip_local_reserved_ports`: the kernel's own choice skips them, an explicit
    /// bind does not, so the walk must.
    reserved: Vec<(u16, u16)>,
}

#[derive(Default)]
struct State {
    /// Reserved, guarded, never used.
    stock: HashMap<IpAddr, VecDeque<PortReservation>>,
    /// Source addresses whose stock ran low.
    low: Vec<IpAddr>,
    /// Given back by finished probes; still guarded.
    returned: Vec<PortReservation>,
    /// The loop is about to sleep: release what was given back without waiting for a batch.
    flush: bool,
    stop: bool,
    /// A guard transaction failed: the loop ends the survey with it.
    error: Option<anyhow::Error>,
    /// What the keeper held when it stopped, still reserved and guarded.
    leftovers: Vec<PortReservation>,
    /// The next port to try.
    walk: u16,
}

impl<'g> PortKeeper<'g> {
    /// Files held at once: `stock_target` per source address, plus up to about a batch
    /// given back and not yet released.
    pub fn new(
        guard: &'g mut Guard,
        batch: usize,
        stock_target: usize,
        range: (u16, u16),
    ) -> PortKeeper<'g> {
        let (lo, hi) = range;
        let span = u32::from(hi.saturating_sub(lo)) + 1;
        let start = lo.saturating_add((super::random::random_u32() % span) as u16);
        let reserved = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_reserved_ports")
            .map(|s| parse_port_list(&s))
            .unwrap_or_default();
        let usable = (lo..=hi)
            .filter(|p| !reserved.iter().any(|&(a, b)| (a..=b).contains(p)))
            .count();
        // The stock holds a quarter of the usable range at most: in a small range a full
        // stock (and the batch the keeper is still guarding) left the loop's own
        // reservation no free port at all.
        let stock_target = stock_target.min(usable / 4).max(1);
        PortKeeper {
            state: Mutex::new(State {
                walk: start,
                ..State::default()
            }),
            wake: Condvar::new(),
            guard: Mutex::new(guard),
            batch: batch.min(stock_target).max(1),
            stock_target,
            range,
            reserved,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The guard, for ports the loop reserved itself.
    pub fn guard(&self) -> MutexGuard<'_, &'g mut Guard> {
        self.guard.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A stocked port on `src` (already guarded) that `usable` accepts, looking at the
    /// first `scan` only; `None` when there is none (the keeper is asked for more).
    pub fn take(
        &self,
        src: IpAddr,
        scan: usize,
        usable: impl Fn(u16) -> bool,
    ) -> Option<PortReservation> {
        let mut st = self.state();
        let stock = st.stock.entry(src).or_default();
        let found = stock
            .iter()
            .take(scan)
            .position(|r| usable(r.port))
            .and_then(|k| stock.remove(k));
        if stock.len() < self.stock_target / 2 + 1 && !st.low.contains(&src) {
            st.low.push(src);
            self.wake.notify_one();
        }
        found
    }

    /// A port on `src` no other socket holds, the next in turn through the range (not
    /// guarded yet).
    pub fn reserve(&self, src: IpAddr) -> anyhow::Result<PortReservation> {
        let (lo, hi) = self.range;
        let span = usize::from(hi.saturating_sub(lo)) + 1;
        // Bounded: one lap of the range at most.
        for _ in 0..span {
            let port = {
                let mut st = self.state();
                let p = st.walk;
                st.walk = if p >= hi || p < lo { lo } else { p + 1 };
                p.clamp(lo, hi)
            };
            if self.reserved.iter().any(|&(a, b)| (a..=b).contains(&port)) {
                continue;
            }
            match PortReservation::at(port) {
                Ok(r) => return Ok(r),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("reserving source port {port} (for {src})")));
                }
            }
        }
        anyhow::bail!(
            "no free source port in {lo}-{hi} (for {src}): every one is in use; widen \
             net.ipv4.ip_local_port_range"
        )
    }

    /// A finished probe's port: the keeper unguards it, then closes its reservation.
    pub fn give_back(&self, r: PortReservation) {
        let mut st = self.state();
        st.returned.push(r);
        if st.returned.len() >= self.batch {
            self.wake.notify_one();
        }
    }

    /// The loop is going idle: release what was given back now.
    pub fn flush(&self) {
        let mut st = self.state();
        if !st.returned.is_empty() {
            st.flush = true;
            self.wake.notify_one();
        }
    }

    /// A guard failure in the keeper, once.
    pub fn take_error(&self) -> Option<anyhow::Error> {
        self.state().error.take()
    }

    /// End the keeper's loop. What it holds then (stock, ports given back) stays reserved
    /// and guarded: see [`PortKeeper::finish`].
    pub fn stop(&self) {
        self.state().stop = true;
        self.wake.notify_one();
    }

    /// The keeper's thread: run until [`PortKeeper::stop`].
    pub fn run(&self) {
        // Bounded: each turn waits for work (at most IDLE_WAKE) and ends once asked to.
        loop {
            let (low, returned, stop) = {
                let mut st = self.state();
                // Wait for: an end, a stock running low, a batch given back, or the loop
                // going idle with something given back.
                let idle = |st: &State| {
                    !st.stop
                        && st.low.is_empty()
                        && st.returned.len() < self.batch
                        && (!st.flush || st.returned.is_empty())
                };
                while idle(&st) {
                    st = self
                        .wake
                        .wait_timeout(st, IDLE_WAKE)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                st.flush = false;
                let low = std::mem::take(&mut st.low);
                let returned = std::mem::take(&mut st.returned);
                (low, returned, st.stop)
            };
            if stop {
                let mut st = self.state();
                let stock: Vec<PortReservation> = st.stock.drain().flat_map(|(_, q)| q).collect();
                st.leftovers.extend(returned);
                st.leftovers.extend(stock);
                return;
            }
            self.release(returned);
            for src in low {
                self.restock(src);
            }
        }
    }

    /// After [`PortKeeper::stop`] and the keeper thread's end: delete the guard's table (the
    /// survey is over) and only then close every reservation left, on a thread of its own
    /// — a few hundred sockets, 10 ms here, that nothing needs to wait for (the process
    /// does not exit before that thread ends).
    pub fn finish(&self) -> anyhow::Result<()> {
        let leftovers = std::mem::take(&mut self.state().leftovers);
        let removed = self.guard().remove();
        if removed.is_ok() {
            std::thread::spawn(move || drop(leftovers));
        } else {
            // The table may still drop these ports: keep them ours until the process ends.
            std::mem::forget(leftovers);
        }
        removed
    }

    /// Unguard `ports` in one transaction, then close their reservations (in that order:
    /// no other program may get a port whose segments we still drop).
    fn release(&self, ports: Vec<PortReservation>) {
        if ports.is_empty() {
            return;
        }
        let numbers: Vec<u16> = ports.iter().map(|r| r.port).collect();
        if let Err(e) = self.guard().release_ports(&numbers) {
            self.state().error.get_or_insert(e);
            // Keep the reservations: an unreleased port must stay ours.
            std::mem::forget(ports);
            return;
        }
        drop(ports);
    }

    /// Fill `src`'s stock up to its target, a batch at a time: reserve, guard them in one
    /// transaction, hand them to the loop, next batch.
    fn restock(&self, src: IpAddr) {
        let have = self.state().stock.get(&src).map_or(0, VecDeque::len);
        let mut missing = self.stock_target.saturating_sub(have);
        // Bounded: `missing` shrinks every turn, and a port the kernel cannot give ends it;
        // a survey that ended needs no more.
        while missing > 0 && !self.state().stop {
            let mut fresh = Vec::new();
            for _ in 0..missing.min(self.batch) {
                let Ok(r) = self.reserve(src) else {
                    break;
                };
                fresh.push(r);
            }
            if fresh.is_empty() {
                return;
            }
            missing = missing.saturating_sub(self.batch);
            let numbers: Vec<u16> = fresh.iter().map(|r| r.port).collect();
            if let Err(e) = self.guard().protect_ports(&numbers) {
                self.state().error.get_or_insert(e);
                return;
            }
            self.state().stock.entry(src).or_default().extend(fresh);
        }
    }
}

/// Linux's default `ip_local_port_range`.
const DEFAULT_EPHEMERAL: (u16, u16) = (32768, 60999);

/// The kernel's ephemeral port range (where `bind(port 0)` picks from), which the taps'
/// filter passes. Unreadable or nonsense: Linux's default.
pub fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| parse_port_range(&s))
        .unwrap_or(DEFAULT_EPHEMERAL)
}

/// `ip_local_port_range` as the sysctl shows it (`32768\t60999\n`): two ports, low then
/// high; anything else is `None`.
fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
    let range = (it.next()??, it.next()??);
    (it.next().is_none() && range.0 <= range.1 && range.0 > 0).then_some(range)
}

/// `8080,9000-9010` (the sysctl's syntax) as ranges; what does not parse is left out.
fn parse_port_list(s: &str) -> Vec<(u16, u16)> {
    s.split(',')
        .filter_map(|item| {
            let item = item.trim();
            let (a, b) = item.split_once('-').unwrap_or((item, item));
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .filter(|(a, b)| a <= b)
        .collect()
}

/// How long the keeper sleeps when nothing wakes it (it wakes on work at once).
const IDLE_WAKE: Duration = Duration::from_millis(50);

/// `--source-port` names a port another socket on this host holds: the user's to change
/// (exit 2, like any option value that cannot be used as written).
#[derive(Debug)]
pub struct PortTaken(pub u16);

impl std::fmt::Display for PortTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let port = self.0;
        write!(
            f,
            "source port {port} is taken on this host: another socket holds it, and tcpshake \
             would drop that socket's segments while it runs; pick another (`ss -tanp 'sport \
             = :{port}'` shows who has it; a socket only bound shows with `ss -tBp`, in \
             iproute2 6.8 and later)"
        )
    }
}

impl std::error::Error for PortTaken {}

/// A kernel TCP socket bound to our source port on every address (`[::]`, dual-stack) and
/// never connected or listening: while it lives, no other socket in this network namespace
/// (and VRF) has the port, whatever its address, and none is handed it.
///
/// Every address, not only the probe's: the guard drops by port alone (guard.rs), so a
/// reservation on one address let the walk take a port that a kernel connection held on
/// another — the exporter's own HTTP client on 127.0.0.1 — and the guard then dropped
/// that connection's segments (a `/probe` request left without an answer). A wildcard
/// bind conflicts with every socket on the port (`inet_csk_bind_conflict`: a wildcard
/// overlaps any address, and a dual-stack `[::]` the IPv4 ones too), and `connect`'s own
/// choice skips bound ports (`__inet_hash_connect`), so the port stays ours alone there.
/// (Not beyond: a container's connection masqueraded out through this host keeps its own
/// source port, which the guard's prerouting rule, ahead of conntrack, would drop on the
/// way back if it is one of ours — a port clash bind cannot see.)
pub struct PortReservation {
    socket: Socket,
    pub port: u16,
}

impl PortReservation {
    /// Bind to `port` exactly; the kernel refuses a port any socket holds (`AddrInUse`).
    pub fn at(port: u16) -> io::Result<PortReservation> {
        let socket = match Socket::new(Domain::IPV6, Type::STREAM.cloexec(), Some(Protocol::TCP)) {
            Ok(s) => {
                // Explicitly: `net.ipv6.bindv6only = 1` makes v6-only the default.
                s.set_only_v6(false)?;
                s.bind(&SockAddr::from(SocketAddr::from((
                    Ipv6Addr::UNSPECIFIED,
                    port,
                ))))?;
                s
            }
            // A kernel without IPv6 (`ipv6.disable=1`) has only IPv4 sockets to conflict
            // with.
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
                let s = Socket::new(Domain::IPV4, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
                s.bind(&SockAddr::from(SocketAddr::from((
                    Ipv4Addr::UNSPECIFIED,
                    port,
                ))))?;
                s
            }
            Err(e) => return Err(e),
        };
        Ok(PortReservation { socket, port })
    }

    /// The port a user asked for (`--source-port`): [`PortTaken`] when another socket
    /// holds it, since the guard would drop that socket's segments. `None` for a
    /// privileged port (below `ip_unprivileged_port_start`, nmap's `-g 53`) that we may
    /// not bind without CAP_NET_BIND_SERVICE (the documented `setcap` grants raw sockets
    /// and nftables only): `connect` never hands such a port out, and only a privileged
    /// program can bind it, so it goes unreserved, as it did before reservations.
    pub fn chosen(port: u16) -> anyhow::Result<Option<PortReservation>> {
        match PortReservation::at(port) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                Err(anyhow::Error::new(PortTaken(port)))
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && port < 1024 => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("reserving source port {port}"))),
        }
    }

    /// A port the kernel picks from its ephemeral range, free on every address.
    pub fn new() -> anyhow::Result<PortReservation> {
        // EADDRINUSE from a bind to port 0: the kernel found no free ephemeral port (the
        // survey's own search says the same in these words).
        let mut r = match PortReservation::at(0) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => anyhow::bail!(
                "no free source port: every one of the kernel's ephemeral range is in use; \
                 widen net.ipv4.ip_local_port_range (or wait for connections to end)"
            ),
            Err(e) => return Err(anyhow::Error::new(e).context("reserving a source port")),
        };
        r.port = r
            .socket
            .local_addr()?
            .as_socket()
            .map(|a| a.port())
            .context("reading the reserved port")?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port a kernel connection holds on another address (and the other family) is not
    /// ours to take: the guard would drop that connection's segments.
    #[test]
    fn a_port_held_on_any_address_is_not_reserved() {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let port = client.local_addr().unwrap().port();
        let err = PortReservation::at(port)
            .err()
            .expect("the client's port was reserved");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
        // A port ours, in turn, is handed to no connection and can be bound nowhere.
        let ours = PortReservation::new().unwrap();
        for addr in ["127.0.0.1", "127.0.0.2", "::1"] {
            let ip: IpAddr = addr.parse().unwrap();
            let domain = if ip.is_ipv6() {
                Domain::IPV6
            } else {
                Domain::IPV4
            };
            let s = Socket::new(domain, Type::STREAM, None).unwrap();
            let e = s
                .bind(&SockAddr::from(SocketAddr::new(ip, ours.port)))
                .expect_err(addr);
            assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{addr}: {e}");
        }
    }

    #[test]
    fn the_ephemeral_range_parses_like_the_sysctl() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("1024 1024"), Some((1024, 1024)));
        for bad in [
            "60999 32768",
            "0 100",
            "32768",
            "a b",
            "1 2 3",
            "",
            "70000 80000",
        ] {
            assert_eq!(parse_port_range(bad), None, "{bad:?}");
        }
        let (lo, hi) = ephemeral_range();
        assert!(0 < lo && lo <= hi);
    }

    #[test]
    fn reserved_port_lists_parse_like_the_sysctl() {
        assert_eq!(parse_port_list(""), vec![]);
        assert_eq!(parse_port_list("\n"), vec![]);
        assert_eq!(
            parse_port_list("8080,9000-9010, 40000 - 40002\n"),
            vec![(8080, 8080), (9000, 9010), (40000, 40002)]
        );
        assert_eq!(parse_port_list("x,5-3,70000,7"), vec![(7, 7)]);
    }
}
