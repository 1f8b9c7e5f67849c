//! Commands on an aggregate this instance may not own (ADR 15): [`Routed`] names each with
//! its input, so it can be forwarded to the owner and run there by [`Commands::run`]; the
//! command functions ask [`Commands::routed`] where they are decided before they write.
//! Commands that create an aggregate are not forwarded: they pick an id this instance owns
//! ([`Commands::new_id`]).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{coupons, holds, points, sales, Call, CommandError, Commands, Written};
use crate::cluster::{proto, Route};

/// A command on an existing aggregate, with its input: what crosses to the owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", content = "input", deny_unknown_fields)]
pub enum Routed {
    IssueCoupon(coupons::Issue),
    UseCoupon {
        coupon_id: Uuid,
        input: coupons::Use,
    },
    CancelCouponUse {
        coupon_id: Uuid,
    },
    RevokeCoupon {
        coupon_id: Uuid,
    },
    EarnPoints(points::Earn),
    SpendPoints(points::Spend),
    CancelPoints(points::Cancel),
    PlaceOrder(sales::PlaceOrder),
    CancelOrder {
        order_id: Uuid,
    },
    Reserve(holds::Reserve),
    /// Confirm or release (expiry is decided by the owner's own deadline runner).
    EndHold {
        reservation_id: Uuid,
        end: holds::HoldEnd,
    },
    ReserveCoupon {
        coupon_id: Uuid,
        input: holds::ReserveCoupon,
    },
    /// Confirm or release a coupon's hold.
    EndCouponHold {
        coupon_id: Uuid,
        end: holds::HoldEnd,
    },
}

/// `written`, its answer as JSON.
fn json<T: Serialize>(written: Written<T>) -> Written<Value> {
    Written {
        answer: serde_json::to_value(&written.answer).unwrap_or(Value::Null),
        version: written.version,
        position: written.position,
        created: written.created,
        replayed: written.replayed,
    }
}

impl Commands {
    /// Runs `command` as `call` asks (the gRPC door's way in).
    pub async fn run(&self, call: &Call, command: Routed) -> Result<Written<Value>, CommandError> {
        Ok(match command {
            Routed::IssueCoupon(input) => json(self.issue(call, input).await?),
            Routed::UseCoupon { coupon_id, input } => {
                json(self.use_coupon(call, coupon_id, input).await?)
            }
            Routed::CancelCouponUse { coupon_id } => {
                json(self.cancel_coupon_use(call, coupon_id).await?)
            }
            Routed::RevokeCoupon { coupon_id } => json(self.revoke_coupon(call, coupon_id).await?),
            Routed::EarnPoints(input) => json(self.earn_points(call, input).await?),
            Routed::SpendPoints(input) => json(self.spend_points(call, input).await?),
            Routed::CancelPoints(input) => json(self.cancel_points(call, input).await?),
            Routed::PlaceOrder(input) => json(self.place_order(call, input).await?),
            Routed::CancelOrder { order_id } => json(self.cancel_order(call, order_id).await?),
            Routed::Reserve(input) => json(self.reserve(call, input).await?),
            Routed::EndHold {
                end: holds::HoldEnd::Expire,
                ..
            }
            | Routed::EndCouponHold {
                end: holds::HoldEnd::Expire,
                ..
            } => {
                return Err(CommandError::invalid(
                    "a forwarded call cannot expire a hold: its owner's deadlines do",
                    None,
                ))
            }
            Routed::EndHold {
                reservation_id,
                end,
            } => json(self.end_hold(call, reservation_id, end).await?),
            Routed::ReserveCoupon { coupon_id, input } => {
                json(self.reserve_coupon(call, coupon_id, input).await?)
            }
            Routed::EndCouponHold { coupon_id, end } => {
                json(self.end_coupon_hold(call, coupon_id, end).await?)
            }
        })
    }

    /// Where a command on aggregate `id` is decided: here (`None`), or by its owner, whose
    /// answer this is. A command that was forwarded already is not forwarded again: while the
    /// members disagree on the owner, it is answered 503 and its retry settles it.
    pub(super) async fn routed<T: DeserializeOwned>(
        &self,
        id: Uuid,
        call: &Call,
        command: impl FnOnce() -> Routed,
    ) -> Option<Result<Written<T>, CommandError>> {
        let cluster = self.cluster.as_ref()?;
        match cluster.ownership.route(id) {
            Route::Here => None,
            Route::Peer(owner) if !call.forwarded => {
                let answered = cluster.peers.forward(&owner, call, &command()).await;
                Some(answered.and_then(|written| {
                    let answer = serde_json::from_value(written.answer).map_err(|e| {
                        CommandError::Unavailable(format!("the owner's answer does not parse: {e}"))
                    })?;
                    Ok(Written {
                        answer,
                        version: written.version,
                        position: written.position,
                        created: written.created,
                        replayed: written.replayed,
                    })
                }))
            }
            Route::Peer(_) | Route::Settling => Some(Err(moving())),
            Route::Unknown => Some(Err(CommandError::Other {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                code: "MEMBERSHIP_UNKNOWN",
                detail: "this instance cannot confirm its membership of the cluster (etcd); retry",
                field: None,
            })),
        }
    }

    /// An id for a new aggregate that this instance owns, so its creation and the commands
    /// right after it are decided here; a random one when it owns none (its writer refuses).
    pub(super) fn new_id(&self) -> Uuid {
        let Some(cluster) = &self.cluster else {
            return Uuid::new_v4();
        };
        let mut id = Uuid::new_v4();
        for _ in 0..64 {
            if cluster.ownership.route(id) == Route::Here {
                break;
            }
            id = Uuid::new_v4();
        }
        id
    }
}

/// The owner of an aggregate is changing (or this instance lost it): retry.
pub(crate) fn moving() -> CommandError {
    CommandError::Other {
        status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
        code: "OWNER_MOVING",
        detail: "this aggregate's owner is changing; retry (with the same Idempotency-Key)",
        field: None,
    }
}

impl Call {
    /// The call on the wire.
    pub fn to_proto(&self) -> proto::Call {
        proto::Call {
            caller: Some(proto::Principal {
                subject: self.caller.subject.clone(),
                role: self.caller.role.as_str().to_owned(),
            }),
            idempotency_key: self.key.clone(),
            request_hash: self.request_hash.clone(),
            request_id: self.request_id.clone(),
            correlation_id: self.correlation_id.clone(),
            traceparent: self.traceparent.clone(),
            credential: self.credential.clone(),
        }
    }

    /// The call that came over the wire, checked as the HTTP door checks it; marked as
    /// forwarded.
    pub fn from_proto(call: proto::Call) -> Result<Self, CommandError> {
        let invalid =
            |what: &str| CommandError::invalid(format!("a forwarded call with {what}"), None);
        let principal = call.caller.ok_or_else(|| invalid("no caller"))?;
        let role = match principal.role.as_str() {
            "admin" => auth::Role::Admin,
            "user" => auth::Role::User,
            "service" => auth::Role::Service,
            _ => return Err(invalid("an unknown role")),
        };
        let visible = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())
        };
        if principal.subject.is_empty() || principal.subject.len() > 255 {
            return Err(invalid("a bad subject"));
        }
        if call
            .idempotency_key
            .as_deref()
            .is_some_and(|k| !visible(k, 255))
        {
            return Err(invalid("a bad idempotency key"));
        }
        if call
            .correlation_id
            .as_deref()
            .is_some_and(|c| !visible(c, 128))
        {
            return Err(invalid("a bad correlation id"));
        }
        if !visible(&call.request_id, 128) || call.request_hash.len() > 64 {
            return Err(invalid("a bad request id or hash"));
        }

        Ok(Call {
            caller: auth::Principal {
                subject: principal.subject,
                role,
            },
            key: call.idempotency_key,
            request_hash: call.request_hash,
            request_id: call.request_id,
            correlation_id: call.correlation_id,
            traceparent: call.traceparent.filter(|t| visible(t, 128)),
            forwarded: true,
            // A token no verifier would take counts as none (refused by the door when it
            // verifies; ignored with authentication off, as the HTTP door ignores it).
            credential: call
                .credential
                .filter(|c| visible(c, auth::http::MAX_TOKEN_BYTES)),
        })
    }
}
