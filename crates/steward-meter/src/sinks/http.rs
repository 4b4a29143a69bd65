//! What the HTTP sinks (webhook, Ceilometer forwarding, Odoo) share: one way to build the
//! client (no redirects followed: a POST must not turn into a GET elsewhere; timeouts on
//! everything) and one way to say why a request failed, without credentials.

use std::time::Duration;

use crate::store::redact_url;

/// `url` as an `http`/`https` URL, or why not (credentials redacted in the message).
pub fn parse_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("{:?} is not a URL: {e}", redact_url(url)))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "{:?} must start with http:// or https://",
            redact_url(url)
        ));
    }
    Ok(parsed)
}

/// A client that follows no redirect, gives up after `timeout` (connecting after at most
/// 10 s) and says it is Steward.
pub(crate) fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("steward/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))
}

/// Why `what` (`POST https://…`, credentials redacted) got no answer.
pub(crate) fn failed(what: &str, timeout: Duration, error: reqwest::Error) -> String {
    if error.is_timeout() {
        format!("{what}: no answer within {}s", timeout.as_secs())
    } else {
        // reqwest's own message alone says only "error sending request", with the URL
        // unredacted: the URL is left out, the causes added.
        format!("{what}: {}", cause_chain(&error.without_url()))
    }
}

/// An error with its causes, `a: b: c`.
pub(crate) fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The most bytes of an error answer quoted.
const QUOTED_BYTES: usize = 300;

/// The start of an error answer's body, on one line, as `: <text>` (empty when none).
pub(crate) async fn quote(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < QUOTED_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(QUOTED_BYTES);
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}
