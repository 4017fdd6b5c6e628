//! Servers the lab runs in its server namespace: nginx, Python's http.server, and a bare
//! kernel listener. Each runs in the foreground as a child the lab owns by pid.

use super::{Lab, in_ns, run_ok};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Body nginx returns for `/`.
pub const NGINX_BODY: &str = "hello from the tcpshake lab\n";

/// How long a peer may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(10);

/// What a kernel listener does with an accepted connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerMode {
    /// Reads until the client's FIN, then closes: the client closes first.
    ReadUntilEof,
    /// Closes right after accept: the server closes first, without a word.
    CloseAfterAccept,
}

impl Lab {
    /// Starts nginx on `port` for v4 and v6 and waits until both listen. `/` answers 200
    /// with [`NGINX_BODY`]; `server_tokens on` puts the version in the Server header.
    pub fn start_nginx(&mut self, port: u16) -> u32 {
        let (pid, dir) = self.launch_nginx("nginx", &format!("nginx-{port}"), port, "", "");
        self.wait_peer("nginx", pid, &[true, false], port, &dir.join("error.log"));
        pid
    }

    /// Writes an nginx config in `<lab dir>/<dir_name>` listening on `port` (v4 and v6,
    /// each `listen` followed by `listen_suffix`, e.g. " ssl"), with `server_extra` lines in
    /// the server block, checks it with `nginx -t`, and starts nginx (not waiting for it).
    /// Returns its pid and its directory (pid file, logs, temp dirs).
    pub fn launch_nginx(
        &mut self,
        what: &str,
        dir_name: &str,
        port: u16,
        listen_suffix: &str,
        server_extra: &str,
    ) -> (u32, std::path::PathBuf) {
        let dir = self.dir().join(dir_name);
        std::fs::create_dir_all(&dir).expect("mkdir nginx dir");
        let d = dir.display();
        // daemon off + master_process off: one process, in the foreground, that we own by
        // pid. Every path nginx writes (pid, logs, temp dirs) is in our temp dir, so it
        // never touches /var and two tests never share a file.
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server_tokens on;
    default_type text/plain;
    server {{
        listen {v4}:{port}{listen_suffix};
        listen [{v6}]:{port}{listen_suffix};
{server_extra}        location = / {{ return 200 "{body}"; }}
        location / {{ return 404; }}
    }}
}}
"#,
            v4 = self.server_v4,
            v6 = self.server_v6,
            body = NGINX_BODY.escape_default(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let args = |cmd: &mut Command| {
            cmd.arg("-p")
                .arg(&dir)
                .arg("-e")
                .arg(dir.join("error.log"))
                .arg("-c")
                .arg(&conf_path);
        };
        // Fail early with nginx's own words if the config is wrong (`-t` binds the listen
        // addresses, so it runs in the server namespace too).
        let mut check = in_ns(&self.server_ns, "nginx");
        check.arg("-t");
        args(&mut check);
        run_ok(&mut check);
        let mut cmd = in_ns(&self.server_ns, "nginx");
        args(&mut cmd);
        cmd.stdout(Stdio::null());
        let pid = self.spawn_owned(what, &mut cmd);
        (pid, dir)
    }

    /// Starts `python3 -m http.server` on `port`, bound to the server's v4 or v6 address.
    pub fn start_python_http(&mut self, v6: bool, port: u16) -> u32 {
        let dir = self
            .dir()
            .join(format!("www-{port}-{}", if v6 { 6 } else { 4 }));
        std::fs::create_dir_all(&dir).expect("mkdir www");
        std::fs::write(dir.join("index.html"), "hello from python\n").expect("write index");
        let mut cmd = in_ns(&self.server_ns, "python3");
        cmd.args(["-m", "http.server", &port.to_string(), "--bind"])
            .arg(self.server_addr(v6).to_string())
            .arg("--directory")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let pid = self.spawn_owned("python http.server", &mut cmd);
        self.wait_peer("python http.server", pid, &[v6], port, &dir);
        pid
    }

    /// Listening sockets that never accept, on `ports` of every address of the server
    /// namespace, both families (0.0.0.0 and ::, v6-only): the kernel answers a SYN to
    /// them with a SYN-ACK — the open ports of a scan's lab. Returns once all listen.
    pub fn start_wildcard_listeners(&mut self, what: &str, ports: &[u16]) -> u32 {
        let list = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let script = format!(
            "import socket,time\n\
             ls=[]\n\
             for p in ({list},):\n\
             \x20for fam,a in ((socket.AF_INET,'0.0.0.0'),(socket.AF_INET6,'::')):\n\
             \x20 s=socket.socket(fam,socket.SOCK_STREAM)\n\
             \x20 s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             \x20 if fam==socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6,socket.IPV6_V6ONLY,1)\n\
             \x20 s.bind((a,p)); s.listen(4096); ls.append(s)\n\
             time.sleep(600)\n"
        );
        let mut cmd = in_ns(&self.server_ns, "python3");
        cmd.args(["-c", &script]);
        let pid = self.spawn_owned(what, &mut cmd);
        for &p in ports {
            for any in [
                IpAddr::from(Ipv4Addr::UNSPECIFIED),
                Ipv6Addr::UNSPECIFIED.into(),
            ] {
                assert!(
                    self.wait_listening(SocketAddr::new(any, p), Duration::from_secs(5)),
                    "listener on {p}"
                );
            }
        }
        pid
    }

    /// Starts a listener that accepts but never speaks HTTP, on v4 and v6.
    pub fn start_kernel_listener(&mut self, port: u16, mode: ListenerMode) -> u32 {
        let on_accept = match mode {
            ListenerMode::ReadUntilEof => {
                "threading.Thread(target=drain,args=(c,),daemon=True).start()"
            }
            ListenerMode::CloseAfterAccept => "c.close()",
        };
        let script = format!(
            "import socket,select,threading\n\
             def drain(c):\n\
             \x20while c.recv(4096): pass\n\
             \x20c.close()\n\
             ls=[]\n\
             for fam,a in ((socket.AF_INET,{v4:?}),(socket.AF_INET6,{v6:?})):\n\
             \x20s=socket.socket(fam,socket.SOCK_STREAM)\n\
             \x20s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             \x20s.bind((a,{port})); s.listen(16); ls.append(s)\n\
             while True:\n\
             \x20for s in select.select(ls,[],[])[0]:\n\
             \x20 c,_=s.accept(); {on_accept}\n",
            v4 = self.server_v4.to_string(),
            v6 = self.server_v6.to_string(),
        );
        let mut cmd = in_ns(&self.server_ns, "python3");
        cmd.args(["-c", &script]);
        let pid = self.spawn_owned("kernel listener", &mut cmd);
        let dir = self.dir().to_path_buf();
        self.wait_peer("kernel listener", pid, &[false, true], port, &dir);
        pid
    }

    /// Waits until the peer listens on each family in `families` (true = v6), or fails the
    /// test with what the peer said.
    fn wait_peer(
        &mut self,
        what: &str,
        pid: u32,
        families: &[bool],
        port: u16,
        log: &std::path::Path,
    ) {
        for &v6 in families {
            let addr = SocketAddr::new(self.server_addr(v6), port);
            if !self.wait_listening(addr, START_LIMIT) {
                let alive = self.owned_alive(pid);
                let log_text = std::fs::read_to_string(log).unwrap_or_default();
                panic!(
                    "{what} (pid {pid}, alive: {alive}) not listening on {addr} after {START_LIMIT:?}\n{log_text}\n{}",
                    self.describe()
                );
            }
        }
    }
}
