//! The real `sluice serve` process: started on kernel-chosen ports, its stderr echoed to the
//! test's output, killed when dropped.

use super::client::{self, Resp};
use super::manifests::ManifestDir;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long a condition may take to become true (a live update, a readiness, a drain).
pub const DEADLINE: Duration = Duration::from_secs(10);

pub struct Gateway {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub admin: SocketAddr,
}

impl Gateway {
    /// `sluice serve` on `dir` with every listener on 127.0.0.1:0, two workers, no drain delay
    /// unless `extra` sets one, plus the `extra` flags. Returns once `/readyz` answers 200.
    pub async fn start(dir: &ManifestDir, extra: &[&str]) -> Gateway {
        let mut args: Vec<&str> = vec!["--manifests", dir.path().to_str().expect("UTF-8 path")];
        args.extend_from_slice(extra);
        Gateway::start_with(&args, &[]).await
    }

    /// `sluice serve` with `args` (the source flags and any others) and extra environment
    /// variables, every listener on 127.0.0.1:0. Returns once `/readyz` answers 200.
    pub async fn start_with(args: &[&str], envs: &[(&str, &str)]) -> Gateway {
        let gateway = Gateway::spawn_with(args, envs).await;
        gateway.wait_ready().await;
        gateway
    }

    /// Like [`Gateway::start_with`], but returns as soon as the listeners are announced, ready
    /// or not.
    pub async fn spawn_with(args: &[&str], envs: &[(&str, &str)]) -> Gateway {
        let extra = args;
        let drain_delay: &[&str] = if extra.contains(&"--drain-delay") {
            &[]
        } else {
            &["--drain-delay", "0s"]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("serve")
            .args(["--http-listen", "127.0.0.1:0"])
            .args(["--https-listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0"])
            .args(["--workers", "2"])
            .args(drain_delay)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the sluice binary");
        let pid = child.id().unwrap_or(0);
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, mut lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                eprintln!("[sluice {pid}] {line}");
                let _ = tx.send(line);
            }
        });

        let (mut http, mut https, mut admin) = (None, None, None);
        let started = Instant::now();
        while http.is_none() || https.is_none() || admin.is_none() {
            let left = Duration::from_secs(20).saturating_sub(started.elapsed());
            let line = match tokio::time::timeout(left, lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!(
                    "sluice exited before announcing its listeners: {:?}",
                    child.wait().await
                ),
                Err(_) => panic!("sluice did not announce its three listeners within 20 s"),
            };
            for (kind, slot) in [
                ("http", &mut http),
                ("https", &mut https),
                ("admin", &mut admin),
            ] {
                if let Some(addr) = listening_address(&line, kind) {
                    *slot = Some(addr);
                }
            }
        }
        // Keep draining stderr so the child never blocks on a full pipe.
        tokio::spawn(async move { while lines.recv().await.is_some() {} });

        Gateway {
            child,
            http: http.expect("http address"),
            https: https.expect("https address"),
            admin: admin.expect("admin address"),
        }
    }

    /// Waits until `/readyz` answers 200 (at most 20 s).
    pub async fn wait_ready(&self) {
        let gateway = self;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = gateway.admin_get("/readyz").await
                && r.status == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sluice /readyz did not answer 200 within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("sluice is still running")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit on its own.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("sluice did not exit within {within:?}"))
            .expect("wait for sluice")
    }

    pub async fn admin_get(&self, path: &str) -> Result<Resp, String> {
        client::get(self.admin, "localhost", path).await
    }

    async fn admin_json(&self, path: &str) -> Value {
        let r = self
            .admin_get(path)
            .await
            .unwrap_or_else(|e| panic!("admin {path}: {e}"));
        assert_eq!(r.status, 200, "admin {path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("admin {path}: {e}: {}", r.body))
    }

    pub async fn snapshot(&self) -> Value {
        self.admin_json("/api/v1/snapshot").await
    }

    pub async fn version(&self) -> u64 {
        self.snapshot()
            .await
            .get("version")
            .and_then(Value::as_u64)
            .expect("snapshot version")
    }

    pub async fn problems(&self) -> Vec<Value> {
        match self.admin_json("/api/v1/problems").await {
            Value::Array(list) => list,
            other => panic!("/api/v1/problems is not a list: {other}"),
        }
    }

    pub async fn routes(&self, host: &str) -> Vec<Value> {
        match self
            .admin_json(&format!("/api/v1/routes?host={host}"))
            .await
        {
            Value::Array(list) => list,
            other => panic!("/api/v1/routes is not a list: {other}"),
        }
    }

    /// One plain HTTP request on a fresh connection.
    pub async fn get(&self, host: &str, path: &str) -> Result<Resp, String> {
        client::get(self.http, host, path).await
    }

    /// One HTTPS request on a fresh connection (SNI = host).
    pub async fn get_tls(&self, host: &str, path: &str) -> Result<Resp, String> {
        client::get_tls(self.https, host, path).await
    }

    /// The echo backend that answers `host` + `path` over plain HTTP; panics on anything else.
    pub async fn backend_of(&self, host: &str, path: &str) -> String {
        let r = self
            .get(host, path)
            .await
            .unwrap_or_else(|e| panic!("GET http://{host}{path}: {e}"));
        assert_eq!(r.status, 200, "GET http://{host}{path}: {}", r.body);
        r.backend()
            .unwrap_or_else(|| panic!("GET http://{host}{path}: not an echo answer: {}", r.body))
    }

    /// The status of `host` + `path` over plain HTTP, asserting a gateway-made error page (not an
    /// echo answer) with a body when it is not 200.
    pub async fn status_of(&self, host: &str, path: &str) -> u16 {
        let r = self
            .get(host, path)
            .await
            .unwrap_or_else(|e| panic!("GET http://{host}{path}: {e}"));
        if r.status != 200 {
            assert!(
                r.backend().is_none(),
                "GET http://{host}{path}: {} came from a backend: {}",
                r.status,
                r.body
            );
            assert!(
                !r.body.trim().is_empty(),
                "GET http://{host}{path}: {} without a body",
                r.status
            );
        }
        r.status
    }

    /// Waits until `host` + `path` is answered by `backend` (a live update took effect).
    pub async fn wait_backend(&self, host: &str, path: &str, backend: &str) {
        wait_for(
            &format!("http://{host}{path} to be served by {backend}"),
            async || {
                let r = self.get(host, path).await.ok()?;
                (r.status == 200 && r.backend().as_deref() == Some(backend)).then_some(())
            },
        )
        .await
    }

    /// Waits until `host` + `path` answers `status` over plain HTTP.
    pub async fn wait_status(&self, host: &str, path: &str, status: u16) {
        wait_for(
            &format!("http://{host}{path} to answer {status}"),
            async || (self.get(host, path).await.ok()?.status == status).then_some(()),
        )
        .await
    }

    /// Waits until `/api/v1/problems` has an entry satisfying `matches`, and returns it.
    pub async fn wait_problem(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        wait_for(&format!("problem: {what}"), async || {
            self.problems().await.into_iter().find(|p| matches(p))
        })
        .await
    }
}

fn listening_address(line: &str, kind: &str) -> Option<SocketAddr> {
    let marker = format!("listening on {kind} ");
    let rest = &line[line.find(&marker)? + marker.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Polls `check` every 50 ms until it yields a value; panics after [`DEADLINE`].
pub async fn wait_for<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `sluice check DIR`: exit code and stdout.
pub fn run_check(dir: &Path, extra: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("check")
        .arg(dir)
        .args(extra)
        .env("NO_COLOR", "1")
        .output()
        .expect("run sluice check");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!(
        "sluice check {}:\n{stdout}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), stdout)
}
