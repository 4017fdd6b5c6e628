//! The command line as a new user meets it: mistakes refused with one message that says
//! what to type and the documented exit code, the same mistake treated alike by `probe`,
//! its surveys and `scan`, requests that are well-formed on the wire or never sent,
//! Ctrl-C, closed pipes, and what a package installs (man pages, completions).

use crate::lab;

use lab::faults::Reject;
use lab::{Lab, Run, in_ns, run_bounded, tcpshake_bin};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

fn tcpshake(args: &[&str]) -> Run {
    run_bounded(
        Command::new(tcpshake_bin()).args(args),
        Duration::from_secs(10),
    )
}

/// One message, on stderr, the user can act on: no Rust debug text, nothing said twice.
#[track_caller]
fn assert_one_clean_message(run: &Run, args: &[&str]) {
    // Messages, not tables (a survey's statistics go to stderr beside JSON Lines).
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("tcpshake:") || l.starts_with("error:"))
        .collect();
    assert!(!lines.is_empty(), "{args:?}: no message\n{run}");
    // Every refusal starts the same way, the argument parser's too.
    assert!(
        lines.iter().all(|l| l.starts_with("tcpshake:")),
        "{args:?}: a message not after our name\n{run}"
    );
    for (i, l) in lines.iter().enumerate() {
        assert!(!lines[..i].contains(l), "{args:?}: said twice: {l}\n{run}");
        for debug in ["Error(", "Some(", "DnsName(", "BackendError", "Os {"] {
            assert!(!l.contains(debug), "{args:?}: Rust debug text: {l}\n{run}");
        }
    }
}

/// None of these has a target that could be sent to: they are refused before anything
/// is, so they run without root and without a lab.
#[test]
fn mistakes_exit_2_with_a_message_that_says_what_to_type() {
    let cases: &[(&[&str], &str)] = &[
        (&["probe", "fd00::2:80"], "`[fd00::2]:80`"),
        (
            &["probe", "198.18.0.2:80", "--path", "/a\r\nX-Injected: 1"],
            "carriage return",
        ),
        (
            &[
                "probe",
                "198.18.0.2:80",
                "--host-header",
                "h\nX-Injected: 1",
            ],
            "line feed",
        ),
        (
            &["probe", "198.18.0.2:80", "--path", "a"],
            "starts with `/`",
        ),
        (&["probe", "http://user:pw@198.18.0.2/"], "user:pw@"),
        (
            &["probe", "198.18.0.2:80", "--timeout", "0s"],
            "--timeout 0s",
        ),
        (&["probe", "198.18.0.2:80", "--timeout", "5"], "no unit"),
        (
            &["probe", "198.18.0.2:80", "--rto", "10ms"],
            "floor of 200ms",
        ),
        (&["probe", "-6", "198.18.0.2:80"], "-6 asks for IPv6"),
        (&["scan", "-6", "198.18.0.0/30"], "-6"),
        (&["report", "x.jsonl", "--plot", "cdf"], "--svg FILE"),
        (
            &["probe", "198.18.0.2:80", "--sni", "x.test"],
            "no target is HTTPS",
        ),
        (&["lab", "--tls"], "--tls"),
        (
            &["probe", "198.18.0.2:80", "--shard", "0/2"],
            "numbered 1 to N",
        ),
        (
            &["scan", "198.18.0.2", "--shard", "0/2", "--seed", "1"],
            "numbered 1 to N",
        ),
        (
            &["probe", "-iL", "/nonexistent/list"],
            "cannot read the target list",
        ),
        // A file mistake is one kind whatever the file is: a directory as a missing file,
        // an output file that cannot be created in every command (before anything runs).
        (
            &["probe", "-iL", "/tmp", "-p", "80"],
            "/tmp: it is a directory",
        ),
        (&["report", "/tmp"], "/tmp: it is a directory"),
        (&["report", "/nonexistent.jsonl"], "no such file"),
        (
            &["probe", "198.18.0.2:80", "--pcap", "/nonexistent/x.pcap"],
            "--pcap: cannot create /nonexistent/x.pcap",
        ),
        (
            &[
                "trace",
                "198.18.0.2:80",
                "--pcapng",
                "/nonexistent/x.pcapng",
            ],
            "--pcapng: cannot create",
        ),
        (
            &[
                "scan",
                "198.18.0.2",
                "-p",
                "80",
                "-oX",
                "/nonexistent/x.xml",
            ],
            "-oX: cannot create",
        ),
        (
            &[
                "report",
                "/nonexistent.jsonl",
                "--svg",
                "/nonexistent/x.svg",
            ],
            "--svg: cannot create",
        ),
        (
            &["probe", "198.18.0.2:443", "--cacert", "/nonexistent.pem"],
            "--cacert /nonexistent.pem: no such file",
        ),
        (
            &["probe", "198.18.0.2:443", "--cacert", "/tmp"],
            "it is a directory",
        ),
        (
            &["probe", "198.18.0.2", "-p", "80,"],
            "-p `80,`: an empty item between commas",
        ),
        (&["scan", "198.18.0.2:80"], "scan takes ports with -p"),
        (&["scan", "198.18.0.2", "-T4"], "no timing templates"),
        (&["scan", "198.18.0.2", "--rate", "10k"], "write 10000"),
        // No TCP peer can be at these, in any command: refused, not sent to (0.0.0.0 would
        // reach this host over loopback).
        (
            &["probe", "224.0.0.1:80"],
            "224.0.0.1 is a multicast address",
        ),
        (
            &["probe", "[ff02::1]:80", "-c", "2"],
            "ff02::1 is a multicast",
        ),
        (
            &["probe", "0.0.0.0:80"],
            "0.0.0.0 is the unspecified address",
        ),
        (&["probe", "[::]:80"], ":: is the unspecified address"),
        (&["probe", "255.255.255.255:80"], "the limited broadcast"),
        (&["scan", "0.0.0.0", "-p", "80"], "the unspecified address"),
        (&["scan", "224.0.0.0/24", "-p", "80"], "multicast"),
        (&["trace", "0.0.0.0:80"], "the unspecified address"),
        (&["trace", "224.0.0.1:80"], "a multicast address"),
        // Options that would be ignored.
        (
            &["probe", "198.18.0.2:80", "-p", "81"],
            "-p 81 would be ignored: `198.18.0.2:80` names its own port",
        ),
        (
            &["probe", "198.18.0.2:80", "-p", "81,8080"],
            "-p 81,8080 would be ignored",
        ),
        (&["trace", "198.18.0.2:80", "-p", "81"], "-p 81 would be"),
        (
            &["probe", "http://198.18.0.2:8080/", "--path", "/foo"],
            "`http://198.18.0.2:8080/foo`",
        ),
        (
            &["trace", "198.18.0.2:80", "-m", "255", "-q", "10"],
            "TTLs 1 to 255",
        ),
        (
            &["probe", "198.18.0.2:80", "--pcap", "/tmp"],
            "--pcap: cannot create /tmp: it is a directory; give a file's path",
        ),
        // nmap's habits that tcpshake scan does not share.
        (&["scan", "198.18.0.2", "-O"], "no OS detection"),
        (&["scan", "198.18.0.2", "-v"], "no verbosity levels"),
        (&["scan", "198.18.0.2", "-oA", "-"], "-oA -"),
        (&["scan", "198.18.0.2", "--open", "--all"], "--open"),
        (
            &["scan", "198.18.0.2", "--rate", "10", "--max-rate", "10"],
            "cannot be used with",
        ),
        (
            &[
                "scan",
                "198.18.0.0/24",
                "-p",
                "80",
                "--exclude",
                "198.18.0.0/23",
            ],
            "--exclude excludes every target: nothing to scan",
        ),
        // hping3's, traceroute's and mtr's habits (clap's tip was `-- -S`: a target).
        (&["probe", "198.18.0.2:80", "--flood"], "-i DUR"),
        (&["probe", "198.18.0.2:80", "-i", "u1000"], "-i 1000us"),
        (
            &["probe", "198.18.0.2:80", "-a", "198.18.0.3"],
            "own address",
        ),
        (&["trace", "198.18.0.2", "-T", "-P", "80"], "-p"),
        // curl's -k, -s and -I, which hping3 spells alike for other things: both said.
        (&["probe", "-k", "https://198.18.0.2/"], "--insecure"),
        (&["probe", "-s", "198.18.0.2:80"], "-q here"),
        (&["probe", "-I", "198.18.0.2:80"], "HEAD"),
        (&["trace", "198.18.0.2:80", "-r", "-c", "5"], "-q N"),
        (
            &["generate", "man", "/nonexistent/dir"],
            "cannot write the man pages into /nonexistent/dir",
        ),
    ];
    for (args, want) in cases {
        let run = tcpshake(args);
        assert_eq!(run.code, Some(2), "{args:?}\n{run}");
        assert!(run.stderr.contains(want), "{args:?}: lacks {want:?}\n{run}");
        assert!(run.stdout.is_empty(), "{args:?}: printed results\n{run}");
        assert_one_clean_message(&run, args);
    }
}

/// A full disk under stdout (`/dev/full`) is said in words with what was being written,
/// exit 1 — not "No space left on device (os error 28)" alone, which named no file.
#[test]
fn a_full_disk_under_stdout_is_said_in_words() {
    let dir = std::env::temp_dir().join(format!("tcpshake-devfull-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let record: serde_json::Value =
        serde_json::from_str(include_str!("../../src/report/testdata/https_tls13.json"))
            .expect("testdata");
    let file = dir.join("one.jsonl");
    std::fs::write(&file, format!("{record}\n")).expect("write");
    let file = file.to_str().expect("utf-8");
    // The table was lost with exit 0 (its writer's drop swallowed the error); completions
    // panicked (clap_complete unwraps its write).
    for args in [
        &["report", file][..],
        &["report", file, "--json"],
        &["generate", "completions", "bash"],
    ] {
        let full = std::fs::File::create("/dev/full").expect("/dev/full");
        let out = Command::new(tcpshake_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(full)
            .output()
            .expect("run tcpshake");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("tcpshake: writing the output to stdout: no space left on the device"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("os error"), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `report` of a file that is not tcpshake's JSON Lines says so and which line, exit 2
/// (never serde's or std's words).
#[test]
fn report_of_a_file_that_is_not_json_lines() {
    let dir = std::env::temp_dir().join(format!("tcpshake-notjsonl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let text = dir.join("bad.txt");
    std::fs::write(&text, "\n1.5\n").expect("write");
    let binary = dir.join("bin.dat");
    std::fs::write(&binary, [0x7f, b'E', b'L', b'F', 0xff, 0xfe, b'\n']).expect("write");
    for (file, want) in [
        (&text, "line 2 is not a JSON object"),
        (&binary, "line 1 is not UTF-8 text"),
    ] {
        let args = ["report", file.to_str().expect("utf-8")];
        let run = tcpshake(&args);
        assert_eq!(run.code, Some(2), "{run}");
        assert!(
            run.stderr.contains("is not a tcpshake JSON Lines file"),
            "{run}"
        );
        assert!(run.stderr.contains(want), "{run}");
        assert!(!run.stderr.contains("invalid type"), "serde's words: {run}");
        assert_one_clean_message(&run, &args);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `report` of the same file twice (by one path or two) would count every probe twice:
/// refused, exit 2; `-q` keeps `--json` to the overall statistics as it keeps the table.
#[test]
fn report_counts_each_file_once_and_quiet_json_is_the_overall() {
    let dir = std::env::temp_dir().join(format!("tcpshake-twice-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("a.jsonl");
    std::fs::write(
        &file,
        r#"{"schema":1,"target":"198.18.0.2:80","addr":"198.18.0.2","port":80,"state":"open","reason":"syn-ack","src_addr":"198.18.0.1","src_port":40000,"reply_ttl":64,"reply_from":"198.18.0.2","legs_ns":{"syn_to_synack":41000,"synack_to_ack":9000,"request_to_first_byte":null,"request_to_complete":null,"fin_to_ack":null,"fin_to_peer_fin":null,"peer_fin_to_last_ack":null,"total":90000},"retransmissions":0,"peer_options":null,"http":null,"close_initiator":null,"isn":1,"irs":null,"segments":[],"timers":[],"anomalies":[],"error":null,"tls":null}
"#,
    )
    .expect("write");
    let link = dir.join("b.jsonl");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&file, &link).expect("symlink");
    let (a, b) = (file.to_str().unwrap(), link.to_str().unwrap());
    for args in [["report", a, a], ["report", a, b]] {
        let run = tcpshake(&args);
        assert_eq!(run.code, Some(2), "{run}");
        assert!(run.stderr.contains("its probes would count twice"), "{run}");
        assert_one_clean_message(&run, &args);
    }
    let run = tcpshake(&["report", "--json", "-q", a]);
    assert_eq!(run.code, Some(0), "{run}");
    let j: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(j["overall"]["probes"], 1, "{run}");
    assert!(j.get("targets").is_none(), "{run}");
    // A target whose only probe was interrupted: counted in the title, as the survey that
    // wrote these records counted it ("all 1 target (and 1 target without a finished
    // probe)"), and still out of the statistics.
    let stopped = dir.join("stopped.jsonl");
    let interrupted = r#"{"schema":1,"target":"198.18.0.2:9999","addr":"198.18.0.2","port":9999,"state":"interrupted","reason":"interrupted","src_addr":"198.18.0.1","src_port":40001,"reply_ttl":null,"reply_from":null,"legs_ns":{"syn_to_synack":null,"synack_to_ack":null,"request_to_first_byte":null,"request_to_complete":null,"fin_to_ack":null,"fin_to_peer_fin":null,"peer_fin_to_last_ack":null,"total":null},"retransmissions":0,"peer_options":null,"http":null,"close_initiator":null,"isn":1,"irs":null,"segments":[],"timers":[],"anomalies":[],"error":"interrupted","interrupted":true,"tls":null}"#;
    let first = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&stopped, format!("{first}{interrupted}\n")).expect("write");
    let run = tcpshake(&["report", stopped.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout
            .contains("all 1 target (and 1 target without a finished probe)   probes 1"),
        "{run}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A record cut short mid-file — a killed run's last line, ended by the next run that
/// appended to the file (the exporter's `--records` after a restart, a shell's `>>`) — is
/// skipped with a note naming its line, as a cut last line is; the records around it
/// count. A line that is no record at all still refuses the file.
#[test]
fn report_skips_a_record_cut_short_mid_file() {
    let dir = std::env::temp_dir().join(format!("tcpshake-cutmid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let record = r#"{"schema":1,"target":"198.18.0.2:80","addr":"198.18.0.2","port":80,"state":"open","reason":"syn-ack","src_addr":"198.18.0.1","src_port":40000,"reply_ttl":64,"reply_from":"198.18.0.2","legs_ns":{"syn_to_synack":41000,"synack_to_ack":9000,"request_to_first_byte":null,"request_to_complete":null,"fin_to_ack":null,"fin_to_peer_fin":null,"peer_fin_to_last_ack":null,"total":90000},"retransmissions":0,"peer_options":null,"http":null,"close_initiator":null,"isn":1,"irs":null,"segments":[],"timers":[],"anomalies":[],"error":null,"tls":null}"#;
    let file = dir.join("restarted.jsonl");
    let cut = &record[..120];
    std::fs::write(&file, format!("{record}\n{cut}\n{record}\n")).expect("write");
    let run = tcpshake(&["report", file.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stderr.contains("line 2: a record cut short"), "{run}");
    assert!(run.stdout.contains("probes 2"), "{run}");
    let other = dir.join("other.jsonl");
    std::fs::write(&other, format!("{record}\n{{\"name\": \n{record}\n")).expect("write");
    let run = tcpshake(&["report", other.to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(run.stderr.contains("line 2 is not a JSON object"), "{run}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_target_list_without_targets_is_refused_by_every_command() {
    let dir = std::env::temp_dir().join(format!("tcpshake-emptylist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let empty = dir.join("empty.txt");
    std::fs::write(&empty, "").expect("write");
    let comments = dir.join("comments.txt");
    std::fs::write(&comments, "# fleet, generated\n\n   \n# nothing today\n").expect("write");
    for file in [&empty, &comments] {
        let path = file.to_str().expect("utf-8");
        for args in [
            vec!["probe", "-iL", path, "-p", "80"],
            vec!["scan", "-iL", path, "-p", "80"],
        ] {
            let run = tcpshake(&args);
            assert_eq!(run.code, Some(2), "{args:?}\n{run}");
            assert!(
                run.stderr.contains(&format!("{path} holds no target")),
                "{args:?}\n{run}"
            );
            assert!(run.stdout.is_empty(), "{args:?}\n{run}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--help` lists every exit code; `generate` writes the man pages and completions a
/// package installs.
#[test]
fn help_man_pages_and_completions() {
    let help = tcpshake(&["--help"]);
    assert_eq!(help.code, Some(0), "{help}");
    for code in ["  0  ", "  2  ", "130  ", "143  "] {
        assert!(
            help.stdout.contains(code),
            "--help lacks exit code {code}\n{help}"
        );
    }
    let dir = std::env::temp_dir().join(format!("tcpshake-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let man = tcpshake(&["generate", "man", dir.to_str().expect("utf-8 temp dir")]);
    assert_eq!(man.code, Some(0), "{man}");
    for page in [
        "tcpshake",
        "tcpshake-probe",
        "tcpshake-scan",
        "tcpshake-report",
        "tcpshake-lab",
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{page}.1")))
            .unwrap_or_else(|e| panic!("{page}.1: {e}"));
        assert!(text.contains(".TH"), "{page}.1 is not roff");
    }
    // What `--help` points to is in the pages: a machine with the binary and not README.
    for (page, section, inside) in [
        ("tcpshake-probe", ".SH JSON OUTPUT", "capture_lost"),
        ("tcpshake-probe", ".SH SURVEYS", "\\-\\-slo"),
        (
            "tcpshake-exporter",
            ".SH CONFIGURATION AND METRICS",
            "allow_names",
        ),
        ("tcpshake-trace", ".SH DETAILS", "in\\-session"),
        ("tcpshake-scan", ".SH DETAILS", "\\-\\-excludefile"),
    ] {
        let text = std::fs::read_to_string(dir.join(format!("{page}.1"))).expect(page);
        let at = text
            .find(section)
            .unwrap_or_else(|| panic!("{page}.1 lacks {section}"));
        assert!(
            text[at..].contains(inside),
            "{page}.1's {section} lacks {inside}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    for shell in ["bash", "zsh", "fish"] {
        let c = tcpshake(&["generate", "completions", shell]);
        assert_eq!(c.code, Some(0), "{c}");
        assert!(c.stdout.contains("input-list"), "{shell}: {c}");
    }
}

/// A server that writes every request head it receives, byte for byte, to a file, and
/// answers 200. At most 8 connections, each read for at most 5 s.
fn start_recording_server(lab: &mut Lab, port: u16) -> std::path::PathBuf {
    let log = lab.dir().join(format!("requests-{port}.bin"));
    let script = format!(
        "import socket\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{addr}', {port})); s.listen(8)\n\
         for _ in range(8):\n\
         \x20   c, _ = s.accept(); c.settimeout(5); data = b''\n\
         \x20   try:\n\
         \x20       while b'\\r\\n\\r\\n' not in data and len(data) < 65536:\n\
         \x20           d = c.recv(4096)\n\
         \x20           if not d: break\n\
         \x20           data += d\n\
         \x20   except OSError: pass\n\
         \x20   open('{log}', 'ab').write(data + b'\\n--end--\\n')\n\
         \x20   c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n')\n\
         \x20   c.close()\n",
        addr = lab.server_v4,
        log = log.display()
    );
    let mut cmd = in_ns(&lab.server_ns, "python3");
    cmd.args(["-c", &script]).stdout(Stdio::null());
    lab.spawn_owned("recording server", &mut cmd);
    let addr = SocketAddr::new(lab.server_v4.into(), port);
    assert!(
        lab.wait_listening(addr, Duration::from_secs(5)),
        "recording server not listening\n{}",
        lab.describe()
    );
    log
}

lab_test! {
/// What reaches the server is exactly the request the user asked for, or nothing: a CR
/// or LF in `--path` / `--host-header` (or a URL) is refused before any segment leaves;
/// a URL's query is sent and its fragment is not.
fn requests_on_the_wire_are_well_formed_or_never_sent() {
    let mut lab = Lab::new("cli_wire");
    let log = start_recording_server(&mut lab, 8080);
    let target = lab.target(false, 8080);
    for bad in [
        vec!["probe", &target, "--path", "/a\r\nX-Injected: 1"],
        vec!["probe", &target, "--host-header", "h\r\nX-Injected: 1"],
        vec!["probe", &target, "-c", "2", "--path", "/a\nX-Injected: 1"],
    ] {
        let run = lab.run_client_bounded(&bad, Duration::from_secs(10));
        assert_eq!(run.code, Some(2), "{bad:?}\n{run}");
    }
    let url = format!("http://{target}/a?b=1#frag");
    let run = lab.run_client_bounded(["probe", &url, "--json"], Duration::from_secs(20));
    assert_eq!(run.code, Some(0), "{run}\n{}", lab.describe());
    // The server writes what it got once the connection is over.
    lab::poll_until(Duration::from_secs(5), Duration::from_millis(20), || {
        std::fs::read(&log).is_ok_and(|b| String::from_utf8_lossy(&b).contains("--end--"))
    });
    let got = std::fs::read(&log).unwrap_or_default();
    let got = String::from_utf8_lossy(&got);
    assert_eq!(
        got.matches("--end--").count(),
        1,
        "only the good request may arrive:\n{got}"
    );
    assert!(
        got.starts_with(&format!("HEAD /a?b=1 HTTP/1.1\r\nHost: {target}\r\n")),
        "{got}"
    );
    assert!(
        !got.contains("X-Injected") && !got.contains("frag"),
        "{got}"
    );
}
}

lab_test! {
/// The same name that does not resolve gives the same message and exit code in `probe`,
/// a survey and `scan`. A `.invalid` name never resolves (RFC 6761 §6.4); the client
/// namespace has no resolver, so the lookup cannot leave the lab either.
fn an_unresolvable_name_is_one_message_and_exit_1_everywhere() {
    let lab = Lab::new("cli_resolve");
    let mut messages = Vec::new();
    for args in [
        vec!["probe", "nosuch.invalid:80"],
        vec!["probe", "nosuch.invalid", "-p", "80,443", "-q"],
        vec!["scan", "nosuch.invalid", "-p", "80"],
    ] {
        let run = lab.run_client_bounded(&args, Duration::from_secs(20));
        assert_eq!(run.code, Some(1), "{args:?}\n{run}");
        assert_one_clean_message(&run, &args);
        let line = run
            .stderr
            .lines()
            .find(|l| l.contains("nosuch.invalid"))
            .unwrap_or_else(|| panic!("{args:?}: the message must name the host\n{run}"))
            .to_string();
        messages.push(line);
    }
    assert!(
        messages.iter().all(|m| *m == messages[0]),
        "different messages: {messages:#?}"
    );
}
}

lab_test! {
/// A subnet's broadcast address — which only the route shows — is refused like a
/// multicast one, exit 2, by every command that takes targets, before anything is sent to
/// any target (the server beside it on the command line is not probed either). In a
/// target list it is a bad line, skipped (exit 1), and so are 224.0.0.1 and 0.0.0.0.
fn a_broadcast_address_is_refused_before_anything_is_sent() {
    let lab = Lab::new("cli_broadcast");
    let [a, b, c, _] = match lab.server_addr(false) {
        std::net::IpAddr::V4(v4) => v4.octets(),
        other => panic!("{other}"),
    };
    let bcast = format!("{a}.{b}.{c}.255");
    let server = lab.target(false, 80);
    let with_port = format!("{bcast}:80");
    for args in [
        vec!["probe", server.as_str(), with_port.as_str()],
        vec!["probe", with_port.as_str(), "-c", "2"],
        vec!["probe", bcast.as_str(), "-p", "80,443"],
        vec!["scan", bcast.as_str(), "-p", "80"],
        vec!["trace", with_port.as_str()],
    ] {
        let run = lab.run_client_bounded(&args, Duration::from_secs(20));
        assert_eq!(run.code, Some(2), "{args:?}\n{run}");
        assert!(
            run.stderr
                .contains(&format!("{bcast} is a broadcast address (on ")),
            "{args:?}\n{run}"
        );
        assert!(run.stdout.is_empty(), "{args:?}: sent something\n{run}");
        assert_one_clean_message(&run, &args);
    }
    let list = lab.dir().join("list.txt");
    std::fs::write(
        &list,
        format!("224.0.0.1:80\n0.0.0.0:80\n{with_port}\n{server}\n"),
    )
    .expect("write the list");
    let args = ["probe", "-iL", list.to_str().expect("utf-8"), "-q"];
    let run = lab.run_client_bounded(args, Duration::from_secs(20));
    assert_eq!(run.code, Some(1), "{run}");
    for skipped in ["line 1: `224.0.0.1:80`", "line 2: `0.0.0.0:80`"] {
        assert!(run.stderr.contains(skipped), "{skipped}\n{run}");
    }
    // Found by the route when its probe would start, and named by its line all the same.
    assert!(
        run.stderr.contains(&format!(
            "list.txt, line 3: `{bcast}:80`: {bcast} is a broadcast address"
        )),
        "{run}"
    );
    // The server's line is probed (its port is closed: no listener in this lab).
    assert!(run.stdout.contains("all 1 target"), "{run}");
    assert!(run.stdout.contains("probes 1"), "{run}");
}
}

lab_test! {
/// Binary junk or a bad target in a list: named by file and line, skipped, exit 1 — in
/// surveys and scans alike; the good lines are still done.
fn bad_list_lines_are_named_and_skipped_alike() {
    let mut lab = Lab::new("cli_list");
    lab.start_python_http(false, 80);
    let list = lab.dir().join("fleet.txt");
    let mut bytes = format!("{}  # good\n", lab.server_v4).into_bytes();
    bytes.extend_from_slice(b"\x7fELF\x02\x01\x00\x00\n");
    bytes.extend_from_slice(b"bad$host\n");
    std::fs::write(&list, bytes).expect("write list");
    let list = list.to_str().expect("utf-8 path").to_string();
    for args in [
        vec!["probe", "-iL", &list, "-p", "80", "-q"],
        vec!["scan", "-iL", &list, "-p", "80"],
    ] {
        let run = lab.run_client_bounded(&args, Duration::from_secs(20));
        assert_eq!(run.code, Some(1), "{args:?}\n{run}");
        assert_one_clean_message(&run, &args);
        assert!(
            run.stderr.contains(&format!("{list}, line 2: not text")),
            "{args:?}\n{run}"
        );
        assert!(
            run.stderr.contains(&format!(
                "{list}, line 3: `bad$host` is neither an address nor a host name"
            )),
            "{args:?}\n{run}"
        );
        assert!(
            run.stdout.contains("open"),
            "the good line was not done\n{run}"
        );
    }
    // Only bad lines: each named, and nothing more (one mistake, one message); before, a
    // survey printed a blank line on stdout, its empty table.
    let bad = lab.dir().join("bad.txt");
    std::fs::write(&bad, b"\x7fELF\x02\x01\x00\x00\nbad$host\n").expect("write list");
    let bad = bad.to_str().expect("utf-8 path").to_string();
    for args in [
        vec!["probe", "-iL", &bad, "-p", "80"],
        vec!["probe", "-iL", &bad, "-p", "80", "--json"],
        vec!["scan", "-iL", &bad, "-p", "80"],
    ] {
        let run = lab.run_client_bounded(&args, Duration::from_secs(20));
        assert_eq!(run.code, Some(1), "{args:?}\n{run}");
        assert!(run.stdout.is_empty(), "{args:?}\n{run}");
        assert_eq!(run.stderr.lines().count(), 2, "{args:?}\n{run}");
    }
}
}

lab_test! {
/// A list with more bad lines than are named one by one (10) says at its end how many were
/// skipped in all — in surveys and scans alike: "more bad lines; skipped without a
/// message" left a user of a 10 000-line list without the count.
fn a_list_with_many_bad_lines_says_how_many_in_all() {
    let mut lab = Lab::new("cli_many_bad");
    lab.start_python_http(false, 80);
    let list = lab.dir().join("fleet.txt");
    let mut text = format!("{}\n", lab.server_v4);
    for i in 0..13 {
        text.push_str(&format!("bad..host{i}\n"));
    }
    std::fs::write(&list, text).expect("write list");
    let list = list.to_str().expect("utf-8 path").to_string();
    for args in [
        vec!["probe", "-iL", &list, "-p", "80", "-q"],
        vec!["scan", "-iL", &list, "-p", "80"],
    ] {
        let run = lab.run_client_bounded(&args, Duration::from_secs(20));
        assert_eq!(run.code, Some(1), "{args:?}\n{run}");
        assert_one_clean_message(&run, &args);
        assert!(
            run.stderr.contains(&format!(
                "tcpshake: {list}: 13 bad lines skipped in all (the first 10 named above)"
            )),
            "{args:?}\n{run}"
        );
        assert_eq!(run.stderr.matches("bad lines skipped in all").count(), 1, "{run}");
    }
}
}

lab_test! {
/// Ctrl-C stops a single probe as it stops a survey: the probe in flight is reset and
/// reported, one line says it was interrupted, and the exit code is 130 (143: SIGTERM).
fn ctrl_c_stops_probes_and_surveys_alike() {
    let lab = Lab::new("cli_sigint");
    lab.fault_reject(81, Reject::Drop);
    let target = lab.target(false, 81);
    for (args, signal, code) in [
        (vec!["probe", &target, "--json"], "INT", 130),
        (vec!["probe", &target, "--json", "-c", "3"], "INT", 130),
        (vec!["probe", &target, "--json"], "TERM", 143),
    ] {
        let mut child = lab
            .client_cmd(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpshake");
        // The SYN is dropped: the probe waits for its retransmission timer.
        std::thread::sleep(Duration::from_millis(800));
        lab::signal(child.id(), signal);
        let finished = lab::wait_bounded(&mut child, Duration::from_secs(10));
        let out = child.wait_with_output().expect("output");
        let run = Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(finished, "{args:?} did not stop on SIG{signal}\n{run}");
        assert_eq!(run.code, Some(code), "{args:?} SIG{signal}\n{run}");
        assert!(run.stderr.contains("tcpshake: interrupted"), "{run}");
        assert_one_clean_message(&run, &args);
        let records = run.records();
        assert!(
            !records.is_empty()
                && records
                    .iter()
                    .all(|r| r.error.as_deref() == Some("interrupted")),
            "the probe in flight is reported as interrupted\n{run}"
        );
        // SYN-SENT: only SYNs on the wire, no RST either way, so no close to name.
        for r in &records {
            assert!(r.segments.iter().all(|s| s.flags == "S"), "{run}");
            assert_eq!(r.close_initiator, None, "{run}");
        }
    }
}
}

lab_test! {
/// A signal sent twice at once is one request to stop: coreutils `timeout` signals the
/// process and then its process group, and the second used to kill tcpshake before it
/// wrote what it had (2 runs of 10). Both ways: a `kill` twice 20 ms apart, and `timeout`.
fn a_signal_sent_twice_at_once_is_one_request() {
    let lab = Lab::new("cli_sigtwice");
    lab.fault_reject(81, Reject::Drop);
    let target = lab.target(false, 81);
    let bin = lab::tcpshake_bin();
    let ns = &lab.client_ns;
    let twice = format!(
        "ip netns exec {ns} {bin} probe {target} --json & p=$!; sleep 0.8; kill -TERM $p; \
         sleep 0.02; kill -TERM $p; wait $p"
    );
    let under_timeout = format!(
        "timeout --preserve-status -s TERM 0.8 ip netns exec {ns} {bin} probe {target} --json"
    );
    for (how, script) in [("kill twice", &twice), ("timeout", &under_timeout)] {
        for _ in 0..3 {
            let run = lab::run_bounded(
                Command::new("sh").args(["-c", script]),
                Duration::from_secs(20),
            );
            assert_eq!(run.code, Some(143), "{how}\n{run}");
            assert!(run.stderr.contains("tcpshake: interrupted"), "{how}\n{run}");
            let records = run.records();
            assert!(
                records.len() == 1 && records[0].error.as_deref() == Some("interrupted"),
                "{how}: the probe in flight is reported\n{run}"
            );
        }
    }
}
}

lab_test! {
/// `tcpshake … | head -1`: the reader is done; every command stops quietly with 0.
fn a_closed_pipe_ends_every_command_quietly() {
    let mut lab = Lab::new("cli_pipe");
    lab.start_python_http(false, 80);
    let target = lab.target(false, 80);
    let server = lab.server_v4.to_string();
    for args in [
        format!("probe {target} {target} {target}"),
        // ~250 KB of records, more than a pipe holds: with 20 (~50 KB) a loaded machine's
        // `head` was once still there when the last went into the pipe, so no write
        // failed and the survey ended as if read to the end (its statistics on stderr).
        format!("probe {target} -c 100 --json"),
        format!("scan {server}/30 -p 80,81 --all --wait 200ms"),
        // ~250 KB of JSON Lines: more than a pipe holds, so the write after `head` left
        // fails (serde_json's error, which hid the closed pipe: exit 1 and a message).
        format!("scan {server} -p 1-2000 --json --wait 200ms"),
    ] {
        let script = format!(
            "ip netns exec {} {} {args} 2>err.txt | head -c 1 >/dev/null; \
             echo ${{PIPESTATUS[0]}}; cat err.txt",
            lab.client_ns,
            tcpshake_bin()
        );
        let run = run_bounded(
            Command::new("bash")
                .args(["-c", &script])
                .current_dir(lab.dir()),
            Duration::from_secs(30),
        );
        let mut lines = run.stdout.lines();
        assert_eq!(lines.next(), Some("0"), "{args}\n{run}");
        let said: Vec<&str> = lines.collect();
        assert!(said.is_empty(), "{args}: said something: {said:?}");
    }
}
}

lab_test! {
/// Single probes (and `lab`, the same code) with capture files outlive a closed stdout as
/// surveys and scans do: `probe A B C --pcap F | head -1` probed A only and left F with A's
/// packets (a walk), against README's promise that the files are whole. Exit 0, as for any
/// closed pipe.
fn a_closed_stdout_does_not_cut_a_single_probes_capture_files() {
    let mut lab = Lab::new("cli_pipe_files");
    lab.start_nginx(80);
    let (v4, v6) = (lab.target(false, 80), lab.target(true, 80));
    let pcap = lab.dir().join("p.pcap");
    for json in [true, false] {
        let mut args = vec!["probe", &v4, &v6, &v4, "--pcap", pcap.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let run = lab::run_stdout_closed(&mut lab.client_cmd(&args), Duration::from_secs(30));
        assert_eq!(run.code, Some(0), "{args:?}\n{run}");
        let syns = lab::capture::tshark_fields(
            &pcap,
            "tcp.flags.syn == 1 && tcp.flags.ack == 0",
            &["ip.dst", "ipv6.dst"],
        );
        assert_eq!(syns.len(), 3, "{args:?}: a SYN per target: {syns:?}\n{run}");
    }
    let png = lab.dir().join("lab.pcapng");
    let run = lab::run_stdout_closed(
        Command::new(tcpshake_bin()).args(["lab", "--pcapng", png.to_str().unwrap()]),
        Duration::from_secs(30),
    );
    assert_eq!(run.code, Some(0), "lab\n{run}");
    let syns = lab::capture::tshark_fields(&png, "tcp.flags.syn == 1 && tcp.flags.ack == 0", &["ip.dst", "ipv6.dst"]);
    assert_eq!(syns.len(), 2, "lab: its IPv4 and IPv6 probes: {syns:?}\n{run}");
}
}

lab_test! {
/// A text survey's lines reach a pipe as each probe ends, as ping's and hping3's do:
/// block-buffered, they came only at the survey's end, so `| head -1` did not stop a
/// 3-second survey and a kill lost every line (a walk).
fn a_text_surveys_lines_reach_a_pipe_as_probes_end() {
    use std::io::BufRead;
    let mut lab = Lab::new("cli_pipe_lines");
    lab.start_nginx(80);
    let target = lab.target(false, 80);
    let started = std::time::Instant::now();
    let mut child = lab
        .client_cmd(["probe", &target, "-c", "30", "-i", "300ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpshake");
    let mut first = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let _ = out.read_line(&mut first);
    let first_at = started.elapsed();
    // The reader goes, as `head -1` does: the next line's write fails and the survey ends.
    drop(out);
    let finished = lab::wait_bounded(&mut child, Duration::from_secs(20));
    let ended_at = started.elapsed();
    let code = child.wait().ok().and_then(|s| s.code());
    assert!(finished, "still running after 20 s");
    assert!(first.contains(" open "), "first line: {first:?}");
    // 30 probes 300 ms apart take ~8.7 s: the first line comes with the first probe, and
    // the survey ends at the second (0.3 s); the bounds leave a loaded machine seconds.
    assert!(
        first_at < Duration::from_secs(4) && ended_at < Duration::from_secs(6),
        "first line after {first_at:?}, exit after {ended_at:?}"
    );
    assert_eq!(code, Some(0));
}
}

lab_test! {
/// A one-shot command hands its last sockets to the kernel to close after it exits
/// (teardown.rs): when it has exited, its guard table is already gone, no process of it is
/// left, and its capture sockets are closed within a moment — in every such command.
fn every_command_leaves_nothing_behind() {
    use std::os::unix::process::CommandExt;
    let mut lab = Lab::new("cli_teardown");
    lab.start_python_http(false, 80);
    let target = lab.target(false, 80);
    let server = lab.server_v4.to_string();
    let packet_sockets = || {
        let run = run_bounded(
            in_ns(&lab.client_ns, "ss").args(["-H0a"]),
            Duration::from_secs(5),
        );
        run.stdout.lines().count()
    };
    let before = packet_sockets();
    for args in [
        format!("probe {target}"),
        format!("probe {target} -c 4 -j 2 --json"),
        format!("scan {server} -p 79-81 --wait 200ms"),
        format!("trace {target} --max-ttl 2"),
    ] {
        // Its own process group, whose number is its PID (bash execs it): what is left of
        // it afterwards is found by that number.
        let pid_file = lab.dir().join("pid");
        let script = format!(
            "echo $$ > {}; exec ip netns exec {} {} {args}",
            pid_file.display(),
            lab.client_ns,
            tcpshake_bin()
        );
        let mut cmd = Command::new("bash");
        cmd.args(["-c", &script]).process_group(0);
        let run = run_bounded(&mut cmd, Duration::from_secs(30));
        let group: u32 = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("{args}: no pid file\n{run}"));
        assert_eq!(run.code, Some(0), "{args}\n{run}");
        assert!(
            lab.client_nft_tables().is_empty(),
            "{args}: guard table left at exit: {:?}",
            lab.client_nft_tables()
        );
        let closed = lab::poll_until(Duration::from_secs(3), Duration::from_millis(20), || {
            packet_sockets() <= before
        });
        assert!(closed, "{args}: capture sockets still open 3 s after exit");
        let left: Vec<String> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
                fields.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(group)
            })
            .collect();
        assert!(left.is_empty(), "{args}: processes left: {left:?}");
    }
}
}

/// An exclusion file line that cannot be read refuses the scan (exit 2) before anything is
/// sent: skipped, as a target line is, it would leave in what it was meant to keep out.
/// Bogons (multicast, broadcast, 0.0.0.0) are welcome there; an IPv6 block wider than the
/// widest a scan takes is said in an exclusion's words.
#[test]
fn an_exclusion_that_cannot_be_read_refuses_the_scan() {
    let dir = std::env::temp_dir().join(format!("tcpshake-excl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("exclude.txt");
    for (lines, want) in [
        ("198.18.0.9\nbad$line\n", "exclude.txt, line 2: `bad$line`"),
        (
            "fc00::/7\n",
            "IPv6 exclusions wider than a /112 are not supported",
        ),
    ] {
        std::fs::write(&file, lines).unwrap();
        let args = [
            "scan",
            "198.18.0.2",
            "-p",
            "80",
            "--excludefile",
            file.to_str().unwrap(),
        ];
        let run = tcpshake(&args);
        assert_eq!(run.code, Some(2), "{run}");
        assert_one_clean_message(&run, &args);
        assert!(run.stderr.contains(want), "{run}");
        assert!(
            run.stderr
                .contains("would leave in what it was meant to keep out"),
            "{run}"
        );
        assert!(run.stdout.is_empty(), "{run}");
    }
    let run = tcpshake(&["scan", "198.18.0.2", "-p", "80", "--exclude", "fc00::/7"]);
    assert_eq!(run.code, Some(2), "{run}");
    assert!(
        run.stderr
            .contains("exclude the /112 blocks of it that you scan"),
        "{run}"
    );
    // Walk 14: both read stdin, the exclusions came back empty. Only one may.
    let args = ["scan", "-iL", "-", "--excludefile", "-", "-p", "80"];
    let run = tcpshake(&args);
    assert_eq!(run.code, Some(2), "{run}");
    assert_one_clean_message(&run, &args);
    assert!(
        run.stderr
            .contains("-iL - and --excludefile - both read stdin"),
        "{run}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A refused report leaves what `--svg` names as it was when it existed (as root, `--svg
/// /dev/null` once truncated and then removed /dev/null), and removes only a file it made.
#[test]
fn a_refused_report_leaves_an_existing_svg_path_alone() {
    let dir = std::env::temp_dir().join(format!("tcpshake-svgkeep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let kept = dir.join("kept.svg");
    std::fs::write(&kept, "keep me").unwrap();
    let fresh = dir.join("fresh.svg");
    for svg in [&kept, &fresh] {
        let run = tcpshake(&[
            "report",
            empty.to_str().unwrap(),
            "--svg",
            svg.to_str().unwrap(),
        ]);
        assert_eq!(run.code, Some(2), "{run}");
    }
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "keep me");
    assert!(
        !fresh.exists(),
        "a file the refused run made is not left behind"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
