//! The AMQP source: Steward's own durable queue on RabbitMQ, bound to the services' exchanges.
//!
//! # Protocol
//!
//! 1. **Topology.** Steward declares only its own queue (durable; quorum by default) and binds
//!    it to every configured routing key on every configured exchange. Exchanges are probed
//!    passively first and created only when missing, with the producers' durability
//!    (`exchange_durable`), so Steward never redeclares anything a producer owns with other
//!    arguments. The producers' shared queues (`notifications.info`, …) are never declared.
//! 2. **Consume.** Manual acknowledgements, prefetch bounded by `prefetch`. Deliveries are
//!    decoded as they arrive and collected into a batch of up to `batch_max_messages` (or a
//!    quarter of `max_inflight_bytes`), or for at most `batch_max_wait_ms` after its first
//!    delivery.
//!
//!    **Bytes in flight.** AMQP prefetch counts messages, and RabbitMQ has no prefetch by
//!    size, so `Prefetch` sizes the count by bytes: it starts at 1 on every connection, and
//!    after each delivery sets `prefetch = max_inflight_bytes / (8 × largest recent message)`
//!    (between 1 and `prefetch`; a delivery is held several times over while it is decoded and
//!    committed), lowering it at once when a large message arrives and raising
//!    it again once a window of small ones has passed. RabbitMQ fixes a consumer's prefetch when
//!    the consumer is created (quorum queues have no channel-wide prefetch), so a change cancels
//!    the consumer, takes what it still delivers (into the same batches: delivery tags are per
//!    channel, so one `multiple` ack still covers them) and subscribes again. Every delivery in Steward's pipeline is
//!    unacknowledged, so the broker's own count keeps the pipeline within about
//!    `max_inflight_bytes` — plus at most the deliveries granted before a sudden jump in size.
//! 3. **Commit, then ack.** A full batch goes to the writer; `ack.rs` acknowledges it with one
//!    `multiple=true` ack only after the commit succeeded (nack + requeue on failure). Batches
//!    pipeline: the next batch is collected while the previous one commits.
//! 4. **Supervise.** On any connection or channel error the supervisor records a gap (start,
//!    cause), reconnects with exponential backoff (`reconnect_initial_ms` … `reconnect_max_ms`),
//!    and closes the gap once consuming again. Unacknowledged deliveries are redelivered by the
//!    broker and deduplicated by the store. A broker that is unreachable at start-up is retried
//!    the same way; start-up never fails for it.
//! 5. **Shutdown.** Stop taking deliveries, commit the batch in hand, acknowledge everything
//!    committed, close the connection; whatever was prefetched but not batched is requeued by
//!    the broker.

mod ack;
pub mod decode;
pub mod failure;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ErrorKind, ExchangeKind};
use tokio::sync::{mpsc, watch};

use crate::config::{AmqpConfig, QueueType};
use crate::ingest::Writer;
use crate::metrics as m;
use crate::record::{Batch, Source};
use crate::store::Store;
use crate::time::Instant;

pub use decode::decode_delivery;

/// Shared view of the AMQP source's state (for `/readyz`).
#[derive(Debug, Default)]
pub struct AmqpState {
    connected: AtomicBool,
    last_failure: std::sync::Mutex<Option<String>>,
}

impl AmqpState {
    /// True while consuming.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Why the last connection attempt failed, while not connected.
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default()
    }

    fn set(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        if connected && let Ok(mut f) = self.last_failure.lock() {
            *f = None;
        }
        metrics::gauge!(m::AMQP_CONNECTED).set(if connected { 1.0 } else { 0.0 });
    }

    fn failed(&self, failure: &failure::ConnectFailure) {
        if let Ok(mut f) = self.last_failure.lock() {
            *f = Some(failure.message.clone());
        }
    }
}

/// Why a consuming session ended.
enum SessionEnd {
    /// Shutdown was requested; everything committed is acknowledged.
    Shutdown,
    /// The connection or channel failed.
    Lost(String),
}

/// The AMQP source task.
#[derive(Debug)]
pub struct AmqpSource {
    config: AmqpConfig,
    scrubber: crate::scrub::Scrubber,
    writer: Writer,
    store: Arc<dyn Store>,
    state: Arc<AmqpState>,
    shutdown: watch::Receiver<bool>,
}

impl AmqpSource {
    /// Prepares the source; [`AmqpSource::run`] starts it.
    pub fn new(
        config: AmqpConfig,
        scrubber: crate::scrub::Scrubber,
        writer: Writer,
        store: Arc<dyn Store>,
        state: Arc<AmqpState>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            config,
            scrubber,
            writer,
            store,
            state,
            shutdown,
        }
    }

    /// Runs until shutdown: connect, consume, and reconnect after any failure.
    pub async fn run(mut self) {
        let initial = Duration::from_millis(self.config.reconnect_initial_ms.max(1));
        let max = Duration::from_millis(self.config.reconnect_max_ms).max(initial);
        let mut backoff = initial;
        let mut open_gap: Option<i64> = None;
        if let Ok(n) = self
            .store
            .close_stale_gaps(Source::Amqp, Instant::now())
            .await
            && n > 0
        {
            tracing::info!(gaps = n, "closed amqp gaps left open by a previous run");
        }
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            match self.connect().await {
                Ok((connection, consumer, channel)) => {
                    backoff = initial;
                    self.state.set(true);
                    if let Some(id) = open_gap.take() {
                        self.end_gap(id).await;
                    }
                    tracing::info!(queue = %self.config.queue, "consuming notifications");
                    let end = self.consume(consumer, channel).await;
                    self.state.set(false);
                    match end {
                        SessionEnd::Shutdown => {
                            let _ = connection.close(200, "steward shutting down".into()).await;
                            break;
                        }
                        SessionEnd::Lost(cause) => {
                            tracing::warn!(%cause, "lost connection to rabbitmq; reconnecting");
                            open_gap = self.begin_gap(format!("connection lost: {cause}")).await;
                            let _ = connection.close(320, "reconnecting".into()).await;
                        }
                    }
                }
                Err(failure) => {
                    metrics::counter!(m::AMQP_CONNECT_FAILURES, "reason" => failure.kind.as_str())
                        .increment(1);
                    self.state.failed(&failure);
                    let retry_in_ms = backoff.as_millis() as u64;
                    let reason = failure.kind.as_str();
                    if failure.kind == failure::FailureKind::Unreachable {
                        tracing::warn!(%reason, retry_in_ms, "{failure}; retrying");
                    } else {
                        // Not the network: retrying alone will not fix it.
                        tracing::error!(%reason, retry_in_ms, "{failure}; retrying");
                    }
                    if open_gap.is_none() {
                        open_gap = self.begin_gap(format!("cannot connect: {failure}")).await;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(max);
                }
            }
        }
        if let Some(id) = open_gap {
            self.end_gap(id).await;
        }
    }

    async fn begin_gap(&self, cause: String) -> Option<i64> {
        metrics::counter!(m::GAPS, "source" => "amqp").increment(1);
        metrics::gauge!(m::GAPS_OPEN, "source" => "amqp").set(1.0);
        match self
            .store
            .open_gap(Source::Amqp, Instant::now(), &cause)
            .await
        {
            Ok(id) => Some(id),
            Err(error) => {
                tracing::warn!(error = %crate::ingest::writer::anyhow_like(&error), "cannot record gap");
                None
            }
        }
    }

    async fn end_gap(&self, id: i64) {
        metrics::gauge!(m::GAPS_OPEN, "source" => "amqp").set(0.0);
        if let Err(error) = self.store.close_gap(id, Instant::now()).await {
            tracing::warn!(error = %crate::ingest::writer::anyhow_like(&error), "cannot close gap");
        }
    }

    /// Connects and sets up within `connect_timeout_secs`; a failure says which kind it is.
    async fn connect(
        &self,
    ) -> Result<(Connection, lapin::Consumer, lapin::Channel), failure::ConnectFailure> {
        let limit = Duration::from_secs(self.config.connect_timeout_secs.max(1));
        let tls = self.config.url.expose().starts_with("amqps://");
        match tokio::time::timeout(limit, self.set_up()).await {
            Ok(Ok(session)) => Ok(session),
            Ok(Err(error)) => Err(failure::classify(&error, tls)),
            Err(_) => Err(failure::timed_out(limit)),
        }
    }

    async fn set_up(&self) -> Result<(Connection, lapin::Consumer, lapin::Channel), lapin::Error> {
        // The queue in the name tells replicas and test instances apart in the broker's UI.
        let name = format!("steward-meter {}", self.config.queue);
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connection = Connection::connect(self.config.url.expose(), properties).await?;
        self.declare_queue(&connection).await?;
        for exchange in &self.config.exchanges {
            self.ensure_exchange(&connection, exchange).await?;
        }
        let channel = connection.create_channel().await?;
        for exchange in &self.config.exchanges {
            for key in &self.config.routing_keys {
                channel
                    .queue_bind(
                        self.config.queue.as_str().into(),
                        exchange.as_str().into(),
                        key.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
        }
        // Start at one and let `Prefetch` open up once the first delivery's size is known.
        let consumer = self.subscribe(&channel, 1, &consumer_tag(0)).await?;
        Ok((connection, consumer, channel))
    }

    /// Starts consuming with `prefetch` unacknowledged deliveries at most. RabbitMQ applies a
    /// per-consumer prefetch to consumers created after the `basic.qos` (quorum queues have no
    /// channel-wide one), so changing it means a new consumer: see [`AmqpSource::consume`].
    ///
    /// Every subscription gets its own consumer tag: RabbitMQ 3.10 closes the connection with
    /// `INTERNAL_ERROR` when a quorum queue's consumer tag is reused on the same channel right
    /// after a cancel (measured here), and a reconnect redelivers everything unacknowledged.
    async fn subscribe(
        &self,
        channel: &lapin::Channel,
        prefetch: u16,
        tag: &str,
    ) -> Result<lapin::Consumer, lapin::Error> {
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await?;
        metrics::gauge!(m::AMQP_PREFETCH).set(f64::from(prefetch));
        channel
            .basic_consume(
                self.config.queue.as_str().into(),
                tag.into(),
                BasicConsumeOptions {
                    no_ack: false,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
    }

    /// Uses the queue as it exists; declares it (durable, quorum or classic) when missing.
    async fn declare_queue(&self, connection: &Connection) -> Result<(), lapin::Error> {
        let probe = connection.create_channel().await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        match probe
            .queue_declare(
                self.config.queue.as_str().into(),
                passive,
                FieldTable::default(),
            )
            .await
        {
            Ok(_) => {
                let _ = probe.close(200, "ok".into()).await;
                return Ok(());
            }
            Err(error) if is_not_found(&error) => {}
            Err(error) => return Err(error),
        }
        let channel = connection.create_channel().await?;
        let mut arguments = FieldTable::default();
        if self.config.queue_type == QueueType::Quorum {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(self.config.queue.as_str().into(), options, arguments)
            .await?;
        tracing::info!(queue = %self.config.queue, queue_type = ?self.config.queue_type, "declared queue");
        let _ = channel.close(200, "ok".into()).await;
        Ok(())
    }

    /// Leaves an existing exchange alone; creates a missing one as the producers would.
    async fn ensure_exchange(
        &self,
        connection: &Connection,
        name: &str,
    ) -> Result<(), lapin::Error> {
        let probe = connection.create_channel().await?;
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        match probe
            .exchange_declare(
                name.into(),
                ExchangeKind::Topic,
                passive,
                FieldTable::default(),
            )
            .await
        {
            Ok(()) => {
                let _ = probe.close(200, "ok".into()).await;
                Ok(())
            }
            Err(error) if is_not_found(&error) => {
                let channel = connection.create_channel().await?;
                let options = ExchangeDeclareOptions {
                    durable: self.config.exchange_durable,
                    ..Default::default()
                };
                channel
                    .exchange_declare(
                        name.into(),
                        ExchangeKind::Topic,
                        options,
                        FieldTable::default(),
                    )
                    .await?;
                tracing::info!(
                    exchange = name,
                    durable = self.config.exchange_durable,
                    "declared missing exchange"
                );
                let _ = channel.close(200, "ok".into()).await;
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Consumes until shutdown or failure; see the module docs, steps 2–3 and 5.
    async fn consume(
        &mut self,
        mut consumer: lapin::Consumer,
        channel: lapin::Channel,
    ) -> SessionEnd {
        let mut prefetch = Prefetch::new(self.config.max_inflight_bytes, self.config.prefetch);
        // The prefetch to subscribe with once the cancelled consumer's stream has ended.
        let mut resubscribe: Option<u16> = None;
        let mut subscription = 0u64;
        let batch_max_bytes = (self.config.max_inflight_bytes / 4).max(1);
        let mut batch_bytes = 0usize;
        let (ack_tx, ack_rx) = mpsc::channel(16);
        let acker = tokio::spawn(ack::run(ack_rx));
        let max_wait = Duration::from_millis(self.config.batch_max_wait_ms);
        let mut batch = Batch::default();
        let mut last: Option<lapin::Acker> = None;
        let mut first_received = StdInstant::now();
        let end = loop {
            let deadline = first_received + max_wait;
            let next = tokio::select! {
                biased;
                _ = self.shutdown.changed() => break SessionEnd::Shutdown,
                _ = tokio::time::sleep_until(deadline.into()), if last.is_some() => None,
                next = consumer.next() => Some(next),
            };
            match next {
                None => {}
                Some(Some(Ok(delivery))) => {
                    metrics::counter!(m::RECEIVED, "source" => "amqp").increment(1);
                    if last.is_none() {
                        first_received = StdInstant::now();
                    }
                    let size = delivery.data.len();
                    batch_bytes += size;
                    if let Some(count) = prefetch.observe(size) {
                        // A new prefetch needs a new consumer: cancel this one, take what it
                        // still delivers, then subscribe again when its stream ends.
                        if resubscribe.is_none()
                            && let Err(error) = channel
                                .basic_cancel(
                                    consumer_tag(subscription).as_str().into(),
                                    BasicCancelOptions::default(),
                                )
                                .await
                        {
                            break SessionEnd::Lost(error.to_string());
                        }
                        tracing::debug!(
                            prefetch = count,
                            message_bytes = size,
                            "resizing prefetch"
                        );
                        resubscribe = Some(count);
                    }
                    batch.push(decode_delivery(
                        &delivery.data,
                        delivery.exchange.as_str(),
                        delivery.routing_key.as_str(),
                        Instant::now(),
                        &self.scrubber,
                    ));
                    last = Some(delivery.acker);
                    if batch.len() < self.config.batch_max_messages && batch_bytes < batch_max_bytes
                    {
                        continue;
                    }
                }
                Some(Some(Err(error))) => break SessionEnd::Lost(error.to_string()),
                Some(None) => match resubscribe.take() {
                    Some(count) => match self
                        .subscribe(&channel, count, &consumer_tag(subscription + 1))
                        .await
                    {
                        Ok(next) => {
                            subscription += 1;
                            consumer = next;
                            continue;
                        }
                        Err(error) => break SessionEnd::Lost(error.to_string()),
                    },
                    None => {
                        break SessionEnd::Lost("consumer cancelled by the broker".to_owned());
                    }
                },
            }
            batch_bytes = 0;
            if let Some(acker_of_last) = last.take()
                && let Err(lost) = self
                    .flush(
                        std::mem::take(&mut batch),
                        acker_of_last,
                        first_received,
                        &ack_tx,
                    )
                    .await
            {
                break lost;
            }
        };
        if let (SessionEnd::Shutdown, Some(acker_of_last)) = (&end, last.take()) {
            let _ = self
                .flush(
                    std::mem::take(&mut batch),
                    acker_of_last,
                    first_received,
                    &ack_tx,
                )
                .await;
        }
        drop(ack_tx);
        let _ = acker.await;
        end
    }

    async fn flush(
        &self,
        batch: Batch,
        last: lapin::Acker,
        first_received: StdInstant,
        ack_tx: &mpsc::Sender<ack::PendingAck>,
    ) -> Result<(), SessionEnd> {
        metrics::histogram!(m::BATCH_SIZE).record(batch.len() as f64);
        let receipt = self
            .writer
            .submit(batch)
            .await
            .map_err(|e| SessionEnd::Lost(e.to_string()))?;
        ack_tx
            .send(ack::PendingAck {
                receipt,
                last,
                first_received,
            })
            .await
            .map_err(|_| SessionEnd::Lost("acknowledger stopped".to_owned()))
    }
}

/// Steward's consumer tag for the `n`th subscription on a channel.
fn consumer_tag(n: u64) -> String {
    format!("steward-meter-{n}")
}

/// How many times over a delivery is held, at the peak, while it is received, decoded and
/// committed (lapin's growing receive buffer, the envelope and notification trees, the record's
/// text, the database driver's bound copies): 20 MB messages one at a time raised peak RSS by
/// 13 × their size in a debug build. The budget is for all of that, so count 8.
const COPIES_PER_DELIVERY: usize = 8;

/// Sizes AMQP prefetch by bytes; see the module docs, step 2.
#[derive(Debug)]
struct Prefetch {
    budget: usize,
    max: u16,
    current: u16,
    /// Largest message of the current window of deliveries.
    window_largest: usize,
    /// Deliveries in the current window.
    window_seen: usize,
    /// Largest message of the last complete window (what the count is sized for).
    largest: usize,
}

impl Prefetch {
    fn new(budget: usize, max: u16) -> Self {
        Self {
            budget: budget.max(1),
            max: max.max(1),
            current: 1,
            window_largest: 0,
            window_seen: 0,
            largest: 0,
        }
    }

    /// Takes one delivery's size; returns the new prefetch when it should change.
    fn observe(&mut self, size: usize) -> Option<u16> {
        self.window_largest = self.window_largest.max(size);
        self.window_seen += 1;
        if size > self.largest {
            // A larger message: size for it at once.
            self.largest = size;
        } else if self.window_seen >= usize::from(self.current).max(64) {
            // A full window of messages no larger than before: forget older, larger ones.
            self.largest = self.window_largest;
            self.window_largest = 0;
            self.window_seen = 0;
        }
        let per_delivery = self.largest.max(1).saturating_mul(COPIES_PER_DELIVERY);
        let wanted = (self.budget / per_delivery).clamp(1, usize::from(self.max)) as u16;
        // Lower at once; raise on the first delivery (from the start value 1) or when a window
        // of smaller messages has passed, so the count does not flap with every message.
        let raise = wanted > self.current && (self.current == 1 || self.window_seen == 0);
        if wanted < self.current || raise {
            self.current = wanted;
            Some(wanted)
        } else {
            None
        }
    }
}

fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(e) if e.get_id() == 404)
}

#[cfg(test)]
mod prefetch_tests {
    use super::Prefetch;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn prefetch_opens_for_small_messages_and_closes_for_large_ones() {
        let mut p = Prefetch::new(64 * MIB, 2000);
        assert_eq!(
            p.observe(2_000),
            Some(2000),
            "small messages: the configured maximum"
        );
        assert_eq!(p.observe(3_000), None);
        assert_eq!(
            p.observe(20 * MIB),
            Some(1),
            "64 MiB / (8 x 20 MiB), at least 1"
        );
        for _ in 0..63 {
            assert_eq!(p.observe(2_000), None, "a window has to pass first");
        }
        assert_eq!(p.observe(2_000), None);
        // The window of small ones is complete: open up again.
        let mut reopened = None;
        for _ in 0..64 {
            reopened = reopened.or(p.observe(2_000));
        }
        assert_eq!(reopened, Some(2000));
        assert_eq!(
            Prefetch::new(64 * MIB, 2000).observe(200 * MIB),
            None,
            "never below 1"
        );
    }
}
