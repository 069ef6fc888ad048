//! The NATS JetStream log: stream `WHISTLE` on `whistle.case.>`, one subject per case, file
//! storage. Per-case optimistic concurrency rides on `Nats-Expected-Last-Subject-Sequence`;
//! deduplication on `Nats-Msg-Id` (the command id).
//!
//! A known server behaviour shapes `append`: re-publishing a message that was already stored,
//! with an expected sequence that is now stale, comes back as *wrong last sequence* rather than
//! *duplicate*. So before calling that a conflict, the case's records are read and searched for
//! the command id.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, context::PublishErrorKind, message::PublishMessage, stream};
use async_trait::async_trait;
use futures::StreamExt;
use sha2::Digest;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::{
    case_subject, Acker, AckerInner, AlertStream, Appended, ClaimStream, Claimed, Commit, EventLog, LogError,
    RecordStream, StoredRecord, CASE_SUBJECT_PREFIX,
};

/// The stream's name.
pub const STREAM_NAME: &str = "WHISTLE";
/// The stream that records which alert deliveries have been claimed, and by subject prefix.
pub const DELIVERY_STREAM_NAME: &str = "WHISTLE_DELIVERIES";
pub const DELIVERY_SUBJECT_PREFIX: &str = "whistle.delivery.";
/// Attempts of one delivery claim (same message id each time).
const CLAIM_ATTEMPTS_MAX: u32 = 12;
/// How long delivery claims are kept: long past any retry of the same alert.
const DELIVERY_CLAIMS_KEPT: Duration = Duration::from_secs(30 * 24 * 3600);
/// Appends waiting for a JetStream acknowledgement at once; more wait for room.
pub const APPENDS_IN_FLIGHT_MAX: usize = 1_024;
/// Attempts of one append when the server does not answer (same command id each time).
pub const APPEND_ATTEMPTS_MAX: u32 = 5;
/// How long one attempt waits for the server's acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// First pause between attempts; doubles each time.
const RETRY_BACKOFF_FIRST: Duration = Duration::from_millis(100);
/// Claimed records a consumer may hold unacknowledged.
const CLAIMS_PENDING_MAX: i64 = 64;
/// How long a claimed record may stay unacknowledged before it is handed out again. Records
/// are acknowledged as soon as they arrive, before their alerts are sent, so this bounds how
/// long a record lost in flight (a connection cut by a node failure) waits to be redelivered.
const CLAIM_ACK_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach NATS and what stream to keep.
#[derive(Clone, Debug, Default)]
pub struct NatsOptions {
    /// e.g. `nats://127.0.0.1:4222`; several servers separated by commas.
    pub url: String,
    pub credentials_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// CA certificate to trust (PEM).
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM), for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub require_tls: bool,
    /// Stream replicas: 1 on a single server, 3 on a cluster.
    pub replicas: usize,
}

impl NatsOptions {
    pub fn new(url: impl Into<String>) -> Self {
        NatsOptions { url: url.into(), replicas: 1, ..NatsOptions::default() }
    }
}

/// The JetStream event log.
pub struct NatsLog {
    client: async_nats::Client,
    stream: stream::Stream,
    js: jetstream::Context,
    in_flight: Arc<Semaphore>,
    /// Stream replicas (the file bucket is made with as many).
    replicas: usize,
    /// Whether a case is read with one batched direct get (the stream allows direct gets, has
    /// one replica so no follower can answer behind the leader, and the server is 2.11 or later).
    direct_reads: bool,
}

/// Records asked for per batched direct get; a case with more takes one more round trip per
/// this many.
const DIRECT_BATCH: usize = 256;

impl NatsLog {
    /// A case's records in one round trip (per [`DIRECT_BATCH`] records): a batched direct get
    /// of the next messages on the case's subject, answered as a run of messages ended by an
    /// end-of-batch status.
    async fn read_case_direct(&self, case_id: Uuid) -> Result<Vec<StoredRecord>, LogError> {
        let subject = case_subject(case_id);
        let failed = |e: &dyn std::fmt::Display| LogError::Unavailable(format!("reading case {case_id}: {e}"));
        let mut out = Vec::new();
        let mut next = 1u64;
        loop {
            let inbox = self.client.new_inbox();
            let mut replies = self.client.subscribe(inbox.clone()).await.map_err(|e| failed(&e))?;
            let request = serde_json::json!({ "seq": next, "next_by_subj": subject, "batch": DIRECT_BATCH });
            self.client
                .publish_with_reply(format!("$JS.API.DIRECT.GET.{STREAM_NAME}"), inbox, request.to_string().into())
                .await
                .map_err(|e| failed(&e))?;
            let mut got = 0;
            // Messages on the subject after the last one received, when the server says (it
            // may end a batch early, e.g. at a byte limit).
            let mut pending: Option<u64> = None;
            loop {
                let reply = tokio::time::timeout(ACK_TIMEOUT, replies.next())
                    .await
                    .map_err(|_| failed(&"no answer to a direct get"))?
                    .ok_or_else(|| failed(&"the connection closed"))?;
                let num_pending = reply
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Num-Pending"))
                    .and_then(|v| v.as_str().parse::<u64>().ok());
                pending = num_pending.or(pending);
                match reply.status {
                    // End of batch.
                    Some(status) if status.as_u16() == 204 => break,
                    // Nothing (more) on the subject.
                    Some(status) if status.as_u16() == 404 => return Ok(out),
                    Some(status) => {
                        return Err(failed(&format!("direct get answered {status} {:?}", reply.description)))
                    }
                    None => {}
                }
                let headers = reply.headers.as_ref().ok_or_else(|| failed(&"a direct get answer without headers"))?;
                let position = headers
                    .get("Nats-Sequence")
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    .ok_or_else(|| failed(&"a direct get answer without its sequence"))?;
                let msg_id = headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.to_string());
                out.push(StoredRecord { position, subject: subject.clone(), msg_id, payload: reply.payload });
                next = position + 1;
                got += 1;
            }
            let more = match pending {
                Some(left) => left > 0,
                None => got == DIRECT_BATCH,
            };
            if !more || got == 0 {
                return Ok(out);
            }
        }
    }

    /// Connects, then creates the stream or checks that the existing one fits.
    pub async fn connect(options: &NatsOptions) -> Result<Self, LogError> {
        let client = connect_client(options).await?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(ACK_TIMEOUT);
        let replicas = options.replicas.max(1);
        let stream = ensure_stream(&js, replicas).await?;
        ensure_delivery_stream(&js, replicas).await?;
        let direct_reads = replicas == 1 && server_at_least(&client.server_info().version, (2, 11));
        Ok(NatsLog {
            client,
            stream,
            js,
            replicas,
            in_flight: Arc::new(Semaphore::new(APPENDS_IN_FLIGHT_MAX)),
            direct_reads,
        })
    }

    /// The evidence-file bucket, replicated like the stream.
    pub async fn files(&self) -> Result<super::object_store::NatsFiles, crate::files::FileError> {
        super::object_store::NatsFiles::open(&self.js, self.replicas).await
    }

    /// The connection, for publishing alerts on core NATS subjects.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    async fn publish_once(&self, commit: &Commit, payload: &bytes::Bytes, expected: u64) -> Result<Appended, Attempt> {
        let message = PublishMessage::build()
            .payload(payload.clone())
            .message_id(commit.command_id.to_string())
            .expected_last_subject_sequence(expected);
        let ack = self
            .js
            .send_publish(case_subject(commit.case_id), message)
            .await
            .map_err(|e| Attempt::Retry(e.to_string()))?;
        match ack.await {
            Ok(ack) => Ok(Appended { position: ack.sequence, duplicate: ack.duplicate }),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => Err(Attempt::WrongLastSequence),
            Err(e) if matches!(e.kind(), PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe) => {
                Err(Attempt::Retry(e.to_string()))
            }
            Err(e) if e.kind() == PublishErrorKind::StreamNotFound => Err(Attempt::Retry(e.to_string())),
            Err(e) => Err(Attempt::Fail(LogError::Unavailable(e.to_string()))),
        }
    }

    /// One attempt at a delivery claim: Ok(true) ours, Ok(false) someone else's.
    async fn try_claim(&self, subject: &str, mine: &str, key: &str) -> Result<bool, LogError> {
        let unavailable = |e: &dyn std::fmt::Display| LogError::Unavailable(e.to_string());
        let message = PublishMessage::build()
            .payload(bytes::Bytes::copy_from_slice(key.as_bytes()))
            .message_id(mine)
            .expected_last_subject_sequence(0);
        let ack = self.js.send_publish(subject.to_owned(), message).await.map_err(|e| unavailable(&e))?;
        match ack.await {
            // A duplicate is this claim's own earlier attempt: the id is new per claim.
            Ok(_) => Ok(true),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                let delivery = self.js.get_stream(DELIVERY_STREAM_NAME).await.map_err(|e| unavailable(&e))?;
                let last = delivery.get_last_raw_message_by_subject(subject).await.map_err(|e| unavailable(&e))?;
                let holder = last.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.to_string());
                Ok(holder.as_deref() == Some(mine))
            }
            Err(e) => Err(unavailable(&e)),
        }
    }

    /// Where this command id is stored in the case, if it is.
    async fn find_command(&self, case_id: Uuid, command_id: Uuid) -> Result<Option<u64>, LogError> {
        let id = command_id.to_string();
        let records = self.read_case(case_id).await?;
        Ok(records.iter().rev().find(|r| r.msg_id.as_deref() == Some(id.as_str())).map(|r| r.position))
    }
}

enum Attempt {
    /// The server did not answer, or answered that it could not take it now.
    Retry(String),
    WrongLastSequence,
    Fail(LogError),
}

#[async_trait]
impl EventLog for NatsLog {
    async fn append(&self, commit: &Commit, expected: u64) -> Result<Appended, LogError> {
        let payload = commit.encode()?;
        let _permit = self.in_flight.acquire().await.map_err(|_| LogError::Unavailable("log closed".into()))?;
        let mut backoff = RETRY_BACKOFF_FIRST;
        let mut last_error = String::new();
        for attempt in 1..=APPEND_ATTEMPTS_MAX {
            match self.publish_once(commit, &payload, expected).await {
                Ok(appended) => return Ok(appended),
                Err(Attempt::WrongLastSequence) => {
                    return match self.find_command(commit.case_id, commit.command_id).await? {
                        Some(position) => Ok(Appended { position, duplicate: true }),
                        None => Err(LogError::Conflict { case_id: commit.case_id, expected }),
                    };
                }
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(message)) => {
                    tracing::warn!(attempt, case_id = %commit.case_id, "append not acknowledged: {message}");
                    last_error = message;
                }
            }
            if attempt < APPEND_ATTEMPTS_MAX {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(LogError::Unavailable(format!(
            "NATS did not acknowledge after {APPEND_ATTEMPTS_MAX} attempts: {last_error}"
        )))
    }

    async fn read_case(&self, case_id: Uuid) -> Result<Vec<StoredRecord>, LogError> {
        if self.direct_reads {
            return self.read_case_direct(case_id).await;
        }
        let subject = case_subject(case_id);
        let mut out = Vec::new();
        let mut next = 1;
        loop {
            let found = self.stream.raw_message_builder().sequence(next).next_by_subject(subject.clone()).send().await;
            match found {
                Ok(message) => {
                    next = message.sequence + 1;
                    out.push(record_from_stream_message(message));
                }
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => return Ok(out),
                Err(e) => return Err(LogError::Unavailable(format!("reading case {case_id}: {e}"))),
            }
        }
    }

    async fn subscribe(&self, from: u64) -> Result<RecordStream, LogError> {
        let deliver_policy = if from <= 1 {
            consumer::DeliverPolicy::All
        } else {
            consumer::DeliverPolicy::ByStartSequence { start_sequence: from }
        };
        let config = consumer::pull::OrderedConfig {
            filter_subject: format!("{CASE_SUBJECT_PREFIX}>"),
            deliver_policy,
            ..Default::default()
        };
        let consumer = self
            .stream
            .create_consumer(config)
            .await
            .map_err(|e| LogError::Unavailable(format!("cannot subscribe to the log: {e}")))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| LogError::Unavailable(format!("cannot subscribe to the log: {e}")))?;
        Ok(Box::pin(messages.map(|item| {
            let message = item.map_err(|e| LogError::Unavailable(format!("log subscription: {e}")))?;
            record_from_message(&message)
        })))
    }

    async fn head(&self) -> Result<u64, LogError> {
        let info = self.stream.get_info().await.map_err(|e| LogError::Unavailable(format!("stream info: {e}")))?;
        Ok(info.state.last_sequence)
    }

    async fn stored_bytes(&self) -> Result<Option<u64>, LogError> {
        let info = self.stream.get_info().await.map_err(|e| LogError::Unavailable(format!("stream info: {e}")))?;
        Ok(Some(info.state.bytes))
    }

    async fn claim(&self, name: &str) -> Result<ClaimStream, LogError> {
        let config = consumer::pull::Config {
            durable_name: Some(name.to_owned()),
            description: Some("whistle alert delivery: each record to one service instance".into()),
            deliver_policy: consumer::DeliverPolicy::New,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: CLAIM_ACK_WAIT,
            max_ack_pending: CLAIMS_PENDING_MAX,
            filter_subject: format!("{CASE_SUBJECT_PREFIX}>"),
            ..Default::default()
        };
        let consumer = self
            .stream
            .get_or_create_consumer(name, config)
            .await
            .map_err(|e| LogError::Unavailable(format!("cannot open consumer {name}: {e}")))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| LogError::Unavailable(format!("cannot read consumer {name}: {e}")))?;
        Ok(Box::pin(messages.map(|item| {
            let message = item.map_err(|e| LogError::Unavailable(format!("claim: {e}")))?;
            let record = record_from_message(&message)?;
            Ok(Claimed { record, ack: Acker(AckerInner::Nats(Box::new(message))) })
        })))
    }

    async fn publish_alert(&self, subject: &str, payload: bytes::Bytes) -> Result<(), LogError> {
        self.client
            .publish(subject.to_owned(), payload)
            .await
            .map_err(|e| LogError::Unavailable(format!("publishing alert on {subject}: {e}")))?;
        self.client.flush().await.map_err(|e| LogError::Unavailable(format!("publishing alert on {subject}: {e}")))
    }

    async fn claim_delivery(&self, key: &str) -> Result<bool, LogError> {
        // One subject per key in a stream of its own: the first publish with "no message yet on
        // this subject" wins. The message id is new for this claim and kept across its retries,
        // so a retry whose first attempt was stored (the answer lost) is recognised as ours.
        let digest: String = sha2::Sha256::digest(key.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect();
        let subject = format!("{DELIVERY_SUBJECT_PREFIX}{digest}");
        let mine = format!("{digest}-{}", Uuid::new_v4().simple());
        let mut backoff = RETRY_BACKOFF_FIRST;
        let mut last_error = String::new();
        // Enough attempts to outlast a cluster electing a leader.
        for attempt in 1..=CLAIM_ATTEMPTS_MAX {
            match self.try_claim(&subject, &mine, key).await {
                Ok(won) => return Ok(won),
                Err(e) => last_error = e.to_string(),
            }
            if attempt < CLAIM_ATTEMPTS_MAX {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        Err(LogError::Unavailable(format!("claiming a delivery: {last_error}")))
    }

    async fn claim_deliveries(&self, keys: &[String]) -> Vec<Result<bool, LogError>> {
        futures::future::join_all(keys.iter().map(|key| self.claim_delivery(key))).await
    }

    async fn watch_alerts(&self, prefix: &str) -> Result<AlertStream, LogError> {
        let subscriber = self
            .client
            .subscribe(format!("{prefix}>"))
            .await
            .map_err(|e| LogError::Unavailable(format!("watching alerts: {e}")))?;
        // The server must know of the subscription before anything is published.
        self.client.flush().await.map_err(|e| LogError::Unavailable(format!("watching alerts: {e}")))?;
        Ok(Box::pin(subscriber.map(|m| (m.subject.to_string(), m.payload))))
    }
}

/// A delivered JetStream message as a stored record.
fn record_from_message(message: &jetstream::Message) -> Result<StoredRecord, LogError> {
    let position = message.info().map_err(|e| LogError::Unavailable(format!("log message: {e}")))?.stream_sequence;
    let msg_id =
        message.headers.as_ref().and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID)).map(|v| v.to_string());
    Ok(StoredRecord { position, subject: message.subject.to_string(), msg_id, payload: message.payload.clone() })
}

fn record_from_stream_message(message: jetstream::message::StreamMessage) -> StoredRecord {
    let msg_id = message.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.to_string());
    StoredRecord { position: message.sequence, subject: message.subject.to_string(), msg_id, payload: message.payload }
}

/// Whether a server version ("2.15.1") is at least `(major, minor)`.
fn server_at_least(version: &str, (major, minor): (u64, u64)) -> bool {
    let mut parts = version.trim_start_matches('v').split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (major, minor)
}

async fn connect_client(options: &NatsOptions) -> Result<async_nats::Client, LogError> {
    let mut connect = async_nats::ConnectOptions::new()
        .name("whistle")
        .connection_timeout(CONNECT_TIMEOUT)
        .require_tls(options.require_tls);
    if let Some(path) = &options.credentials_file {
        connect = connect
            .credentials_file(path)
            .await
            .map_err(|e| LogError::Setup(format!("cannot read NATS credentials file {}: {e}", path.display())))?;
    }
    if let (Some(user), Some(password)) = (&options.user, &options.password) {
        connect = connect.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &options.token {
        connect = connect.token(token.clone());
    }
    if let Some(ca) = &options.tls_ca {
        connect = connect.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&options.tls_cert, &options.tls_key) {
        connect = connect.add_client_certificate(cert.clone(), key.clone());
    }
    let servers: Vec<&str> = options.url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let addrs: Vec<async_nats::ServerAddr> = servers
        .iter()
        .map(|s| s.parse().map_err(|e| LogError::Setup(format!("{s:?} is not a NATS URL: {e}"))))
        .collect::<Result<_, _>>()?;
    connect.connect(addrs).await.map_err(|e| LogError::Setup(format!("cannot reach NATS at {}: {e}", options.url)))
}

fn wanted_config(replicas: usize) -> stream::Config {
    stream::Config {
        name: STREAM_NAME.into(),
        description: Some("whistle case events: one subject per case, one message per command".into()),
        subjects: vec![format!("{CASE_SUBJECT_PREFIX}>")],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        num_replicas: replicas,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_age: Duration::ZERO,
        duplicate_window: Duration::from_secs(120),
        deny_delete: true,
        deny_purge: true,
        allow_direct: true,
        ..Default::default()
    }
}

/// Creates the stream, or checks that the one there keeps every event; never changes what it
/// keeps (it only allows direct gets on a stream made before cases were read with them).
async fn ensure_stream(js: &jetstream::Context, replicas: usize) -> Result<stream::Stream, LogError> {
    match js.get_stream(STREAM_NAME).await {
        Ok(mut stream) => {
            let info = stream.info().await.map_err(|e| LogError::Unavailable(format!("stream info: {e}")))?;
            let problems = incompatibilities(&info.config, replicas);
            if problems.is_empty() && !info.config.allow_direct {
                // Streams made before cases were read with direct gets: allowing them changes
                // nothing about what the stream keeps.
                let config = stream::Config { allow_direct: true, ..info.config.clone() };
                js.update_stream(config)
                    .await
                    .map_err(|e| LogError::Setup(format!("cannot allow direct gets on stream {STREAM_NAME}: {e}")))?;
                tracing::info!("stream {STREAM_NAME} now allows direct gets (cases are read in one round trip)");
                js.get_stream(STREAM_NAME)
                    .await
                    .map_err(|e| LogError::Unavailable(format!("cannot look up stream {STREAM_NAME}: {e}")))
            } else if problems.is_empty() {
                Ok(stream)
            } else {
                Err(LogError::Setup(format!(
                    "stream {STREAM_NAME} exists with settings this service cannot use ({}); it was left unchanged",
                    problems.join("; ")
                )))
            }
        }
        Err(e) if is_not_found(&e) => js
            .create_stream(wanted_config(replicas))
            .await
            .map_err(|e| LogError::Setup(format!("cannot create stream {STREAM_NAME}: {e}"))),
        Err(e) => Err(LogError::Unavailable(format!("cannot look up stream {STREAM_NAME}: {e}"))),
    }
}

/// The delivery-claims stream: created when missing; its contents are short-lived markers.
async fn ensure_delivery_stream(js: &jetstream::Context, replicas: usize) -> Result<(), LogError> {
    match js.get_stream(DELIVERY_STREAM_NAME).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => js
            .create_stream(stream::Config {
                name: DELIVERY_STREAM_NAME.into(),
                description: Some("whistle: one marker per alert delivery, so several instances deliver once".into()),
                subjects: vec![format!("{DELIVERY_SUBJECT_PREFIX}>")],
                storage: stream::StorageType::File,
                num_replicas: replicas,
                max_age: DELIVERY_CLAIMS_KEPT,
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| LogError::Setup(format!("cannot create stream {DELIVERY_STREAM_NAME}: {e}"))),
        Err(e) => Err(LogError::Unavailable(format!("cannot look up stream {DELIVERY_STREAM_NAME}: {e}"))),
    }
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// What about an existing stream would lose or misplace events.
pub fn incompatibilities(config: &stream::Config, replicas: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let subject = format!("{CASE_SUBJECT_PREFIX}>");
    if config.subjects != [subject.clone()] {
        problems.push(format!("subjects are {:?}, not [{subject:?}]", config.subjects));
    }
    if config.storage != stream::StorageType::File {
        problems.push("storage is not file".into());
    }
    if config.retention != stream::RetentionPolicy::Limits {
        problems.push(format!("retention is {:?}, not limits", config.retention));
    }
    if config.max_age != Duration::ZERO {
        problems.push(format!("max_age is {:?}: events would expire", config.max_age));
    }
    for (name, value) in [
        ("max_msgs", config.max_messages),
        ("max_bytes", config.max_bytes),
        ("max_msgs_per_subject", config.max_messages_per_subject),
    ] {
        if value > 0 {
            problems.push(format!("{name} is {value}: events would be discarded"));
        }
    }
    if config.num_replicas != replicas {
        problems.push(format!("it has {} replicas, not {replicas}", config.num_replicas));
    }
    problems
}

/// Benchmark set-up: the streams of this service on the server that hold messages, with their
/// message counts (the bench runs only on a server that holds none).
pub async fn streams_in_use(options: &NatsOptions) -> Result<Vec<(String, u64)>, LogError> {
    let js = jetstream::new(connect_client(options).await?);
    let mut used = Vec::new();
    for name in service_streams() {
        let mut stream = match js.get_stream(&name).await {
            Ok(stream) => stream,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(LogError::Unavailable(format!("cannot look up stream {name}: {e}"))),
        };
        let info = stream.info().await.map_err(|e| LogError::Unavailable(format!("stream {name}: {e}")))?;
        if info.state.messages > 0 {
            used.push((name, info.state.messages));
        }
    }
    Ok(used)
}

/// Benchmark set-up, on a server the bench found without them: removes this service's streams
/// (events, delivery claims, files), so that the next section starts on an empty server rather
/// than on the records, consumers and open clocks of the sections before it.
pub async fn remove_streams(options: &NatsOptions) -> Result<(), LogError> {
    let js = jetstream::new(connect_client(options).await?);
    for name in service_streams() {
        match js.delete_stream(&name).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(LogError::Unavailable(format!("cannot remove stream {name}: {e}"))),
        }
    }
    Ok(())
}

/// Every stream this service creates (the file bucket is a stream too).
fn service_streams() -> [String; 3] {
    [STREAM_NAME.to_owned(), DELIVERY_STREAM_NAME.to_owned(), format!("OBJ_{}", super::object_store::BUCKET)]
}

/// Benchmark baseline: raw JetStream publishes of `payload_bytes`-byte messages with
/// `in_flight` outstanding, for `duration`, to a scratch stream on the same server (created and
/// deleted here). Returns acknowledged publishes per second.
pub async fn baseline_publish_rate(
    options: &NatsOptions,
    in_flight: usize,
    payload_bytes: usize,
    duration: Duration,
) -> Result<f64, LogError> {
    let client = connect_client(options).await?;
    let js = jetstream::new(client);
    let name = "WHISTLE_BENCH_BASELINE";
    let _ = js.delete_stream(name).await;
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec!["whistle-bench.>".into()],
        storage: stream::StorageType::File,
        num_replicas: options.replicas.max(1),
        ..Default::default()
    })
    .await
    .map_err(|e| LogError::Setup(format!("baseline stream: {e}")))?;
    let payload = bytes::Bytes::from(vec![b'x'; payload_bytes]);
    let deadline = tokio::time::Instant::now() + duration;
    let started = std::time::Instant::now();
    let workers = (0..in_flight).map(|w| {
        let (js, payload) = (js.clone(), payload.clone());
        async move {
            let mut done = 0u64;
            while tokio::time::Instant::now() < deadline {
                let subject = format!("whistle-bench.{}", (w as u64 * 1_000_003 + done) % 4096);
                let ack =
                    js.publish(subject, payload.clone()).await.map_err(|e| LogError::Unavailable(e.to_string()))?;
                ack.await.map_err(|e| LogError::Unavailable(e.to_string()))?;
                done += 1;
            }
            Ok::<u64, LogError>(done)
        }
    });
    let total: u64 = futures::future::join_all(workers).await.into_iter().collect::<Result<Vec<_>, _>>()?.iter().sum();
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let _ = js.delete_stream(name).await;
    Ok(rate)
}
