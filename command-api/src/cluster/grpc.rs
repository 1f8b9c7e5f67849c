//! The gRPC door between members (`proto/cluster.proto`): [`Door`] serves forwarded commands
//! through the command layer; [`Peers`] forwards to the owner, with a deadline and a circuit
//! breaker per peer, so a dead or frozen owner costs a caller one deadline, and then none
//! until a probe answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use service::breaker::{Admit, Breaker};
use tonic::transport::{Channel, Endpoint};

use super::ownership::Member;
use crate::commands::{Call, CommandError, Commands, Routed, Written};

#[allow(unreachable_pub, missing_debug_implementations, clippy::all)]
pub mod proto {
    tonic::include_proto!("promo.cluster.v1");
}

use proto::commands_client::CommandsClient;

/// The owner's side: decides a forwarded command here, never forwarding it again.
#[derive(Debug, Clone)]
pub struct Door {
    pub commands: Commands,
    /// Verifies the forwarded caller's token again (`None`: authentication is off, and the
    /// settings keep the door on loopback then).
    pub authenticator: Option<Arc<auth::Authenticator>>,
}

impl Door {
    pub fn service(self) -> proto::commands_server::CommandsServer<Self> {
        proto::commands_server::CommandsServer::new(self).max_decoding_message_size(
            crate::http::extract::MAX_BODY_BYTES
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(64 * 1024)
                .saturating_mul(2),
        )
    }
}

#[tonic::async_trait]
impl proto::commands_server::Commands for Door {
    async fn forward(
        &self,
        request: tonic::Request<proto::Forwarded>,
    ) -> Result<tonic::Response<proto::Answer>, tonic::Status> {
        let forwarded = request.into_inner();
        let outcome = match (
            forwarded.call.map(Call::from_proto).transpose(),
            serde_json::from_slice::<Routed>(&forwarded.command),
        ) {
            (Ok(Some(call)), Ok(command)) => match self.authenticated(&call) {
                Ok(()) => self.commands.run(&call, command).await,
                Err(refusal) => Err(refusal),
            },
            // What another instance sends is checked, but a call or a command this one cannot
            // read is not the client's fault (instances of two versions during an upgrade, say):
            // a 503, and the client's retry finds another way.
            (Err(e), _) => Err(CommandError::Unavailable(format!(
                "a forwarded call refused: {e}"
            ))),
            (Ok(None), _) => Err(CommandError::Unavailable(
                "a forwarded command without its call".into(),
            )),
            (_, Err(e)) => Err(CommandError::Unavailable(problem::bounded(
                &format!("a forwarded command that does not parse: {e}"),
                200,
            ))),
        };
        Ok(tonic::Response::new(answer_of(outcome)))
    }
}

impl Door {
    /// Whether the call's token verifies here, as the principal it names: the door believes
    /// no principal on the word of whoever reached its port.
    fn authenticated(&self, call: &Call) -> Result<(), CommandError> {
        let Some(authenticator) = &self.authenticator else {
            return Ok(());
        };
        let Some(token) = call.credential.as_deref() else {
            // An instance of a version before tokens crossed the hop (a rolling upgrade), or
            // not an instance at all: not the client's fault either way, and no principal is
            // believed — 503, and the client's retry finds another way.
            return Err(CommandError::Unavailable(
                "a forwarded call without the client's token".into(),
            ));
        };
        match auth::http::verify_bounded(authenticator, token) {
            Ok(principal) if principal == call.caller => Ok(()),
            other => {
                tracing::warn!(
                    request_id = %call.request_id,
                    verified = other.is_ok(),
                    "a forwarded call refused: its token does not verify, or names another \
                     principal"
                );
                Err(CommandError::Other {
                    status: axum::http::StatusCode::UNAUTHORIZED,
                    code: "UNAUTHENTICATED",
                    detail: "the bearer token is not valid",
                    field: Some("Authorization"),
                })
            }
        }
    }
}

/// The answer on the wire for what the command layer gave back.
fn answer_of(outcome: Result<Written<serde_json::Value>, CommandError>) -> proto::Answer {
    let outcome = match outcome {
        Ok(written) => proto::answer::Outcome::Written(proto::Written {
            answer: serde_json::to_vec(&written.answer).unwrap_or_default(),
            version: written.version,
            position: written.position,
            created: written.created,
            replayed: written.replayed,
        }),
        Err(e) => {
            if let CommandError::Unavailable(cause) = &e {
                tracing::error!(%cause, "forwarded command failed on a dependency");
            }
            let (status, body) = e.problem();
            proto::answer::Outcome::Refused(proto::Refused {
                status: u32::from(status.as_u16()),
                problem: serde_json::to_vec(&body).unwrap_or_default(),
            })
        }
    };
    proto::Answer {
        outcome: Some(outcome),
    }
}

/// The command layer's result for an answer that came back over the wire.
fn outcome_of(answer: proto::Answer) -> Result<Written<serde_json::Value>, CommandError> {
    let unreadable = |what: &str| CommandError::Unavailable(format!("the owner answered {what}"));
    match answer.outcome {
        Some(proto::answer::Outcome::Written(w)) => Ok(Written {
            answer: serde_json::from_slice(&w.answer).map_err(|_| unreadable("unreadable JSON"))?,
            version: w.version,
            position: w.position,
            created: w.created,
            replayed: w.replayed,
        }),
        Some(proto::answer::Outcome::Refused(r)) => Err(CommandError::Stored {
            status: u16::try_from(r.status).map_err(|_| unreadable("a bad status"))?,
            body: serde_json::from_slice(&r.problem).map_err(|_| unreadable("unreadable JSON"))?,
        }),
        None => Err(unreadable("nothing")),
    }
}

/// Clients to the other members, one per address, each behind its own breaker.
#[derive(Debug)]
pub struct Peers {
    deadline: Duration,
    clients: Mutex<HashMap<String, Peer>>,
}

/// A client to one member, and its breaker.
type Peer = (CommandsClient<Channel>, Arc<Breaker>);

/// A peer that failed is skipped this long before one command probes it again.
const PROBE_EVERY: Duration = Duration::from_millis(500);

impl Peers {
    pub fn new(deadline: Duration) -> Self {
        Self {
            deadline,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self, member: &Member) -> Result<Peer, CommandError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((client, breaker)) = clients.get(&member.address) {
            return Ok((client.clone(), breaker.clone()));
        }
        let endpoint = Endpoint::from_shared(format!("http://{}", member.address))
            .map_err(|e| CommandError::Unavailable(format!("peer {}: {e}", member.node)))?
            .connect_timeout(self.deadline.min(Duration::from_millis(500)))
            .tcp_nodelay(true)
            // A peer whose host vanished (no FIN, no RST) is noticed by a missed ping, not
            // only by the deadlines of the commands sent meanwhile.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true);
        let client = CommandsClient::new(endpoint.connect_lazy());
        // One per peer in logs and metrics: `breaker_open{dependency="peer:b"}`.
        let breaker = Arc::new(Breaker::new(format!("peer:{}", member.node), PROBE_EVERY));
        clients.insert(member.address.clone(), (client.clone(), breaker.clone()));
        Ok((client, breaker))
    }

    /// Has `member` decide `command` as `call` asks, within the deadline; a peer that failed
    /// or did not answer in time is skipped (503) until a probe answers.
    pub async fn forward(
        &self,
        member: &Member,
        call: &Call,
        command: &Routed,
    ) -> Result<Written<serde_json::Value>, CommandError> {
        let (mut client, breaker) = self.client(member)?;
        let admitted = breaker.admit();
        if admitted == Admit::Skip {
            metrics::counter!("cluster_forwarded_total", "outcome" => "skipped").increment(1);
            return Err(peer_unavailable());
        }
        let request = proto::Forwarded {
            call: Some(call.to_proto()),
            command: serde_json::to_vec(command).unwrap_or_default(),
        };
        let mut request = tonic::Request::new(request);
        request.set_timeout(self.deadline);
        let answered = breaker
            .timed(admitted, self.deadline, client.forward(request))
            .await;
        match answered {
            Some(answer) => {
                metrics::counter!("cluster_forwarded_total", "outcome" => "answered").increment(1);
                outcome_of(answer.into_inner())
            }
            None => {
                metrics::counter!("cluster_forwarded_total", "outcome" => "failed").increment(1);
                Err(peer_unavailable())
            }
        }
    }
}

fn peer_unavailable() -> CommandError {
    CommandError::Other {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        code: "OWNER_UNAVAILABLE",
        detail: "the instance that owns this aggregate did not answer in time (the command may have reached it); retry with the same Idempotency-Key",
        field: None,
    }
}
