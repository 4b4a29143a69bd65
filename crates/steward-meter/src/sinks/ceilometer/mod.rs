//! Ceilometer-format forwarding: every stored event, POSTed to a consumer that expects what
//! Ceilometer's HTTP publisher sends (the SCS-0412 "HTTP hook" format), without its losses.
//!
//! Not a document sink: it streams. A durable cursor per sink (`forward_cursors`) marks the
//! last event the consumer confirmed; each pass reads the events after it in the store's
//! order, converts them ([`event::ceilometer_event`]), POSTs them (an array of up to
//! `batch_max_events`, or one object per POST with `batch: false`) and moves the cursor only
//! after a 2xx.
//!
//! Invariants:
//! - **At least once.** The cursor moves after the consumer's 2xx, never before: a crash, a
//!   timeout or an error answer sends the same events again (consumers de-duplicate on
//!   `message_id`, as with Ceilometer).
//! - **In order.** Events go out in the store's order (on PostgreSQL, the order in which their
//!   transactions became visible; see migration 0008), one request at a time; nothing after a
//!   failed request is sent before it succeeds, so events of one resource arrive in the order
//!   Steward stored them.
//! - **Nothing skipped.** Every answer but a 2xx is retried with backoff — a consumer that
//!   refuses an event (4xx) holds the stream until it is fixed, and says so in the logs,
//!   `status` and `steward_forward_errors_total` — rather than losing the event.

pub mod event;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{ForwardPosition, Store, StoreError, StoredEvent, redact_url};
use crate::time::Instant;

/// How often an idle forwarder looks for new events.
const POLL: Duration = Duration::from_secs(2);
/// The longest wait between retries of a failing request.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why a pass stopped short.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The store could not be read or the cursor not written.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The consumer did not take a request; the events after the cursor are sent again.
    #[error("{0}")]
    Consumer(String),
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Events the consumer confirmed.
    pub events: u64,
    /// Requests made (confirmed ones).
    pub requests: u64,
    /// Stored events that could not be converted (sent as nothing; counted and logged).
    pub unconvertible: u64,
    /// The cursor after the pass.
    pub position: ForwardPosition,
}

/// Forwards stored events to one URL.
pub struct CeilometerForwarder {
    name: String,
    url: reqwest::Url,
    shown: String,
    batch: bool,
    batch_max_events: u32,
    raw: bool,
    timeout: Duration,
    client: reqwest::Client,
}

impl std::fmt::Debug for CeilometerForwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CeilometerForwarder")
            .field("name", &self.name)
            .field("url", &self.shown)
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// Settings of one forwarder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwarderSettings {
    /// POST a JSON array per request (Ceilometer's `batch=true`), else one object per request.
    pub batch: bool,
    /// The most events in one array.
    pub batch_max_events: u32,
    /// Include the notification as `raw` (Ceilometer's `[event] store_raw`).
    pub raw: bool,
    /// How long one POST may take.
    pub timeout: Duration,
}

impl CeilometerForwarder {
    /// A forwarder called `name` POSTing to `url`; credentials in the URL become HTTP Basic
    /// authentication, as with Ceilometer's publisher.
    pub fn new(name: &str, url: &str, settings: &ForwarderSettings) -> Result<Self, String> {
        let parsed = super::http::parse_url(url).map_err(|e| format!("url: {e}"))?;
        let client = super::http::client(settings.timeout)?;
        Ok(Self {
            name: name.to_owned(),
            shown: redact_url(url),
            url: parsed,
            batch: settings.batch,
            batch_max_events: settings.batch_max_events.max(1),
            raw: settings.raw,
            timeout: settings.timeout,
            client,
        })
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the cursor of this forwarder is.
    pub async fn position(&self, store: &dyn Store) -> Result<ForwardPosition, StoreError> {
        Ok(store
            .forward_cursors()
            .await?
            .into_iter()
            .find(|c| c.sink == self.name)
            .map(|c| c.position)
            .unwrap_or_default())
    }

    /// Sends the events after the cursor, up to `max_requests` requests; returns what was
    /// confirmed, or why it stopped (what was confirmed before stays confirmed).
    pub async fn forward_once(
        &self,
        store: &dyn Store,
        max_requests: u32,
    ) -> Result<Pass, (Pass, ForwardError)> {
        let mut pass = Pass::default();
        pass.position = self.position(store).await.map_err(|e| (pass, e.into()))?;
        for _ in 0..max_requests {
            let limit = if self.batch { self.batch_max_events } else { 1 };
            let events = store
                .events_after(pass.position, limit)
                .await
                .map_err(|e| (pass, e.into()))?;
            let Some(last) = events.last().map(|e| e.position) else {
                break;
            };
            let (body, converted, unconvertible) = self.body(&events);
            if converted > 0 {
                self.post(body).await.map_err(|e| (pass, e))?;
                pass.requests += 1;
            }
            store
                .advance_forward_cursor(&self.name, last, converted, Instant::now())
                .await
                .map_err(|e| (pass, e.into()))?;
            pass.events += converted;
            pass.unconvertible += unconvertible;
            pass.position = last;
            metrics::counter!(crate::metrics::FORWARDED, "sink" => self.name.clone())
                .increment(converted);
        }
        Ok(pass)
    }

    /// The request body for `events`: (bytes, events in it, events that could not be
    /// converted — logged; they were valid when stored, so this means a damaged store).
    fn body(&self, events: &[StoredEvent]) -> (Vec<u8>, u64, u64) {
        let mut items = Vec::with_capacity(events.len());
        let mut unconvertible = 0;
        for stored in events {
            match event::ceilometer_event(stored, self.raw) {
                Ok(item) => items.push(item),
                Err(error) => {
                    unconvertible += 1;
                    tracing::error!(sink = %self.name, record = stored.position.record_id,
                        %error, "stored event cannot be converted; not forwarded");
                }
            }
        }
        let converted = items.len() as u64;
        let body = if self.batch {
            serde_json::to_vec(&items)
        } else {
            serde_json::to_vec(items.first().unwrap_or(&serde_json::Value::Null))
        };
        (body.unwrap_or_default(), converted, unconvertible)
    }

    async fn post(&self, body: Vec<u8>) -> Result<(), ForwardError> {
        let sent = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = sent.map_err(|e| {
            ForwardError::Consumer(super::http::failed(
                &format!("POST {}", self.shown),
                self.timeout,
                e,
            ))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let quoted = super::http::quote(response).await;
        let hint = if status.is_client_error() && !matches!(status.as_u16(), 408 | 429) {
            "; the stream waits until the consumer takes it"
        } else {
            ""
        };
        Err(ForwardError::Consumer(format!(
            "POST {} answered {status}{quoted}{hint}",
            self.shown
        )))
    }
}

/// Runs `forwarder` until `shutdown`: passes while there are events, a poll every 2 s when
/// idle, backoff from 1 s to a minute while the consumer fails without taking anything.
pub async fn run_periodically(
    store: Arc<dyn Store>,
    forwarder: CeilometerForwarder,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        if *shutdown.borrow() {
            return;
        }
        // A pass stopped by shutdown mid-request leaves the cursor where it was: its events
        // are sent again by the next start.
        let pass = tokio::select! {
            pass = forwarder.forward_once(store.as_ref(), 50) => pass,
            _ = shutdown.changed() => return,
        };
        // Where the cursor stands after the pass, when the pass could read it.
        let (wait, position) = match pass {
            Ok(pass) => {
                backoff = Duration::from_secs(1);
                let wait = if pass.requests == 50 {
                    Duration::ZERO
                } else {
                    POLL
                };
                (wait, Some(pass.position))
            }
            Err((partial, error)) => {
                metrics::counter!(crate::metrics::FORWARD_ERRORS, "sink" => forwarder.name.clone())
                    .increment(1);
                // The backoff grows with failures in a row, not with a consumer that takes
                // most requests and refuses some.
                if partial.requests > 0 {
                    backoff = Duration::from_secs(1);
                }
                tracing::warn!(sink = %forwarder.name, %error,
                    "forwarding events failed; retrying in {}s", backoff.as_secs());
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                let read = matches!(error, ForwardError::Consumer(_));
                (wait, read.then_some(partial.position))
            }
        };
        if let Some(position) = position
            && let Ok(behind) = store.events_behind(position).await
        {
            metrics::gauge!(crate::metrics::FORWARD_LAG, "sink" => forwarder.name.clone())
                .set(behind as f64);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}
