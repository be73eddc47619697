//! The access log: one line per request, formatted and written by a thread of its own.
//!
//! The data plane hands each entry to a bounded channel and never waits: when the writer falls
//! behind (a slow disk, a blocked stdout pipe) entries are dropped and counted
//! (`sluice_access_log_dropped_total`), because a log must never stall traffic.

use crate::clock::{nginx_local, rfc3339_millis};
use crate::route::RouteKey;
use serde::Serialize;
use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

/// Entries waiting for the writer before new ones are dropped.
const QUEUE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLogFormat {
    /// One JSON object per line.
    Json,
    /// nginx's `combined` line followed by ingress-nginx's `upstreaminfo` fields.
    Combined,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Stdout,
    File(PathBuf),
}

impl AccessLogTarget {
    /// `-` is stdout, anything else a file path.
    pub fn parse(value: &str) -> AccessLogTarget {
        if value == "-" {
            AccessLogTarget::Stdout
        } else {
            AccessLogTarget::File(PathBuf::from(value))
        }
    }
}

/// One finished request.
#[derive(Debug, Clone)]
pub struct AccessEntry {
    pub time: SystemTime,
    pub client: SocketAddr,
    /// The request's host as sent (normalized: lower case, no port).
    pub host: String,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// `HTTP/1.1`, `HTTP/2.0`.
    pub protocol: &'static str,
    pub status: u16,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub duration: Duration,
    /// The route that served it; `None` for requests no route matched.
    pub route: Option<RouteKey>,
    pub upstream_addr: Option<String>,
    pub upstream_latency: Option<Duration>,
    pub request_id: Option<String>,
    pub tls_version: Option<&'static str>,
    pub tls_cipher: Option<&'static str>,
    pub canary: bool,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    time: String,
    client: String,
    host: &'a str,
    method: &'a str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    query: Option<&'a str>,
    protocol: &'a str,
    status: u16,
    request_bytes: u64,
    response_bytes: u64,
    duration_ms: f64,
    namespace: Option<&'a str>,
    ingress: Option<&'a str>,
    service: Option<&'a str>,
    /// The path as configured in the Ingress (the metrics label), not the request's.
    route_path: Option<&'a str>,
    upstream_addr: Option<&'a str>,
    upstream_latency_ms: Option<f64>,
    request_id: Option<&'a str>,
    tls_version: Option<&'a str>,
    tls_cipher: Option<&'a str>,
    canary: bool,
    referer: Option<&'a str>,
    user_agent: Option<&'a str>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

impl AccessEntry {
    pub fn json_line(&self) -> String {
        let route = self.route.as_ref();
        let line = JsonLine {
            time: rfc3339_millis(self.time),
            client: self.client.ip().to_canonical().to_string(),
            host: &self.host,
            method: &self.method,
            path: &self.path,
            query: self.query.as_deref(),
            protocol: self.protocol,
            status: self.status,
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
            duration_ms: ms(self.duration),
            namespace: route.and_then(|r| non_empty(&r.namespace)),
            ingress: route.and_then(|r| non_empty(&r.ingress)),
            service: route.and_then(|r| non_empty(&r.service)),
            route_path: route.and_then(|r| non_empty(&r.path)),
            upstream_addr: self.upstream_addr.as_deref(),
            upstream_latency_ms: self.upstream_latency.map(ms),
            request_id: self.request_id.as_deref(),
            tls_version: self.tls_version,
            tls_cipher: self.tls_cipher,
            canary: self.canary,
            referer: self.referer.as_deref(),
            user_agent: self.user_agent.as_deref(),
        };
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// `client - - [time] "METHOD target PROTO" status bytes "referer" "agent" request_bytes
    /// request_time [namespace-service] [canary] upstream_addr upstream_bytes upstream_time
    /// status request_id`, like ingress-nginx's default `upstreaminfo` format.
    pub fn combined_line(&self) -> String {
        let target = match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        };
        let upstream_name = self
            .route
            .as_ref()
            .filter(|r| !r.service.is_empty())
            .map(|r| format!("{}-{}", r.namespace, r.service))
            .unwrap_or_default();
        let dash = |v: Option<String>| v.unwrap_or_else(|| "-".to_string());
        format!(
            "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\" {} {:.3} [{}] [{}] {} {} {} {} {}",
            self.client.ip().to_canonical(),
            nginx_local(self.time),
            escape(&self.method),
            escape(&target),
            self.protocol,
            self.status,
            self.response_bytes,
            escape(self.referer.as_deref().unwrap_or("-")),
            escape(self.user_agent.as_deref().unwrap_or("-")),
            self.request_bytes,
            self.duration.as_secs_f64(),
            upstream_name,
            if self.canary { "canary" } else { "" },
            dash(self.upstream_addr.clone()),
            if self.upstream_addr.is_some() {
                self.response_bytes.to_string()
            } else {
                "-".to_string()
            },
            dash(
                self.upstream_latency
                    .map(|d| format!("{:.3}", d.as_secs_f64()))
            ),
            if self.upstream_addr.is_some() {
                self.status.to_string()
            } else {
                "-".to_string()
            },
            escape(self.request_id.as_deref().unwrap_or("-")),
        )
    }
}

/// nginx's escaping of logged strings: `"`, `\` and bytes outside printable ASCII as `\xHH`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.push_str(&format!("\\x{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

/// The data plane's end of the access log.
#[derive(Debug)]
pub struct AccessLog {
    sender: SyncSender<AccessEntry>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Opens the target (a file is created or appended to) and starts the writer thread.
    pub fn open(target: &AccessLogTarget, format: AccessLogFormat) -> Result<AccessLog, String> {
        let out: Box<dyn Write + Send> = match target {
            AccessLogTarget::Stdout => Box::new(io::stdout()),
            AccessLogTarget::File(path) => Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        format!(
                            "cannot open the access log {} for appending: {e}; check that its \
                             directory exists and is writable, or pass --access-log - for stdout",
                            path.display()
                        )
                    })?,
            ),
        };
        let (sender, receiver) = sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("sluice-access-log".into())
            .spawn(move || {
                write_entries(receiver, BufWriter::with_capacity(64 * 1024, out), format)
            })
            .map_err(|e| format!("cannot start the access log writer thread: {e}"))?;
        Ok(AccessLog {
            sender,
            dropped: Arc::default(),
        })
    }

    /// Queues one entry; never blocks.
    pub fn log(&self, entry: AccessEntry) {
        match self.sender.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Entries dropped because the writer could not keep up (or had failed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

fn write_entries(
    receiver: Receiver<AccessEntry>,
    mut out: BufWriter<Box<dyn Write + Send>>,
    format: AccessLogFormat,
) {
    let mut warned = false;
    // Blocks for the first entry of a batch, takes whatever else is queued, then flushes, so a
    // quiet log is always complete on disk and a busy one is written in large chunks.
    while let Ok(first) = receiver.recv() {
        let mut next = Some(first);
        let mut result = Ok(());
        while let Some(entry) = next {
            let line = match format {
                AccessLogFormat::Json => entry.json_line(),
                AccessLogFormat::Combined => entry.combined_line(),
            };
            if result.is_ok() {
                result = out
                    .write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"));
            }
            next = receiver.try_recv().ok();
        }
        if let Err(e) = result.and_then(|()| out.flush())
            && !warned
        {
            warned = true;
            tracing::warn!(error = %e, "writing the access log failed; entries are being lost");
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AccessEntry {
        AccessEntry {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_663_389),
            client: "[::ffff:10.0.0.7]:5000".parse().unwrap(),
            host: "a.test".into(),
            method: "GET".into(),
            path: "/x \"y\"".into(),
            query: Some("q=1".into()),
            protocol: "HTTP/1.1",
            status: 200,
            request_bytes: 3,
            response_bytes: 1234,
            duration: Duration::from_micros(1600),
            route: Some(RouteKey {
                host: "a.test".into(),
                namespace: "ns".into(),
                ingress: "ing".into(),
                service: "svc".into(),
                path: "/".into(),
            }),
            upstream_addr: Some("127.0.0.1:8080".into()),
            upstream_latency: Some(Duration::from_micros(1000)),
            request_id: Some("abc".into()),
            tls_version: None,
            tls_cipher: None,
            canary: false,
            referer: None,
            user_agent: Some("curl/8".into()),
        }
    }

    #[test]
    fn json_lines_carry_every_field() {
        let v: serde_json::Value = serde_json::from_str(&entry().json_line()).unwrap();
        assert_eq!(v["time"], "2026-11-26T03:23:09.000Z");
        assert_eq!(v["client"], "10.0.0.7");
        assert_eq!(v["path"], "/x \"y\"");
        assert_eq!(v["status"], 200);
        assert_eq!(v["response_bytes"], 1234);
        assert_eq!(v["duration_ms"], 1.6);
        assert_eq!(v["upstream_latency_ms"], 1.0);
        assert_eq!(v["ingress"], "ing");
        assert_eq!(v["route_path"], "/");
        assert_eq!(v["tls_version"], serde_json::Value::Null);
    }

    #[test]
    fn a_stalled_writer_drops_lines_instead_of_blocking() {
        // A FIFO whose reader never reads: the writer thread blocks once the pipe is full, the
        // queue fills up, and logging must go on without waiting.
        let dir =
            std::env::temp_dir().join(format!("sluice-access-log-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("stalled");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let reader_path = fifo.clone();
        let reader = std::thread::spawn(move || std::fs::File::open(reader_path).unwrap());
        let log =
            AccessLog::open(&AccessLogTarget::File(fifo.clone()), AccessLogFormat::Json).unwrap();
        let _reader = reader.join().unwrap();
        let started = std::time::Instant::now();
        let total = QUEUE as u64 * 3;
        for _ in 0..total {
            log.log(entry());
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "logging waited for the writer"
        );
        let dropped = log.dropped();
        assert!(
            dropped > 0 && dropped < total,
            "dropped {dropped} of {total}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn combined_lines_look_like_nginx() {
        assert_eq!(
            entry().combined_line(),
            "10.0.0.7 - - [26/Nov/2026:03:23:09 +0000] \"GET /x \\x22y\\x22?q=1 HTTP/1.1\" 200 \
             1234 \"-\" \"curl/8\" 3 0.002 [ns-svc] [] 127.0.0.1:8080 1234 0.001 200 abc"
        );
    }
}
