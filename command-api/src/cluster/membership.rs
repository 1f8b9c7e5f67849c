//! Membership in etcd: this member's key (`prefix` + node → its gRPC address) under a lease
//! kept alive every third of its time to live, and the member list, watched and re-read every
//! third of the handover time. Each answered keep-alive extends how long [`Ownership`] trusts
//! this member's lease, each list how long it trusts the member list (one handover time from
//! the list's start: a member that gains an aggregate waits that long, so the one that lost it
//! has stopped by then even if it missed the change). A lease that etcd no longer knows (this
//! process was frozen past it), one that cannot be renewed (etcd down), or this member's key
//! held by another process leaves the member owning nothing until it has registered again.

use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::watch;

use super::ownership::{Member, Ownership};
use crate::settings::ClusterSettings;

/// Most time between two attempts to reach etcd.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Deadline of one call to etcd (listing, sending a keep-alive): short, so a stop is never
/// kept waiting long.
const LIST_DEADLINE: Duration = Duration::from_millis(400);
/// Deadline of the lease's revocation at shutdown.
const REVOKE_DEADLINE: Duration = Duration::from_millis(300);

/// Keeps this member registered until `stop` turns true, then revokes its lease (and any it
/// could not revoke before) so the others take over after one handover time rather than a lease
/// time (ends within a second of `stop`: each call to etcd has a deadline of 400 ms, the
/// revocations 300 ms).
pub(super) async fn run(
    settings: ClusterSettings,
    address: String,
    ownership: Ownership,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    // A run of failures is under way (and was logged), and whether coming back was logged: a
    // registration counts as recovered once it has held for a lease time, so a member whose
    // sessions keep failing soon after they open backs off and logs once, not every round.
    let (mut failing, mut told_back) = (false, false);
    let held = Duration::from_secs(settings.lease_ttl_seconds);
    // Leases of this member's not revoked yet: one etcd did not answer the revocation of (down;
    // after a restart etcd extends it, and its key would hold the name for a lease time
    // more), or one granted by a registration that was cut off by the stop.
    let mut unrevoked = Vec::new();
    loop {
        let session = Session::open(&settings, &address, &ownership, &mut unrevoked);
        let outcome = tokio::select! {
            outcome = session => outcome,
            () = stopped(&mut stop) => break,
        };
        match outcome {
            Ok(mut session) => {
                if !failing {
                    tracing::info!(node = %settings.node, %address, "registered in etcd");
                } else if !std::mem::replace(&mut told_back, true) {
                    tracing::info!(node = %settings.node, "registered in etcd again");
                }
                let opened = Instant::now();
                let ended = session.keep(&settings, &ownership, &mut stop).await;
                ownership.set_lease(None);
                // The old lease goes (if etcd still answers), so its key does not hold the
                // name against the next registration until it expires; else the next
                // registration tries again.
                unrevoked.push(session.lease);
                let _ = tokio::time::timeout(
                    REVOKE_DEADLINE,
                    revoke_all(&mut session.client, &mut unrevoked),
                )
                .await;
                if unrevoked.contains(&session.lease) {
                    tracing::warn!("could not revoke the lease; it expires by itself, or goes at the next registration");
                } else {
                    tracing::info!("lease revoked: this member is out of the list");
                }
                if *stop.borrow() {
                    break;
                }
                if opened.elapsed() >= held {
                    (failing, told_back) = (false, false);
                    backoff = Duration::from_millis(100);
                }
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(node = %settings.node, reason = %ended, "membership lost; registering again");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(node = %settings.node, error = %e, "cannot register in etcd; retrying");
                } else {
                    tracing::debug!(node = %settings.node, error = %e, "registration failed again");
                }
            }
        }
        ownership.set_lease(None);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(&mut stop) => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    ownership.set_lease(None);
    if !unrevoked.is_empty() {
        let revoked = tokio::time::timeout(REVOKE_DEADLINE, async {
            let mut client = connect(&settings).await.ok()?;
            revoke_all(&mut client, &mut unrevoked).await;
            Some(())
        })
        .await;
        if revoked.is_err() || !unrevoked.is_empty() {
            tracing::warn!(
                leases = unrevoked.len(),
                "leases left to expire by themselves"
            );
        }
    }
}

/// A client of etcd with the deadlines this module keeps.
async fn connect(settings: &ClusterSettings) -> Result<Client, etcd_client::Error> {
    let endpoints: Vec<&str> = settings.etcd.split(',').map(str::trim).collect();
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(1))
        .with_timeout(LIST_DEADLINE);
    Client::connect(endpoints, Some(options)).await
}

/// Revokes `leases`, keeping those etcd did not revoke — but for a lease it no longer knows
/// (expired: gone too). Any other refusal (an etcd just restarted, without a leader yet) is
/// tried again at the next registration. Cut off by a deadline, it keeps what it had not
/// revoked yet.
async fn revoke_all(client: &mut Client, leases: &mut Vec<i64>) {
    for lease in leases.clone() {
        let gone = match client.lease_revoke(lease).await {
            Ok(_) => true,
            Err(etcd_client::Error::GRpcStatus(status)) => status.code() == tonic::Code::NotFound,
            Err(_) => false,
        };
        if gone {
            leases.retain(|l| *l != lease);
        }
    }
}

/// Completes when `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One registration: a client, a lease, this member's key under it.
struct Session {
    client: Client,
    lease: i64,
    revision: i64,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

impl Session {
    async fn open(
        settings: &ClusterSettings,
        address: &str,
        ownership: &Ownership,
        unrevoked: &mut Vec<i64>,
    ) -> Result<Self, Failure> {
        let ttl = settings.lease_ttl_seconds;
        let mut client = connect(settings).await?;
        // Ours, from before: their keys go with them.
        revoke_all(&mut client, unrevoked).await;
        let granted_at = Instant::now();
        let lease = client.lease_grant(ttl as i64, None).await?.id();
        // Until registered, the new lease is a leftover too: if the stop cuts this off, it
        // is revoked on the way out.
        unrevoked.push(lease);
        match Self::register(&mut client, settings, address, lease, ownership).await {
            Ok(Some(revision)) => {
                unrevoked.retain(|l| *l != lease);
                ownership.set_lease(Some(granted_at + Duration::from_secs(ttl)));
                Ok(Self {
                    client,
                    lease,
                    revision,
                })
            }
            // The key under this lease may have been put (a put applied, its answer lost):
            // the lease goes, now or at the next registration, so no key of ours is left
            // that nothing keeps alive.
            outcome => {
                revoke_all(&mut client, unrevoked).await;
                Err(match outcome {
                    Ok(_) => format!(
                        "another process holds the name {} (a previous life of this one: until \
                         its lease expires)",
                        settings.node
                    )
                    .into(),
                    Err(e) => e,
                })
            }
        }
    }

    /// Puts this member's key under `lease` if no other holds the name, and reads the list;
    /// the revision it was read at, or `None` when the name was taken.
    async fn register(
        client: &mut Client,
        settings: &ClusterSettings,
        address: &str,
        lease: i64,
        ownership: &Ownership,
    ) -> Result<Option<i64>, Failure> {
        // Only if no other process holds the name: a second process started with it (or this
        // one's previous life, until its lease expires) waits.
        let key = format!("{}{}", settings.prefix, settings.node);
        let put = TxnOp::put(
            key.as_str(),
            address,
            Some(PutOptions::new().with_lease(lease)),
        );
        let free = Compare::create_revision(key.as_str(), CompareOp::Equal, 0);
        let registered = client.txn(Txn::new().when([free]).and_then([put])).await?;
        if !registered.succeeded() {
            return Ok(None);
        }
        let listed_at = Instant::now();
        let (members, revision) = list(client, settings, lease).await?.ok_or(NOT_OURS)?;
        ownership.set_members(members, true, listed_at);
        Ok(Some(revision))
    }

    /// Keeps the lease alive and the view current until something fails or `stop`; says why
    /// it ended.
    async fn keep(
        &mut self,
        settings: &ClusterSettings,
        ownership: &Ownership,
        stop: &mut watch::Receiver<bool>,
    ) -> String {
        let ttl = Duration::from_secs(settings.lease_ttl_seconds);
        let every = ttl / 3;
        let started = tokio::time::timeout(LIST_DEADLINE * 2, async {
            let keep_alive = self.client.lease_keep_alive(self.lease).await?;
            let options = WatchOptions::new()
                .with_prefix()
                .with_start_revision(self.revision + 1);
            let changes = self
                .client
                .watch(settings.prefix.as_str(), Some(options))
                .await?;
            Ok::<_, etcd_client::Error>((keep_alive, changes))
        })
        .await;
        let ((mut keeper, mut answers), mut changes) = match started {
            Ok(Ok(started)) => started,
            Ok(Err(e)) => return format!("keep-alive or watch: {e}"),
            Err(_) => return "keep-alive or watch not started in time".into(),
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let handover = Duration::from_millis(settings.handover_ms);
        let mut relist = tokio::time::interval((handover / 3).max(Duration::from_millis(50)));
        // A list slower than a third of the handover time is given up for the next: one slow
        // read must not let the view's trust run out while a quicker one could have kept it.
        let list_deadline = LIST_DEADLINE
            .min(handover / 3)
            .max(Duration::from_millis(50));
        relist.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listing_fails = false;
        let mut sent: Option<Instant> = None;
        loop {
            tokio::select! {
                () = stopped(stop) => return "stopping".into(),
                _ = tick.tick() => {
                    // A keep-alive unanswered for two periods: the stream is stuck (etcd
                    // frozen or gone); start over rather than wait on it.
                    if sent.is_some_and(|at| at.elapsed() > every * 2) {
                        return "keep-alive unanswered".into();
                    }
                    if sent.is_none() {
                        // The time before the send: etcd renews at or after it.
                        let at = Instant::now();
                        match tokio::time::timeout(LIST_DEADLINE, keeper.keep_alive()).await {
                            Ok(Ok(())) => sent = Some(at),
                            Ok(Err(e)) => return format!("keep-alive: {e}"),
                            Err(_) => return "keep-alive not sent in time".into(),
                        }
                    }
                }
                _ = relist.tick() => {
                    // The list again: it keeps the view trusted, and catches a missed event.
                    // A failed list ends nothing: the view is trusted a handover time after
                    // the last good one, and the next tries again.
                    let listed_at = Instant::now();
                    match self.list_within(settings, list_deadline).await {
                        Ok(Some((members, _))) => {
                            if std::mem::take(&mut listing_fails) {
                                tracing::info!("listing the members works again");
                            }
                            ownership.set_members(members, false, listed_at);
                        }
                        Ok(None) => return NOT_OURS.into(),
                        Err(e) => {
                            if !std::mem::replace(&mut listing_fails, true) {
                                tracing::warn!(error = %e, "listing the members failed; the view expires unless a list succeeds");
                            }
                        }
                    }
                }
                answer = answers.message() => match answer {
                    Ok(Some(answer)) if answer.ttl() > 0 => {
                        if let Some(at) = sent.take() {
                            ownership.set_lease(Some(at + Duration::from_secs(answer.ttl() as u64)));
                        }
                    }
                    Ok(Some(_)) => return "the lease expired (this member was away too long)".into(),
                    Ok(None) => return "keep-alive stream ended".into(),
                    Err(e) => return format!("keep-alive: {e}"),
                },
                change = changes.message() => match change {
                    Ok(Some(_)) => {
                        let listed_at = Instant::now();
                        match self.list_within(settings, list_deadline).await {
                            Ok(Some((members, _))) => ownership.set_members(members, false, listed_at),
                            Ok(None) => return NOT_OURS.into(),
                            Err(_) => {} // the next list tries again
                        }
                    }
                    Ok(None) => return "watch ended".into(),
                    Err(e) => return format!("watch: {e}"),
                },
            }
        }
    }

    /// The member list, read within `deadline`.
    async fn list_within(
        &mut self,
        settings: &ClusterSettings,
        deadline: Duration,
    ) -> Result<Option<(Vec<Member>, i64)>, String> {
        match tokio::time::timeout(deadline, list(&mut self.client, settings, self.lease)).await {
            Ok(listed) => listed.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {deadline:?}")),
        }
    }
}

/// What a list says when this member's key is gone or under another lease.
const NOT_OURS: &str = "this member's key is gone or held by another lease";

/// The members under the prefix, and the revision they were read at; `None` when this
/// member's own key is not there under `lease` (it lost its registration).
async fn list(
    client: &mut Client,
    settings: &ClusterSettings,
    lease: i64,
) -> Result<Option<(Vec<Member>, i64)>, Failure> {
    let prefix = settings.prefix.as_str();
    let found = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await?;
    let revision = found.header().map_or(0, |h| h.revision());
    let mut ours = false;
    let members = found
        .kvs()
        .iter()
        .filter_map(|kv| {
            let node = kv.key_str().ok()?.strip_prefix(prefix)?.to_owned();
            let address = kv.value_str().ok()?.to_owned();
            ours |= node == settings.node && kv.lease() == lease;
            Some(Member { node, address })
        })
        .collect();
    Ok(ours.then_some((members, revision)))
}
