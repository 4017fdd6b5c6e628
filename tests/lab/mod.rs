//! A throwaway two-namespace lab for integration tests.
//!
//! ```text
//!   client netns  tsk-<pid>-<n>-<name>-c        server netns  tsk-<pid>-<n>-<name>-s
//!   ┌──────────────────────────┐               ┌──────────────────────────┐
//!   │ tsk0  198.18.K.1/24      │── veth pair ──│ tsk1  198.18.K.2/24      │
//!   │       fd00:K::1/64       │               │       fd00:K::2/64       │
//!   │ tcpshake, tcpdump, curl  │               │ nginx, python, nft faults│
//!   └──────────────────────────┘               └──────────────────────────┘
//! ```
//!
//! Everything a `Lab` makes (namespaces, the veth pair inside them, processes it spawned,
//! nft tables, its temp dir) is removed by `Drop`, which also runs while a failing test
//! unwinds. The veth pair is created directly inside the two namespaces, so nothing ever
//! appears in the host's own namespace and fixed interface names cannot collide.
//!
//! Names carry the test process's pid: nextest runs every test in its own process, in
//! parallel, and `Lab::new` deletes `tsk-<pid>-…` namespaces whose process is gone (left by
//! a test that was SIGKILLed), touching nothing else.

#![allow(dead_code)] // Each test uses a different subset of the harness.

pub mod capture;
pub mod chain;
pub mod faults;
pub mod middle;
pub mod peers;
pub mod report;
pub mod tls;

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Prefix of every namespace and temp dir this harness makes.
const PREFIX: &str = "tsk-";
/// Interface names inside the namespaces; unique because each lab has its own namespaces.
pub const CLIENT_IF: &str = "tsk0";
pub const SERVER_IF: &str = "tsk1";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The binary under test.
pub fn tcpshake_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tcpshake")
}

/// Panics unless the tests run as root: a test that needs namespaces, nftables and raw
/// sockets must fail where it cannot run, never pass by doing nothing.
pub fn require_root() {
    // The effective uid, as the kernel reports it (no libc call needed).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|s| s.parse::<u32>().ok());
    assert_eq!(
        euid,
        Some(0),
        "this test needs root (network namespaces, nftables, raw sockets): run it as root"
    );
}

/// A veth pair created with each end already inside its namespace (`a` in `ns_a`, `b` in
/// `ns_b`): nothing touches the host's namespace.
pub fn veth_pair(a: &str, ns_a: &str, b: &str, ns_b: &str) {
    run_ok(Command::new("ip").args([
        "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b,
    ]));
}

/// Runs `cmd`, panicking with its stderr when it fails. For setup steps only.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A command that runs `program args…` inside network namespace `ns`.
pub fn in_ns(ns: &str, program: impl AsRef<OsStr>) -> Command {
    // `ip netns exec` execs the program in place (no fork), so the Child's pid is the
    // program's own pid and signalling it reaches the right process.
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// Makes a child die with the test process even if the test is SIGKILLed, so no peer or
/// tcpdump outlives a crashed test run.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    tcpshake_io::signals::die_with_parent(cmd)
}

/// Sends `signal` (e.g. "TERM", "KILL") to one process by pid.
pub fn signal(pid: u32, signal: &str) {
    // Errors are ignored on purpose: the process may have exited already.
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Waits for a child up to `limit`; kills it (SIGKILL) when it has not exited by then.
/// Returns true when it exited by itself.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return true,
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}

/// Polls `check` every `every` until it returns true or `limit` passes.
pub fn poll_until(limit: Duration, every: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(every);
    }
}

/// One finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Each stdout line parsed as a probe record (panics with the line when one is not).
    pub fn records(&self) -> Vec<report::ProbeRecord> {
        report::parse_lines(&self.stdout)
    }

    /// Each stdout line as JSON, untyped (panics with the run when one is not).
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{self}")))
            .collect()
    }

    /// Exactly one record, or a panic that shows the whole run.
    pub fn record(&self) -> report::ProbeRecord {
        let mut records = self.records();
        assert_eq!(records.len(), 1, "expected one JSON record:\n{self}");
        records.remove(0)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` with a hard time limit; a run that exceeds it is killed and the test fails.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Run {
    run_bounded_reading(cmd, limit, true)
}

/// [`run_bounded`] with stdout's reader gone before the child writes anything (`tcpshake …
/// | head` at its most abrupt): `stdout` comes back empty.
pub fn run_stdout_closed(cmd: &mut Command, limit: Duration) -> Run {
    run_bounded_reading(cmd, limit, false)
}

fn run_bounded_reading(cmd: &mut Command, limit: Duration, read_stdout: bool) -> Run {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Read both pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    if !read_stdout {
        drop(out);
        out = std::process::ChildStdout::from(std::os::fd::OwnedFd::from(
            std::fs::File::open("/dev/null").expect("/dev/null"),
        ));
    }
    let out_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut err, &mut s);
        s
    });
    let finished = wait_bounded(&mut child, limit);
    let status = child.wait().ok();
    let run = Run {
        code: status.and_then(|s| s.code()),
        stdout: String::from_utf8_lossy(&out_t.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err_t.join().unwrap_or_default()).into_owned(),
    };
    assert!(finished, "{cmd:?} ran longer than {limit:?}; killed\n{run}");
    run
}

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {path:?}: {e}"));
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process the lab owns; killed by pid when the lab drops.
#[derive(Debug)]
pub struct Owned {
    pub what: String,
    pub child: Child,
}

/// Two namespaces joined by a veth pair. See the module doc.
#[derive(Debug)]
pub struct Lab {
    pub name: String,
    pub client_ns: String,
    pub server_ns: String,
    pub client_v4: Ipv4Addr,
    pub server_v4: Ipv4Addr,
    pub client_v6: Ipv6Addr,
    pub server_v6: Ipv6Addr,
    dir: TempDir,
    children: Vec<Owned>,
    namespaces: Vec<String>,
    /// The namespace between client and server, when the lab has one (middle.rs).
    pub middle_ns: Option<String>,
    /// The link emulator running on a thread inside the middle namespace (middle.rs).
    linkem: Option<middle::LinkemThread>,
}

/// 512 /24 subnets in 198.18.0.0/15; the index is a hash of (pid, counter) so parallel
/// test processes spread out. The subnets live in private namespaces, so a collision would
/// be harmless, but distinct addresses keep captures and logs unambiguous.
fn subnet_index(pid: u32, n: u32) -> u16 {
    // FNV-1a over the two numbers: cheap and well spread for nearby pids.
    let mut h: u32 = 0x811c_9dc5;
    for b in pid.to_le_bytes().into_iter().chain(n.to_le_bytes()) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % 512) as u16
}

/// Deletes `tsk-<pid>-…` namespaces and temp dirs whose pid is no longer running. Only
/// names in our own format are considered; no process is signalled.
pub fn sweep_stale() {
    let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
    let stale_pid = |name: &str| -> Option<u32> {
        let pid = name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()?;
        (!alive(pid)).then_some(pid)
    };
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if stale_pid(name).is_some() {
                eprintln!("lab: deleting stale namespace {name}");
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if stale_pid(&name).is_some() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

impl Lab {
    /// Builds the lab and waits (bounded) until the server answers on v4 and v6.
    pub fn new(name: &str) -> Lab {
        let mut lab = Lab::alloc(name);
        lab.build();
        lab
    }

    /// [`Lab::new`] without the reachability check (a Python client's connects to a
    /// closed port of the server), for labs whose server kernel is kept out of TCP anyway
    /// and whose first packet may resolve neighbours itself (the conformance suite).
    pub fn new_unchecked(name: &str) -> Lab {
        let mut lab = Lab::alloc(name);
        lab.build_links();
        lab
    }

    /// Names, addresses and the temp dir of a new lab; nothing is created in the kernel.
    fn alloc(name: &str) -> Lab {
        sweep_stale();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let short: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(24)
            .collect();
        let base = format!("{PREFIX}{pid}-{n}-{short}");
        let k = subnet_index(pid, n);
        let (o2, o3) = (18 + (k >> 8) as u8, (k & 0xff) as u8);
        Lab {
            name: base.clone(),
            client_ns: format!("{base}-c"),
            server_ns: format!("{base}-s"),
            client_v4: Ipv4Addr::new(198, o2, o3, 1),
            server_v4: Ipv4Addr::new(198, o2, o3, 2),
            client_v6: Ipv6Addr::new(0xfd00, k, 0, 0, 0, 0, 0, 1),
            server_v6: Ipv6Addr::new(0xfd00, k, 0, 0, 0, 0, 0, 2),
            dir: TempDir::new(&base),
            children: Vec::new(),
            namespaces: Vec::new(),
            middle_ns: None,
            linkem: None,
        }
    }

    fn build(&mut self) {
        self.build_links();
        self.wait_reachable();
    }

    /// Namespaces, the veth pair, addresses, links up, checksum offload off.
    fn build_links(&mut self) {
        for ns in [self.client_ns.clone(), self.server_ns.clone()] {
            run_ok(Command::new("ip").args(["netns", "add", &ns]));
            self.namespaces.push(ns.clone());
            run_ok(Command::new("ip").args(["-n", &ns, "link", "set", "lo", "up"]));
        }
        veth_pair(CLIENT_IF, &self.client_ns, SERVER_IF, &self.server_ns);
        let sides = [
            (
                self.client_ns.clone(),
                CLIENT_IF,
                self.client_v4,
                self.client_v6,
            ),
            (
                self.server_ns.clone(),
                SERVER_IF,
                self.server_v4,
                self.server_v6,
            ),
        ];
        for (ns, ifname, v4, v6) in sides {
            run_ok(
                Command::new("ip")
                    .args(["-n", &ns, "addr", "add", &format!("{v4}/24")])
                    .args(["dev", ifname]),
            );
            // nodad: the address is usable at once instead of after ~1 s of duplicate
            // address detection (RFC 4862 §5.4).
            run_ok(
                Command::new("ip")
                    .args(["-n", &ns, "addr", "add", &format!("{v6}/64"), "dev", ifname])
                    .arg("nodad"),
            );
            run_ok(Command::new("ip").args(["-n", &ns, "link", "set", ifname, "up"]));
            // veth offloads checksums by default, so captured and received segments carry
            // partial checksums; full checksums keep tcpdump, tshark and tcpshake's own
            // checksum validation honest.
            let _ = in_ns(&ns, "ethtool")
                .args(["-K", ifname, "tx", "off"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Waits until a TCP SYN to a closed port of the server is answered (by the server
    /// kernel's RST) over v4 and v6: that proves routes, neighbour discovery and both links.
    fn wait_reachable(&self) {
        let script = format!(
            "import socket,sys,time\n\
             for a in ({:?},{:?}):\n\
             \x20ok=False\n\
             \x20for _ in range(50):\n\
             \x20 try:\n\
             \x20  socket.create_connection((a,9),timeout=0.2).close(); ok=True; break\n\
             \x20 except ConnectionRefusedError: ok=True; break\n\
             \x20 except OSError: time.sleep(0.1)\n\
             \x20if not ok: sys.exit('no answer from '+a)\n",
            self.server_v4.to_string(),
            self.server_v6.to_string()
        );
        run_ok(in_ns(&self.client_ns, "python3").args(["-c", &script]));
    }

    /// The lab's temp dir (captures, peer configs, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn server_addr(&self, v6: bool) -> IpAddr {
        if v6 {
            self.server_v6.into()
        } else {
            self.server_v4.into()
        }
    }

    pub fn client_addr(&self, v6: bool) -> IpAddr {
        if v6 {
            self.client_v6.into()
        } else {
            self.client_v4.into()
        }
    }

    /// Host 9 of the `n`-th /24 of 198.18.0.0/15 after the lab's own, half the range away
    /// (`n` < 256): on no link of the lab, whichever /24 it drew. A fixed address there
    /// was the lab's own one time in 512 (`subnet_index`), on its link.
    pub fn elsewhere_v4(&self, n: u8) -> Ipv4Addr {
        let [_, o2, o3, _] = self.client_v4.octets();
        let own = (u16::from(o2 - 18) << 8) | u16::from(o3);
        let k = (own + 256 + u16::from(n)) % 512;
        Ipv4Addr::new(198, 18 + (k >> 8) as u8, (k & 0xff) as u8, 9)
    }

    /// [`Lab::elsewhere_v4`]'s IPv6 twin: host 9 of `fd00:K::/64`, K half the lab range
    /// (512 /64s, `subnet_index`) away from the lab's own: on no link and no route of the
    /// lab.
    pub fn elsewhere_v6(&self, n: u8) -> Ipv6Addr {
        let own = self.client_v6.segments()[1];
        let k = (own + 256 + u16::from(n)) % 512;
        Ipv6Addr::new(0xfd00, k, 0, 0, 0, 0, 0, 9)
    }

    /// `198.18.K.2:PORT` or `[fd00:K::2]:PORT`, the form the binary takes.
    pub fn target(&self, v6: bool, port: u16) -> String {
        SocketAddr::new(self.server_addr(v6), port).to_string()
    }

    /// Spawns `cmd` (already wrapped with `in_ns`) as a process the lab owns.
    pub fn spawn_owned(&mut self, what: &str, cmd: &mut Command) -> u32 {
        let child = die_with_parent(cmd)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what} ({cmd:?}): {e}"));
        let pid = child.id();
        self.children.push(Owned {
            what: what.to_string(),
            child,
        });
        pid
    }

    /// Like [`Lab::spawn_owned`], for a scripted peer that says when it is ready: it gets
    /// the path of a file in `READY_FILE` and makes it once its sockets are open (Python:
    /// `open(os.environ["READY_FILE"], "w").close()`). Waits for it (10 s at most) instead
    /// of guessing how long an interpreter takes to start.
    pub fn spawn_ready(&mut self, what: &str, cmd: &mut Command) -> u32 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let ready = self.dir().join(format!("ready-{n}"));
        let pid = self.spawn_owned(what, cmd.env("READY_FILE", &ready));
        let up = poll_until(Duration::from_secs(10), Duration::from_millis(10), || {
            ready.exists()
        });
        assert!(
            up,
            "{what} did not say it was ready within 10 s\n{}",
            self.describe()
        );
        pid
    }

    /// True while the owned process `pid` is still running.
    pub fn owned_alive(&mut self, pid: u32) -> bool {
        self.children
            .iter_mut()
            .find(|o| o.child.id() == pid)
            .is_some_and(|o| matches!(o.child.try_wait(), Ok(None)))
    }

    /// The exit code of the owned process `pid`, once it has exited by itself.
    pub fn owned_exit_code(&mut self, pid: u32) -> Option<i32> {
        self.children
            .iter_mut()
            .find(|o| o.child.id() == pid)
            .and_then(|o| o.child.try_wait().ok().flatten())
            .and_then(|s| s.code())
    }

    /// Stops one owned process (SIGKILL by pid) and forgets it.
    pub fn stop_owned(&mut self, pid: u32) {
        if let Some(i) = self.children.iter().position(|o| o.child.id() == pid) {
            let mut o = self.children.remove(i);
            let _ = o.child.kill();
            let _ = o.child.wait();
        }
    }

    /// A command for the binary under test, run inside the client namespace.
    pub fn client_cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = in_ns(&self.client_ns, tcpshake_bin());
        cmd.args(args);
        cmd
    }

    /// Runs the binary in the client namespace; fails the test after 30 s.
    pub fn run_client<I, S>(&self, args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.run_client_bounded(args, Duration::from_secs(30))
    }

    pub fn run_client_bounded<I, S>(&self, args: I, limit: Duration) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_bounded(&mut self.client_cmd(args), limit)
    }

    /// `ss -Htan` in the server namespace: (state, local, peer) per socket.
    pub fn server_sockets(&self) -> Vec<(String, String, String)> {
        let out = run_ok(in_ns(&self.server_ns, "ss").args(["-Htan"]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 5).then(|| (f[0].to_string(), f[3].to_string(), f[4].to_string()))
            })
            .collect()
    }

    /// Waits (bounded) until something in the server namespace listens on `addr`.
    pub fn wait_listening(&self, addr: SocketAddr, limit: Duration) -> bool {
        let want = match addr {
            SocketAddr::V4(a) => a.to_string(),
            SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        poll_until(limit, Duration::from_millis(20), || {
            self.server_sockets()
                .iter()
                .any(|(state, local, _)| state == "LISTEN" && *local == want)
        })
    }

    /// `curl` from the client namespace; returns (curl exit code, HTTP status or 0).
    pub fn curl(&self, url: &str, timeout: Duration) -> (i32, u16) {
        let out = in_ns(&self.client_ns, "curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time"])
            .arg(format!("{:.1}", timeout.as_secs_f64()))
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
        let status = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (out.status.code().unwrap_or(-1), status)
    }

    /// `http://198.18.K.2:PORT/` or `http://[fd00:K::2]:PORT/`.
    pub fn url(&self, v6: bool, port: u16, path: &str) -> String {
        format!("http://{}{path}", self.target(v6, port))
    }

    /// tcpshake's guard tables currently present in the client namespace.
    pub fn client_nft_tables(&self) -> Vec<String> {
        let out = run_ok(in_ns(&self.client_ns, "nft").args(["list", "tables"]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| l.contains("tcpshake"))
            .map(String::from)
            .collect()
    }

    /// What the lab owns, for failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "lab {}: client {} {}/{} server {} {}/{}",
            self.name,
            self.client_ns,
            self.client_v4,
            self.client_v6,
            self.server_ns,
            self.server_v4,
            self.server_v6
        );
        for o in &self.children {
            let _ = write!(s, "\n  {} pid {}", o.what, o.child.id());
        }
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The emulator's thread first: like a process, it keeps its namespace alive.
        if let Some(t) = self.linkem.take() {
            let _ = t.stop();
        }
        // Processes first: a namespace with a live process in it survives `ip netns del`.
        for o in &mut self.children {
            if o.what == "tcpdump" {
                // Let tcpdump flush its file if a test forgot to stop its capture.
                signal(o.child.id(), "TERM");
                if wait_bounded(&mut o.child, Duration::from_secs(2)) {
                    continue;
                }
            }
            let _ = o.child.kill();
            let _ = o.child.wait();
        }
        self.children.clear();
        for ns in self.namespaces.drain(..) {
            // Deleting the namespace removes its veth end (the peer goes with it) and any
            // nft tables in it.
            let _ = Command::new("ip")
                .args(["netns", "del", &ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}
