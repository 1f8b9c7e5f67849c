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

/// Keeps this member registered until `stop` turns true, then revokes its lease so the others
/// take over at once (ends within a second of `stop`).
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
            .with_timeout(Duration::from_millis(800));
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
        let (mut keeper, mut answers) = match self.client.lease_keep_alive(self.lease).await {
            Ok(pair) => pair,
            Err(e) => return format!("keep-alive: {e}"),
        };
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(self.revision + 1);
        let mut changes = match self
            .client
            .watch(settings.prefix.as_str(), Some(options))
            .await
        {
            Ok(stream) => stream,
            Err(e) => return format!("watch: {e}"),
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sent: Option<Instant> = None;
        loop {
            tokio::select! {
                () = stopped(stop) => return "stopping".into(),
                _ = tick.tick() => {
                    // A keep-alive unanswered for a whole period: the stream is stuck (etcd
                    // frozen or gone); start over rather than wait on it.
                    if sent.is_some_and(|at| at.elapsed() > every * 2) {
                        return "keep-alive unanswered".into();
                    }
                    if sent.is_none() {
                        if let Err(e) = keeper.keep_alive().await {
                            return format!("keep-alive: {e}");
                        }
                        sent = Some(Instant::now());
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
        let revoked = tokio::time::timeout(
            Duration::from_millis(500),
            self.client.lease_revoke(self.lease),
        )
        .await;
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
