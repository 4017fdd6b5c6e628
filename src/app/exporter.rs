//! `tcpshake exporter`: a long-running Prometheus exporter.
//!
//! ```text
//!   HTTP workers ──/probe──► admission, allow-list, resolve ──job──┐
//!        │                                                         ▼
//!        └─/metrics─► registry ◄── record ◄── survey loop ◄── feed: /probe jobs, then the
//!                     (shared, atomic)        (one thread,        continuous schedule
//!                                              tcpshake-io)
//! ```
//!
//! One survey loop ([`survey::survey_feed`]) runs every probe, the surveys' and the
//! `/probe` requests' alike: one nftables guard table, one tap per interface, one port
//! keeper for the whole process. Its feed never ends: it hands out a `/probe` request as
//! soon as one waits, then whatever the schedule says is due, and otherwise tells the loop
//! when to ask again, so the probes in flight are never held up. SIGTERM stops the loop,
//! which resets the probes in flight (RST) and reports them; then the HTTP workers end and
//! the process exits 0; the guard table goes with the process.

use super::exit::{Exit, UsageError};
use super::survey::{PairSecret, probe_config};
use super::targets::TargetList;
use super::{TlsShared, http_request, tls_setup};
use crate::config::{Exchange, ExporterConfig, HttpOptions, TlsOptions, monitor_defaults};
use crate::report::count;
use crate::report::metrics::{self, ExporterMetrics, TargetLabels};
use anyhow::{Context, Result};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tcpshake_io::guard::{Guard, MARK};
use tcpshake_io::httpd::{Body, Reply, Server};
use tcpshake_io::run::Outcome;
use tcpshake_io::survey::{
    self, Budget, Feed, Next, Progress, Report, SurveyOptions, SurveyTarget,
};
use tcpshake_io::{clock, resolve, signals};
use tcpshake_proto::monitor::admission::{Admission, Refusal};
use tcpshake_proto::monitor::allow::{self, AllowList};
use tcpshake_proto::monitor::config::{self as mconfig, HistogramKind, Module, Prober};
use tcpshake_proto::monitor::loglimit::LogLimit;
use tcpshake_proto::monitor::query::{self, Head};
use tcpshake_proto::monitor::schedule::{Schedule, spread};
use tcpshake_proto::probe::record::ProbeResult;
use tcpshake_proto::probe::stats::{Sample, Slo, Survey};
use tcpshake_proto::probe::target::{Host, Target};
use tcpshake_proto::time::Instant;

/// Tags of `/probe` jobs have this bit; survey entries are tagged with their index.
const JOB: u64 = 1 << 63;
/// While `/probe` is open, the loop asks its feed at least this often (a request waits at
/// most this long for the loop to notice it).
const JOB_POLL: Duration = Duration::from_millis(5);
/// Survey probes start in batches this far apart (monitor::schedule::spread): 1 000
/// targets every 10 s are 25 probes every 250 ms, not one every 10 ms — one by one, each
/// probe made the loop spin for its replies (tcpshake-io's SPIN), a third of a CPU.
const BATCH_TICK: Duration = Duration::from_millis(250);
/// Failed `/probe` requests are logged on stderr, at most this many at once …
const LOG_BURST: u32 = 10;
/// … then one this often; the lines held back are counted on the next one (an outage
/// seen by every scrape, or a flood of requests for a dead target, costs the log a few
/// lines a minute).
const LOG_EVERY: Duration = Duration::from_secs(6);
/// A `/probe` waits at most this long for its probe (the loop's own limit on each probe,
/// derived from the module, ends it well before).
const JOB_WAIT: Duration = Duration::from_secs(300);
/// Beyond a probe's deadline, how long a `/probe` waits for the loop to hand its result
/// over (the loop ends a probe at its deadline, then reports it within a pass).
const JOB_HANDOVER: Duration = Duration::from_millis(200);

/// One (survey, target, module), probed every interval.
struct Entry {
    labels: TargetLabels,
    survey: usize,
    module: Arc<Module>,
    target: SurveyTarget,
    /// A failure to start was said once on stderr.
    warned: bool,
}

/// What a module's probes do, as the survey code takes it.
fn exchange_of(m: &Module) -> Exchange {
    Exchange {
        http: (m.prober != Prober::Tcp).then(|| HttpOptions {
            path: m.path.clone(),
            host_header: m.host_header.clone(),
        }),
        timeout: m.timeout,
        linger: m.linger,
        syn_retries: m.retries,
        rto: m.rto,
        time_wait: m.time_wait,
        isn: None,
        tls: TlsOptions {
            force: m.prober == Prober::Https,
            sni: m.sni.clone(),
            cacert: m.cacert.clone(),
            insecure: m.insecure,
            // The exporter has no --insecure: the module's key is what to set.
            insecure_hint: Some("`insecure = true` in the module"),
        },
        mss: m.mss,
        mss_hint: "`mss = {}` in the module",
    }
}

/// A target made ready for the loop: the module decides HTTP or HTTPS (not the port).
fn prepare(
    mut t: Target,
    remote: SocketAddr,
    m: &Module,
    tls: &mut TlsShared,
    tag: u64,
) -> Result<SurveyTarget> {
    t.tls = m.prober == Prober::Https;
    let ex = exchange_of(m);
    let tls = match t.tls {
        true => Some(tls_setup(&ex.tls, &t, tls)?),
        false => None,
    };
    Ok(SurveyTarget {
        http: http_request(&ex, &t)?,
        label: t.spec,
        remote,
        tls,
        tag,
        budget: None,
    })
}

/// A survey's SLOs, judged over the probes that ended in each interval.
struct SloWindow {
    name: String,
    slos: Vec<Slo>,
    interval: Duration,
    until: Option<Instant>,
    stats: Survey,
}

/// Where a `/probe` request waits for its probe's outcome (or why there is none).
type ReplyTo = mpsc::SyncSender<Result<Box<Outcome>, String>>;

/// A `/probe` request handed to the loop.
struct Job {
    target: SurveyTarget,
    module: Arc<Module>,
    reply: ReplyTo,
}

/// A `/probe` whose probe could not be made, and what the answer says of it.
struct Unmade<'a> {
    target: &'a str,
    module: &'a str,
    why: String,
    started: std::time::Instant,
    debug: bool,
}

/// The loop's side: the schedule, the entries, the jobs in flight.
struct LoopState {
    entries: Vec<Entry>,
    schedule: Schedule,
    jobs: mpsc::Receiver<Job>,
    pending: HashMap<u64, (Arc<Module>, ReplyTo)>,
    probe_open: bool,
    windows: Vec<SloWindow>,
    metrics: ExporterMetrics,
    records: Option<std::io::BufWriter<std::fs::File>>,
    exchanges: HashMap<String, Exchange>,
    /// Why the kernel program is not answering SYN-ACKs was logged (once).
    reflex_said: bool,
}

struct ExporterFeed(Rc<RefCell<LoopState>>);

impl Feed for ExporterFeed {
    fn next_target(&mut self, now: Instant) -> Next {
        let mut st = self.0.borrow_mut();
        if let Ok(job) = st.jobs.try_recv() {
            let tag = job.target.tag;
            st.pending.insert(tag, (job.module, job.reply));
            return Next::Target(Box::new(job.target));
        }
        if let Some(due) = st.schedule.poll(now) {
            st.metrics.lag(due.lag.as_secs_f64());
            st.metrics.set_skipped(st.schedule.skipped());
            return Next::Target(Box::new(st.entries[due.entry].target.clone()));
        }
        st.metrics.set_skipped(st.schedule.skipped());
        let mut at = st.schedule.next_due();
        if st.probe_open {
            let poll = now + JOB_POLL;
            at = Some(at.map_or(poll, |a| a.min(poll)));
        }
        Next::Later(at)
    }
}

impl LoopState {
    fn module_of(&self, tag: u64) -> Option<&Module> {
        if tag & JOB != 0 {
            self.pending.get(&tag).map(|(m, _)| &**m)
        } else {
            self.entries.get(tag as usize).map(|e| &*e.module)
        }
    }

    fn done(&mut self, tag: u64, mut outcome: Box<Outcome>) -> Result<()> {
        if tag & JOB != 0 {
            if let Some((_, reply)) = self.pending.remove(&tag) {
                // The requester may have gone (its client hung up): nothing to do.
                let _ = reply.try_send(Ok(outcome));
            }
            return Ok(());
        }
        let i = tag as usize;
        let Some(e) = self.entries.get(i) else {
            return Ok(());
        };
        // Which module made it: two modules' probes of one target are different exchanges
        // (a handshake alone, or HTTPS), and `report` keeps them apart in the records.
        outcome.result.module = Some(e.module.name.clone());
        e.module.judge_status(&mut outcome.result);
        let r = &outcome.result;
        self.metrics.record(&e.labels, r);
        let survey = e.survey;
        self.schedule.done(i);
        self.judge_window(survey, r);
        if let Some(w) = &mut self.records {
            serde_json::to_writer(&mut *w, r)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    }

    /// The survey's SLO window: judged when an interval has passed since it opened, over
    /// the probes that ended in it.
    fn judge_window(&mut self, survey: usize, r: &ProbeResult) {
        let Some(w) = self.windows.get_mut(survey) else {
            return;
        };
        if w.slos.is_empty() {
            return;
        }
        let now = clock::now();
        let until = *w.until.get_or_insert(now + w.interval);
        if now >= until {
            if w.stats.probes() > 0 {
                let all = w.stats.overall();
                for slo in &w.slos {
                    let v = slo.judge(&all);
                    self.metrics.slo_judged(&w.name, &slo.text, !v.met);
                }
            }
            w.stats = Survey::default();
            w.until = Some(now + w.interval);
        }
        if let Some(s) = Sample::of(r) {
            w.stats.add(&w.name, &s);
        }
    }

    fn failed(&mut self, tag: u64, error: &anyhow::Error) {
        if tag & JOB != 0 {
            if let Some((_, reply)) = self.pending.remove(&tag) {
                let _ = reply.try_send(Err(format!("{error:#}")));
            }
            return;
        }
        let i = tag as usize;
        if let Some(e) = self.entries.get_mut(i) {
            self.metrics.failed(&e.labels);
            if !e.warned {
                e.warned = true;
                eprintln!(
                    "tcpshake: survey {} {} ({}): {error:#} (said once; counted in \
                     tcpshake_survey_failures_total)",
                    e.labels.survey, e.labels.target, e.labels.module
                );
            }
        }
        self.schedule.done(i);
    }
}

/// What the HTTP workers share.
struct Shared {
    metrics: ExporterMetrics,
    jobs: Mutex<mpsc::Sender<Job>>,
    admission: Mutex<Admission>,
    allow: AllowList,
    modules: HashMap<String, Arc<Module>>,
    default_module: String,
    tls: Mutex<HashMap<String, TlsShared>>,
    next_job: AtomicU64,
    /// How many failed `/probe` lines stderr takes.
    log: Mutex<LogLimit>,
}

/// A place taken in the admission, given back however the request ends.
struct Admitted<'a>(&'a Mutex<Admission>);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if let Ok(mut a) = self.0.lock() {
            a.release();
        }
    }
}

impl Shared {
    fn handle(&self, head: &Head) -> Reply<'static> {
        match head.path.as_str() {
            "/metrics" => {
                let om = metrics::wants_openmetrics(head.accept.as_deref());
                let m = self.metrics.clone();
                Reply {
                    status: 200,
                    content_type: metrics::content_type(om).into(),
                    headers: Vec::new(),
                    body: Body::Stream(Box::new(move |w| m.encode(om, w))),
                }
            }
            "/probe" => self.probe(head),
            "/" => Reply::text(
                200,
                "tcpshake exporter\n\n/metrics  the continuous surveys (histograms per target and leg) and the exporter's health\n/probe?target=HOST:PORT[&module=NAME]  one probe now, its legs as gauges\n/probe?target=HOST:PORT[&module=NAME]&debug=true  the same probe told in plain text: why it failed, its segments, its metrics",
            ),
            _ => Reply::text(404, "not found; try /metrics or /probe?target=HOST:PORT"),
        }
    }

    /// A failed `/probe` on stderr, one line with the target, the module and why, within
    /// the log's limit (blackbox_exporter logs its failed probes too: a 200 with
    /// `tcpshake_probe_success 0` says nothing of why).
    fn log_failure(&self, target: &str, module: &str, why: &str) {
        let Ok(mut log) = self.log.lock() else {
            return;
        };
        let Some(held) = log.allow(clock::now()) else {
            return;
        };
        let also = match held {
            0 => String::new(),
            n => format!(
                " ({} held back before this one: at most {LOG_BURST} at once, then one every {})",
                count(n, "failed /probe line", "failed /probe lines"),
                tcpshake_proto::time::format_duration(LOG_EVERY)
            ),
        };
        eprintln!("tcpshake: /probe target={target} module={module}: {why}{also}");
    }

    fn refuse(&self, result: &'static str, status: u16, msg: String) -> Reply<'static> {
        self.metrics.request(result);
        Reply::text(status, msg)
    }

    /// A probe that could not be made (the name did not resolve, no route to the address):
    /// answered as a failed probe — 200, `tcpshake_probe_success 0`, or with `debug` why —
    /// as blackbox_exporter answers a DNS or connection failure. A 502 made Prometheus
    /// record the scrape as failed (`up 0`) with no success gauge at all, so an alert on
    /// it never fired for a name that stopped resolving. Logged and counted (`result`).
    fn unmade(&self, result: &'static str, failed: Unmade<'_>, head: &Head) -> Reply<'static> {
        self.metrics.request(result);
        self.log_failure(failed.target, failed.module, &failed.why);
        let took = failed.started.elapsed();
        if failed.debug {
            return Reply::text(
                200,
                format!(
                    "/probe of {} with module `{}`, {}: tcpshake_probe_success 0: {}\n",
                    failed.target,
                    failed.module,
                    tcpshake_proto::time::human_ns(tcpshake_proto::time::nanos(took)),
                    failed.why
                ),
            );
        }
        let om = metrics::wants_openmetrics(head.accept.as_deref());
        match metrics::unmade_probe_body(took, om) {
            Ok(body) => Reply {
                status: 200,
                content_type: metrics::content_type(om).into(),
                headers: Vec::new(),
                body: Body::Bytes(body),
            },
            Err(e) => self.refuse("error", 500, format!("encoding: {e}")),
        }
    }

    fn probe(&self, head: &Head) -> Reply<'static> {
        let started = std::time::Instant::now();
        let q = match query::probe_query(head.query.as_deref()) {
            Ok(q) => q,
            Err(e) => return self.refuse("bad-request", e.status, e.message),
        };
        let name = q.module.unwrap_or_else(|| self.default_module.clone());
        let Some(module) = self.modules.get(&name).cloned() else {
            let mut known: Vec<&str> = self.modules.keys().map(String::as_str).collect();
            known.sort_unstable();
            return self.refuse(
                "bad-request",
                400,
                format!("no module named `{name}`; modules are {}", known.join(", ")),
            );
        };
        // The address first (no DNS query for a name that is not allowed), then the place.
        let ip = match &q.target.host {
            Host::Ip(ip) => {
                let ip = allow::canonical(*ip);
                if let Err(e) = module.check_family(&Host::Ip(ip)) {
                    return self.refuse("bad-request", 400, e);
                }
                if let Err(d) = self.allow.check_addr(ip) {
                    return self.refuse("denied", 403, d.to_string());
                }
                ip
            }
            Host::Name(n) => {
                if let Err(d) = self.allow.check_name(n) {
                    return self.refuse("denied", 403, d.to_string());
                }
                // The first address of the family, as `probe` takes it; only that one is
                // checked and probed (allow.rs).
                let ip = match resolve::resolve_name(n, module.family) {
                    Ok(a) => allow::canonical(a[0]),
                    Err(e) => {
                        let e = in_module_words(e, &module);
                        let failed = Unmade {
                            target: &q.target.spec,
                            module: &name,
                            why: format!("{e:#}"),
                            started,
                            debug: q.debug,
                        };
                        return self.unmade("unresolved", failed, head);
                    }
                };
                if let Err(d) = self.allow.check_resolved(n, ip) {
                    return self.refuse("denied", 403, d.to_string());
                }
                ip
            }
        };
        let admitted = match self.admission.lock() {
            Ok(mut a) => a.admit(clock::now()),
            Err(_) => return self.refuse("error", 500, "admission state poisoned".into()),
        };
        let _place = match admitted {
            Ok(()) => Admitted(&self.admission),
            Err(Refusal::Busy { in_flight }) => {
                return self.refuse(
                    "busy",
                    429,
                    format!("{in_flight} probes are running, the most /probe allows at once ([probe] max_in_flight); try again"),
                );
            }
            Err(Refusal::Rate { retry_after }) => {
                let mut r = self.refuse(
                    "rate-limited",
                    429,
                    "too many /probe requests ([probe] rate and burst); try again later".into(),
                );
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                r.headers.push(("Retry-After", secs.to_string()));
                return r;
            }
        };
        let port = q.target.port;
        // The address beside a name: the one probed, resolved once (allow.rs).
        let spec = match &q.target.host {
            Host::Name(_) => format!("{} ({ip})", q.target.spec),
            Host::Ip(_) => q.target.spec.clone(),
        };
        let debug = q.debug;
        let tag = JOB | self.next_job.fetch_add(1, Ordering::Relaxed);
        let target = {
            let mut tls = match self.tls.lock() {
                Ok(t) => t,
                Err(_) => return self.refuse("error", 500, "TLS state poisoned".into()),
            };
            let shared = tls.entry(module.name.clone()).or_default();
            match prepare(q.target, SocketAddr::new(ip, port), &module, shared, tag) {
                Ok(t) => t,
                Err(e) => return self.refuse("bad-request", 400, format!("{e:#}")),
            }
        };
        // Prometheus gives up on the request at its scrape_timeout: the probe ends before,
        // so the scrape gets `tcpshake_probe_success 0` rather than nothing, and the probe
        // does not hold its place after the scraper has gone (blackbox_exporter does the same).
        let budget = head.scrape_timeout.map(query::probe_budget);
        let target = SurveyTarget {
            budget: budget.map(|b| Budget {
                until: clock::now() + b,
                why: "the scrape's timeout ran out (X-Prometheus-Scrape-Timeout-Seconds, less 0.5 s for the answer)",
            }),
            ..target
        };
        let (tx, rx) = mpsc::sync_channel(1);
        let job = Job {
            target,
            module: Arc::clone(&module),
            reply: tx,
        };
        let sent = match self.jobs.lock() {
            Ok(j) => j.send(job).is_ok(),
            Err(_) => false,
        };
        if !sent {
            return self.refuse("stopping", 503, "the exporter is stopping".into());
        }
        // Waited for no longer than the scrape allows, with a little for the loop to hand
        // over a probe that ran to its deadline: a job that waits for a free place (every
        // one of `jobs` busy) past it is answered now, and the loop drops it unstarted.
        let wait = budget.map_or(JOB_WAIT, |b| (b + JOB_HANDOVER).min(JOB_WAIT));
        let mut outcome = match rx.recv_timeout(wait) {
            Ok(Ok(o)) => o,
            Err(mpsc::RecvTimeoutError::Timeout) if budget.is_some() => {
                let failed = Unmade {
                    target: &spec,
                    module: &name,
                    why: "the scrape's timeout ran out before the probe's answer (it waited \
                          for a free place: every one of [exporter] jobs was busy)"
                        .into(),
                    started,
                    debug,
                };
                return self.unmade("busy", failed, head);
            }
            Ok(Err(e)) => {
                let failed = Unmade {
                    target: &spec,
                    module: &name,
                    why: format!("could not start: {e}"),
                    started,
                    debug,
                };
                return self.unmade("error", failed, head);
            }
            Err(_) => return self.refuse("stopping", 503, "the exporter is stopping".into()),
        };
        module.judge_status(&mut outcome.result);
        let r = &outcome.result;
        let took = started.elapsed();
        if let Some(why) = r.failure() {
            self.log_failure(&spec, &name, &why);
        }
        if debug {
            return match metrics::probe_debug(r, took, &module) {
                Ok(text) => {
                    self.metrics.request("probed");
                    Reply::text(200, text)
                }
                Err(e) => self.refuse("error", 500, format!("encoding: {e}")),
            };
        }
        let om = metrics::wants_openmetrics(head.accept.as_deref());
        match metrics::probe_body(r, took, om) {
            Ok(body) => {
                self.metrics.request("probed");
                Reply {
                    status: 200,
                    content_type: metrics::content_type(om).into(),
                    headers: Vec::new(),
                    body: Body::Bytes(body),
                }
            }
            Err(e) => self.refuse("error", 500, format!("encoding: {e}")),
        }
    }
}

/// The survey entries: every target of every survey (its file's lines included) with
/// every one of its modules, resolved now.
fn entries(
    file: &str,
    cfg: &mconfig::ExporterConfig,
    modules: &HashMap<String, Arc<Module>>,
    tls: &mut HashMap<String, TlsShared>,
) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (si, s) in cfg.surveys.iter().enumerate() {
        let mut targets: Vec<(Target, String)> = s
            .targets
            .iter()
            .map(|(t, line)| (t.clone(), format!("{file}, line {line}")))
            .collect();
        for (path, line) in &s.target_files {
            let mut list = TargetList::open(path)
                .map_err(|e| UsageError(format!("{file}, line {line}: {e:#}")))?;
            while let Some((origin, specs)) = list.next_line() {
                for spec in specs {
                    let t = mconfig::survey_target(&spec)
                        .map_err(|e| UsageError(format!("{origin}: {e}")))?;
                    targets.push((t, origin.clone()));
                }
            }
            if list.skipped > 0 {
                return Err(UsageError(format!(
                    "{}: {} bad lines (above); the exporter checks its target lists at start",
                    path.display(),
                    list.skipped
                ))
                .into());
            }
        }
        // A target listed twice in one survey (in `targets` and a file, or twice in a
        // file) would be probed twice per interval into the same series: refused, naming
        // both places, as every mistake in the configuration is.
        let mut first_at: HashMap<&str, &str> = HashMap::new();
        for (t, origin) in &targets {
            if let Some(first) = first_at.insert(t.spec.as_str(), origin.as_str()) {
                return Err(UsageError(format!(
                    "{origin}: survey {}: target {} is listed already ({first}): its series \
                     would be probed twice each interval; list it once",
                    s.name, t.spec
                ))
                .into());
            }
        }
        for (t, origin) in targets {
            for mname in &s.modules {
                let m = &modules[mname];
                // A mistake in the configuration: exit 2, as every refusal of it.
                m.check_family(&t.host)
                    .map_err(|e| UsageError(format!("{origin}: survey {}: {e}", s.name)))?;
                let remote = resolve::resolve(&t, m.family)
                    .map_err(|e| in_module_words(e, m))
                    .with_context(|| format!("{origin}: survey {}", s.name))?;
                let shared = tls.entry(m.name.clone()).or_default();
                let tag = out.len() as u64;
                let target = prepare(t.clone(), remote, m, shared, tag)
                    .with_context(|| format!("{origin}: survey {}", s.name))?;
                out.push(Entry {
                    labels: TargetLabels {
                        survey: s.name.clone(),
                        target: t.spec.clone(),
                        module: m.name.clone(),
                    },
                    survey: si,
                    module: Arc::clone(m),
                    target,
                    warned: false,
                });
            }
        }
    }
    Ok(out)
}

pub(super) fn run(c: &ExporterConfig) -> Result<Exit> {
    let file = c.file.display().to_string();
    let text = std::fs::read_to_string(&c.file).map_err(|e| {
        UsageError(format!(
            "cannot read the configuration {file}: {}",
            super::io_reason(&e)
        ))
    })?;
    let cfg = mconfig::parse(&text, &monitor_defaults())
        .map_err(|e| UsageError(format!("{file}, {e}")))?;
    if cfg.histograms.kind != HistogramKind::Classic {
        // The line, as every other refusal of the file names it.
        let at = cfg
            .histograms
            .kind_line
            .map_or(String::new(), |n| format!(", line {n}"));
        return Err(UsageError(format!(
            "{file}{at}: [histograms] type = \"{}\": native histograms travel only in Prometheus' \
             protobuf exposition, which this build does not serve; use type = \"classic\"",
            if cfg.histograms.kind == HistogramKind::Native {
                "native"
            } else {
                "both"
            }
        ))
        .into());
    }
    let modules: HashMap<String, Arc<Module>> = cfg
        .modules
        .iter()
        .map(|(k, m)| (k.clone(), Arc::new(m.clone())))
        .collect();
    // An unreadable cacert is a mistake in the file: refused now, not at the first probe.
    let mut tls: HashMap<String, TlsShared> = HashMap::new();
    for m in modules.values().filter(|m| m.prober == Prober::Https) {
        let ex = exchange_of(m);
        let at = m
            .cacert_line
            .map_or(String::new(), |n| format!(", line {n}"));
        tls.entry(m.name.clone())
            .or_default()
            .preload(&ex.tls, "cacert")
            .map_err(|e| UsageError(format!("{file}{at}: module `{}`: {e:#}", m.name)))?;
    }
    let entries = entries(&file, &cfg, &modules, &mut tls)?;
    for wide in cfg.probe.allow.too_wide() {
        eprintln!(
            "tcpshake: warning: {file}: [probe] allow `{wide}` lets /probe reach {}: whoever \
             can send the exporter a request can have it probe any host there (`allow` is what \
             keeps the exporter from being a scanner); allow the blocks your targets are in",
            wide.reach()
        );
    }
    if c.check_only {
        // Written, not println!'d: a full or closed stdout is an error said (or a closed
        // pipe's quiet 0), not a panic.
        writeln!(
            std::io::stdout().lock(),
            "{file}: OK: {}, {} every interval (targets × modules), {}; /probe {}{}",
            count(cfg.surveys.len() as u64, "survey", "surveys"),
            count(entries.len() as u64, "probe", "probes"),
            count(modules.len() as u64, "module", "modules"),
            if cfg.probe.allow.is_empty() {
                "refuses every target (no [probe] allow)".to_string()
            } else {
                let blocks: Vec<String> = cfg
                    .probe
                    .allow
                    .cidrs
                    .iter()
                    .map(|c| c.to_string())
                    .collect();
                format!("allows {}", blocks.join(", "))
            },
            if cfg.reflex {
                ""
            } else {
                "; SYN-ACKs answered from the exporter's loop, not its kernel program \
                 (reflex = false)"
            }
        )?;
        return Ok(Exit::Ok);
    }

    let jobs = cfg.jobs;
    // First, while this process has one thread (see the function).
    survey::grow_file_table(jobs);
    let stop = signals::stop_flag();
    let server = Server::bind(c.listen)?;
    let mut guard = Guard::install_for_survey(MARK)?;
    let records = match &c.records {
        Some(p) => Some(std::io::BufWriter::new(super::append_output(
            p,
            "--records",
        )?)),
        None => None,
    };
    let metrics = ExporterMetrics::new(&cfg.histograms.buckets);
    // Every series the configuration implies is there, at 0, from the first scrape.
    for e in &entries {
        metrics.target_configured(&e.labels);
    }
    for s in &cfg.surveys {
        for slo in &s.slos {
            metrics.slo_configured(&s.name, &slo.text);
        }
    }

    // Each survey's entries start spread over its interval.
    let mut schedule = Schedule::new();
    let start = clock::now();
    for (si, s) in cfg.surveys.iter().enumerate() {
        let mine: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].survey == si)
            .collect();
        for (k, &i) in mine.iter().enumerate() {
            let at = schedule.add(
                s.interval,
                spread(start, s.interval, k, mine.len(), BATCH_TICK),
            );
            debug_assert_eq!(at, i);
        }
    }
    let (jobs_tx, jobs_rx) = mpsc::channel();
    let exchanges: HashMap<String, Exchange> = modules
        .iter()
        .map(|(k, m)| (k.clone(), exchange_of(m)))
        .collect();
    let state = Rc::new(RefCell::new(LoopState {
        entries,
        schedule,
        jobs: jobs_rx,
        pending: HashMap::new(),
        probe_open: !cfg.probe.allow.is_empty(),
        windows: cfg
            .surveys
            .iter()
            .map(|s| SloWindow {
                name: s.name.clone(),
                slos: s.slos.clone(),
                interval: s.interval,
                until: None,
                stats: Survey::default(),
            })
            .collect(),
        metrics: metrics.clone(),
        records,
        exchanges,
        reflex_said: false,
    }));
    let shared = Shared {
        metrics: metrics.clone(),
        jobs: Mutex::new(jobs_tx),
        admission: Mutex::new(Admission::new(
            cfg.probe.max_in_flight,
            cfg.probe.rate,
            cfg.probe.burst,
        )),
        allow: cfg.probe.allow.clone(),
        modules,
        default_module: cfg.probe.default_module.clone(),
        tls: Mutex::new(tls),
        next_job: AtomicU64::new(0),
        log: Mutex::new(LogLimit::new(LOG_BURST, LOG_EVERY)),
    };
    eprintln!(
        "tcpshake: exporter listening on http://{} ({} every interval; /probe {})",
        server.local_addr()?,
        count(
            state.borrow().entries.len() as u64,
            "survey probe",
            "survey probes"
        ),
        if cfg.probe.allow.is_empty() {
            "closed"
        } else {
            "open to the allow-list"
        }
    );

    let http_stop = AtomicBool::new(false);
    // /probe requests wait for their probe; /metrics must still be answered meanwhile.
    let workers = cfg.probe.max_in_flight + 4;
    let secret = PairSecret::new();
    let result = std::thread::scope(|scope| {
        let http = scope.spawn(|| server.serve(workers, &http_stop, &|h: &Head| shared.handle(h)));
        let mut feed = ExporterFeed(Rc::clone(&state));
        let cfg_state = Rc::clone(&state);
        let mut make_cfg = |t: &SurveyTarget, local: SocketAddr, mss: u16| {
            let st = cfg_state.borrow();
            let module = st.module_of(t.tag);
            let ex = module
                .and_then(|m| st.exchanges.get(&m.name))
                .cloned()
                .unwrap_or_default();
            let separate_ack = module.is_some_and(|m| m.separate_ack);
            probe_config(&ex, t, local, mss, &secret, separate_ack)
        };
        let report_state = Rc::clone(&state);
        let mut on_report = |r: Report<'_>, p: Progress| -> Result<()> {
            let mut st = report_state.borrow_mut();
            st.metrics.set_in_flight(p.in_flight);
            st.metrics.set_capture_missed(p.capture_missed);
            st.metrics.set_kernel_acks(p.reflex_acks);
            if let Some(why) = p.reflex_unavailable
                && !st.reflex_said
            {
                st.reflex_said = true;
                eprintln!(
                    "tcpshake: note: SYN-ACKs are answered from the exporter's loop: the kernel \
                     program that answers them as fast as the kernel's own TCP is {why}"
                );
            }
            match r {
                Report::Done { target, outcome } => st.done(target.tag, outcome),
                Report::Failed { target, error } => {
                    st.failed(target.tag, &error);
                    Ok(())
                }
                Report::PassDone => match &mut st.records {
                    Some(w) => w.flush().context("writing the records"),
                    None => Ok(()),
                },
                // Capture is off: nothing comes.
                Report::Captured(_) => Ok(()),
            }
        };
        let opts = SurveyOptions {
            jobs,
            count: 1,
            interval: Duration::ZERO,
            capture: tcpshake_io::run::Capture::Off,
            reflex: cfg.reflex,
        };
        let run = survey::survey_feed(
            &mut feed,
            opts,
            &mut make_cfg,
            &mut on_report,
            &mut guard,
            stop,
        );
        // Waiting /probe requests get their answer (the stop) before the workers go.
        {
            let mut st = state.borrow_mut();
            st.pending.clear();
            if let Some(w) = &mut st.records {
                let _ = w.flush();
            }
        }
        drop(feed);
        http_stop.store(true, Ordering::Relaxed);
        let served = http
            .join()
            .map_err(|_| anyhow::anyhow!("the HTTP server thread panicked"))?;
        served?;
        run
    });
    let _ = guard.remove();
    if let Ok(log) = shared.log.lock()
        && log.held() > 0
    {
        eprintln!(
            "tcpshake: {} held back since the last one",
            count(log.held(), "failed /probe line", "failed /probe lines")
        );
    }
    let losses = result?;
    if losses.dropped > 0 || losses.truncated > 0 {
        eprintln!(
            "tcpshake: warning: the capture socket missed {} packets over the exporter's run",
            losses.dropped + losses.truncated
        );
    }
    Ok(Exit::Ok)
}

/// A name with no address of a module's family, in the exporter's words: it has no `-4` /
/// `-6` to drop, a module's `family` is what to change (as for a literal address,
/// `Module::check_family`). Any other error as it is.
fn in_module_words(e: anyhow::Error, m: &Module) -> anyhow::Error {
    match e.downcast_ref::<resolve::NoAddressOfFamily>() {
        Some(n) => anyhow::anyhow!(
            "`{}` has no {} address (it has {}), but {}; give a name or address that has one, \
             or use a module with family = \"any\"",
            n.name,
            n.family.name(),
            n.addresses(),
            m.family_setting()
        ),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exporter has no `-6` to drop: a name without the module's family names the
    /// module and its `family`; other errors pass as they are.
    #[test]
    fn a_name_without_the_modules_family_is_said_in_module_words() {
        let cfg = mconfig::parse(
            "[modules.v6]\nprober = \"tcp\"\nfamily = \"ipv6\"\n",
            &monitor_defaults(),
        )
        .unwrap();
        let m = &cfg.modules["v6"];
        let e = anyhow::Error::new(resolve::NoAddressOfFamily {
            name: "web.lab.test".into(),
            family: m.family,
            has: vec![std::net::IpAddr::from([198, 18, 0, 2])],
        });
        assert_eq!(
            format!("{:#}", in_module_words(e, m)),
            "`web.lab.test` has no IPv6 address (it has 198.18.0.2), but module `v6` has family \
             = \"ipv6\" (line 3); give a name or address that has one, or use a module with \
             family = \"any\""
        );
        let other = in_module_words(anyhow::anyhow!("cannot resolve `x`"), m);
        assert_eq!(other.to_string(), "cannot resolve `x`");
    }
}
