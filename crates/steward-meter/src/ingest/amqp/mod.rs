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
//!    decoded as they arrive and collected into a batch of up to `batch_max_messages`, or for at
//!    most `batch_max_wait_ms` after its first delivery.
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
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant as StdInstant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicQosOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
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
}

impl AmqpState {
    /// True while consuming.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    fn set(&self, connected: bool) {
        self.connected.store(connected, Ordering::Relaxed);
        metrics::gauge!(m::AMQP_CONNECTED).set(if connected { 1.0 } else { 0.0 });
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
                Err(error) => {
                    metrics::counter!(m::AMQP_CONNECT_FAILURES).increment(1);
                    tracing::warn!(
                        %error,
                        retry_in_ms = backoff.as_millis() as u64,
                        "cannot reach rabbitmq; retrying"
                    );
                    if open_gap.is_none() {
                        open_gap = self.begin_gap(format!("cannot connect: {error}")).await;
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

    async fn connect(&self) -> Result<(Connection, lapin::Consumer, lapin::Channel), lapin::Error> {
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
        channel
            .basic_qos(self.config.prefetch, BasicQosOptions { global: false })
            .await?;
        let consumer = channel
            .basic_consume(
                self.config.queue.as_str().into(),
                "steward-meter".into(),
                BasicConsumeOptions {
                    no_ack: false,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok((connection, consumer, channel))
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
        _channel: lapin::Channel,
    ) -> SessionEnd {
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
                    batch.push(decode_delivery(
                        &delivery.data,
                        delivery.exchange.as_str(),
                        delivery.routing_key.as_str(),
                        Instant::now(),
                        &self.scrubber,
                    ));
                    last = Some(delivery.acker);
                    if batch.len() < self.config.batch_max_messages {
                        continue;
                    }
                }
                Some(Some(Err(error))) => break SessionEnd::Lost(error.to_string()),
                Some(None) => {
                    break SessionEnd::Lost("consumer cancelled by the broker".to_owned());
                }
            }
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

fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(e) if e.get_id() == 404)
}
