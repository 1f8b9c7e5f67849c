//! Parking against real PostgreSQL (a fresh database per test): what PostgreSQL refuses, and
//! what does not decode, is parked with every later event of its aggregate; everything else
//! of the stretch is applied; a later stretch queues behind; once the cause is gone, the
//! parked events apply in order.
#![allow(clippy::unwrap_used)]

use eventlog::{AppendBatch, EventLog, NewEvent, RecordedEvent, StreamAppend};
use readmodel::parked;
use readmodel::projection;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

const SCHEMA: &str = "rm";

/// An earn of `amount` for `user`, as the command API writes it (`version` 99 decodes as
/// nothing this code knows).
fn earned(user: i64, description: &str, balance_after: i64, version: i16) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "point.earned".into(),
        schema_version: version,
        data: json!({ "userId": user, "transactionId": Uuid::new_v4(), "amount": 10,
                      "description": description, "balanceAfter": balance_after,
                      "occurredAt": chrono::Utc::now() }),
        metadata: json!({}),
    }
}

/// The test's log: one stream per user; appends in the order given.
struct Log {
    log: EventLog,
    streams: std::collections::HashMap<i64, (Uuid, i64)>,
}

impl Log {
    async fn new(pool: PgPool) -> Log {
        let log = EventLog::from_pool(pool.clone());
        log.migrate().await.unwrap();
        projection::ensure_schema(&pool, SCHEMA).await.unwrap();
        sqlx::query(
            "ALTER TABLE rm.point_history ADD CONSTRAINT no_poison CHECK (description <> 'poison')",
        )
        .execute(&pool)
        .await
        .unwrap();
        Log {
            log,
            streams: Default::default(),
        }
    }

    async fn append(&mut self, user: i64, event: NewEvent) -> i64 {
        let (stream, version) = *self.streams.entry(user).or_insert((Uuid::new_v4(), 0));
        let appended = self
            .log
            .append(&AppendBatch {
                streams: vec![StreamAppend {
                    stream_id: stream,
                    category: "point".into(),
                    expected_version: version,
                    events: vec![event],
                }],
                ..AppendBatch::default()
            })
            .await
            .unwrap();
        self.streams.insert(user, (stream, version + 1));
        appended[0].first_position
    }

    async fn after(&self, position: i64) -> Vec<RecordedEvent> {
        self.log.read_all(position, 1_000).await.unwrap()
    }

    async fn project(&self, events: Vec<RecordedEvent>) -> parked::Projected {
        let mut tx = self.log.pool().begin().await.unwrap();
        let done = parked::project(&mut tx, SCHEMA, events).await.unwrap();
        tx.commit().await.unwrap();
        done
    }

    async fn balances(&self) -> Vec<(i64, i64)> {
        sqlx::query_as("SELECT user_id, balance FROM rm.point_balances ORDER BY user_id")
            .fetch_all(self.log.pool())
            .await
            .unwrap()
    }
}

fn positions(parked: &[parked::Parked]) -> Vec<(i64, i32)> {
    parked.iter().map(|p| (p.position, p.attempts)).collect()
}

#[sqlx::test(migrations = false)]
async fn a_refused_event_is_parked_with_the_later_events_of_its_aggregate_and_the_rest_applies(
    pool: PgPool,
) {
    let mut log = Log::new(pool).await;
    log.append(1, earned(1, "a", 10, 1)).await;
    log.append(2, earned(2, "b", 10, 1)).await;
    let refused = log.append(1, earned(1, "poison", 20, 1)).await;
    log.append(2, earned(2, "b", 20, 1)).await;
    let behind = log.append(1, earned(1, "a", 30, 1)).await;
    log.append(3, earned(3, "c", 10, 1)).await;

    let done = log.project(log.after(0).await).await;

    assert_eq!(
        positions(&done.parked),
        vec![(refused, parked::ATTEMPTS as i32), (behind, 0)]
    );
    assert!(
        done.parked[0].error.contains("no_poison"),
        "{}",
        done.parked[0].error
    );
    assert!(done.parked[1]
        .error
        .contains(&format!("position {refused}")));
    assert_eq!(done.applied, 4);
    assert_eq!(log.balances().await, vec![(1, 10), (2, 20), (3, 10)]);
    assert_eq!(
        done.parked[0].user_id,
        Some(1),
        "the user is read from the data"
    );
}

#[sqlx::test(migrations = false)]
async fn several_refused_events_in_one_stretch_are_each_found(pool: PgPool) {
    let mut log = Log::new(pool).await;
    let mut refused = vec![];
    for user in 1..=40 {
        let description = if user % 13 == 0 { "poison" } else { "fine" };
        let position = log.append(user, earned(user, description, 10, 1)).await;
        if user % 13 == 0 {
            refused.push(position);
        }
    }

    let done = log.project(log.after(0).await).await;

    let parked: Vec<i64> = done.parked.iter().map(|p| p.position).collect();
    assert_eq!(parked, refused, "users 13, 26 and 39");
    assert_eq!(done.applied, 37);
    assert_eq!(log.balances().await.len(), 37);
}

#[sqlx::test(migrations = false)]
async fn an_undecodable_event_parks_its_aggregate_from_there_on_not_before(pool: PgPool) {
    let mut log = Log::new(pool).await;
    log.append(1, earned(1, "a", 10, 1)).await;
    let undecodable = log.append(1, earned(1, "a", 20, 99)).await;
    let behind = log.append(1, earned(1, "a", 30, 1)).await;
    log.append(2, earned(2, "b", 10, 1)).await;

    let done = log.project(log.after(0).await).await;

    assert_eq!(positions(&done.parked), vec![(undecodable, 1), (behind, 0)]);
    assert!(
        done.parked[0].error.contains("undecodable"),
        "{}",
        done.parked[0].error
    );
    assert_eq!(log.balances().await, vec![(1, 10), (2, 10)]);
}

#[sqlx::test(migrations = false)]
async fn a_later_stretch_queues_behind_and_a_retry_applies_in_order_once_the_cause_is_gone(
    pool: PgPool,
) {
    let mut log = Log::new(pool.clone()).await;
    log.append(1, earned(1, "a", 10, 1)).await;
    let refused = log.append(1, earned(1, "poison", 20, 1)).await;
    let first = log.project(log.after(0).await).await;
    assert_eq!(positions(&first.parked), vec![(refused, 3)]);

    // A later stretch: the account's next event queues behind, another account's applies.
    let later = log.append(1, earned(1, "a", 30, 1)).await;
    log.append(2, earned(2, "b", 10, 1)).await;
    let second = log.project(log.after(refused).await).await;
    assert_eq!(positions(&second.parked), vec![(later, 0)]);
    assert_eq!(log.balances().await, vec![(1, 10), (2, 10)]);

    sqlx::query("ALTER TABLE rm.point_history DROP CONSTRAINT no_poison")
        .execute(&pool)
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    let unparked = parked::unpark(&mut tx, SCHEMA, None, 1_000).await.unwrap();
    assert_eq!(unparked, vec![refused, later]);
    let events = EventLog::from_pool(pool.clone())
        .read_positions(&unparked)
        .await
        .unwrap();
    let retried = parked::project(&mut tx, SCHEMA, events).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!((retried.applied, retried.parked.len()), (2, 0));
    assert_eq!(log.balances().await, vec![(1, 30), (2, 10)]);
    assert!(parked::list(&pool, SCHEMA).await.unwrap().is_empty());
}
