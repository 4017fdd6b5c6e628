//! Source ports for a survey, kept ready by a helper thread so the event loop does not pay
//! for them.
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
//! No port serves two probes: a port given back is released, never stocked again (the
//! kernel may hand it out later, as it would to anyone).

use super::guard::Guard;
use super::sender::PortReservation;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What the keeper and the loop share.
pub struct PortKeeper<'g> {
    state: Mutex<State>,
    wake: Condvar,
    guard: Mutex<&'g mut Guard>,
    /// Ports per source address to keep in stock, and how many to reserve or release in
    /// one guard transaction.
    batch: usize,
    /// The kernel's ephemeral range: ports outside it are not stocked (the taps'
    /// filter only passes the range).
    range: (u16, u16),
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
}

impl<'g> PortKeeper<'g> {
    pub fn new(guard: &'g mut Guard, batch: usize, range: (u16, u16)) -> PortKeeper<'g> {
        PortKeeper {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            guard: Mutex::new(guard),
            batch: batch.max(1),
            range,
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
        if stock.len() < self.batch / 2 + 1 && !st.low.contains(&src) {
            st.low.push(src);
            self.wake.notify_one();
        }
        found
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

    /// End the keeper's loop; it gives every stocked and returned port back on its way out.
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
            self.release(returned);
            if stop {
                let stock: Vec<PortReservation> = {
                    let mut st = self.state();
                    st.stock.drain().flat_map(|(_, q)| q).collect()
                };
                self.release(stock);
                return;
            }
            for src in low {
                self.restock(src);
            }
        }
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

    /// Fill `src`'s stock up to a batch: reserve, then guard them in one transaction.
    fn restock(&self, src: IpAddr) {
        let have = self.state().stock.get(&src).map_or(0, VecDeque::len);
        let mut fresh = Vec::new();
        // Bounded by the batch; a port the kernel cannot give just ends the refill.
        for _ in have..self.batch {
            let Ok(r) = PortReservation::new(src) else {
                break;
            };
            if (self.range.0..=self.range.1).contains(&r.port) {
                fresh.push(r);
            }
        }
        if fresh.is_empty() {
            return;
        }
        let numbers: Vec<u16> = fresh.iter().map(|r| r.port).collect();
        if let Err(e) = self.guard().protect_ports(&numbers) {
            self.state().error.get_or_insert(e);
            return;
        }
        self.state().stock.entry(src).or_default().extend(fresh);
    }
}

/// How long the keeper sleeps when nothing wakes it (it wakes on work at once).
const IDLE_WAKE: Duration = Duration::from_millis(50);
