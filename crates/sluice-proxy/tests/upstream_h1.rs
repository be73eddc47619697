//! The upstream HTTP/1.1 exchange against raw-TCP upstreams that answer with scripted bytes:
//! every way a response body can be framed, informational responses, responses arriving in many
//! small pieces, idle connections the upstream closed, and invalid heads. Each test checks what
//! the client receives and, by counting the upstream's accepted connections, whether the proxy
//! reused its upstream connection exactly when it may.

mod common;

use common::*;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One scripted answer: the exact bytes, written in `pieces` separate writes, then the
/// connection is closed when `close` says so.
struct Answer {
    bytes: Vec<u8>,
    pieces: usize,
    close: bool,
}

fn answer(bytes: &str) -> Answer {
    Answer {
        bytes: bytes.as_bytes().to_vec(),
        pieces: 1,
        close: false,
    }
}

impl Answer {
    fn in_pieces(mut self, pieces: usize) -> Answer {
        self.pieces = pieces;
        self
    }

    fn then_close(mut self) -> Answer {
        self.close = true;
        self
    }
}

/// An upstream that answers requests, on whichever connection they arrive, with the next
/// scripted answer.
struct Scripted {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Scripted {
    async fn start(answers: Vec<Answer>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
        let accepted = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let scripted = Scripted {
            addr,
            accepted: accepted.clone(),
            closed: closed.clone(),
            heads: heads.clone(),
        };
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(
                    stream,
                    answers.clone(),
                    heads.clone(),
                    closed.clone(),
                ));
            }
        });
        scripted
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// Waits until the upstream has closed `n` connections by script.
    async fn closed(&self, n: usize) {
        within("the upstream to close its connection", async {
            while self.closed.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }
}

async fn serve(
    mut stream: TcpStream,
    answers: Arc<Mutex<VecDeque<Answer>>>,
    heads: Arc<Mutex<Vec<String>>>,
    closed: Arc<AtomicUsize>,
) {
    stream.set_nodelay(true).unwrap();
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        heads.lock().unwrap().push(head);
        let Some(answer) = answers.lock().unwrap().pop_front() else {
            return;
        };
        let piece = answer.bytes.len().div_ceil(answer.pieces.max(1)).max(1);
        for part in answer.bytes.chunks(piece) {
            if stream.write_all(part).await.is_err() {
                return;
            }
            stream.flush().await.unwrap();
            // Lets the proxy see each piece on its own.
            tokio::task::yield_now().await;
        }
        if answer.close {
            drop(stream);
            closed.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

async fn proxy_to(upstream: &Scripted) -> Proxy {
    let web = slot("web", &[upstream.addr]);
    Proxy::start(snapshot(
        1,
        vec![vhost("a.test", false, vec![prefix("/", &web)])],
    ))
    .await
}

async fn send(proxy: &Proxy, method: Method, path: &str) -> Reply {
    let mut sender = h1(proxy.http).await;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "a.test")
        .body(empty())
        .unwrap();
    read(within("response", sender.send_request(req)).await.unwrap()).await
}

const OK_2: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

#[tokio::test]
async fn chunked_body_with_extensions_and_trailers_is_dechunked_and_reused() {
    let upstream = Scripted::start(vec![
        answer(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-kind: chunked\r\n\r\n\
             5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nx-checksum: 12\r\n\r\n",
        ),
        answer(OK_2),
    ])
    .await;
    let proxy = proxy_to(&upstream).await;
    let reply = send(&proxy, Method::GET, "/chunked").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "hello, world");
    assert_eq!(reply.header("x-kind"), "chunked");
    assert!(!reply.headers.contains_key("x-checksum"));
    let reply = send(&proxy, Method::GET, "/next").await;
    assert_eq!(reply.body, "ok");
    assert_eq!(
        upstream.accepted(),
        1,
        "the chunked response left the connection reusable"
    );
}

#[tokio::test]
async fn close_delimited_bodies_end_with_the_connection_and_are_not_reused() {
    let upstream = Scripted::start(vec![
        answer("HTTP/1.1 200 OK\r\nx-kind: close\r\n\r\nuntil the end").then_close(),
        // HTTP/1.0 without keep-alive: the connection is not reused even with a length.
        answer("HTTP/1.0 200 OK\r\ncontent-length: 4\r\n\r\n1.0!"),
        // `Connection: close` with a length.
        answer("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 5\r\n\r\nclose"),
        // HTTP/1.0 asking for keep-alive is reused.
        answer("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 4\r\n\r\nkept"),
        answer(OK_2),
    ])
    .await;
    let proxy = proxy_to(&upstream).await;
    let reply = send(&proxy, Method::GET, "/").await;
    assert_eq!(reply.body, "until the end");
    assert_eq!(reply.header("x-kind"), "close");
    assert_eq!(send(&proxy, Method::GET, "/").await.body, "1.0!");
    assert_eq!(upstream.accepted(), 2);
    assert_eq!(send(&proxy, Method::GET, "/").await.body, "close");
    assert_eq!(upstream.accepted(), 3);
    assert_eq!(send(&proxy, Method::GET, "/").await.body, "kept");
    assert_eq!(upstream.accepted(), 4);
    assert_eq!(send(&proxy, Method::GET, "/").await.body, "ok");
    assert_eq!(upstream.accepted(), 4, "HTTP/1.0 keep-alive is honoured");
}

#[tokio::test]
async fn head_204_and_304_have_no_body_and_keep_the_connection() {
    let upstream = Scripted::start(vec![
        answer("HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n"),
        answer("HTTP/1.1 204 No Content\r\nx-kind: 204\r\n\r\n"),
        answer("HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\ncontent-length: 99\r\n\r\n"),
        answer(OK_2),
    ])
    .await;
    let proxy = proxy_to(&upstream).await;
    let reply = send(&proxy, Method::HEAD, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-length"), "1234");
    assert_eq!(reply.body, "");
    let reply = send(&proxy, Method::GET, "/").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.header("x-kind"), "204");
    assert_eq!(reply.body, "");
    let reply = send(&proxy, Method::GET, "/").await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert_eq!(reply.header("etag"), "\"v1\"");
    assert_eq!(reply.body, "");
    assert_eq!(send(&proxy, Method::GET, "/").await.body, "ok");
    assert_eq!(upstream.accepted(), 1);
    let heads = upstream.heads();
    assert!(heads[0].starts_with("HEAD / HTTP/1.1\r\n"), "{}", heads[0]);
}

#[tokio::test]
async fn informational_responses_are_skipped() {
    let upstream = Scripted::start(vec![
        answer(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n\
             HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
        ),
        answer(OK_2),
    ])
    .await;
    let proxy = proxy_to(&upstream).await;
    let reply = send(&proxy, Method::GET, "/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "final");
    assert!(!reply.headers.contains_key("link"));
    assert_eq!(send(&proxy, Method::GET, "/").await.body, "ok");
    assert_eq!(upstream.accepted(), 1);
}

#[tokio::test]
async fn responses_split_into_many_small_writes_arrive_whole() {
    let big: String = (0..3000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let chunked = format!(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n3\r\nend\r\n0\r\n\r\n",
        big.len()
    );
    let sized = format!(
        "HTTP/1.1 200 OK\r\nx-long-header: {}\r\ncontent-length: {}\r\n\r\n{big}",
        "h".repeat(500),
        big.len()
    );
    let upstream = Scripted::start(vec![
        Answer {
            bytes: chunked.into_bytes(),
            pieces: 400,
            close: false,
        },
        Answer {
            bytes: sized.into_bytes(),
            pieces: 400,
            close: false,
        },
        answer("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .in_pieces(60),
    ])
    .await;
    let proxy = proxy_to(&upstream).await;
    let reply = send(&proxy, Method::GET, "/").await;
    assert_eq!(reply.body, format!("{big}end"));
    let reply = send(&proxy, Method::GET, "/").await;
    assert_eq!(reply.body, big);
    assert_eq!(reply.header("x-long-header"), "h".repeat(500));
    assert_eq!(send(&proxy, Method::GET, "/").await.body, "ok");
    assert_eq!(upstream.accepted(), 1);
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_while_idle_is_replaced() {
    let upstream = Scripted::start(vec![
        // A keep-alive response, then the upstream's idle timeout strikes.
        answer("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst").then_close(),
        answer("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond"),
    ])
    .await;
    let proxy = proxy_to(&upstream).await;
    assert_eq!(send(&proxy, Method::GET, "/").await.body, "first");
    upstream.closed(1).await;
    // POST: not replayable, so this passes only if the closed connection is never used.
    let reply = send(&proxy, Method::POST, "/").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, "second");
    assert_eq!(upstream.accepted(), 2);
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_and_the_connection_is_not_reused() {
    let upstream = Scripted::start(vec![
        answer("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf!").then_close(),
        answer("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhalf!\r\n").then_close(),
        answer(OK_2),
    ])
    .await;
    let proxy = proxy_to(&upstream).await;
    for _ in 0..2 {
        let mut sender = h1(proxy.http).await;
        let response = within("response head", sender.send_request(request("a.test", "/")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = within("the body to fail", response.into_body().collect()).await;
        assert!(body.is_err(), "a truncated body must not look complete");
    }
    assert_eq!(send(&proxy, Method::GET, "/").await.body, "ok");
    assert_eq!(upstream.accepted(), 3);
}

#[tokio::test]
async fn invalid_response_heads_are_a_502_saying_why() {
    let huge = format!(
        "HTTP/1.1 200 OK\r\nx-huge: {}\r\n\r\n",
        "a".repeat(8192 + 4096 * 100)
    );
    let upstream = Scripted::start(vec![
        answer("HTTP/1.1 200 OK\r\nx-folded: one\r\n two\r\ncontent-length: 2\r\n\r\nok"),
        answer("HTTP/1.1 200 OK\r\nx-bad: a\x01b\r\ncontent-length: 2\r\n\r\nok"),
        answer("HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok"),
        answer("HTTP/1.1 OK\r\n\r\n"),
        Answer {
            bytes: huge.into_bytes(),
            pieces: 1,
            close: false,
        },
        answer(OK_2),
    ])
    .await;
    let proxy = proxy_to(&upstream).await;
    for expected in [
        "obs-fold",
        "invalid header value",
        "Content-Length",
        "invalid response status",
        "larger than 417792 bytes",
    ] {
        let reply = send(&proxy, Method::GET, "/").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{}", reply.body);
        assert!(
            reply.body.contains("invalid HTTP/1.1 response head") && reply.body.contains(expected),
            "expected {expected:?} in {}",
            reply.body
        );
    }
    assert_eq!(send(&proxy, Method::GET, "/").await.body, "ok");
    assert_eq!(
        upstream.accepted(),
        6,
        "a connection with an invalid head is closed"
    );
}

#[tokio::test]
async fn bytes_behind_a_101_reach_the_client_first() {
    let upstream = Scripted::start(vec![answer(
        "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\nhello from upstream",
    )])
    .await;
    let proxy = proxy_to(&upstream).await;
    let mut client = TcpStream::connect(proxy.http).await.unwrap();
    client
        .write_all(
            b"GET /ws HTTP/1.1\r\nhost: a.test\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
        )
        .await
        .unwrap();
    let mut received = Vec::new();
    within("the 101 and the early bytes", async {
        while !received.ends_with(b"hello from upstream") {
            let mut chunk = [0u8; 1024];
            let n = client.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed early: {}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase().contains("upgrade: echo\r\n"),
        "{text}"
    );
    let heads = upstream.heads();
    assert!(heads[0].contains("upgrade: echo\r\n"), "{}", heads[0]);
}

/// The header lines of a request head, lower-cased and sorted (their order carries no meaning).
fn header_lines(head: &str) -> Vec<String> {
    let mut lines: Vec<String> = head
        .split("\r\n")
        .skip(1)
        .filter(|line| !line.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    lines.sort();
    lines
}

#[tokio::test]
async fn forwarded_headers_reach_the_upstream_once_with_this_hops_values() {
    let upstream = Scripted::start(vec![answer(OK_2), answer(OK_2)]).await;
    let proxy = proxy_to(&upstream).await;
    let port = proxy.http.port();
    let mut client = TcpStream::connect(proxy.http).await.unwrap();
    client
        .write_all(
            b"GET /a?b=1 HTTP/1.1\r\nhost: a.test\r\nx-forwarded-for: 6.6.6.6\r\n\
              x-forwarded-for: 7.7.7.7\r\nx-real-ip: 6.6.6.6\r\nx-forwarded-proto: https\r\n\
              x-forwarded-scheme: https\r\nx-scheme: https\r\nx-forwarded-port: 1\r\n\
              x-forwarded-host: evil.test\r\nx-request-id: abc-123\r\nconnection: keep-alive, x-hop\r\n\
              x-hop: 1\r\nproxy: http://evil.test\r\nx-custom: kept\r\n\r\n\
              GET / HTTP/1.1\r\nhost: a.test\r\n\r\n",
        )
        .await
        .unwrap();
    let mut received = Vec::new();
    within("both responses", async {
        while received.windows(2).filter(|w| w == b"ok").count() < 2 {
            let mut chunk = [0u8; 1024];
            let n = client.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed early: {}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    let heads = upstream.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(
        heads[0].starts_with("GET /a?b=1 HTTP/1.1\r\n"),
        "{}",
        heads[0]
    );
    let mut expected: Vec<String> = [
        "host: a.test",
        "x-custom: kept",
        "x-forwarded-for: 127.0.0.1",
        "x-forwarded-host: a.test",
        &format!("x-forwarded-port: {port}"),
        "x-forwarded-proto: http",
        "x-forwarded-scheme: http",
        "x-real-ip: 127.0.0.1",
        "x-request-id: abc-123",
        "x-scheme: http",
    ]
    .map(String::from)
    .to_vec();
    expected.sort();
    assert_eq!(header_lines(&heads[0]), expected, "{}", heads[0]);

    let lines = header_lines(&heads[1]);
    let id = lines
        .iter()
        .find_map(|line| line.strip_prefix("x-request-id: "))
        .unwrap_or_default();
    assert_eq!(id.len(), 32, "a request id is generated: {lines:?}");
    expected.retain(|line| line != "x-custom: kept" && !line.starts_with("x-request-id"));
    expected.push(format!("x-request-id: {id}"));
    expected.sort();
    assert_eq!(lines, expected, "{}", heads[1]);
}
