//! `tcpshake-linkem A B [--ab SPEC] [--ba SPEC] [--seed N]`: the lab's link emulator.
//!
//! Bridges interfaces A and B (whole Ethernet frames, AF_PACKET) and applies, per
//! direction, delay ± jitter, loss, reordering, duplication and corruption from a seeded
//! PRNG, plus scripted faults on chosen TCP segments (SPEC syntax: `tcpshake_lab::linkem`).
//! Runs until SIGINT/SIGTERM, then prints what it did as one JSON object on stdout.
//! Exit codes: 0 stopped by a signal, 2 usage, 3 environment (privileges, no interface).

use clap::Parser;
use std::process::ExitCode;
use tcpshake_lab::linkem::{LinkParams, LinkStats};

#[derive(Parser, Debug)]
#[command(
    name = "tcpshake-linkem",
    about = "User-space link emulator for the tcpshake lab"
)]
struct Args {
    /// First interface (frames arriving here go out of B after the `--ab` treatment).
    a: String,
    /// Second interface.
    b: String,
    /// A→B: e.g. `delay=10ms,jitter=1ms,loss=5%,dup=1%,reorder=2%,gap=5ms,corrupt=1%,script=3:drop;4:dup`
    #[arg(long, default_value = "", value_parser = LinkParams::parse)]
    ab: LinkParams,
    /// B→A, same syntax.
    #[arg(long, default_value = "", value_parser = LinkParams::parse)]
    ba: LinkParams,
    /// Seed of the fault dice; the same seed and exchange give the same faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run under SCHED_FIFO so frames leave on time on a busy machine (needs root).
    #[arg(long)]
    realtime: bool,
}

fn stats_json(s: &LinkStats) -> serde_json::Value {
    serde_json::json!({
        "received": s.received, "tcp": s.tcp, "dropped": s.dropped,
        "duplicated": s.duplicated, "reordered": s.reordered, "corrupted": s.corrupted,
        "sent": s.sent,
        "late_mean_ns": s.late_sum_ns.checked_div(s.sent).unwrap_or(0),
        "late_max_ns": s.late_max_ns,
    })
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let stop = tcpshake_io::signals::stop_flag();
    if args.realtime && !tcpshake_lab::linkem_io::set_realtime() {
        eprintln!("tcpshake-linkem: SCHED_FIFO refused; running with normal priority");
    }
    match tcpshake_lab::linkem_io::run(&args.a, &args.b, args.ab, args.ba, args.seed, stop) {
        Ok(r) => {
            let out = serde_json::json!({
                "ab": stats_json(&r.ab), "ba": stats_json(&r.ba),
                "checksums_completed": r.checksums_completed, "send_errors": r.send_errors,
            });
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tcpshake-linkem: {e:#}");
            ExitCode::from(3)
        }
    }
}
