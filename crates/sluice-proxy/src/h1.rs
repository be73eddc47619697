//! The HTTP/1.1 wire format of the upstream exchange: the request head Sluice writes, the
//! response head it parses (`httparse`), and how the response body is framed and de-chunked.
//!
//! Pure functions over buffers; the I/O around them is in `upstream.rs` and `body.rs`. The rules
//! follow RFC 9112 and hyper's client (which this replaces) wherever the RFC leaves a choice, so
//! the upstreams see the same requests and clients get the same answers.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderName, HeaderValue};
use http::header::{GetAll, TRANSFER_ENCODING};
use http::{Method, StatusCode, Version};
use std::fmt;
use std::io::Write;
use std::mem::MaybeUninit;

/// Header fields accepted in one response head (hyper's default).
pub(crate) const MAX_HEADERS: usize = 100;

/// Longest response head accepted (hyper's default read buffer limit).
pub(crate) const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// Longest chunk-size line, extensions included: a chunk header is a few bytes; more is abuse.
const MAX_CHUNK_LINE: usize = 4096;

/// Most trailer bytes read (and dropped) after the last chunk.
const MAX_TRAILER_BYTES: usize = 64 * 1024;

/// How the request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestFraming {
    /// No body is sent.
    Empty,
    Length(u64),
    Chunked,
}

/// Writes the request head for `method`, `target`, `headers` and then `more_headers` (fields
/// this hop adds, never framing ones) into `out` and says how its body must be framed. `body`
/// is `None` for a request without body, else its exact length when known.
///
/// Like hyper's client: a `Content-Length` the client sent is kept; a body of known length
/// gets one; a body of unknown length is chunked, except on GET, HEAD and CONNECT, which are
/// sent without their (almost always empty) body.
pub(crate) fn encode_request_head<'v>(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    more_headers: impl Iterator<Item = (&'static HeaderName, &'v HeaderValue)>,
    body: Option<Option<u64>>,
    out: &mut Vec<u8>,
) -> RequestFraming {
    let framing = match body {
        None => RequestFraming::Empty,
        Some(exact) => match content_length(headers.get_all(CONTENT_LENGTH)) {
            Ok(Some(length)) => RequestFraming::Length(length),
            _ => match exact {
                Some(length) => RequestFraming::Length(length),
                None if matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) => {
                    RequestFraming::Empty
                }
                None => RequestFraming::Chunked,
            },
        },
    };
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut wrote_length = false;
    for (name, value) in headers {
        // Framing is this hop's business: the headers below say how this body is sent.
        if name == TRANSFER_ENCODING {
            continue;
        }
        if name == CONTENT_LENGTH {
            if framing == RequestFraming::Chunked || wrote_length {
                continue;
            }
            wrote_length = true;
        }
        encode_field(name, value, out);
    }
    for (name, value) in more_headers {
        encode_field(name, value, out);
    }
    match framing {
        RequestFraming::Length(length) if !wrote_length && body.is_some() => {
            let _ = write!(out, "content-length: {length}\r\n");
        }
        RequestFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
    framing
}

fn encode_field(name: &HeaderName, value: &HeaderValue, out: &mut Vec<u8>) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends the line that starts a chunk of `length` bytes.
pub(crate) fn encode_chunk_size(length: usize, out: &mut Vec<u8>) {
    let _ = write!(out, "{length:x}\r\n");
}

/// The last chunk, without trailers.
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How a response body is delimited (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    /// HEAD responses, 204, 304 (and 1xx).
    Empty,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
    /// 101: the connection now speaks another protocol.
    Upgrade,
}

/// A parsed response head.
pub(crate) struct ResponseHead {
    pub(crate) parts: http::response::Parts,
    pub(crate) framing: BodyFraming,
    /// The connection may carry another request once this response is complete.
    pub(crate) keep_alive: bool,
}

impl ResponseHead {
    pub(crate) fn is_informational(&self) -> bool {
        self.parts.status.is_informational() && self.parts.status != StatusCode::SWITCHING_PROTOCOLS
    }
}

/// Why a response head was refused.
#[derive(Debug)]
pub(crate) enum HeadError {
    Syntax(httparse::Error),
    /// A header line continued on the next line (obs-fold), which RFC 9112 lets a client reject.
    Folded,
    TooManyHeaders,
    TooLarge,
    ContentLength,
    TransferEncodingInHttp10,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Syntax(e) => write!(f, "{e}"),
            HeadError::Folded => f.write_str(
                "a header value is folded onto a continuation line (obs-fold, RFC 9112 section 5.2); \
                 the upstream must send each header on one line",
            ),
            HeadError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} header fields"),
            HeadError::TooLarge => write!(f, "larger than {MAX_HEAD_BYTES} bytes"),
            HeadError::ContentLength => f.write_str("invalid or conflicting Content-Length"),
            HeadError::TransferEncodingInHttp10 => {
                f.write_str("Transfer-Encoding in an HTTP/1.0 response")
            }
        }
    }
}

/// Parses the response head at the start of `buf`, answering a request with `method`. On
/// success the head's bytes are taken out of `buf` (header values share them, no copy); what
/// follows stays in `buf`. `Ok(None)`: the head is not complete yet.
pub(crate) fn parse_response_head(
    buf: &mut BytesMut,
    method: &Method,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buf,
        &mut headers,
    );
    let head_len = match parsed {
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD_BYTES => len,
        Ok(httparse::Status::Complete(_)) => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(httparse::Error::HeaderName) if is_folded(buf) => return Err(HeadError::Folded),
        Err(e) => return Err(HeadError::Syntax(e)),
    };
    let version = match response.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(HeadError::Syntax(httparse::Error::Status))?;
    let reason = response
        .reason
        .filter(|reason| !reason.is_empty() && status.canonical_reason() != Some(*reason))
        .and_then(|reason| hyper::ext::ReasonPhrase::try_from(reason.as_bytes()).ok());
    // Offsets into the head, so the values can share its bytes once it is taken out of `buf`.
    let start = buf.as_ptr() as usize;
    let mut fields = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
    let count = response.headers.len();
    for (field, header) in fields.iter_mut().zip(response.headers.iter()) {
        let name = header.name.as_ptr() as usize - start;
        let value = header.value.as_ptr() as usize - start;
        // The head is at most MAX_HEAD_BYTES long, so every offset fits.
        *field = (
            name as u32,
            (name + header.name.len()) as u32,
            value as u32,
            (value + header.value.len()) as u32,
        );
    }
    let head = buf.split_to(head_len).freeze();

    let mut map = HeaderMap::with_capacity(count);
    let mut keep_alive = version == Version::HTTP_11;
    let mut said_close = false;
    let mut framing_fields = FramingFields::default();
    for &(name_start, name_end, value_start, value_end) in &fields[..count] {
        let name = HeaderName::from_bytes(&head[name_start as usize..name_end as usize])
            .map_err(|_| HeadError::Syntax(httparse::Error::HeaderName))?;
        let value =
            HeaderValue::from_maybe_shared(head.slice(value_start as usize..value_end as usize))
                .map_err(|_| HeadError::Syntax(httparse::Error::HeaderValue))?;
        // Noted on the way: looking them up in the map afterwards hashes each name again.
        if name == CONNECTION {
            if said_close || has_token(&value, b"close") {
                said_close = true;
                keep_alive = false;
            } else if version == Version::HTTP_10 && has_token(&value, b"keep-alive") {
                keep_alive = true;
            }
        } else if name == CONTENT_LENGTH {
            framing_fields.length_valid &=
                add_content_length(&mut framing_fields.length, &value).is_ok();
        } else if name == TRANSFER_ENCODING {
            framing_fields.chunked = Some(ends_with_chunked(&value));
        }
        map.append(name, value);
    }
    let framing = body_framing(status, version, method, &framing_fields)?;
    if framing == BodyFraming::Close || framing == BodyFraming::Upgrade {
        keep_alive = false;
    }
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    parts.version = version;
    parts.headers = map;
    if let Some(reason) = reason {
        parts.extensions.insert(reason);
    }
    Ok(Some(ResponseHead {
        parts,
        framing,
        keep_alive,
    }))
}

/// A line of the head that starts with a space or tab continues the previous one.
fn is_folded(buf: &[u8]) -> bool {
    let head = match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => &buf[..end],
        None => buf,
    };
    head.windows(2)
        .any(|w| w[0] == b'\n' && (w[1] == b' ' || w[1] == b'\t'))
}

/// What the framing rules read from the header fields.
struct FramingFields {
    /// Whether the last Transfer-Encoding field ends with `chunked`; `None` without one.
    chunked: Option<bool>,
    length: Option<u64>,
    length_valid: bool,
}

impl Default for FramingFields {
    fn default() -> Self {
        FramingFields {
            chunked: None,
            length: None,
            length_valid: true,
        }
    }
}

fn body_framing(
    status: StatusCode,
    version: Version,
    method: &Method,
    fields: &FramingFields,
) -> Result<BodyFraming, HeadError> {
    match status.as_u16() {
        101 => return Ok(BodyFraming::Upgrade),
        100..=199 | 204 | 304 => return Ok(BodyFraming::Empty),
        _ => {}
    }
    if method == Method::HEAD {
        return Ok(BodyFraming::Empty);
    }
    match fields.chunked {
        Some(_) if version == Version::HTTP_10 => Err(HeadError::TransferEncodingInHttp10),
        Some(true) => Ok(BodyFraming::Chunked),
        // Chunked only when it is the last coding; anything else runs until the close.
        Some(false) => Ok(BodyFraming::Close),
        None if !fields.length_valid => Err(HeadError::ContentLength),
        None => Ok(fields
            .length
            .map_or(BodyFraming::Close, BodyFraming::Length)),
    }
}

fn ends_with_chunked(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// The Content-Length, when every value (comma-separated lists included) says the same number.
fn content_length(values: GetAll<'_, HeaderValue>) -> Result<Option<u64>, ()> {
    let mut length = None;
    for value in values {
        add_content_length(&mut length, value)?;
    }
    Ok(length)
}

/// Adds one Content-Length field to what earlier ones said; every number must be the same.
fn add_content_length(length: &mut Option<u64>, value: &HeaderValue) -> Result<(), ()> {
    for part in value.as_bytes().split(|&b| b == b',') {
        let part = part.trim_ascii();
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return Err(());
        }
        let n = part.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
        match *length {
            Some(seen) if seen != n => return Err(()),
            _ => *length = Some(n),
        }
    }
    Ok(())
}

fn has_token(value: &HeaderValue, token: &[u8]) -> bool {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Why a response body could not be read to its end.
#[derive(Debug)]
pub(crate) enum BodyError {
    ChunkSize,
    ChunkEnd,
    LongChunkLine,
    LongTrailers,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyError::ChunkSize => "invalid chunk size line in the upstream's chunked body",
            BodyError::ChunkEnd => "a chunk of the upstream's chunked body does not end with CRLF",
            BodyError::LongChunkLine => {
                "a chunk size line of the upstream's chunked body is too long"
            }
            BodyError::LongTrailers => "the upstream's trailer section is too large",
        })
    }
}

impl std::error::Error for BodyError {}

/// What de-chunking found in the buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Data(Bytes),
    /// The buffer holds no complete step; read more.
    NeedMore,
    /// The last chunk and its trailer section were consumed.
    End,
}

/// De-chunks a chunked body. Chunk extensions are ignored, as RFC 9112 allows; so are trailers
/// (the client side may not accept them, and none of the annotations relies on them).
#[derive(Debug, Default)]
pub(crate) struct ChunkedDecoder {
    state: ChunkState,
    trailer_bytes: usize,
}

#[derive(Debug, Default, Clone, Copy)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl ChunkedDecoder {
    pub(crate) fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
                        return if buf.len() > MAX_CHUNK_LINE {
                            Err(BodyError::LongChunkLine)
                        } else {
                            Ok(Decoded::NeedMore)
                        };
                    };
                    if newline > MAX_CHUNK_LINE {
                        return Err(BodyError::LongChunkLine);
                    }
                    let size = chunk_size(&buf[..newline])?;
                    buf.advance(newline + 1);
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(take).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(BodyError::ChunkEnd);
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
                        return if self.trailer_bytes + buf.len() > MAX_TRAILER_BYTES {
                            Err(BodyError::LongTrailers)
                        } else {
                            Ok(Decoded::NeedMore)
                        };
                    };
                    let empty = newline == 1 && buf[0] == b'\r';
                    self.trailer_bytes += newline + 1;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(BodyError::LongTrailers);
                    }
                    buf.advance(newline + 1);
                    if empty {
                        self.state = ChunkState::Done;
                    }
                }
                ChunkState::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// `1*HEXDIG [ BWS ";" extensions ] CR` (the LF is already cut off).
fn chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let line = line.strip_suffix(b"\r").ok_or(BodyError::ChunkSize)?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(BodyError::ChunkSize);
    }
    let rest = line[digits..].trim_ascii_start();
    if !(rest.is_empty() || rest[0] == b';') || rest.contains(&b'\r') {
        return Err(BodyError::ChunkSize);
    }
    Ok(line[..digits].iter().fold(0u64, |n, &d| {
        let digit = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d - b'A' + 10,
        };
        (n << 4) | u64::from(digit)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str, method: &Method) -> Result<Option<ResponseHead>, HeadError> {
        parse_response_head(&mut BytesMut::from(text), method)
    }

    fn framing(text: &str) -> BodyFraming {
        head(text, &Method::GET).unwrap().unwrap().framing
    }

    #[test]
    fn request_head_frames_the_body_like_hyper() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("a.test"));
        let mut out = Vec::new();
        let framing = encode_request_head(
            &Method::GET,
            "/x?y",
            &headers,
            std::iter::empty(),
            None,
            &mut out,
        );
        assert_eq!(framing, RequestFraming::Empty);
        assert_eq!(out, b"GET /x?y HTTP/1.1\r\nhost: a.test\r\n\r\n");

        out.clear();
        let framing = encode_request_head(
            &Method::POST,
            "/",
            &headers,
            std::iter::empty(),
            Some(None),
            &mut out,
        );
        assert_eq!(framing, RequestFraming::Chunked);
        assert_eq!(
            out,
            b"POST / HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\n\r\n"
        );

        out.clear();
        let framing = encode_request_head(
            &Method::PUT,
            "/",
            &headers,
            std::iter::empty(),
            Some(Some(5)),
            &mut out,
        );
        assert_eq!(framing, RequestFraming::Length(5));
        assert!(out.ends_with(b"content-length: 5\r\n\r\n"));

        headers.insert("content-length", HeaderValue::from_static("7"));
        out.clear();
        let framing = encode_request_head(
            &Method::PUT,
            "/",
            &headers,
            std::iter::empty(),
            Some(None),
            &mut out,
        );
        assert_eq!(framing, RequestFraming::Length(7));
        assert_eq!(
            out,
            b"PUT / HTTP/1.1\r\nhost: a.test\r\ncontent-length: 7\r\n\r\n"
        );

        headers.remove("content-length");
        out.clear();
        let framing = encode_request_head(
            &Method::GET,
            "/",
            &headers,
            std::iter::empty(),
            Some(None),
            &mut out,
        );
        assert_eq!(
            framing,
            RequestFraming::Empty,
            "GET with unknown body: none sent"
        );
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            BodyFraming::Length(5)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\ncontent-length: 5\r\n\r\n"),
            BodyFraming::Length(5)
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 5\r\n\r\n"
            ),
            BodyFraming::Chunked
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"),
            BodyFraming::Close
        );
        assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n"), BodyFraming::Close);
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
            BodyFraming::Empty
        );
        assert_eq!(
            framing("HTTP/1.1 304 Not Modified\r\n\r\n"),
            BodyFraming::Empty
        );
        assert_eq!(
            framing("HTTP/1.1 101 Switching Protocols\r\n\r\n"),
            BodyFraming::Upgrade
        );
        let for_head = head(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n",
            &Method::HEAD,
        )
        .unwrap()
        .unwrap();
        assert_eq!(for_head.framing, BodyFraming::Empty);
        assert!(for_head.keep_alive);
        assert!(matches!(
            head(
                "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
                &Method::GET
            ),
            Err(HeadError::ContentLength)
        ));
        assert!(matches!(
            head(
                "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
                &Method::GET
            ),
            Err(HeadError::ContentLength)
        ));
        assert!(matches!(
            head(
                "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                &Method::GET
            ),
            Err(HeadError::TransferEncodingInHttp10)
        ));
    }

    #[test]
    fn keep_alive_needs_http_1_1_or_an_explicit_keep_alive() {
        let keep = |text: &str| head(text, &Method::GET).unwrap().unwrap().keep_alive;
        assert!(keep("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(!keep(
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!keep(
            "HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!keep("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(keep(
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(!keep("HTTP/1.1 200 OK\r\n\r\n"), "close-delimited");
    }

    #[test]
    fn head_is_taken_out_of_the_buffer_and_values_share_it() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 404 Nope\r\nX-A: 1\r\nx-a: two\r\ncontent-length: 3\r\n\r\nabc",
        );
        let head = parse_response_head(&mut buf, &Method::GET)
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..], b"abc");
        assert_eq!(head.parts.status, StatusCode::NOT_FOUND);
        let values: Vec<_> = head.parts.headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "two"]);
        let reason = head
            .parts
            .extensions
            .get::<hyper::ext::ReasonPhrase>()
            .unwrap();
        assert_eq!(reason.as_bytes(), b"Nope");
    }

    #[test]
    fn partial_folded_invalid_and_oversized_heads() {
        assert!(
            head("HTTP/1.1 200 OK\r\ncontent-le", &Method::GET)
                .unwrap()
                .is_none()
        );
        assert!(matches!(
            head(
                "HTTP/1.1 200 OK\r\nx-a: 1\r\n  continued\r\n\r\n",
                &Method::GET
            ),
            Err(HeadError::Folded)
        ));
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\nx-a: bad\x01byte\r\n\r\n", &Method::GET),
            Err(HeadError::Syntax(httparse::Error::HeaderValue))
        ));
        assert!(matches!(
            head("HTTP/1.1 2000 OK\r\n\r\n", &Method::GET),
            Err(HeadError::Syntax(_))
        ));
        let many = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "x: 1\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(
            head(&many, &Method::GET),
            Err(HeadError::TooManyHeaders)
        ));
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
        assert!(matches!(
            head(&huge, &Method::GET),
            Err(HeadError::TooLarge)
        ));
        // Complete, but past the limit: one read may bring the whole head at once.
        let complete = format!("{huge}\r\n\r\n");
        assert!(matches!(
            head(&complete, &Method::GET),
            Err(HeadError::TooLarge)
        ));
    }

    fn dechunk(pieces: &[&[u8]]) -> Result<(Vec<u8>, bool), BodyError> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf)? {
                    Decoded::Data(data) => body.extend_from_slice(&data),
                    Decoded::NeedMore => break,
                    Decoded::End => return Ok((body, buf.is_empty())),
                }
            }
        }
        Ok((body, false))
    }

    #[test]
    fn chunked_bodies_with_extensions_and_trailers_split_anywhere() {
        let wire: &[u8] =
            b"5;name=value\r\nhello\r\n1A \r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-checksum: 1\r\n\r\n";
        assert_eq!(
            dechunk(&[wire]).unwrap(),
            (b"helloabcdefghijklmnopqrstuvwxyz".to_vec(), true)
        );
        let bytes: Vec<&[u8]> = wire.chunks(1).collect();
        assert_eq!(
            dechunk(&bytes).unwrap(),
            (b"helloabcdefghijklmnopqrstuvwxyz".to_vec(), true)
        );
        assert!(matches!(
            dechunk(&[b"5\r\nhelloXX"]),
            Err(BodyError::ChunkEnd)
        ));
        assert!(matches!(dechunk(&[b"g\r\n"]), Err(BodyError::ChunkSize)));
        assert!(matches!(dechunk(&[b"5\n"]), Err(BodyError::ChunkSize)));
        assert!(matches!(
            dechunk(&[b"11112222333344445\r\n"]),
            Err(BodyError::ChunkSize)
        ));
        assert!(matches!(
            dechunk(&[&[b'1'; MAX_CHUNK_LINE + 2]]),
            Err(BodyError::LongChunkLine)
        ));
    }
}
