//! The HTTP source: endpoints for Ceilometer's HTTP publisher (scs-0412 "HTTP hook").
//!
//! `POST /v1/ceilometer/events` and `POST /v1/ceilometer/samples` take a JSON list (Ceilometer's
//! `batch=true`) or a single object (`batch=false`). Configure Ceilometer with
//! `http://HOST:8788/v1/ceilometer/events?batch=true` in `event_pipeline.yaml` (and `…/samples`
//! in `pipeline.yaml`); with a token, `http://steward:TOKEN@HOST:8788/…`.
//!
//! # Protocol
//!
//! A request is decoded item by item, committed through the writer in one transaction, and only
//! then answered (`ack.rs`): 2xx means durable. Ceilometer drops data on *any* failure — a
//! refused connection, a timeout, a 5xx — so the listener keeps a large backlog, keep-alive and
//! `TCP_NODELAY` (a delayed ACK on a two-write response costs Ceilometer 40 ms per post).
//! Bodies over `max_body_bytes` get 413 before they are read.

mod ack;
pub mod decode;
#[cfg(test)]
mod tests;

use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use futures_lite::StreamExt;

use crate::config::Secret;
use crate::ingest::Writer;
use crate::metrics as m;
use crate::record::Batch;
use crate::record::Decoded;
use crate::time::Instant;

pub use decode::{Expect, PostSummary, decode_body, decode_stream};

/// State shared by the ingest handlers.
#[derive(Debug, Clone)]
pub struct HttpIngest {
    writer: Writer,
    token: Option<Secret>,
    scrubber: std::sync::Arc<crate::scrub::Scrubber>,
    max_body_bytes: usize,
    body_timeout: Duration,
}

impl HttpIngest {
    /// Handlers that commit through `writer`, optionally behind `token`, scrubbing credentials
    /// with `scrubber`.
    pub fn new(writer: Writer, token: Option<Secret>, scrubber: crate::scrub::Scrubber) -> Self {
        Self {
            writer,
            token,
            scrubber: std::sync::Arc::new(scrubber),
            max_body_bytes: 16 * 1024 * 1024,
            body_timeout: Duration::from_secs(60),
        }
    }

    /// Sets the largest accepted body and the time a client has to send it.
    pub fn with_body_limits(mut self, max_body_bytes: usize, body_timeout: Duration) -> Self {
        self.max_body_bytes = max_body_bytes;
        self.body_timeout = body_timeout;
        self
    }

    /// The ingest routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/v1/ceilometer/events", post(events))
            .route("/v1/ceilometer/samples", post(samples))
            .with_state(self)
    }

    /// Reads the body within the size and time limits, or the answer that refuses it.
    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
        let announced = headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if announced.is_some_and(|n| n > self.max_body_bytes as u64) {
            return Err(ack::too_large(self.max_body_bytes));
        }
        let limit = self.max_body_bytes;
        let read = async {
            let mut stream = body.into_data_stream();
            let mut bytes = Vec::with_capacity(announced.map_or(0, |n| n as usize));
            while let Some(frame) = stream.next().await {
                let frame = frame.map_err(|_| ack::unreadable())?;
                if bytes.len() + frame.len() > limit {
                    return Err(ack::too_large(limit));
                }
                bytes.extend_from_slice(&frame);
            }
            Ok(Bytes::from(bytes))
        };
        match tokio::time::timeout(self.body_timeout, read).await {
            Ok(result) => result,
            Err(_) => Err(ack::body_timeout(self.body_timeout)),
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        authorized(headers, self.token.as_ref())
    }

    async fn ingest(&self, headers: HeaderMap, body: Body, expect: Expect) -> Response {
        let received = std::time::Instant::now();
        if !self.authorized(&headers) {
            return ack::unauthorized();
        }
        let body = match self.read_body(&headers, body).await {
            Ok(body) => body,
            Err(refusal) => return refusal,
        };
        let mut chunks = Chunks::decode(body, expect, self.scrubber.clone());
        let mut total = crate::store::CommitOutcome::default();
        let mut accepted = 0;
        let mut reasons = Vec::new();
        let mut failure = None;
        while let Some(chunk) = chunks.next().await {
            metrics::counter!(m::RECEIVED, "source" => "http").increment(chunk.len() as u64);
            let mut batch = Batch::default();
            for d in chunk {
                if let Decoded::Quarantined(q) = &d {
                    reasons.push(q.reason.clone());
                }
                batch.push(d);
            }
            accepted += batch.accepted.len();
            match self.writer.commit(batch).await {
                Ok(outcome) => total.absorb(outcome),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        chunks.finish().await;
        let result = match failure {
            Some(error) => Err(error),
            None => Ok(total),
        };
        let response = ack::respond(result, accepted, reasons);
        metrics::histogram!(m::ACK_LATENCY_SECONDS, "source" => "http")
            .record(received.elapsed().as_secs_f64());
        response
    }
}

/// Bodies up to this size are decoded on the request's own task: a Ceilometer post is usually
/// one event of a few KiB, and a hand-off to a blocking thread would cost more than the
/// decoding (and a thread-local heap per blocking thread).
const INLINE_DECODE_BYTES: usize = 256 * 1024;

/// The decoded chunks of one post, in order.
enum Chunks {
    /// A small body, decoded at once.
    Inline(std::vec::IntoIter<Vec<Decoded>>),
    /// A large body: a blocking thread decodes and hands chunks over a short channel, so only
    /// about one chunk is held while the previous one commits.
    Streamed {
        rx: tokio::sync::mpsc::Receiver<Vec<Decoded>>,
        decoder: tokio::task::JoinHandle<decode::PostSummary>,
    },
}

impl Chunks {
    fn decode(
        body: Bytes,
        expect: Expect,
        scrubber: std::sync::Arc<crate::scrub::Scrubber>,
    ) -> Self {
        let small = body.len() <= INLINE_DECODE_BYTES;
        let decode = move |sink: &mut dyn FnMut(Vec<Decoded>) -> bool| {
            decode::decode_stream(
                &body,
                expect,
                Instant::now(),
                &scrubber,
                decode::CHUNK_ITEMS,
                sink,
            )
        };
        if small {
            let mut all = Vec::new();
            decode(&mut |chunk| {
                all.push(chunk);
                true
            });
            return Self::Inline(all.into_iter());
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Decoded>>(1);
        let decoder = tokio::task::spawn_blocking(move || {
            decode(&mut |chunk| tx.blocking_send(chunk).is_ok())
        });
        Self::Streamed { rx, decoder }
    }

    async fn next(&mut self) -> Option<Vec<Decoded>> {
        match self {
            Self::Inline(chunks) => chunks.next(),
            Self::Streamed { rx, .. } => rx.recv().await,
        }
    }

    /// Stops the decoder (if it still runs) and waits for it.
    async fn finish(self) {
        if let Self::Streamed { rx, decoder } = self {
            drop(rx);
            let _ = decoder.await;
        }
    }
}

async fn events(State(s): State<HttpIngest>, headers: HeaderMap, body: Body) -> Response {
    s.ingest(headers, body, Expect::Events).await
}

async fn samples(State(s): State<HttpIngest>, headers: HeaderMap, body: Body) -> Response {
    s.ingest(headers, body, Expect::Samples).await
}

/// Whether the request carries `token` (Bearer, or Basic with the token as password); always
/// true when no token is configured. Shared by every endpoint behind the token.
pub fn authorized(headers: &HeaderMap, token: Option<&Secret>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if let Some(bearer) = value.strip_prefix("Bearer ") {
        return constant_time_eq(bearer.trim().as_bytes(), token.expose().as_bytes());
    }
    if let Some(basic) = value.strip_prefix("Basic ")
        && let Some(decoded) = base64_decode(basic.trim())
        && let Some(colon) = decoded.iter().position(|&b| b == b':')
    {
        return constant_time_eq(&decoded[colon + 1..], token.expose().as_bytes());
    }
    false
}

/// Compares SHA-256 digests of both sides in constant time: neither the position of the first
/// difference nor the token's length shows in the time taken.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

/// Standard base64 (for HTTP Basic credentials).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}
