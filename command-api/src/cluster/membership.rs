//! Membership in etcd: this member's key (`prefix` + node → its gRPC address) under a lease
//! kept alive every third of its time to live, and the member list, watched and re-read. Each
//! answered keep-alive extends how long [`Ownership`] trusts the view; a lease that etcd no
//! longer knows (this process was frozen past it) or that cannot be renewed (etcd down) leaves
//! the member owning nothing until it has registered again.

use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, PutOptions, WatchOptions};
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

/// Keeps this member registered until `stop` turns true, then revokes its lease so the others
/// take over at once (ends within a second of `stop`: each call to etcd has a deadline of
/// 400 ms, the revocation 300 ms).
pub(super) async fn run(
    settings: ClusterSettings,
    address: String,
    ownership: Ownership,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    loop {
        let session = Session::open(&settings, &address, &ownership);
        let outcome = tokio::select! {
            outcome = session => outcome,
            () = stopped(&mut stop) => break,
        };
        match outcome {
            Ok(mut session) => {
                if std::mem::take(&mut failing) {
                    tracing::info!(node = %settings.node, "registered in etcd again");
                } else {
                    tracing::info!(node = %settings.node, %address, "registered in etcd");
                }
                backoff = Duration::from_millis(100);
                let ended = session.keep(&settings, &ownership, &mut stop).await;
                if *stop.borrow() {
                    session.revoke().await;
                    break;
                }
                failing = true;
                tracing::warn!(node = %settings.node, reason = %ended, "membership lost; registering again");
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(node = %settings.node, error = %e, "cannot register in etcd; retrying");
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
    ) -> Result<Self, Failure> {
        let ttl = settings.lease_ttl_seconds;
        let endpoints: Vec<&str> = settings.etcd.split(',').map(str::trim).collect();
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(LIST_DEADLINE);
        let mut client = Client::connect(endpoints, Some(options)).await?;
        let granted_at = Instant::now();
        let lease = client.lease_grant(ttl as i64, None).await?.id();
        let key = format!("{}{}", settings.prefix, settings.node);
        client
            .put(key, address, Some(PutOptions::new().with_lease(lease)))
            .await?;
        let (members, revision) = list(&mut client, &settings.prefix).await?;
        ownership.set_members(members, true);
        ownership.set_lease(Some(granted_at + Duration::from_secs(ttl)));
        Ok(Self {
            client,
            lease,
            revision,
        })
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
                    // The list again, in case a watch event was missed.
                    match list(&mut self.client, &settings.prefix).await {
                        Ok((members, _)) => ownership.set_members(members, false),
                        Err(e) => return format!("listing members: {e}"),
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
                    Ok(Some(_)) => match list(&mut self.client, &settings.prefix).await {
                        Ok((members, _)) => ownership.set_members(members, false),
                        Err(e) => return format!("listing members: {e}"),
                    },
                    Ok(None) => return "watch ended".into(),
                    Err(e) => return format!("watch: {e}"),
                },
            }
        }
    }

    /// Gives the lease back: this member's key goes at once and the others take over.
    async fn revoke(&mut self) {
        let revoked =
            tokio::time::timeout(REVOKE_DEADLINE, self.client.lease_revoke(self.lease)).await;
        match revoked {
            Ok(Ok(_)) => tracing::info!("left the cluster (lease revoked)"),
            _ => tracing::warn!("could not revoke the lease; it expires by itself"),
        }
    }
}

/// The members under `prefix`, and the revision they were read at.
async fn list(client: &mut Client, prefix: &str) -> Result<(Vec<Member>, i64), Failure> {
    let found = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await?;
    let revision = found.header().map_or(0, |h| h.revision());
    let members = found
        .kvs()
        .iter()
        .filter_map(|kv| {
            let node = kv.key_str().ok()?.strip_prefix(prefix)?.to_owned();
            let address = kv.value_str().ok()?.to_owned();
            Some(Member { node, address })
        })
        .collect();
    Ok((members, revision))
}
