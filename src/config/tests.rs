//! Every refusal of [`Config`], with its message and exit code, and the defaults it fills
//! in. Nothing here needs the network or root: validation is pure.

use super::*;
use crate::app::exit::Exit;

fn parse(args: &[&str]) -> std::result::Result<Config, Refused> {
    Config::parse_from(std::iter::once("tcpshake").chain(args.iter().copied()))
}

/// The message and exit code a refused command line ends with, as `app::main` prints it.
fn refusal(args: &[&str]) -> (String, u8) {
    match parse(args) {
        Ok(c) => panic!("{args:?} was accepted: {c:?}"),
        Err(Refused::Usage(e)) => (e.0, Exit::Usage.code()),
        Err(Refused::Clap(e)) => {
            let code = if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok
            };
            (e.to_string(), code.code())
        }
    }
}

/// Refused with exit 2 and a message containing every one of `want`.
#[track_caller]
fn refused(args: &[&str], want: &[&str]) {
    let (msg, code) = refusal(args);
    assert_eq!(code, 2, "{args:?}: {msg}");
    for w in want {
        assert!(msg.contains(w), "{args:?}: message lacks {w:?}:\n{msg}");
    }
    assert!(
        !msg.contains("Error(") && !msg.contains("Some("),
        "{args:?}: Rust debug text reaches the user:\n{msg}"
    );
}

fn probe(args: &[&str]) -> ProbeConfig {
    match parse(args) {
        Ok(Config::Probe(c)) => c,
        other => panic!("{args:?}: not a single probe: {other:?}"),
    }
}

fn survey(args: &[&str]) -> SurveyConfig {
    match parse(args) {
        Ok(Config::Survey(c)) => c,
        other => panic!("{args:?}: not a survey: {other:?}"),
    }
}

fn scan(args: &[&str]) -> ScanConfig {
    match parse(args) {
        Ok(Config::Scan(c)) => c,
        other => panic!("{args:?}: not a scan: {other:?}"),
    }
}

#[test]
fn probe_defaults_come_from_one_place() {
    let c = probe(&["probe", "198.18.0.2:80"]);
    assert_eq!(
        c.exchange,
        Exchange {
            http: Some(HttpOptions {
                path: defaults::PATH.into(),
                host_header: None
            }),
            ..Exchange::default()
        }
    );
    assert_eq!(c.family, Family::Any);
    assert!(!c.json && c.pcap.is_none());
    let s = survey(&["probe", "198.18.0.2:80", "-q"]);
    assert_eq!(
        (s.count, s.interval, s.jobs, s.format),
        (
            defaults::COUNT,
            defaults::INTERVAL,
            defaults::JOBS,
            OutputFormat::Text
        )
    );
    let s = scan(&["scan", "198.18.0.2"]);
    assert_eq!(s.ports.len(), defaults::TOP_PORTS);
    assert_eq!(
        (s.rate, s.retries, s.wait, s.shard),
        (
            None,
            defaults::SCAN_RETRIES,
            defaults::SCAN_WAIT,
            Shard::WHOLE
        )
    );
    match parse(&["report", "a.jsonl", "--svg", "a.svg"]) {
        Ok(Config::Report(r)) => assert_eq!(r.plot, defaults::PLOT),
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_makes_a_survey() {
    for args in [
        &["probe", "h:80", "-c", "3"][..],
        &["probe", "h", "-p", "80,443"],
        &["probe", "-iL", "list.txt"],
        &["probe", "h:80", "--shard", "1/2"],
        &["probe", "h:80", "-o", "csv"],
    ] {
        survey(args);
    }
    probe(&["probe", "h", "-p", "80"]);
}

#[test]
fn timers_are_refused_not_changed() {
    refused(
        &["probe", "h:80", "--timeout", "0s"],
        &["--timeout 0s", "positive"],
    );
    refused(
        &["probe", "h:80", "--rto", "50ms"],
        &["--rto 50ms", "floor of 200ms", "--rto 200ms"],
    );
    refused(&["probe", "h:80", "--rto", "2m"], &["ceiling of 1m"]);
    // The range the option takes, for a number past it or below it alike.
    for n in ["11", "-1"] {
        refused(
            &["probe", "h:80", "--retries", n],
            &["--retries", "is not a whole number from 0 to 10"],
        );
    }
    refused(&["lab", "--timeout", "0s"], &["--timeout 0s"]);
    // A unit everywhere: a bare number is refused by every duration option.
    for opt in ["--timeout", "--rto", "--time-wait", "--linger", "-i"] {
        refused(&["probe", "h:80", opt, "5"], &["no unit", "5s"]);
    }
    refused(&["scan", "h", "--wait", "5"], &["no unit"]);
    // The floor itself and zero TIME-WAIT / linger are fine.
    let c = probe(&[
        "probe",
        "h:80",
        "--rto",
        "200ms",
        "--time-wait",
        "0s",
        "--linger",
        "0s",
    ]);
    assert_eq!(c.exchange.rto, defaults::RTO_MIN);
}

#[test]
fn requests_are_well_formed_or_refused() {
    refused(
        &["probe", "h:80", "--path", "/a\r\nX-Injected: 1"],
        &["--path", "carriage return"],
    );
    refused(&["probe", "h:80", "--path", "/a\nb"], &["line feed"]);
    refused(&["probe", "h:80", "--path", "/a b"], &["%20"]);
    refused(
        &["probe", "h:80", "--path", "/a\u{7}"],
        &["control character"],
    );
    refused(
        &["probe", "h:80", "--path", "index.html"],
        &["starts with `/`"],
    );
    refused(&["probe", "h:80", "--path", "*"], &["OPTIONS"]);
    refused(&["probe", "h:80", "--path", "/#top"], &["fragment"]);
    refused(
        &["probe", "h:80", "--host-header", "h\r\nX-Injected: 1"],
        &["--host-header", "carriage return"],
    );
    refused(&["probe", "h:80", "--host-header", "a b"], &["space"]);
    refused(
        &["probe", "http://h/a\r\nX: 1"],
        &["`http://h/a\r\nX: 1`", "carriage return"],
    );
    refused(
        &["probe", "http://user:pw@h/"],
        &["user:pw@", "no credentials"],
    );
    refused(&["probe", "ftp://h/"], &["ftp://"]);
    refused(
        &["probe", "h:80", "--no-http", "--path", "/x"],
        &["--path", "--no-http"],
    );
    refused(
        &["probe", "h:80", "--no-http", "--host-header", "x"],
        &["--host-header", "--no-http"],
    );
    let c = probe(&["probe", "HTTP://h/a?b=1#frag"]);
    assert_eq!(c.targets[0].path.as_deref(), Some("/a?b=1"));
    // A query in --path is kept.
    let c = probe(&["probe", "h:80", "--path", "/x?y=1"]);
    assert_eq!(c.exchange.http.unwrap().path, "/x?y=1");
}

#[test]
fn targets_and_families() {
    refused(&["probe", "fd00::2:80"], &["`[fd00::2]:80`"]);
    refused(&["probe", "198.18.0.2"], &["no port", "-p PORT"]);
    refused(
        &["probe", "198.18.0.2:99999"],
        &["`198.18.0.2:99999`: `99999` is not a port; give a number from 1 to 65535"],
    );
    refused(&["probe", "bad$host:80"], &["`bad$host`", "character `$`"]);
    refused(
        &["probe", "-6", "198.18.0.2:80"],
        &["`198.18.0.2` is IPv4 but -6 asks for IPv6; drop -6 or give an IPv6 address"],
    );
    refused(
        &["probe", "-4", "[fd00::2]:80", "-c", "2"],
        &["`fd00::2` is IPv6 but -4 asks for IPv4"],
    );
    refused(&["probe", "-4", "-6", "h:80"], &["cannot be used with"]);
    refused(
        &["scan", "-6", "198.18.0.0/30"],
        &["`198.18.0.0/30` is IPv4", "-6"],
    );
    refused(&["scan", "-4", "fd00::1"], &["IPv6", "-4"]);
    refused(&["scan", "bad$host"], &["`bad$host`", "character `$`"]);
    refused(&["scan"], &["no targets"]);
    refused(&["scan", "h", "-p", "70000"], &["70000"]);
    refused(&["scan", "h", "--exclude", "x$y"], &["--exclude", "`$`"]);
    // An exclusion with a port is told to drop the port, not to scan the host with -p.
    for ex in ["198.18.0.3:80", "198.18.0.3:x", "[fd00::3]:80"] {
        refused(
            &["scan", "198.18.0.0/24", "-p", "80", "--exclude", ex],
            &["--exclude", "an exclusion is addresses only"],
        );
    }
    // The same bad host gives the same words in probe and scan.
    let (p, _) = refusal(&["probe", "bad$host", "-p", "80"]);
    let (s, _) = refusal(&["scan", "bad$host"]);
    assert_eq!(p, s);
    // Names are left for the resolver, in the family asked for.
    assert_eq!(probe(&["probe", "-6", "lab.test:80"]).family, Family::V6);
}

#[test]
fn one_shard_syntax_for_surveys_and_scans() {
    assert_eq!(
        survey(&["probe", "h:80", "--shard", "2/4"]).shard,
        Some(Shard { index: 2, count: 4 })
    );
    assert_eq!(
        scan(&["scan", "h", "--shard", "2/4", "--seed", "1"]).shard,
        Shard { index: 2, count: 4 }
    );
    for bad in ["0/4", "5/4", "2", "a/4", " 2/4"] {
        let (p, _) = refusal(&["probe", "h:80", "--shard", bad]);
        let (s, _) = refusal(&["scan", "h", "--seed", "1", "--shard", bad]);
        let want = Shard::parse(bad).unwrap_err();
        assert!(p.contains(&want) && s.contains(&want), "{bad}:\n{p}\n{s}");
    }
    refused(
        &["scan", "h", "--shard", "1/2"],
        &["--shard 1/2 needs --seed"],
    );
}

#[test]
fn options_that_would_be_ignored_are_refused() {
    refused(
        &["report", "a.jsonl", "--plot", "cdf"],
        &["--plot", "--svg FILE"],
    );
    for opt in [
        &["--sni", "x.test"][..],
        &["--cacert", "ca.pem"],
        &["--insecure"],
    ] {
        let mut args = vec!["probe", "198.18.0.2:80"];
        args.extend_from_slice(opt);
        refused(&args, &[opt[0], "no target is HTTPS"]);
    }
    // With HTTPS they are used.
    probe(&["probe", "198.18.0.2:443", "--sni", "x.test"]);
    probe(&["probe", "198.18.0.2:80", "--tls", "--insecure"]);
    // A list may hold https:// targets: not known before it is read.
    survey(&["probe", "-iL", "l.txt", "--cacert", "ca.pem"]);
    refused(&["probe", "h:443", "--sni", "a b"], &["--sni `a b`"]);
    refused(
        &["probe", "h:80", "--json", "-o", "csv"],
        &["--json and -o csv"],
    );
    assert_eq!(
        survey(&["probe", "h:80", "--json", "-o", "jsonl"]).format,
        OutputFormat::Jsonl
    );
    // lab probes its own peer over plain HTTP: TLS options and targets are not its own.
    for args in [
        &["lab", "--tls"][..],
        &["lab", "--sni", "x"],
        &["lab", "198.18.0.2:80"],
        &["lab", "-c", "2"],
    ] {
        let (msg, code) = refusal(args);
        assert_eq!(code, 2, "{args:?}: {msg}");
    }
}

#[test]
fn help_and_version_exit_0() {
    for args in [&["--help"][..], &["probe", "--help"], &["--version"]] {
        let (_, code) = refusal(args);
        assert_eq!(code, 0, "{args:?}");
    }
    let (help, _) = refusal(&["--help"]);
    for e in Exit::ALL {
        assert!(
            help.contains(&format!("{:>3}  ", e.code())),
            "--help lacks exit {e:?}"
        );
    }
}

#[test]
fn generate_is_a_command() {
    assert!(matches!(
        parse(&["generate", "man", "out"]),
        Ok(Config::Generate(Generate::Man { .. }))
    ));
    assert!(matches!(
        parse(&["generate", "completions", "bash"]),
        Ok(Config::Generate(Generate::Completions { .. }))
    ));
}

fn trace(args: &[&str]) -> TraceConfig {
    match parse(args) {
        Ok(Config::Trace(c)) => c,
        other => panic!("{args:?}: not a trace: {other:?}"),
    }
}

#[test]
fn trace_defaults_and_refusals() {
    let c = trace(&["trace", "198.18.0.2:80"]);
    assert_eq!(
        (c.first_ttl, c.max_ttl, c.probes, c.parallel, c.gap, c.tos),
        (
            1,
            defaults::TRACE_MAX_TTL,
            defaults::TRACE_PROBES,
            defaults::TRACE_PARALLEL,
            defaults::TRACE_GAP,
            0
        )
    );
    assert_eq!(
        (c.timeout, c.interval),
        (defaults::TRACE_TIMEOUT, defaults::TRACE_INTERVAL)
    );
    assert!(!c.in_session && !c.json && c.pcap.is_none());
    assert_eq!(c.target.port, 80);
    let c = trace(&[
        "trace",
        "fd00::2",
        "-p",
        "443",
        "-6",
        "--tos",
        "0x22",
        "--in-session",
    ]);
    assert_eq!((c.target.port, c.tos, c.in_session), (443, 0x22, true));
    assert_eq!(trace(&["trace", "h:80", "-t", "34"]).tos, 34);
    refused(&["trace", "h:80", "--tos", "0x100"], &["not a byte"]);
    refused(&["trace", "h:80", "--tos", "ef"], &["not a byte"]);
    refused(&["trace", "h"], &["port"]);
    refused(
        &["trace", "h:80", "--first-ttl", "9", "--max-ttl", "5"],
        &["--first-ttl 9", "--max-ttl 5"],
    );
    refused(
        &["trace", "h:80", "--max-ttl", "255", "--probes", "5"],
        &["1275 probes (TTLs 1 to 255 × --probes 5)", "at most 1024"],
    );
    refused(
        &["trace", "h:80", "--timeout", "0s"],
        &["--timeout 0s", "positive"],
    );
    refused(&["trace", "h:80", "--timeout", "1"], &["no unit"]);
    refused(&["trace", "h:80", "--probes", "11"], &["11"]);
    refused(&["trace", "h:80", "--max-ttl", "0"], &["0"]);
    refused(&["trace", "198.18.0.2:80", "-6"], &["-6"]);
    // Walk 15: an IPv4-mapped target was traced as native IPv6.
    refused(
        &["trace", "[::ffff:198.18.157.2]:80"],
        &[
            "`[::ffff:198.18.157.2]:80`: ::ffff:198.18.157.2 is an IPv4-mapped IPv6 address \
             (RFC 4291 §2.5.5.2)",
            "give the IPv4 address: 198.18.157.2:80",
        ],
    );
    refused(
        &["trace", "::ffff:198.18.157.2", "-p", "443"],
        &["198.18.157.2:443"],
    );
    // And in every command that takes targets, alike.
    refused(
        &["probe", "[::ffff:198.18.157.2]:80"],
        &[
            "is an IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2)",
            "198.18.157.2:80",
        ],
    );
    refused(
        &["scan", "::ffff:198.18.157.2", "-p", "80"],
        &[
            "is an IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2)",
            "give the IPv4 address: 198.18.157.2",
        ],
    );
    // A port has no sign (Rust's parse took `+80`); `-w 0` suggests no zero that -w
    // then refuses.
    refused(
        &["trace", "198.18.157.2:+80"],
        &["`+80`: a port has no sign; write 80"],
    );
    refused(&["probe", "198.18.157.2:+80"], &["a port has no sign"]);
    let (msg, code) = refusal(&["trace", "h:80", "-w", "0"]);
    assert_eq!(code, 2, "{msg}");
    assert!(
        msg.contains("`0` has no unit; write e.g. 1s or 500ms"),
        "{msg}"
    );
}

/// A new user's mistakes, each refused in our words (never Rust's or serde's), naming the
/// option or target, with what to write instead — the same words in probe and scan.
#[test]
fn a_new_users_mistakes_are_said_the_same_in_every_command() {
    let not_a_port = "`99999` is not a port; give a number from";
    refused(&["probe", "198.18.0.2:99999"], &[not_a_port, "1 to 65535"]);
    refused(
        &["scan", "198.18.0.2", "-p", "99999"],
        &["-p `99999`: ", not_a_port, "0 to 65535"],
    );
    refused(&["trace", "198.18.0.2", "-p", "99999"], &[not_a_port]);
    refused(
        &["probe", "198.18.0.2:"],
        &["`198.18.0.2:`: a port is missing"],
    );
    refused(
        &["probe", "198.18.0.2", "-p", "80,"],
        &["-p `80,`: an empty item between commas"],
    );
    // The same words as scan's, for the same mistake.
    refused(
        &["scan", "198.18.0.2", "-p", "80,"],
        &["-p `80,`: an empty item between commas"],
    );
    refused(
        &["probe", "198.18.0.2", "-p", "80-82"],
        &[
            "probe takes single ports, not ranges",
            "-p 80,81,82",
            "tcpshake scan",
        ],
    );
    // nmap's open-ended ranges and a range written backwards are ranges too: the same
    // answer, never "not a port" (or clap's `-1` for `-p -1024`), and a scan that runs.
    for (range, list, scan) in [
        ("80-", "-p 80,81,82", "-p 80-65535"),
        ("-1024", "-p 1,2,3", "-p 1-1024"),
        ("-", "-p 1,2,3", "-p 1-65535"),
        ("82-80", "-p 80,81,82", "-p 80-82"),
    ] {
        refused(
            &["probe", "198.18.0.2", "-p", range],
            &["probe takes single ports, not ranges", list, scan],
        );
    }
    refused(
        &["trace", "198.18.0.2", "-p", "80-82"],
        &[
            "trace follows one port, not a range",
            "tcpshake scan HOST -p 80-82",
        ],
    );
    refused(
        &["trace", "198.18.0.2", "-p", "-1024"],
        &["trace follows one port, not a range"],
    );
    refused(
        &["trace", "198.18.0.2", "-p", "80,443"],
        &["trace follows one port; trace each port in a run of its own"],
    );
    // A stray comma is a stray comma, in trace too; a "range" of port 0 alone is port 0's
    // mistake (it suggested `-p ` and a scan of 1-0).
    for p in ["80,", ","] {
        refused(
            &["trace", "198.18.0.2", "-p", p],
            &["an empty item between commas"],
        );
    }
    for (cmd, p) in [("probe", "0-0"), ("probe", "-0"), ("trace", "0-0")] {
        refused(
            &[cmd, "198.18.0.2", "-p", p],
            &["port 0 cannot be connected to"],
        );
    }
    refused(
        &["probe", "198.18.0.2", "-p", "0"],
        &["port 0 cannot be connected to"],
    );
    assert!(matches!(
        Config::parse_from(["tcpshake", "scan", "198.18.0.2", "-p", "0"]),
        Ok(Config::Scan(_))
    ));
    let v6_with_4 = "`fd00:77::2` is IPv6 but -4 asks for IPv4; drop -4 or give an IPv4 address";
    refused(&["probe", "-4", "fd00:77::2", "-p", "80"], &[v6_with_4]);
    refused(&["scan", "-4", "fd00:77::2", "-p", "80"], &[v6_with_4]);
    refused(
        &["scan", "198.18.0.2", "--rate", "10k"],
        &["`10k` is not a whole number", "write 10000"],
    );
    refused(
        &["scan", "198.18.77.2:80"],
        &["scan takes ports with -p: `tcpshake scan 198.18.77.2 -p 80`"],
    );
    // A port that is not one after the address: still the -p way, not "not an IPv6
    // address".
    for bad in [
        "198.18.77.2:8o",
        "198.18.77.2:",
        "host.example:99999",
        "198.18.77.1-5:80",
        "198.18.77.0/24:80",
        "[fd00::2]:8o",
    ] {
        refused(
            &["scan", bad],
            &["scan takes ports with -p", "`tcpshake scan "],
        );
    }
    refused(
        &["scan", "[fd00::2]:80"],
        &["`tcpshake scan fd00::2 -p 80`"],
    );
    for (args, want) in [
        (&["probe", "198.18.0.2", "-p", "80,"][..], "empty string"),
        (
            &["scan", "198.18.0.2", "--rate", "10k"][..],
            "invalid digit",
        ),
    ] {
        let (msg, _) = refusal(args);
        assert!(!msg.contains(want), "{args:?}: Rust's words: {msg}");
    }
}

/// nmap's habits in `scan`: what it always does is accepted, the rest refused with what to
/// use — never clap's "use '-- -s'", which would make the option a target.
#[test]
fn nmap_habits_in_scan() {
    let c = Config::parse_from([
        "tcpshake",
        "scan",
        "-sS",
        "-Pn",
        "-n",
        "198.18.0.2",
        "-p",
        "80",
    ]);
    let Ok(Config::Scan(c)) = c else {
        panic!("-sS -Pn -n refused: {c:?}")
    };
    assert_eq!(c.targets.len(), 1);
    refused(
        &["scan", "198.18.0.2", "-T4"],
        &["no timing templates: use --rate PPS (and --wait/--retries)"],
    );
    refused(&["scan", "198.18.0.2", "-sU"], &["-sU", "SYN scan"]);
    refused(&["scan", "198.18.0.2", "-sT"], &["-sT", "--complete"]);
    let (msg, _) = refusal(&["scan", "198.18.0.2", "-sA"]);
    assert!(!msg.contains("-- -s"), "{msg}");
}

/// More of nmap's everyday options: `-F`, `--max-retries` and `--reason` mean what they
/// mean in nmap; the ones it cannot honour are refused with what to use — never clap's
/// "use '-- -F'" (a target) or its guess `--max-rate` for `--min-rate` (the opposite).
#[test]
fn nmap_fast_retries_reason_and_timing_options_in_scan() {
    assert_eq!(
        scan(&["scan", "198.18.0.2", "-F"]).ports,
        scan(&["scan", "198.18.0.2", "--top-ports", "100"]).ports
    );
    assert_eq!(scan(&["scan", "198.18.0.2", "-F"]).ports.len(), 100);
    // Beside another port selection, refused in -F's own name (clap named the
    // `--top-ports` it stands for, or said it was given twice).
    for other in [
        &["-p", "80"][..],
        &["-p80"],
        &["-p-"],
        &["--top-ports", "200"],
    ] {
        let mut all = vec!["scan", "198.18.0.2", "-F"];
        all.extend_from_slice(other);
        refused(&all, &["-F is nmap's fast mode", "drop one of them"]);
    }
    // nmap's older names of -Pn change nothing, as -Pn.
    for old in ["-P0", "-PN"] {
        assert_eq!(
            scan(&["scan", "198.18.0.2", "-p", "80", old]).ports,
            vec![80]
        );
    }
    assert_eq!(
        scan(&["scan", "198.18.0.2", "-p", "80", "--max-retries", "3"]).retries,
        3
    );
    let c = scan(&["scan", "198.18.0.2", "-p", "80", "--reason"]);
    assert_eq!((c.ports, c.targets.len()), (vec![80], 1));
    refused(
        &["scan", "198.18.0.2", "-p", "80", "--min-rate", "100"],
        &["--min-rate: tcpshake scan has no rate floor", "--rate PPS"],
    );
    for flag in ["--max-rtt-timeout", "--host-timeout", "--scan-delay"] {
        let (msg, code) = refusal(&["scan", "198.18.0.2", "-p", "80", flag, "1s"]);
        assert_eq!(code, 2, "{flag}: {msg}");
        assert!(msg.contains(&format!("drop {flag}")), "{flag}: {msg}");
        assert!(
            msg.contains("--wait DUR") && !msg.contains("--max-rate"),
            "{msg}"
        );
    }
    refused(
        &["scan", "198.18.0.2", "-p", "80", "--script=http-title"],
        &["runs no scripts", "drop --script=http-title"],
    );
    refused(&["scan", "198.18.0.2", "-sC"], &["runs no scripts"]);
    refused(
        &["scan", "198.18.0.2", "--append-output", "-oN", "x"],
        &["-oN - >> FILE"],
    );
    refused(&["scan", "198.18.0.2", "-oS", "x"], &["drop -oS"]);
    for (args, want) in [
        (
            &["-e", "eth0"][..],
            "the interface the route to its target names",
        ),
        (&["-S", "198.18.0.9"], "never a spoofed or decoy one"),
        (&["-f"], "only well-formed SYNs"),
        (&["--ttl", "3"], "only well-formed SYNs"),
        (&["--badsum"], "only well-formed SYNs"),
        (&["-iR", "10"], "only to the targets it is given"),
        (&["--exclude-ports", "80"], "-p 1-79,81-1024"),
        (&["-PS80"], "no host discovery"),
    ] {
        let mut all = vec!["scan", "198.18.0.2", "-p", "80"];
        all.extend_from_slice(args);
        let (msg, code) = refusal(&all);
        assert_eq!(code, 2, "{all:?}: {msg}");
        assert!(
            msg.contains(want) && !msg.contains("-- -"),
            "{all:?}: {msg}"
        );
    }
    // `-Pn` is still accepted: only the other discovery probes are refused.
    scan(&["scan", "198.18.0.2", "-Pn", "-p", "80"]);
    // Only scan speaks nmap: `-F` elsewhere stays clap's refusal.
    let (_, code) = refusal(&["probe", "198.18.0.2:80", "-F"]);
    assert_eq!(code, 2);
}

/// `-p` is for targets without a port (and for -iL lines); where every target names its
/// own it would be ignored, so it is refused — in probe, its surveys and trace.
#[test]
fn a_port_option_that_would_be_ignored_is_refused() {
    let own = "-p 81 would be ignored: `198.18.0.2:80` names its own port, and a target's \
               port wins; drop -p, or drop the port from the target (`198.18.0.2 -p 81`)";
    refused(&["probe", "198.18.0.2:80", "-p", "81"], &[own]);
    refused(&["trace", "198.18.0.2:80", "-p", "81"], &[own]);
    refused(
        &["probe", "198.18.0.2:80", "-p", "81,8080"],
        &["-p 81,8080 would be ignored"],
    );
    refused(
        &[
            "probe",
            "198.18.0.2:80",
            "[fd00::2]:80",
            "-p",
            "81",
            "-c",
            "2",
        ],
        &["every target names its own port"],
    );
    refused(
        &["probe", "http://h.test:8080/", "-p", "81"],
        &["`http://h.test:8080/` names its own port"],
    );
    // Where -p is used: a target without a port, beside one with; an -iL list's lines; a
    // URL without a port (-p instead of the scheme's).
    let c = survey(&["probe", "198.18.0.2:80", "198.18.0.3", "-p", "81,82"]);
    let ports: Vec<u16> = c.targets.iter().map(|t| t.port).collect();
    assert_eq!(ports, [80, 81, 82]);
    let c = survey(&["probe", "198.18.0.2:80", "-iL", "l.txt", "-p", "81"]);
    assert_eq!(c.ports, [81]);
    assert_eq!(
        probe(&["probe", "http://h.test/", "-p", "81"]).targets[0].port,
        81
    );
    assert_eq!(trace(&["trace", "198.18.0.2", "-p", "81"]).target.port, 81);
}

/// A URL's path is the one sent: `--path` beside a URL on the command line is refused,
/// with the URL to write instead; for an -iL list it is the other lines' path.
#[test]
fn a_path_option_beside_a_url_is_refused() {
    refused(
        &["probe", "http://198.18.0.2:8080/", "--path", "/foo"],
        &[
            "--path /foo would be ignored: `http://198.18.0.2:8080/` is a URL",
            "drop --path, or put the path in the URL (`http://198.18.0.2:8080/foo`)",
        ],
    );
    refused(
        &[
            "probe",
            "HTTPS://h.test/a?b",
            "http://g.test/",
            "--path",
            "/x",
            "-c",
            "2",
        ],
        &["(`HTTPS://h.test/x`)"],
    );
    // Beside a target that is not a URL it has its use, as -p beside a target without a
    // port: that one gets it, the URL keeps its own path.
    let c = probe(&["probe", "h.test:80", "HTTPS://h.test/a?b", "--path", "/x"]);
    assert_eq!(c.exchange.http.map(|h| h.path), Some("/x".to_string()));
    let c = survey(&["probe", "-iL", "l.txt", "-p", "80", "--path", "/x"]);
    assert_eq!(c.exchange.http.map(|h| h.path), Some("/x".to_string()));
    assert!(
        probe(&["probe", "h.test:80", "--path", "/x"])
            .exchange
            .http
            .is_some()
    );
}

/// Addresses no TCP peer can be at are refused from the command line in every command
/// (a subnet's broadcast address needs the route: `app`, tests/it/cli.rs).
#[test]
fn addresses_no_connection_can_be_made_to_are_refused_everywhere() {
    for (target, what) in [
        ("224.0.0.1", "a multicast address"),
        ("0.0.0.0", "the unspecified address"),
        ("::", "the unspecified address"),
        ("255.255.255.255", "the limited broadcast address"),
    ] {
        let msg = format!("{target} is {what}: no TCP connection can be made to it; give");
        refused(&["probe", target, "-p", "80"], &[&msg]);
        refused(&["probe", target, "-p", "80", "-c", "2"], &[&msg]);
        refused(&["trace", target, "-p", "80"], &[&msg]);
        refused(&["scan", target, "-p", "80"], &[&msg]);
    }
    refused(
        &["scan", "ff02::/120", "-p", "80"],
        &["`ff02::/120`: every address in it is a multicast address"],
    );
    // A block that includes such an address is scanned as nmap scans it.
    scan(&["scan", "0.0.0.0/30", "-p", "80"]);
    scan(&["scan", "223.255.255.255-224.0.0.1", "-p", "80"]);
    // Exclusions name exactly these (bogon lists): welcome, never refused — a refused or
    // skipped exclusion would scan what it was meant to keep out.
    for bogon in [
        "224.0.0.0/4",
        "0.0.0.0",
        "0.0.0.0/8",
        "255.255.255.255",
        "ff02::1",
        "::",
    ] {
        let c = scan(&["scan", "198.18.0.0/24", "-p", "80", "--exclude", bogon]);
        assert_eq!(c.exclude.len(), 1, "{bogon}");
        // The same reader takes --excludefile's lines.
        assert!(exclude_spec(bogon, Family::Any).is_ok(), "{bogon}");
    }
    assert!(scan_spec("224.0.0.0/4", Family::Any).is_err());
}

/// Walk 14: `-iL - --excludefile -` read stdin twice; the targets took it all and the
/// exclusions came back empty, without a word. Only one may read stdin.
#[test]
fn only_one_list_may_read_stdin() {
    refused(
        &["scan", "-iL", "-", "--excludefile", "-", "-p", "80"],
        &[
            "-iL - and --excludefile - both read stdin",
            "put the exclusions (or the targets) in a file",
        ],
    );
    let c = scan(&["scan", "-iL", "-", "--excludefile", "excl.txt", "-p", "80"]);
    assert_eq!(c.exclude_list, Some(PathBuf::from("excl.txt")));
    scan(&["scan", "198.18.0.0/24", "--excludefile", "-", "-p", "80"]);
}

/// nmap's output options and habits beyond -oG/-oX: -oN, -oA BASE, --max-rate, --open.
#[test]
fn nmap_outputs_and_rate_in_scan() {
    let c = scan(&["scan", "198.18.0.2", "-oA", "out/s"]);
    assert_eq!(c.output_normal, Some(PathBuf::from("out/s.nmap")));
    assert_eq!(c.output_greppable, Some(PathBuf::from("out/s.gnmap")));
    assert_eq!(c.output_xml, Some(PathBuf::from("out/s.xml")));
    assert_eq!(c.output_flags, ["-oA"; 3]);
    let c = scan(&["scan", "198.18.0.2", "-oN", "s.txt", "-oX", "s.xml"]);
    assert_eq!(c.output_normal, Some(PathBuf::from("s.txt")));
    assert_eq!(c.output_flags, ["-oN", "-oG", "-oX"]);
    refused(
        &["scan", "198.18.0.2", "-oA", "-"],
        &["-oA - would send three formats"],
    );
    refused(
        &["scan", "198.18.0.2", "-oA", "s", "-oN", "x"],
        &["-oA s already writes -oN's format (to s.nmap); drop -oN or -oA"],
    );
    refused(
        &["scan", "198.18.0.2", "-oN", "-", "-oX", "-"],
        &["-oN - and -oX - both write to stdout"],
    );
    assert_eq!(
        scan(&["scan", "198.18.0.2", "--max-rate", "500"]).rate,
        Some(500)
    );
    refused(
        &["scan", "198.18.0.2", "--max-rate", "5", "--rate", "5"],
        &["--max-rate", "cannot be used with", "--rate"],
    );
    assert!(scan(&["scan", "198.18.0.2", "--open", "-oN", "s.txt"]).open);
    assert!(!scan(&["scan", "198.18.0.2", "-oN", "s.txt"]).open);
    // Walk 14: `nmap --open -oG -` is a habit; the formats show the open ports only.
    for extra in [&["-oG", "-"][..], &["-oX", "s.xml"], &["-oA", "s"]] {
        let mut args = vec!["scan", "198.18.0.2", "--open"];
        args.extend_from_slice(extra);
        assert!(scan(&args).open, "{args:?}");
    }
    for (extra, name) in [(&["--all"][..], "--all"), (&["--json"], "--json")] {
        let mut args = vec!["scan", "198.18.0.2", "--open"];
        args.extend_from_slice(extra);
        refused(&args, &[&format!("--open would be ignored by {name}")]);
    }
    for (flag, want) in [
        ("-O", "no OS detection"),
        ("-A", "no OS or version detection"),
        ("-v", "no verbosity levels: drop -v"),
        ("-vvv", "drop -vvv"),
        // Walk 14: these got clap's tip to write `-- -r`, which makes the flag a target.
        (
            "-r",
            "a permutation of every (address, port) keyed by --seed N",
        ),
        ("-d", "no debug levels: drop -d"),
        ("-dd", "drop -dd"),
        ("--packet-trace", "prints no packet trace"),
        ("--defeat-rst-ratelimit", "slows its retries to it"),
        ("--webxml", "names nmap's stylesheet"),
        ("--no-stylesheet", "drop --no-stylesheet"),
    ] {
        refused(&["scan", "198.18.0.2", flag], &[want]);
    }
    refused(
        &["scan", "198.18.0.2", "--stats-every", "5s"],
        &["draws a progress bar"],
    );
    refused(&["scan", "198.18.0.2", "--resume", "f"], &["--shard K/N"]);
}

/// Durations in minutes and hours are read everywhere a duration is: the out-of-range
/// message's own bound (24h) is one a user can type.
#[test]
fn durations_take_minutes_and_hours() {
    let c = probe(&["probe", "h:80", "--timeout", "1h"]);
    assert_eq!(c.exchange.timeout, Duration::from_secs(3600));
    let c = survey(&["probe", "h:80", "-c", "2", "-i", "2min"]);
    assert_eq!(c.interval, Duration::from_secs(120));
    // One probe per target has nothing to space: -i would be ignored, so it is refused.
    refused(
        &["probe", "h:80", "-i", "2min"],
        &[
            "-i 2m spaces the probes of each target",
            "give -c 2 or more, or drop -i",
        ],
    );
    refused(
        &["probe", "h:80", "--timeout", "25h"],
        &["out of range (0 to 24h)"],
    );
    assert!(parse(&["probe", "h:80", "--timeout", "24h"]).is_ok());
}

/// `lab` takes no target and none of `probe`'s survey or TLS options: each is refused
/// saying where it goes; an option no command has stays clap's word.
#[test]
fn lab_says_where_targets_and_probe_options_go() {
    refused(
        &["lab", "198.18.0.2:80"],
        &[
            "tcpshake lab takes no target",
            "`tcpshake probe 198.18.0.2:80`",
        ],
    );
    for opt in [
        &["-c", "5"][..],
        &["--ports", "80"],
        &["--tls"],
        &["-j", "4"],
        &["--cacert=x.pem"],
    ] {
        let mut args = vec!["lab"];
        args.extend_from_slice(opt);
        refused(
            &args,
            &[
                "tcpshake lab takes only the options",
                "tcpshake probe TARGET",
            ],
        );
    }
    refused(&["lab", "--bogus"], &["unexpected argument '--bogus'"]);
}

/// `--pcap -` is refused in every command that writes captures (and `report --svg -`),
/// naming a file instead:
/// tcpdump's `-w -` is stdout, but here stdout carries the output, and a file named `-`
/// would appear unasked.
#[test]
fn a_capture_to_stdout_is_refused() {
    for cmd in [
        &["probe", "198.18.0.2:80"][..],
        &["probe", "198.18.0.2:80", "-c", "2"],
        &["trace", "198.18.0.2:80"],
        &["lab"],
    ] {
        for flag in ["--pcap", "--pcapng"] {
            let mut args = cmd.to_vec();
            args.extend_from_slice(&[flag, "-"]);
            refused(&args, &["is written to a file, not to stdout", "./-"]);
        }
    }
    refused(
        &["report", "x.jsonl", "--svg", "-"],
        &["--svg -: this is written to a file", "--svg plot.svg"],
    );
    refused(
        &["exporter", "--config", "x.toml", "--records", "-"],
        &[
            "--records -: this is written to a file",
            "--records records.jsonl",
        ],
    );
    assert!(parse(&["probe", "198.18.0.2:80", "--pcap", "./-"]).is_ok());
}

/// Survey-only options a single probe would ignore are refused, saying how to make a
/// survey (a walk: `probe HOST --no-reflex` exited 0 with no word); in a survey they are
/// taken.
#[test]
fn a_single_probe_refuses_the_survey_only_ack_options() {
    for (flag, why) in [
        ("--separate-ack", "always sends the handshake's ACK alone"),
        ("--no-reflex", "always sends its ACK from this program"),
    ] {
        refused(
            &["probe", "198.18.0.2:80", flag],
            &[flag, why, "make this a survey (-c 1"],
        );
    }
    let c = survey(&[
        "probe",
        "198.18.0.2:80",
        "-c",
        "1",
        "--separate-ack",
        "--no-reflex",
    ]);
    assert!(c.separate_ack && !c.reflex);
}

/// `--csv` and `--influx`, guessed beside `--json`, are refused naming `-o FORMAT` (clap's
/// tip was to pass them as a target); `probe` alone shows both ways to give targets.
#[test]
fn format_guesses_point_to_the_output_option() {
    refused(
        &["probe", "198.18.0.2:80", "--csv"],
        &["--csv is not an option; write -o csv"],
    );
    refused(
        &["probe", "198.18.0.2:80", "--influx"],
        &["write -o influx"],
    );
}
