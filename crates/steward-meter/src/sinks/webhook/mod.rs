//! The webhook sink: every document POSTed as JSON to one URL, signed the Standard Webhooks way.
//!
//! The request: `POST <url>` with `Content-Type: application/json` and the body
//! `{"type": "steward.report.closed" | "steward.report.corrected", "timestamp": <the document's
//! as_of>, "data": <the document, schema v1>}`, plus
//! - `webhook-id` and `Idempotency-Key`: the message id, `msg_` and 32 hex digits of a hash of
//!   (kind, period, project, document digest): **the same on every retry** of a document, so a
//!   receiver that keeps the ids it has seen recognises a replay;
//! - `webhook-timestamp`: Unix seconds of this attempt;
//! - `webhook-signature`: `v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`, the key
//!   being the base64-decoded secret without its `whsec_` prefix.
//!
//! `docs/sinks.md` has the receiver's verification recipe (shell and Python); a test runs both
//! against this sink's requests.
//!
//! Outcomes: a 2xx confirms the row; 408, 429, 5xx, a refused connection and a timeout are
//! retried with backoff; any other answer (other 4xx, a redirect: POSTs are not redirected) is
//! permanent. The body is the same bytes on every attempt; only the timestamp and signature
//! change.

#[cfg(test)]
mod tests;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::{AttemptError, Document, Sink, SinkFuture};
use crate::store::redact_url;

/// POSTs documents to one URL.
pub struct WebhookSink {
    name: String,
    url: reqwest::Url,
    /// The URL as messages show it (credentials redacted).
    shown: String,
    key: Vec<u8>,
    timeout: Duration,
    client: reqwest::Client,
}

impl std::fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSink")
            .field("name", &self.name)
            .field("url", &self.shown)
            .field("key", &"***")
            .finish_non_exhaustive()
    }
}

pub use super::http::parse_url;

/// The HMAC key of a Standard Webhooks secret: base64, optionally after `whsec_`.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = BASE64.decode(encoded.trim_end()).map_err(|e| {
        format!(
            "is not base64 (optionally after \"whsec_\"): {e}; make one with \
             `echo whsec_$(openssl rand -base64 32)`"
        )
    })?;
    if key.len() < 16 {
        return Err(format!(
            "decodes to {} bytes; use at least 16 (24 to 64 are usual)",
            key.len()
        ));
    }
    Ok(key)
}

/// The `webhook-signature` value for message `id` sent at `timestamp` with `body`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The message id of `document`: the same for every attempt, different for every document and
/// project.
pub fn message_id(document: &Document) -> String {
    let (kind, period, project, digest) = match document {
        Document::Report(report) => (
            "report",
            (report.period.start, report.period.end),
            report.project.as_deref(),
            report.content_digest.as_str(),
        ),
        Document::Correction {
            correction,
            project_id,
        } => (
            "correction",
            (correction.period.start, correction.period.end),
            project_id.as_deref(),
            correction.content_digest.as_str(),
        ),
    };
    let hash = Sha256::digest(
        format!(
            "{kind}\n{}\n{}\n{}\n{digest}",
            period.0.micros(),
            period.1.micros(),
            project.unwrap_or("")
        )
        .as_bytes(),
    );
    let hex: String = hash.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// The body of `document`'s request (the same bytes on every attempt).
pub fn body(document: &Document) -> Vec<u8> {
    let envelope = match document {
        Document::Report(report) => serde_json::json!({
            "type": "steward.report.closed",
            "timestamp": report.as_of,
            "data": report.value(),
        }),
        Document::Correction { correction, .. } => serde_json::json!({
            "type": "steward.report.corrected",
            "timestamp": correction.as_of,
            "data": correction,
        }),
    };
    serde_json::to_vec(&envelope).unwrap_or_default()
}

impl WebhookSink {
    /// A sink called `name` POSTing to `url`, signing with `secret` (see [`signing_key`]).
    pub fn new(name: &str, url: &str, secret: &str, timeout: Duration) -> Result<Self, String> {
        let parsed = parse_url(url).map_err(|e| format!("url: {e}"))?;
        let key = signing_key(secret).map_err(|e| format!("secret {e}"))?;
        let client = super::http::client(timeout)?;
        Ok(Self {
            name: name.to_owned(),
            shown: redact_url(url),
            url: parsed,
            key,
            timeout,
            client,
        })
    }

    /// Sends `document` once with its signature for `timestamp`.
    async fn post(&self, document: &Document, timestamp: i64) -> Result<String, AttemptError> {
        let id = message_id(document);
        let body = body(document);
        let signed = signature(&self.key, &id, timestamp, &body);
        let sent = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signed)
            .header("Idempotency-Key", &id)
            .body(body)
            .send()
            .await;
        let response = sent.map_err(|e| {
            AttemptError::Transient(super::http::failed(
                &format!("POST {}", self.shown),
                self.timeout,
                e,
            ))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(id);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(redact_url);
        let quoted = super::http::quote(response).await;
        let said = format!("POST {} answered {status}{quoted}", self.shown);
        Err(match status.as_u16() {
            408 | 429 | 500..=599 => AttemptError::Transient(said),
            300..=399 => AttemptError::Permanent(format!(
                "{said}: a redirect{}; POSTs are not redirected, set the url to the final address",
                location.map(|l| format!(" to {l}")).unwrap_or_default()
            )),
            _ => AttemptError::Permanent(said),
        })
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(
        &'a self,
        document: &'a Document,
    ) -> SinkFuture<'a, Result<String, AttemptError>> {
        Box::pin(async move { self.post(document, chrono::Utc::now().timestamp()).await })
    }

    fn preview<'a>(&'a self, document: &'a Document) -> SinkFuture<'a, Option<String>> {
        Box::pin(async move {
            Some(format!(
                "POST {} as {} ({} bytes)",
                self.shown,
                message_id(document),
                body(document).len()
            ))
        })
    }
}
