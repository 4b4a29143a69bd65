//! Why a connection to RabbitMQ failed, in the operator's terms.
//!
//! lapin reports a refused login, a missing vhost, a TLS mismatch and a dead broker as
//! different error kinds; "cannot reach rabbitmq" for all of them sends an operator to the
//! network when the password is wrong. Each failure gets a kind (a stable metric label) and a
//! sentence that says what to check. Steward keeps retrying every kind (a password can be
//! fixed, a vhost created), with the backoff.

use std::io;

use lapin::ErrorKind;
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};

/// The kinds of connection failure, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Nothing answers: refused, no route, name not resolved, timed out, reset.
    Unreachable,
    /// The broker refused the user name or password.
    AuthenticationRefused,
    /// The vhost in the URL does not exist.
    VhostMissing,
    /// The user may not use the vhost.
    VhostAccessRefused,
    /// The TLS handshake failed (certificate, or TLS against a plain port and back).
    Tls,
    /// The broker refused something else (a queue argument, a permission on an object).
    Refused,
    /// Anything else.
    Other,
}

impl FailureKind {
    /// Every kind.
    pub const ALL: [FailureKind; 7] = [
        Self::Unreachable,
        Self::AuthenticationRefused,
        Self::VhostMissing,
        Self::VhostAccessRefused,
        Self::Tls,
        Self::Refused,
        Self::Other,
    ];

    /// The label of `steward_amqp_connect_failures_total{reason=…}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::AuthenticationRefused => "authentication_refused",
            Self::VhostMissing => "vhost_missing",
            Self::VhostAccessRefused => "vhost_access_refused",
            Self::Tls => "tls",
            Self::Refused => "refused",
            Self::Other => "other",
        }
    }

    /// What to check, in one sentence.
    fn advice(self) -> &'static str {
        match self {
            Self::Unreachable => "check meter.amqp.url's host and port and that RabbitMQ runs",
            Self::AuthenticationRefused => "check the user and password in meter.amqp.url",
            Self::VhostMissing => {
                "create the vhost (rabbitmqctl add_vhost) or fix the vhost in meter.amqp.url"
            }
            Self::VhostAccessRefused => {
                "grant the user permissions on the vhost (rabbitmqctl set_permissions)"
            }
            Self::Tls => {
                "check amqps:// against the broker's TLS port, its certificate and the trust store"
            }
            Self::Refused => "see the broker's reason",
            Self::Other => "see the error",
        }
    }
}

/// A classified failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFailure {
    /// Its kind.
    pub kind: FailureKind,
    /// `authentication refused: … (check …)`, without credentials.
    pub message: String,
}

impl std::fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Classifies a failure to connect to (or set up on) the broker at a URL of scheme `tls`.
pub fn classify(error: &lapin::Error, tls: bool) -> ConnectFailure {
    let (kind, detail) = match error.kind() {
        ErrorKind::ProtocolError(amqp) => {
            let text = amqp.get_message().as_str().to_owned();
            let kind = match amqp.kind() {
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
                    if text.contains("Login was refused") =>
                {
                    FailureKind::AuthenticationRefused
                }
                AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
                    if text.contains("vhost") && text.contains("not found") =>
                {
                    FailureKind::VhostMissing
                }
                AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED)
                    if text.contains("access to vhost") =>
                {
                    FailureKind::VhostAccessRefused
                }
                _ => FailureKind::Refused,
            };
            (kind, text)
        }
        ErrorKind::IOError(io_error) => (io_kind(io_error, tls), io_error.to_string()),
        ErrorKind::ParsingError(_) if !tls => (
            FailureKind::Other,
            format!("{error} (is this port speaking TLS? then use amqps://)"),
        ),
        ErrorKind::MissingHeartbeatError => (FailureKind::Unreachable, error.to_string()),
        _ => (FailureKind::Other, error.to_string()),
    };
    ConnectFailure {
        kind,
        message: format!("{}: {detail} ({})", label(kind), kind.advice()),
    }
}

/// A connection attempt that did not finish in time.
pub fn timed_out(after: std::time::Duration) -> ConnectFailure {
    ConnectFailure {
        kind: FailureKind::Unreachable,
        message: format!(
            "{}: no answer within {} s ({})",
            label(FailureKind::Unreachable),
            after.as_secs(),
            FailureKind::Unreachable.advice()
        ),
    }
}

fn label(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::Unreachable => "rabbitmq unreachable",
        FailureKind::AuthenticationRefused => "authentication refused",
        FailureKind::VhostMissing => "vhost missing",
        FailureKind::VhostAccessRefused => "vhost access refused",
        FailureKind::Tls => "TLS handshake failed",
        FailureKind::Refused => "refused by rabbitmq",
        FailureKind::Other => "cannot connect",
    }
}

fn io_kind(error: &io::Error, tls: bool) -> FailureKind {
    use io::ErrorKind as K;
    let text = error.to_string().to_ascii_lowercase();
    if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
        return FailureKind::Tls;
    }
    match error.kind() {
        // rustls reports a plain-text answer to a TLS hello (and a bad record) as InvalidData.
        K::InvalidData if tls => FailureKind::Tls,
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::TimedOut
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::AddrNotAvailable
        | K::UnexpectedEof
        | K::BrokenPipe => FailureKind::Unreachable,
        _ if text.contains("lookup") || text.contains("resolve") => FailureKind::Unreachable,
        _ => FailureKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the real broker of the test suite (scripts/test starts it).
    async fn failure(url: &str) -> ConnectFailure {
        let tls = url.starts_with("amqps://");
        let attempt = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            lapin::Connection::connect(url, lapin::ConnectionProperties::default()),
        )
        .await
        .expect("the broker answers");
        match attempt {
            Ok(_) => panic!("{url} connected"),
            Err(error) => classify(&error, tls),
        }
    }

    fn broker() -> String {
        std::env::var("STEWARD_TEST_AMQP_HOST").unwrap_or_else(|_| "127.0.0.1:5672".to_owned())
    }

    #[tokio::test]
    async fn each_failure_says_what_to_check() {
        let host = broker();
        let wrong = failure(&format!("amqp://guest:wrong-password@{host}/%2f")).await;
        assert_eq!(wrong.kind, FailureKind::AuthenticationRefused, "{wrong}");
        assert!(
            wrong.message.contains("check the user and password"),
            "{wrong}"
        );
        assert!(!wrong.message.contains("wrong-password"), "{wrong}");

        let vhost = failure(&format!("amqp://guest:guest@{host}/no-such-vhost")).await;
        assert_eq!(vhost.kind, FailureKind::VhostMissing, "{vhost}");
        assert!(vhost.message.contains("no-such-vhost"), "{vhost}");

        let tls = failure(&format!("amqps://guest:guest@{host}/%2f")).await;
        assert_eq!(tls.kind, FailureKind::Tls, "{tls}");

        // What RabbitMQ 3.10 sends a user without permissions on the vhost (measured with
        // `rabbitmqctl add_user` and no `set_permissions`).
        let no_permissions: lapin::Error =
            ErrorKind::ProtocolError(lapin::protocol::AMQPError::new(
                AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED),
                "NOT_ALLOWED - access to vhost '/' refused for user 'steward'".into(),
            ))
            .into();
        let refused = classify(&no_permissions, false);
        assert_eq!(refused.kind, FailureKind::VhostAccessRefused, "{refused}");
        assert!(refused.message.contains("set_permissions"), "{refused}");

        let closed = failure("amqp://guest:guest@127.0.0.1:1/%2f").await;
        assert_eq!(closed.kind, FailureKind::Unreachable, "{closed}");
        assert!(
            closed.message.starts_with("rabbitmq unreachable"),
            "{closed}"
        );
    }
}
