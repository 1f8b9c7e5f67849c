//! The command layer: every command of the product as a function of [`Commands`] — who may
//! send it, its idempotency key, its aggregate's writer, and its answer — with typed inputs,
//! typed answers ([`Written`]) and typed refusals ([`CommandError`]). It knows no transport
//! (a refusal carries the HTTP status it maps to, which other doors translate): the HTTP handlers (`crate::http`) only extract a [`Call`] and an input and render what comes
//! back, and any other door (gRPC between instances) calls the same functions.
//!
//! A command's way: the caller's role is checked against the user the input names, the input
//! parses into domain values (an invalid one is [`CommandError::Invalid`] naming the field),
//! an aggregate the command names but does not create must exist (the order of these three
//! varies by command: each refusal is the same whichever comes first); then the
//! writer of its aggregate decides it, appends its events with the call's idempotency key and
//! metadata, and the answer is built from the state after it.

pub mod accounts;
pub mod coupons;
mod error;
pub mod holds;
mod lookup;
pub mod points;
mod routed;
pub mod sales;

use std::sync::Arc;

use domain::coupon::CouponPolicy;
use domain::points::PointAccount;
use domain::product::Product;
use domain::time_sale::TimeSale;
use domain::Decide;
use eventlog::EventLog;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

pub use error::CommandError;
pub(crate) use routed::moving;
pub use routed::Routed;

use crate::cluster::Cluster;
use crate::known::Known;
use crate::settings::Settings;
use crate::writer::{Aggregates, Committer, Keyed, Request};

/// Everything a command needs: the event log, one writer registry per aggregate type, the
/// look-ups of existing aggregates and entities, and the sign-in state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Commands {
    pub log: EventLog,
    coupons: Aggregates<CouponPolicy>,
    points: Aggregates<PointAccount>,
    products: Aggregates<Product>,
    time_sales: Aggregates<TimeSale>,
    lookup: lookup::Lookup,
    accounts: Arc<accounts::Accounts>,
    /// This instance's place in a cluster; `None` when it runs alone and owns everything.
    cluster: Option<Cluster>,
    /// The shortest and longest checkout hold, in seconds.
    hold_bounds: (u32, u32),
    /// How long earned points last when an earn does not say.
    point_validity: Option<chrono::Duration>,
}

impl Commands {
    /// The command layer over `log`; with a `cluster`, its writers decide only for the
    /// aggregates this instance owns, and commands on the others are forwarded.
    pub fn new(
        log: EventLog,
        settings: &Settings,
        accounts: accounts::Accounts,
        cluster: Option<Cluster>,
    ) -> Self {
        let entities = Known::default();
        let committer = Committer::start(
            log.clone(),
            settings.writer.max_commit_batch,
            entities.clone(),
        );
        let fence = cluster.as_ref().map(|c| c.ownership.clone());
        let (w, c) = (&settings.writer, &committer);
        Self {
            coupons: Aggregates::new(log.clone(), c.clone(), w.clone(), fence.clone()),
            points: Aggregates::new(log.clone(), c.clone(), w.clone(), fence.clone()),
            products: Aggregates::new(log.clone(), c.clone(), w.clone(), fence.clone()),
            time_sales: Aggregates::new(log.clone(), committer.clone(), w.clone(), fence),
            lookup: lookup::Lookup::new(log.clone(), entities),
            accounts: Arc::new(accounts),
            cluster,
            hold_bounds: (
                settings.holds.min_ttl_seconds,
                settings.holds.max_ttl_seconds,
            ),
            point_validity: settings
                .points
                .default_validity_days
                .map(|days| chrono::Duration::days(i64::from(days))),
            log,
        }
    }

    /// Whether this instance decides for aggregate `id` (always, when it runs alone).
    pub fn owns(&self, id: Uuid) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|cluster| cluster.ownership.owns(id))
    }

    /// Decides `command` on aggregate `id` of `writers` as `call` asks, and answers with
    /// `answer`'s view of the state after it (or the answer stored for the call's key).
    async fn write<A, T>(
        &self,
        writers: &Aggregates<A>,
        id: Uuid,
        call: &Call,
        command: Named<A::Command>,
        answer: impl Fn(&A, &[A::Event]) -> Option<T> + Send + Sync + 'static,
    ) -> Result<Written<T>, CommandError>
    where
        A: Decide + Serialize + DeserializeOwned,
        A::Command: Clone,
        T: Serialize + DeserializeOwned,
    {
        let Named {
            name,
            command,
            creates,
        } = command;
        let request = Request {
            command,
            key: call.keyed(),
            metadata: call.metadata(name),
            status: if creates { 201 } else { 200 },
            render: Box::new(move |state, events| {
                answer(state, events).map_or(Value::Null, |answer| json!(answer))
            }),
        };
        let committed = writers.execute(id, request).await?;
        let answer = serde_json::from_value(committed.body).map_err(|e| {
            CommandError::Unavailable(format!("{name} answered what it cannot give back: {e}"))
        })?;
        Ok(Written {
            answer,
            version: committed.version,
            position: committed.position,
            created: committed.status == 201,
            replayed: committed.replayed,
        })
    }
}

/// A command with its name (in every event's metadata) and whether its success creates
/// something (201) or changes it (200).
struct Named<C> {
    name: &'static str,
    command: C,
    creates: bool,
}

/// A command that creates an aggregate or an entity.
fn creating<C>(name: &'static str, command: C) -> Named<C> {
    Named {
        name,
        command,
        creates: true,
    }
}

/// A command that changes what exists.
fn changing<C>(name: &'static str, command: C) -> Named<C> {
    Named {
        name,
        command,
        creates: false,
    }
}

/// Who sends a command and how: the caller, the optional idempotency key with the hash of
/// the request it came with, the request's id (each event's causation id), the correlation id
/// it carries on, and its trace context. Every door builds one from what it received.
#[derive(Debug, Clone)]
pub struct Call {
    pub caller: auth::Principal,
    /// 1 to 255 visible ASCII characters.
    pub key: Option<String>,
    /// What makes two requests with one key the same request.
    pub request_hash: Vec<u8>,
    pub request_id: String,
    /// 1 to 128 visible ASCII characters; the request id when none came.
    pub correlation_id: Option<String>,
    /// W3C `traceparent` of the span the command runs in.
    pub traceparent: Option<String>,
    /// Whether another instance forwarded it here (it is not forwarded again).
    pub forwarded: bool,
    /// The bearer token the caller presented, sent along when the command is forwarded: the
    /// owner checks it again, and believes no principal on a caller's word (ADR 15). `None`
    /// with authentication off.
    pub credential: Option<String>,
}

impl Call {
    /// The system's own call (`service:<name>`): a deadline firing, say. No key, no token:
    /// it is never forwarded.
    pub fn system(name: &str) -> Self {
        let request_id = format!("{name}-{}", Uuid::new_v4());
        Call {
            caller: auth::Principal {
                subject: name.to_owned(),
                role: auth::Role::Service,
            },
            key: None,
            request_hash: vec![],
            correlation_id: None,
            traceparent: None,
            forwarded: false,
            credential: None,
            request_id,
        }
    }

    /// The actor of every event, and whose idempotency keys these are: one caller's key never
    /// answers another's request.
    fn keyed(&self) -> Option<Keyed> {
        self.key.as_ref().map(|key| Keyed {
            principal: self.caller.actor(),
            key: key.clone(),
            hash: self.request_hash.clone(),
        })
    }

    /// Metadata stored with every event: correlation id, causation id (this request), the
    /// actor, the command, and the trace context (ADR 12).
    fn metadata(&self, command: &str) -> Value {
        let mut metadata = json!({
            "correlationId": self.correlation_id.as_deref().unwrap_or(&self.request_id),
            "causationId": self.request_id,
            "actor": self.caller.actor(),
            "command": command,
        });
        if let Some(traceparent) = &self.traceparent {
            metadata["traceparent"] = Value::String(traceparent.clone());
        }
        metadata
    }

    /// The user a command acts as when the domain checks ownership (a coupon's use, an
    /// order's cancellation): a user principal; services and admins act for anyone.
    fn acting(&self) -> Option<domain::values::UserId> {
        self.caller
            .acting_user()
            .and_then(|id| domain::values::UserId::parse(id, "userId").ok())
    }
}

/// A command's answer: what it made or changed, the aggregate's version after it, the log
/// position of its last event (the client's consistency token), whether it created something,
/// and whether this is the answer stored for its idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct Written<T> {
    pub answer: T,
    pub version: i64,
    pub position: i64,
    pub created: bool,
    pub replayed: bool,
}
