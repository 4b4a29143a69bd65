//! Answers to Ceilometer's HTTP publisher — only here, and only with the commit result in hand.
//!
//! - every item committed (new or duplicate) → `200` with counts;
//! - some items malformed → those are quarantined *in the same transaction* as the good ones,
//!   then `400` with a JSON reason per item (Ceilometer logs it; nothing it sent is lost);
//! - some items decoded but the store refused them (a NUL in an id, a value the database
//!   rejects) → quarantined in the same transaction, `400` with the store's reason per item;
//! - the commit failed → `503`: nothing was stored, the sender may retry. The answer says no
//!   more than that: database internals stay in Steward's log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ingest::CommitFailed;
use crate::metrics as m;
use crate::store::CommitOutcome;

/// Builds the answer for a committed (or failed) request.
pub(crate) fn respond(
    result: Result<CommitOutcome, CommitFailed>,
    accepted: usize,
    mut quarantine_reasons: Vec<String>,
) -> Response {
    if let Ok(outcome) = &result {
        quarantine_reasons.extend(outcome.rejected.iter().map(|r| r.reason.clone()));
    }
    let accepted = accepted - result.as_ref().map_or(0, |o| o.rejected.len());
    match result {
        Err(_) => {
            metrics::counter!(m::HTTP_REQUESTS, "status" => "503").increment(1);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "5")],
                Json(json!({ "error": "not stored: the store is unavailable; retry later" })),
            )
                .into_response()
        }
        Ok(outcome) if quarantine_reasons.is_empty() => {
            metrics::counter!(m::HTTP_REQUESTS, "status" => "2xx").increment(1);
            (
                StatusCode::OK,
                Json(json!({
                    "accepted": accepted,
                    "stored": outcome.records,
                    "duplicates": outcome.duplicates,
                })),
            )
                .into_response()
        }
        Ok(outcome) => {
            metrics::counter!(m::HTTP_REQUESTS, "status" => "400").increment(1);
            (
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "error": "malformed input; kept in quarantine",
                    "quarantined": quarantine_reasons,
                    "accepted": accepted,
                    "stored": outcome.records,
                    "duplicates": outcome.duplicates,
                })),
            )
                .into_response()
        }
    }
}

/// `401` for a missing or wrong token.
pub(crate) fn unauthorized() -> Response {
    metrics::counter!(m::HTTP_REQUESTS, "status" => "401").increment(1);
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", "Bearer, Basic realm=\"steward\"")],
        Json(json!({ "error": "missing or wrong token" })),
    )
        .into_response()
}

/// `413` with the limit, before or while the body is read.
pub(crate) fn too_large(limit: usize) -> Response {
    refusal(
        StatusCode::PAYLOAD_TOO_LARGE,
        "413",
        format!("body larger than meter.http.max_body_bytes ({limit} bytes); nothing stored"),
    )
}

/// `408`: the body did not arrive in time; nothing stored.
pub(crate) fn body_timeout(timeout: std::time::Duration) -> Response {
    refusal(
        StatusCode::REQUEST_TIMEOUT,
        "408",
        format!(
            "body not received within {} s; nothing stored",
            timeout.as_secs()
        ),
    )
}

/// `400`: the body could not be read (the client broke the stream off).
pub(crate) fn unreadable() -> Response {
    refusal(
        StatusCode::BAD_REQUEST,
        "400",
        "the body could not be read; nothing stored".to_owned(),
    )
}

/// A refusal before anything was decoded: counted, answered as JSON, and the connection closed
/// so that the rest of an unread body is not read either.
fn refusal(status: StatusCode, label: &'static str, message: String) -> Response {
    metrics::counter!(m::HTTP_REQUESTS, "status" => label).increment(1);
    (
        status,
        [("connection", "close")],
        Json(json!({ "error": message })),
    )
        .into_response()
}
