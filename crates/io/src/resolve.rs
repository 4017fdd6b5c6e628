//! Host names to addresses, through the system resolver (getaddrinfo), like curl. One
//! function and one set of messages for `probe`, its surveys and `scan`; [`Lookups`] asks
//! it on threads of their own, for a caller that must not wait (the survey loop).

use anyhow::{Result, bail};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
pub use tcpshake_proto::probe::target::Family;
use tcpshake_proto::probe::target::{Host, Target};

/// The address to probe for `target`: its literal address, or the resolver's first answer
/// of the wanted family.
pub fn resolve(target: &Target, family: Family) -> Result<SocketAddr> {
    let ip = match &target.host {
        Host::Ip(ip) => {
            if let Err(e) = target.host.check_family(family) {
                bail!(e);
            }
            *ip
        }
        Host::Name(name) => resolve_name(name, family)?[0],
    };
    Ok(SocketAddr::new(ip, target.port))
}

/// Every address of `name` in the wanted family, in the resolver's order; never empty.
pub fn resolve_name(name: &str, family: Family) -> Result<Vec<IpAddr>> {
    let all: Vec<IpAddr> = match (name, 0).to_socket_addrs() {
        Ok(it) => it.map(|a| a.ip()).collect(),
        Err(e) => {
            bail!("cannot resolve `{name}`: {e}; check the name, or give an address instead")
        }
    };
    let fit: Vec<IpAddr> = all.iter().copied().filter(|a| family.admits(*a)).collect();
    if !fit.is_empty() {
        return Ok(fit);
    }
    if all.is_empty() {
        bail!("`{name}` resolves to no address");
    }
    Err(NoAddressOfFamily {
        name: name.to_string(),
        family,
        has: all,
    }
    .into())
}

/// `name` resolved, but to no address of the family asked for. Said as the command line
/// asks for a family (`-6`); the exporter, whose word is a module's `family`, words it
/// its own way from these fields.
#[derive(Debug)]
pub struct NoAddressOfFamily {
    pub name: String,
    pub family: Family,
    /// What it resolved to.
    pub has: Vec<IpAddr>,
}

impl NoAddressOfFamily {
    /// `198.18.0.2, fd00::2`.
    pub fn addresses(&self) -> String {
        let has: Vec<String> = self.has.iter().map(ToString::to_string).collect();
        has.join(", ")
    }
}

impl std::fmt::Display for NoAddressOfFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (name, fam, flag) = (&self.name, self.family.name(), self.family.flag());
        write!(
            f,
            "`{name}` has no {fam} address (it has {}); drop {flag}, or give a name or \
             address that has one",
            self.addresses()
        )
    }
}

impl std::error::Error for NoAddressOfFamily {}

/// A lookup asked of [`Lookups`]: its answer comes back with this number.
pub type Ticket = u64;

/// A name looked up: the address [`resolve_name`] gives first, or its message (`{e:#}`).
pub type Answer = std::result::Result<IpAddr, String>;

/// Name lookups on a few threads of their own (made as lookups are asked, at most
/// `threads`), answered as they finish: the caller asks and goes on, and picks the answers
/// up when it likes — a lookup that takes seconds (a resolver that does not answer)
/// holds up no one but who waits for it. Lookups start in the order asked.
///
/// getaddrinfo cannot be cancelled, so nothing here waits for a thread: dropping this
/// lets idle ones end at once and busy ones as their lookup returns (or with the process).
pub struct Lookups {
    threads: usize,
    max_threads: usize,
    /// Lookups to the threads, in the order asked.
    jobs: mpsc::Sender<(Ticket, String, Family)>,
    /// The threads' end of `jobs`, shared: whichever is idle takes the next lookup.
    queue: Arc<Mutex<mpsc::Receiver<(Ticket, String, Family)>>>,
    done: mpsc::Receiver<(Ticket, Answer)>,
    done_tx: mpsc::Sender<(Ticket, Answer)>,
    /// Answers made here (no thread could be started for them).
    local: VecDeque<(Ticket, Answer)>,
    next: Ticket,
    /// Asked and not yet handed back by [`Lookups::answers`].
    outstanding: usize,
}

impl Lookups {
    /// No thread yet: the first comes with the first lookup, so a caller that never asks
    /// (a survey of addresses) pays nothing.
    pub fn new(threads: usize) -> Lookups {
        let (jobs, queue) = mpsc::channel();
        let (done_tx, done) = mpsc::channel();
        Lookups {
            threads: 0,
            max_threads: threads.max(1),
            jobs,
            queue: Arc::new(Mutex::new(queue)),
            done,
            done_tx,
            local: VecDeque::new(),
            next: 0,
            outstanding: 0,
        }
    }

    /// Look `name` up ([`resolve_name`], the first address of `family`); never waits.
    pub fn ask(&mut self, name: &str, family: Family) -> Ticket {
        let ticket = self.next;
        self.next += 1;
        self.outstanding += 1;
        // A thread more while lookups outnumber them (the busy ones may be stuck).
        if self.outstanding > self.threads && self.threads < self.max_threads {
            match self.spawn() {
                Ok(()) => self.threads += 1,
                Err(e) if self.threads == 0 => {
                    self.local.push_back((
                        ticket,
                        Err(format!(
                            "cannot resolve `{name}`: no thread to resolve it on: {e}"
                        )),
                    ));
                    return ticket;
                }
                // The threads there are will get to it.
                Err(_) => {}
            }
        }
        // The threads hold the queue until this is dropped: the send cannot fail.
        let _ = self.jobs.send((ticket, name.to_string(), family));
        ticket
    }

    fn spawn(&self) -> std::io::Result<()> {
        let queue = Arc::clone(&self.queue);
        let done = self.done_tx.clone();
        let worker = move || {
            loop {
                // Idle threads wait here in turn; the lock is never held across a lookup.
                let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                let Ok((ticket, name, family)) = job else {
                    return;
                };
                let answer = resolve_name(&name, family)
                    .map(|a| a[0])
                    .map_err(|e| format!("{e:#}"));
                if done.send((ticket, answer)).is_err() {
                    return;
                }
            }
        };
        // Detached: see the type.
        std::thread::Builder::new()
            .name("resolver".into())
            .spawn(worker)
            .map(drop)
    }

    /// The answers that came since last asked, in the order they came.
    pub fn answers(&mut self) -> impl Iterator<Item = (Ticket, Answer)> + '_ {
        std::iter::from_fn(|| {
            let a = self
                .local
                .pop_front()
                .or_else(|| self.done.try_recv().ok())?;
            self.outstanding -= 1;
            Some(a)
        })
    }

    /// Lookups asked and not yet answered (through [`Lookups::answers`]).
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Answers by ticket, waited for (bounded) as a caller polling would.
    fn collect(l: &mut Lookups, n: usize) -> Vec<(Ticket, Answer)> {
        let mut got = Vec::new();
        let until = Instant::now() + Duration::from_secs(10);
        while got.len() < n && Instant::now() < until {
            got.extend(l.answers());
            std::thread::sleep(Duration::from_millis(1));
        }
        got.sort_by_key(|a| a.0);
        got
    }

    /// A name of the other family than `-6`/`-4` asked for: what it has, and what to
    /// change (as for an address of the other family, `target::family_mismatch`).
    #[test]
    fn a_name_without_the_family_says_what_it_has_and_what_to_drop() {
        let e = NoAddressOfFamily {
            name: "web.lab.test".into(),
            family: Family::V6,
            has: vec![IpAddr::from([198, 18, 0, 2]), IpAddr::from([198, 18, 0, 3])],
        };
        assert_eq!(
            e.to_string(),
            "`web.lab.test` has no IPv6 address (it has 198.18.0.2, 198.18.0.3); drop -6, or \
             give a name or address that has one"
        );
        let e = NoAddressOfFamily {
            family: Family::V4,
            has: vec!["fd00::2".parse().unwrap()],
            ..e
        };
        assert!(
            e.to_string()
                .ends_with("(it has fd00::2); drop -4, or give a name or address that has one"),
            "{e}"
        );
    }

    /// `localhost` comes from /etc/hosts: no resolver is asked.
    #[test]
    fn lookups_are_answered_by_ticket_on_threads() {
        let mut l = Lookups::new(2);
        assert_eq!(l.outstanding(), 0);
        let a = l.ask("localhost", Family::Any);
        let b = l.ask("localhost", Family::V4);
        let c = l.ask("localhost", Family::V4);
        assert!(l.threads <= 2, "at most the threads asked for");
        let got = collect(&mut l, 3);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [a, b, c]);
        assert!(
            got[0].1.as_ref().is_ok_and(|ip| ip.is_loopback()),
            "{got:?}"
        );
        for g in &got[1..] {
            assert_eq!(g.1, Ok(IpAddr::from([127, 0, 0, 1])), "{got:?}");
        }
        assert_eq!(l.outstanding(), 0);
        assert_eq!(l.answers().count(), 0);
    }

    /// A name refused before any resolver is asked (a NUL in it): its message is
    /// `resolve_name`'s.
    #[test]
    fn a_failed_lookup_is_answered_with_its_message() {
        let mut l = Lookups::new(1);
        let t = l.ask("bad\0name", Family::Any);
        let got = collect(&mut l, 1);
        let want = resolve_name("bad\0name", Family::Any).map(|a| a[0]);
        let want = want.map_err(|e| format!("{e:#}"));
        assert!(want.is_err());
        assert_eq!(got, [(t, want)]);
    }
}
