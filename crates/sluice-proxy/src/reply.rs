//! Responses written by Sluice itself: a status and one line saying why.

use crate::body::ResponseBody;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, LOCATION, SERVER};
use http::{Response, StatusCode};

pub(crate) const SERVER_NAME: HeaderValue = HeaderValue::from_static("sluice");

/// `"<code> <reason>: <detail>\n"` as text/plain.
pub(crate) fn text(status: StatusCode, detail: std::fmt::Arguments<'_>) -> Response<ResponseBody> {
    let body = format!(
        "{} {}: {detail}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    let len = body.len();
    let mut response = Response::new(ResponseBody::Local(Some(Bytes::from(body))));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(SERVER, SERVER_NAME);
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    response
}

pub(crate) fn redirect(status: StatusCode, location: &str) -> Response<ResponseBody> {
    let mut response = text(status, format_args!("{location}"));
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}
