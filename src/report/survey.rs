//! Survey output: a one-line view of each probe, CSV rows, the statistics table and its JSON
//! form, and reading JSON Lines back for `tcpshake report`.

use crate::report::text::human_ns;
use std::fmt::{self, Write};
use std::io;
use tcpshake_proto::probe::record::{Leg, ProbeResult};
use tcpshake_proto::probe::stats::{Group, LegStats, Sample, Survey};
use tcpshake_proto::time::HumanNs;

/// `198.18.0.2:80  open  syn-ack  SYN→SYN-ACK 41.2 µs  req→1st byte 180.4 µs  total 1.204 ms`
pub fn probe_line(r: &ProbeResult) -> String {
    let mut s = format!("{}  {}  {}", r.target, r.state.as_str(), r.reason);
    for leg in [Leg::SynToSynack, Leg::RequestToFirstByte, Leg::Total] {
        if let Some(v) = r.legs_ns.get(leg) {
            let _ = write!(s, "  {} {}", leg.label(), human_ns(v));
        }
    }
    if let Some(h) = &r.http {
        let _ = write!(s, "  HTTP {}", h.status);
    }
    if r.retransmissions > 0 {
        let _ = write!(s, "  retransmissions {}", r.retransmissions);
    }
    if let Some(e) = &r.error {
        let _ = write!(s, "  error: {e}");
    }
    s
}

/// The CSV header: one row per probe, one column per leg (ns, empty when it did not happen;
/// the `tls_*` legs and columns are empty for plain HTTP). `kernel_ack`: the handshake's
/// ACK was sent by tcpshake's kernel program (a segment `"kernel": true` in the record),
/// last so the columns before it keep their places.
pub fn csv_header() -> String {
    let mut h = String::from(
        "target,addr,port,src_addr,src_port,start_ns,state,reason,retransmissions,http_status",
    );
    for l in Leg::ALL {
        let _ = write!(h, ",{}_ns", l.name());
    }
    h.push_str(",tls_version,tls_verified,error,kernel_ack");
    h
}

pub fn csv_row(r: &ProbeResult) -> String {
    let opt = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_default();
    let mut row = vec![
        csv_field(&r.target),
        csv_field(&r.addr),
        r.port.to_string(),
        csv_field(&r.src_addr),
        r.src_port.to_string(),
        opt(r.segments.first().map(|s| s.ts_ns)),
        r.state.as_str().to_string(),
        r.reason.to_string(),
        r.retransmissions.to_string(),
        r.http
            .as_ref()
            .map(|h| h.status.to_string())
            .unwrap_or_default(),
    ];
    for leg in Leg::ALL {
        row.push(opt(r.legs_ns.get(leg)));
    }
    let tls = r.tls.as_ref();
    row.push(csv_field(
        tls.and_then(|t| t.version.as_deref()).unwrap_or(""),
    ));
    row.push(
        tls.and_then(|t| t.verified)
            .map(|v| v.to_string())
            .unwrap_or_default(),
    );
    row.push(csv_field(r.error.as_deref().unwrap_or("")));
    row.push(r.kernel_ack().to_string());
    row.join(",")
}

/// RFC 4180 §2: fields with commas, quotes or line breaks are quoted, quotes doubled.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A table cell: the duration, or `-` when the leg never happened. Written straight into
/// the table, padded, without a `String` each (2.6 million cells for 40 960 targets).
struct Cell(Option<HumanNs>);

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => v.fmt(f),
            None => f.pad("-"),
        }
    }
}

fn cell(v: Option<u64>) -> Cell {
    Cell(v.map(HumanNs))
}

fn cell_f(v: Option<f64>) -> Cell {
    Cell(v.map(|x| HumanNs(x.round() as u64)))
}

fn group(out: &mut impl io::Write, title: &str, acc: &dyn Group) -> io::Result<()> {
    let (open, closed, filtered) = acc.states();
    writeln!(
        out,
        "{title}   probes {}   open {open}   closed {closed}   filtered {filtered}",
        acc.probes()
    )?;
    let failed = acc.failed();
    if failed > 0 {
        writeln!(
            out,
            "  {failed} of the open ones failed their exchange (TLS, HTTP or the close): each \
             record's `error` says why"
        )?;
    }
    let lost = acc.capture_lost();
    if lost > 0 {
        writeln!(
            out,
            "  the capture dropped packets while {lost} of them ran: their legs may be wrong"
        )?;
    }
    writeln!(
        out,
        "  {:<13} {:>7} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>5}",
        "leg", "count", "loss%", "min", "median", "mean", "p90", "p99", "max", "stddev", "retx"
    )?;
    for st in acc.summary() {
        // SYN→SYN-ACK always (its loss is the survey's loss), and the TLS legs of a group
        // with HTTPS probes (a handshake that never got that far is 100 % loss there, as
        // `--json` says); others when they happened (`--no-http` asks no request).
        if st.leg != Leg::SynToSynack && !st.leg.is_tls() && st.count == 0 {
            continue;
        }
        row(out, st.leg.label(), &st)?;
    }
    Ok(())
}

fn row(out: &mut impl io::Write, label: &str, st: &LegStats) -> io::Result<()> {
    writeln!(
        out,
        "  {:<13} {:>7} {:>6.1} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>5}",
        label,
        st.count,
        st.loss_pct,
        cell(st.min_ns),
        cell(st.median_ns),
        cell_f(st.mean_ns),
        cell(st.p90_ns),
        cell(st.p99_ns),
        cell(st.max_ns),
        cell_f(st.stddev_ns),
        st.retransmitted
    )
}

/// The statistics table: each target (unless `overall_only`), then all of them together.
/// Percentiles are nearest-rank (probe::stats). Written as it is made: a survey of 100 000
/// targets has a long table, which is never held in memory whole.
pub fn write_table(
    out: &mut impl io::Write,
    survey: &Survey,
    overall_only: bool,
) -> io::Result<()> {
    // No probe finished (every target failed to resolve or to start, each said so on
    // stderr): a table of zeros would say nothing more.
    if survey.probes() == 0 {
        return Ok(());
    }
    if !overall_only {
        for (name, acc) in survey.targets() {
            group(out, name, acc)?;
            writeln!(out)?;
        }
    }
    let mut title = format!(
        "all {}",
        super::count(survey.target_count() as u64, "target", "targets")
    );
    // A target whose every probe was interrupted (or could not start) has no row: say so,
    // or "all 1 target" reads as if the others were never asked for.
    let unsampled = survey.unsampled_count();
    if unsampled > 0 {
        title.push_str(&format!(
            " (and {} without a finished probe)",
            super::count(unsampled as u64, "target", "targets")
        ));
    }
    group(out, &title, &survey.overall())
}

/// [`write_table`] into a string.
pub fn table(survey: &Survey, overall_only: bool) -> String {
    let mut out = Vec::new();
    let _ = write_table(&mut out, survey, overall_only);
    String::from_utf8_lossy(&out).into_owned()
}

/// The statistics as JSON, exact: `{"targets": [{"target", "probes", "open", "closed",
/// "filtered", "failed", "capture_lost", "legs": [LegStats…]}…], "overall": {…}}`
/// (`failed`: open, but the exchange failed; `capture_lost`: probes whose capture dropped
/// packets).
pub fn stats_json(survey: &Survey) -> serde_json::Value {
    fn one(name: &str, acc: &dyn Group) -> serde_json::Value {
        let (open, closed, filtered) = acc.states();
        serde_json::json!({
            "target": name,
            "probes": acc.probes(),
            "open": open,
            "closed": closed,
            "filtered": filtered,
            "failed": acc.failed(),
            "capture_lost": acc.capture_lost(),
            "legs": acc.summary(),
        })
    }
    serde_json::json!({
        "targets": survey.targets().map(|(n, a)| one(n, a)).collect::<Vec<_>>(),
        "overall": one("all", &survey.overall()),
    })
}

/// One JSON line → (target, sample; none for a probe the user interrupted). Reads the
/// record type `probe` writes; says what is wrong with a line that is not a record.
pub fn parse_record(line: &str) -> Result<(String, Option<Sample>), String> {
    let r = ProbeResult::from_json_line(line)?;
    let sample = Sample::of(&r);
    // An exporter's records: one target probed by two modules is two series, as the
    // exporter's own metrics keep them (its `module` label).
    let target = match r.module {
        Some(m) => format!("{} module={m}", r.target),
        None => r.target,
    };
    Ok((target, sample))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"schema":1,"target":"198.18.0.2:80","addr":"198.18.0.2","port":80,"state":"open","reason":"syn-ack","src_addr":"198.18.0.1","src_port":40000,"reply_ttl":64,"reply_from":"198.18.0.2","legs_ns":{"syn_to_synack":41000,"synack_to_ack":9000,"request_to_first_byte":null,"request_to_complete":null,"fin_to_ack":null,"fin_to_peer_fin":null,"peer_fin_to_last_ack":null,"total":90000},"retransmissions":1,"peer_options":null,"http":null,"close_initiator":null,"isn":1,"irs":null,"segments":[],"timers":[],"anomalies":[],"error":null,"tls":null}"#;

    #[test]
    fn records_read_back() {
        let (t, s) = parse_record(LINE).unwrap();
        let s = s.unwrap();
        assert_eq!(t, "198.18.0.2:80");
        assert_eq!(s.legs[Leg::SynToSynack.index()], Some(41_000));
        // An exporter's record names its module: a series of its own.
        let (t, _) =
            parse_record(&LINE.replace(",\"tls\":null", ",\"tls\":null,\"module\":\"tcp\""))
                .unwrap();
        assert_eq!(t, "198.18.0.2:80 module=tcp");
        assert_eq!(s.legs[Leg::RequestToFirstByte.index()], None);
        assert_eq!(s.legs[Leg::Total.index()], Some(90_000));
        assert!(s.retransmitted);
        assert_eq!(s.state, tcpshake_proto::probe::record::PortState::Open);
        assert!(parse_record("{").is_err());
        assert!(
            parse_record(&LINE.replace("\"schema\":1", "\"schema\":2"))
                .unwrap_err()
                .contains("schema 2")
        );
    }

    #[test]
    fn table_and_json_agree() {
        let mut sv = Survey::default();
        let (t, s) = parse_record(LINE).unwrap();
        sv.add(&t, &s.unwrap());
        let (_, none) = parse_record(&LINE.replace(
            r#""error":null"#,
            r#""error":"interrupted","interrupted":true"#,
        ))
        .unwrap();
        assert!(
            none.is_none(),
            "interrupted probes stay out of the statistics"
        );
        let table = table(&sv, false);
        assert!(table.contains("198.18.0.2:80   probes 1   open 1"));
        assert!(table.contains("41.0 µs"));
        assert!(table.contains("all 1 target "));
        assert!(
            !table.contains("FIN→ACK"),
            "legs without samples are left out"
        );
        assert!(!table.contains("capture dropped"));
        let j = stats_json(&sv);
        assert_eq!(j["overall"]["capture_lost"], 0);
        assert_eq!(j["overall"]["legs"][0]["p99_ns"], 41_000);
        assert_eq!(j["targets"][0]["legs"][7]["max_ns"], 90_000);
        assert_eq!(j["targets"][0]["legs"][7]["retransmitted"], 1);
        // A declared target whose only probe was interrupted has no row, but is counted.
        sv.declare("198.18.0.3:80");
        assert!(
            super::table(&sv, false)
                .contains("all 1 target (and 1 target without a finished probe)"),
            "{}",
            super::table(&sv, false)
        );
    }

    #[test]
    fn probes_whose_capture_dropped_packets_are_counted() {
        let mut sv = Survey::default();
        for line in [
            LINE.to_string(),
            LINE.replace(r#""error":null"#, r#""error":null,"capture_lost":7"#),
        ] {
            let (t, s) = parse_record(&line).unwrap();
            sv.add(&t, &s.unwrap());
        }
        let table = table(&sv, false);
        assert!(
            table.contains("the capture dropped packets while 1 of them ran"),
            "{table}"
        );
        assert_eq!(stats_json(&sv)["overall"]["capture_lost"], 1);
    }

    /// HTTPS probes whose handshakes never got far: the TLS rows are there with their
    /// 100 % loss (as `--json` has them), not left out as legs that did not apply; the
    /// request legs, which no probe had, are left out as for `--no-http`.
    #[test]
    fn tls_rows_show_a_handshake_that_never_got_far() {
        let mut sv = Survey::default();
        let (t, s) = parse_record(LINE).unwrap();
        let mut s = s.unwrap();
        s.tls = true;
        s.legs[Leg::TlsClienthelloToServerhello.index()] = Some(120_000);
        sv.add(&t, &s);
        let table = table(&sv, false);
        assert!(table.contains("CH→SH"), "{table}");
        for label in ["CH→srv Fin", "CH→our Fin", "SYN→appconn", "notify→FIN"] {
            let row = table
                .lines()
                .find(|l| l.trim_start().starts_with(label))
                .unwrap_or_else(|| panic!("no {label} row: {table}"));
            assert!(row.contains("      0  100.0"), "{row}");
        }
        assert!(!table.contains("req→1st byte"), "{table}");
    }

    /// An open port whose exchange failed is not a working server: counted apart, in the
    /// table and the JSON, as report and the survey's own table show them.
    #[test]
    fn open_probes_whose_exchange_failed_are_counted() {
        let mut sv = Survey::default();
        for line in [
            LINE.to_string(),
            LINE.replace(
                r#""error":null"#,
                r#""error":"TLS: the server does not speak TLS on this port""#,
            ),
        ] {
            let (t, s) = parse_record(&line).unwrap();
            sv.add(&t, &s.unwrap());
        }
        let table = table(&sv, false);
        assert!(table.contains("probes 2   open 2"), "{table}");
        assert!(
            table.contains("1 of the open ones failed their exchange"),
            "{table}"
        );
        assert_eq!(stats_json(&sv)["overall"]["failed"], 1);
        assert_eq!(stats_json(&sv)["targets"][0]["failed"], 1);
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_header().split(',').count(), 10 + Leg::COUNT + 4);
    }
}
