//! `tcpshake trace` through a chain of routers.

#[path = "lab/mod.rs"]
mod lab;

use lab::{Lab, require_root};

#[test]
fn smoke() {
    if !require_root() {
        return;
    }
    let mut lab = Lab::with_chain("trace_smoke", 4);
    lab.start_kernel_listener(8080, lab::peers::ListenerMode::ReadUntilEof);
    lab.chain_nft(1, "table inet t { chain pre { type filter hook prerouting priority -150; policy accept;\n tcp dport 8080 ip dscp set cs1\n tcp dport 8080 ip6 dscp set cs1\n }\n}\n");
    lab.chain_nft(2, "table inet t { chain pre { type filter hook prerouting priority -150; policy accept;\n tcp dport 8080 ip ecn set not-ect\n tcp dport 8080 ip6 ecn set not-ect\n }\n chain fw { type filter hook forward priority 0; policy accept;\n tcp dport 8080 tcp flags syn tcp option maxseg size set 1200\n }\n}\n");
    lab.chain_nft(3, "table inet t { chain pre { type filter hook prerouting priority -150; policy accept;\n tcp dport 8080 reset tcp option sack-perm\n tcp dport 8080 tcp option timestamp tsval set 7\n }\n}\n");
    lab.chain_nft(4, "table ip nat { chain post { type nat hook postrouting priority 100; policy accept;\n oifname \"tskd\" masquerade\n }\n}\ntable ip6 nat { chain post { type nat hook postrouting priority 100; policy accept;\n oifname \"tskd\" masquerade\n }\n}\n");
    for v6 in [false, true] {
        let run = lab.run_client(["trace", &lab.target(v6, 8080), "--tos", "0x02"]);
        eprintln!("{run}");
    }
}
