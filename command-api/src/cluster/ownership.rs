//! Which member decides an aggregate: rendezvous hashing over the live members, a settling
//! time after a change, and nothing at all once this member's lease may have run out.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// A member of the cluster: its name and the address of its gRPC door.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node: String,
    pub address: String,
}

/// What this member knows of the cluster at one moment.
#[derive(Debug, Clone)]
pub struct View {
    /// The live members, as etcd lists them.
    pub members: Vec<Member>,
    /// The member lists this member went through since the last one that had settled (that
    /// one first): an aggregate this member owned in every one of them, and owns now, is
    /// decided here at once on a change. `None` when nothing has settled since this member
    /// registered or its list was last trusted: everything it owns waits the handover time.
    pub since_settled: Option<Vec<Vec<Member>>>,
    /// When the member list last changed here.
    pub changed_at: Instant,
    /// Until when this member's lease surely lives: the time the last answered keep-alive was
    /// sent, plus the lease's time to live. `None` while not registered.
    pub lease_until: Option<Instant>,
    /// Until when the member list is trusted: the start of the last good list, plus the
    /// handover time (a member that gained an aggregate waits as long before deciding).
    pub listed_until: Instant,
}

/// Where a command on an aggregate is decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This member owns it.
    Here,
    /// Another member owns it.
    Peer(Member),
    /// This member gained it a moment ago; it waits until the member that lost it has surely
    /// stopped deciding for it.
    Settling,
    /// This member cannot tell: it is not registered, or its lease may have expired (etcd
    /// unreachable, or the process was frozen past it). It decides nothing.
    Unknown,
}

/// The member that owns `id` among `members`: the one whose score for `id` is highest
/// (rendezvous hashing: a member that leaves moves only its own aggregates).
pub fn owner_of(members: &[Member], id: Uuid) -> Option<&Member> {
    members
        .iter()
        .max_by_key(|m| (score(&m.node, id), m.node.as_str()))
}

/// FNV-1a over the member's name and the id, then a 64-bit finalizer (splitmix64): the same
/// on every member and every build.
fn score(node: &str, id: Uuid) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in node
        .bytes()
        .chain([0xff])
        .chain(id.as_bytes().iter().copied())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// This member's view of who owns what, shared by the command layer (routing), the writers
/// (fencing) and the membership task (which updates it). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ownership {
    me: Arc<str>,
    handover: Duration,
    view: Arc<RwLock<Arc<View>>>,
    /// Bumped at every change of the member list: a writer whose state was loaded under
    /// another list reloads it (its aggregate may have been decided elsewhere meanwhile).
    epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl Ownership {
    /// Member `me`, not registered yet: it decides nothing until it is.
    pub fn new(me: &str, handover: Duration) -> Self {
        Self {
            me: me.into(),
            handover,
            view: Arc::new(RwLock::new(Arc::new(View {
                members: vec![],
                since_settled: None,
                changed_at: Instant::now(),
                lease_until: None,
                listed_until: Instant::now(),
            }))),
            epoch: Arc::default(),
        }
    }

    /// The number of member-list changes so far.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn me(&self) -> &str {
        &self.me
    }

    /// The view as it is now.
    pub fn view(&self) -> Arc<View> {
        self.view.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Where `id` is decided, now.
    pub fn route(&self, id: Uuid) -> Route {
        self.route_at(id, Instant::now())
    }

    /// Whether this member decides `id` now (the writers' fence).
    pub fn owns(&self, id: Uuid) -> bool {
        self.route(id) == Route::Here
    }

    fn route_at(&self, id: Uuid, now: Instant) -> Route {
        let view = self.view();
        let Some(owner) = owner_of(&view.members, id) else {
            return Route::Unknown;
        };
        // Another member's, as far as this one last knew: forwarded even when this member
        // cannot vouch for its own lease or list — the owner decides only what it surely
        // owns, so a wrong guess costs a 503, and this member still serves what it can.
        if owner.node.as_str() != &*self.me {
            return Route::Peer(owner.clone());
        }
        if view.lease_until.is_none_or(|until| now >= until) || now >= view.listed_until {
            return Route::Unknown;
        }
        let mine = |members: &Vec<Member>| {
            owner_of(members, id).is_some_and(|o| o.node.as_str() == &*self.me)
        };
        let settled = now >= view.changed_at + self.handover
            || view
                .since_settled
                .as_ref()
                .is_some_and(|lists| lists.iter().all(mine));
        if settled {
            Route::Here
        } else {
            Route::Settling
        }
    }

    /// The members etcd listed in a read that started at `listed_at`; a change restarts the
    /// settling time. `registered` says whether this member just (re)registered: then
    /// everything it owns settles first, as if it had owned nothing (a member back from a
    /// freeze must not trust what it knew before) — and so when its last list was no longer
    /// trusted (members may have come and gone unseen meanwhile). A change before the last
    /// one settled keeps what the last one kept: an aggregate that was another member's in
    /// any list since is that member's until the handover time has passed.
    pub fn set_members(&self, members: Vec<Member>, registered: bool, listed_at: Instant) {
        self.set_members_at(members, registered, listed_at, Instant::now());
    }

    fn set_members_at(
        &self,
        mut members: Vec<Member>,
        registered: bool,
        listed_at: Instant,
        now: Instant,
    ) {
        /// Lists kept since the last settled one; past it, everything settles.
        const KEPT: usize = 8;
        members.sort_by(|a, b| a.node.cmp(&b.node));
        let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
        let lapsed = now >= view.listed_until;
        let listed_until = (listed_at + self.handover).max(view.listed_until);
        if !registered && !lapsed && view.members == members {
            let mut next = View::clone(&view);
            next.listed_until = listed_until;
            *view = Arc::new(next);
            return;
        }
        let since_settled = if registered || lapsed {
            None
        } else if now >= view.changed_at + self.handover {
            Some(vec![view.members.clone()])
        } else {
            view.since_settled.clone().and_then(|mut lists| {
                lists.push(view.members.clone());
                (lists.len() <= KEPT).then_some(lists)
            })
        };
        metrics::gauge!("cluster_members").set(members.len() as f64);
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        *view = Arc::new(View {
            members,
            since_settled,
            changed_at: now,
            lease_until: view.lease_until,
            listed_until,
        });
    }

    /// The lease surely lives until `until` (or is gone: `None`).
    pub fn set_lease(&self, until: Option<Instant>) {
        let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
        let mut next = View::clone(&view);
        next.lease_until = until;
        *view = Arc::new(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> Vec<Member> {
        names
            .iter()
            .map(|n| Member {
                node: (*n).into(),
                address: format!("{n}:1"),
            })
            .collect()
    }

    /// A list read far in the future: trusted throughout a test.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3_600)
    }

    fn owned(ownership: &Ownership, id: Uuid, now: Instant) -> Route {
        ownership.route_at(id, now)
    }

    #[test]
    fn every_member_computes_the_same_owner_and_a_leaving_member_moves_only_its_own() {
        let three = members(&["a", "b", "c"]);
        let two = members(&["a", "c"]);
        let ids: Vec<Uuid> = (0..3_000).map(|_| Uuid::new_v4()).collect();
        let mut per_member = std::collections::HashMap::new();
        for id in &ids {
            let owner = owner_of(&three, *id).unwrap();
            let mut reversed = three.clone();
            reversed.reverse();
            assert_eq!(owner, owner_of(&reversed, *id).unwrap(), "order matters");
            *per_member.entry(owner.node.clone()).or_insert(0) += 1;
            let after = owner_of(&two, *id).unwrap();
            if owner.node != "b" {
                assert_eq!(owner, after, "an aggregate of a member that stayed moved");
            }
        }
        for (node, count) in per_member {
            assert!((800..1_200).contains(&count), "{node} owns {count} of 3000");
        }
    }

    #[test]
    fn nothing_is_owned_before_registering_or_after_the_lease_may_have_run_out() {
        let ownership = Ownership::new("a", Duration::ZERO);
        let id = Uuid::new_v4();
        let now = Instant::now();
        assert_eq!(owned(&ownership, id, now), Route::Unknown);
        ownership.set_members(members(&["a"]), true, far());
        assert_eq!(owned(&ownership, id, now), Route::Unknown, "no lease yet");
        ownership.set_lease(Some(now + Duration::from_secs(3)));
        assert_eq!(
            owned(&ownership, id, now + Duration::from_secs(1)),
            Route::Here
        );
        assert_eq!(
            owned(&ownership, id, now + Duration::from_secs(3)),
            Route::Unknown,
            "past the lease"
        );
        // Another member's aggregate is still forwarded to it (which decides whether it owns
        // it): this member's doubt about itself stops only its own writes.
        ownership.set_members(members(&["a", "b"]), false, far());
        let other = owned_by("b", &["a", "b"]);
        assert_eq!(
            owned(&ownership, other, now + Duration::from_secs(3)),
            Route::Peer(members(&["b"])[0].clone())
        );
    }

    #[test]
    fn a_member_list_not_read_again_within_the_handover_time_is_not_trusted() {
        let handover = Duration::from_millis(500);
        let ownership = Ownership::new("a", handover);
        let listed = Instant::now();
        ownership.set_members(members(&["a"]), true, listed);
        ownership.set_lease(Some(listed + Duration::from_secs(60)));
        let changed = ownership.view().changed_at;
        let id = Uuid::new_v4();
        // Read again 300 ms later, unchanged: trusted until 300 ms + the handover time.
        ownership.set_members(members(&["a"]), false, listed + Duration::from_millis(300));
        assert_eq!(
            ownership.view().changed_at,
            changed,
            "an unchanged list is no change"
        );
        let ms = Duration::from_millis;
        assert_eq!(
            owned(&ownership, id, changed + handover + ms(100)),
            Route::Here
        );
        assert_eq!(
            owned(&ownership, id, listed + ms(300) + handover),
            Route::Unknown,
            "a list older than the handover time"
        );
    }

    /// An id `node` owns among `among`, and `others` lists each aggregate's owner in order.
    fn owned_by(node: &str, among: &[&str]) -> Uuid {
        (0..)
            .map(|_| Uuid::new_v4())
            .find(|id| owner_of(&members(among), *id).unwrap().node == node)
            .unwrap()
    }

    /// Member `me`, registered at `start` among `among`, with a lease of a minute and the
    /// lists read at the times given (so they are trusted as the test goes).
    fn registered(me: &str, among: &[&str], handover: Duration, start: Instant) -> Ownership {
        let ownership = Ownership::new(me, handover);
        ownership.set_members_at(members(among), true, far(), start);
        ownership.set_lease(Some(start + Duration::from_secs(60)));
        ownership
    }

    #[test]
    fn a_gained_aggregate_settles_for_the_handover_time_and_a_kept_one_does_not() {
        let handover = Duration::from_millis(500);
        let start = Instant::now();
        let ownership = registered("a", &["a", "b"], handover, start);
        let id = owned_by("a", &["a", "b"]);
        assert_eq!(
            owned(&ownership, id, start),
            Route::Settling,
            "just registered"
        );
        assert_eq!(owned(&ownership, id, start + handover), Route::Here);
        // b leaves, once the registration settled: what a owned stays a's at once; what it
        // gains settles.
        let gained = owned_by("b", &["a", "b"]);
        let changed = start + handover * 2;
        ownership.set_members_at(members(&["a"]), false, far(), changed);
        assert_eq!(owned(&ownership, id, changed), Route::Here);
        assert_eq!(owned(&ownership, gained, changed), Route::Settling);
        assert_eq!(owned(&ownership, gained, changed + handover), Route::Here);
        // b is back: its aggregates are its own again, answered by forwarding.
        ownership.set_members_at(members(&["a", "b"]), false, far(), changed + handover);
        assert_eq!(
            owned(&ownership, gained, changed + handover),
            Route::Peer(members(&["b"])[0].clone())
        );
    }

    #[test]
    fn a_change_before_the_last_one_settled_gives_back_nothing_another_member_held_meanwhile() {
        let handover = Duration::from_millis(500);
        let ms = Duration::from_millis;
        let start = Instant::now();
        // Registered alone, settled; then b joins and takes `moved`, and leaves again 100 ms
        // later: `moved` was b's in a list a saw, and b may decide it until a's settling ends.
        let ownership = registered("a", &["a"], handover, start);
        let moved = owned_by("b", &["a", "b"]);
        let kept = owned_by("a", &["a", "b"]);
        let joined = start + handover * 2;
        ownership.set_members_at(members(&["a", "b"]), false, far(), joined);
        assert_eq!(owned(&ownership, kept, joined), Route::Here);
        let left = joined + ms(100);
        ownership.set_members_at(members(&["a"]), false, far(), left);
        assert_eq!(owned(&ownership, kept, left), Route::Here, "a's throughout");
        assert_eq!(owned(&ownership, moved, left), Route::Settling);
        assert_eq!(owned(&ownership, moved, left + handover), Route::Here);

        // A member that registered, then saw another join before its first handover passed:
        // nothing had settled, so nothing is decided before the handover time.
        let late = registered("b", &["a", "b"], handover, start);
        let mine = owned_by("b", &["a", "b", "c"]);
        late.set_members_at(members(&["a", "b", "c"]), false, far(), start + ms(200));
        assert_eq!(owned(&late, mine, start + ms(200)), Route::Settling);
        assert_eq!(owned(&late, mine, start + ms(699)), Route::Settling);
        assert_eq!(owned(&late, mine, start + ms(700)), Route::Here);
    }

    #[test]
    fn a_list_that_comes_after_the_last_one_lapsed_settles_everything_again() {
        let handover = Duration::from_millis(500);
        let ms = Duration::from_millis;
        let start = Instant::now();
        let ownership = Ownership::new("a", handover);
        ownership.set_members_at(members(&["a", "b"]), true, start, start);
        ownership.set_lease(Some(start + Duration::from_secs(60)));
        let id = owned_by("a", &["a", "b"]);
        // Read again every 100 ms: settled, and trusted.
        for step in 1..=6 {
            let at = start + ms(100) * step;
            ownership.set_members_at(members(&["a", "b"]), false, at, at);
        }
        let epoch = ownership.epoch();
        assert_eq!(owned(&ownership, id, start + ms(700)), Route::Here);
        // No list for 1.2 s (etcd unreachable): not trusted from 1.1 s. The same list then
        // comes back — but members may have come and gone unseen: everything settles, and the
        // writers reload (a new epoch).
        assert_eq!(owned(&ownership, id, start + ms(1_100)), Route::Unknown);
        let back = start + ms(1_800);
        ownership.set_members_at(members(&["a", "b"]), false, back, back);
        assert_ne!(ownership.epoch(), epoch, "the writers must reload");
        assert_eq!(owned(&ownership, id, back), Route::Settling);
        // Read again meanwhile (unchanged: the settling goes on), then settled.
        ownership.set_members_at(members(&["a", "b"]), false, back + ms(300), back + ms(300));
        assert_eq!(owned(&ownership, id, back + ms(499)), Route::Settling);
        assert_eq!(owned(&ownership, id, back + handover), Route::Here);
    }
}
