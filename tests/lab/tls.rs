//! HTTPS peers for the lab: a test PKI made here with rcgen (root CA → intermediate →
//! leaf), nginx serving it with chosen TLS versions, and a peer that hangs up mid-handshake.

use super::{Lab, in_ns};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The name every leaf is made for (besides the server's addresses).
pub const LAB_NAME: &str = "lab.test";

/// Files of one test PKI, in the lab's temp dir.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The root CA certificate (PEM): what `--cacert` and curl's `--cacert` trust.
    pub ca: PathBuf,
    /// Leaf then intermediate (PEM), as nginx's `ssl_certificate` wants the chain.
    pub chain: PathBuf,
    /// The leaf's private key (PKCS#8 PEM).
    pub key: PathBuf,
}

/// Validity of a leaf, in calendar years (Jan 1st to Jan 1st).
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub from: i32,
    pub until: i32,
}

/// Valid today and for years to come.
pub const VALID: Validity = Validity {
    from: 2020,
    until: 2099,
};
/// Expired long ago.
pub const EXPIRED: Validity = Validity {
    from: 2019,
    until: 2020,
};

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "tcpshake lab");
    p.not_before = date_time_ymd(2018, 1, 1);
    p.not_after = date_time_ymd(2099, 1, 1);
    p
}

impl Lab {
    /// Makes a root CA, an intermediate and a leaf for [`LAB_NAME`] and both server
    /// addresses, valid as `validity` says; writes them under the lab's temp dir.
    pub fn make_pki(&self, name: &str, validity: Validity) -> Pki {
        let dir = self.dir().join(format!("pki-{name}"));
        std::fs::create_dir_all(&dir).expect("mkdir pki");
        let root_key = KeyPair::generate().expect("root key");
        let root_params = ca_params("tcpshake lab root CA");
        let root = root_params.self_signed(&root_key).expect("root cert");
        let root_issuer = Issuer::new(root_params, root_key);
        let mid_key = KeyPair::generate().expect("intermediate key");
        let mid_params = ca_params("tcpshake lab intermediate CA");
        let mid = mid_params
            .signed_by(&mid_key, &root_issuer)
            .expect("intermediate cert");
        let mid_issuer = Issuer::new(mid_params, mid_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let mut leaf_params = CertificateParams::new(vec![
            LAB_NAME.to_string(),
            self.server_v4.to_string(),
            self.server_v6.to_string(),
        ])
        .expect("leaf params");
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, LAB_NAME);
        leaf_params.not_before = date_time_ymd(validity.from, 1, 1);
        leaf_params.not_after = date_time_ymd(validity.until, 1, 1);
        let leaf = leaf_params
            .signed_by(&leaf_key, &mid_issuer)
            .expect("leaf cert");
        let pki = Pki {
            ca: dir.join("ca.pem"),
            chain: dir.join("chain.pem"),
            key: dir.join("leaf.key"),
        };
        std::fs::write(&pki.ca, root.pem()).expect("write ca.pem");
        std::fs::write(&pki.chain, format!("{}{}", leaf.pem(), mid.pem())).expect("write chain");
        std::fs::write(&pki.key, leaf_key.serialize_pem()).expect("write key");
        pki
    }

    /// nginx on `port` (v4 and v6) speaking TLS with `cert` (chain PEM) and `key`, only
    /// the versions in `protocols` (nginx's `ssl_protocols`, e.g. "TLSv1.3"). `/` answers
    /// 200 like [`Lab::start_nginx`].
    pub fn start_nginx_tls(&mut self, port: u16, cert: &Path, key: &Path, protocols: &str) -> u32 {
        let extra = format!(
            "        ssl_certificate {};\n        ssl_certificate_key {};\n        ssl_protocols {protocols};\n        ssl_session_tickets off;\n",
            cert.display(),
            key.display(),
        );
        let (pid, dir) = self.launch_nginx(
            "nginx (tls)",
            &format!("nginx-tls-{port}"),
            port,
            " ssl",
            &extra,
        );
        self.wait_peer_tls("nginx (tls)", pid, port, &dir.join("error.log"));
        pid
    }

    /// A peer on `port` (v4) that reads the ClientHello and then closes: the handshake
    /// is cut after our first flight.
    pub fn start_close_after_client_hello(&mut self, port: u16) -> u32 {
        let script = format!(
            "import socket\n\
             s=socket.socket(socket.AF_INET,socket.SOCK_STREAM)\n\
             s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(({v4:?},{port})); s.listen(16)\n\
             while True:\n\
             \x20c,_=s.accept(); c.settimeout(5)\n\
             \x20try: c.recv(65536)\n\
             \x20except OSError: pass\n\
             \x20c.close()\n",
            v4 = self.server_v4.to_string(),
        );
        let mut cmd = in_ns(&self.server_ns, "python3");
        cmd.args(["-c", &script]);
        let pid = self.spawn_owned("close-after-ClientHello peer", &mut cmd);
        let addr = std::net::SocketAddr::new(self.server_v4.into(), port);
        assert!(
            self.wait_listening(addr, std::time::Duration::from_secs(10)),
            "close-after-ClientHello peer not listening on {addr}\n{}",
            self.describe()
        );
        pid
    }

    fn wait_peer_tls(&mut self, what: &str, pid: u32, port: u16, log: &Path) {
        for v6 in [false, true] {
            let addr = std::net::SocketAddr::new(self.server_addr(v6), port);
            if !self.wait_listening(addr, std::time::Duration::from_secs(10)) {
                let alive = self.owned_alive(pid);
                let log_text = std::fs::read_to_string(log).unwrap_or_default();
                panic!(
                    "{what} (pid {pid}, alive: {alive}) not listening on {addr}\n{log_text}\n{}",
                    self.describe()
                );
            }
        }
    }

    /// `curl -w` timings against `url` from the client namespace, trusting `ca`:
    /// (exit code, time_connect s, time_appconnect s).
    pub fn curl_tls_times(&self, url: &str, ca: &Path) -> (i32, f64, f64) {
        let out = in_ns(&self.client_ns, "curl")
            .args([
                "-sS",
                "-I",
                "-o",
                "/dev/null",
                "--max-time",
                "5",
                "--cacert",
            ])
            .arg(ca)
            .args(["-w", "%{time_connect} %{time_appconnect}"])
            .arg(url)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run curl: {e}"));
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut it = text
            .split_whitespace()
            .map(|s| s.parse::<f64>().unwrap_or(-1.0));
        (
            out.status.code().unwrap_or(-1),
            it.next().unwrap_or(-1.0),
            it.next().unwrap_or(-1.0),
        )
    }
}
