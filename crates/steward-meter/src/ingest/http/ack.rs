//! Answers to Ceilometer's HTTP publisher — only here, and only with the commit result in hand.
//!
//! - every item committed (new or duplicate) → `200` with counts;
//! - some items malformed → those are quarantined *in the same transaction* as the good ones,
//!   then `400` with a JSON reason per item (Ceilometer logs it; nothing it sent is lost);
//! - the commit failed → `503`: nothing was stored, the sender may retry.

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
    quarantine_reasons: Vec<String>,
) -> Response {
    match result {
        Err(error) => {
            metrics::counter!(m::HTTP_REQUESTS, "status" => "503").increment(1);
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": format!("not stored, retry later: {error}") })),
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
