//! The event log against real PostgreSQL: each test gets a fresh database (`#[sqlx::test]`).
#![allow(clippy::unwrap_used)] // test fixtures

use std::collections::HashSet;
use std::time::Duration;

use eventlog::{
    append_in, AppendBatch, EntityLink, EventLog, IdempotencyRecord, NewEvent, Snapshot,
    StoreError, StreamAppend,
};
use rand::Rng;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

fn event(n: i64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "test.happened".into(),
        schema_version: 1,
        data: json!({ "n": n }),
        metadata: json!({ "correlationId": "c" }),
    }
}

fn stream(stream_id: Uuid, expected_version: i64, count: i64) -> StreamAppend {
    StreamAppend {
        stream_id,
        category: "test".into(),
        expected_version,
        events: (1..=count).map(event).collect(),
    }
}

fn one(append: StreamAppend) -> AppendBatch {
    AppendBatch {
        streams: vec![append],
        ..Default::default()
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn appended_events_get_versions_and_contiguous_positions(pool: PgPool) {
    let log = EventLog::from_pool(pool);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let first = log.append(&one(stream(a, 0, 2))).await.unwrap();
    assert_eq!((first[0].first_position, first[0].version), (1, 2));
    let second = log.append(&one(stream(b, 0, 3))).await.unwrap();
    assert_eq!((second[0].first_position, second[0].version), (3, 3));

    let all = log.read_all(0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        all.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 1, 2, 3]
    );
    assert_eq!(all[0].data, json!({ "n": 1 }));
    assert_eq!(all[0].metadata["correlationId"], "c");
    assert_eq!(log.head().await.unwrap(), 5);
    assert_eq!(log.read_all(3, 1).await.unwrap()[0].position, 4);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_stale_expected_version_is_a_conflict_and_writes_nothing(pool: PgPool) {
    let log = EventLog::from_pool(pool);
    let id = Uuid::new_v4();
    log.append(&one(stream(id, 0, 2))).await.unwrap();
    let stale = log.append(&one(stream(id, 1, 1))).await;
    assert!(matches!(stale, Err(StoreError::Conflict { stream_id }) if stream_id == id));
    let recreate = log.append(&one(stream(id, 0, 1))).await;
    assert!(matches!(recreate, Err(StoreError::Conflict { .. })));
    assert_eq!(log.read_stream(id, 0, None).await.unwrap().len(), 2);
    assert_eq!(
        log.head().await.unwrap(),
        2,
        "a failed append reserves no position"
    );
    log.append(&one(stream(id, 2, 1))).await.unwrap();
}

#[sqlx::test(migrations = "./migrations")]
async fn appending_to_several_streams_is_all_or_nothing(pool: PgPool) {
    let log = EventLog::from_pool(pool);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    log.append(&one(stream(b, 0, 1))).await.unwrap();
    // b is at version 1, so expecting 0 conflicts — and a must not be written either.
    let batch = AppendBatch {
        streams: vec![stream(a, 0, 2), stream(b, 0, 1)],
        ..Default::default()
    };
    assert!(
        matches!(log.append(&batch).await, Err(StoreError::Conflict { stream_id }) if stream_id == b)
    );
    assert!(log.read_stream(a, 0, None).await.unwrap().is_empty());

    let batch = AppendBatch {
        streams: vec![stream(a, 0, 2), stream(b, 1, 1)],
        ..Default::default()
    };
    let appended = log.append(&batch).await.unwrap();
    assert_eq!(appended.len(), 2);
    assert_eq!(log.read_stream(a, 0, None).await.unwrap().len(), 2);
    assert_eq!(log.read_stream(b, 0, None).await.unwrap().len(), 2);
}

fn key_record(key: &str, stream: Option<(Uuid, i64)>) -> IdempotencyRecord {
    IdempotencyRecord {
        principal: "user:7".into(),
        key: key.into(),
        request_hash: vec![1, 2, 3],
        status: 201,
        body: json!({ "ok": true }),
        stream,
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn an_idempotency_key_is_stored_with_its_events_and_a_reused_key_appends_nothing(
    pool: PgPool,
) {
    let log = EventLog::from_pool(pool);
    let id = Uuid::new_v4();
    let batch = AppendBatch {
        streams: vec![stream(id, 0, 1)],
        idempotency: vec![key_record("k1", Some((id, 1)))],
        ..Default::default()
    };
    log.append(&batch).await.unwrap();
    let answers = log
        .idempotent_answers("user:7", &["k1".into(), "other".into()])
        .await
        .unwrap();
    assert_eq!(answers.len(), 1);
    assert_eq!((answers[0].status, answers[0].position), (201, Some(1)));
    assert_eq!(answers[0].body, json!({ "ok": true }));

    // The same key again (a retry racing the first): the batch fails and writes nothing.
    let retry = AppendBatch {
        streams: vec![stream(id, 1, 1)],
        idempotency: vec![key_record("k1", Some((id, 2)))],
        ..Default::default()
    };
    assert!(matches!(
        log.append(&retry).await,
        Err(StoreError::IdempotencyKeyTaken { .. })
    ));
    assert_eq!(log.head().await.unwrap(), 1);
    // Keys are per principal.
    assert!(log
        .idempotent_answers("user:8", &["k1".into()])
        .await
        .unwrap()
        .is_empty());
}

#[sqlx::test(migrations = "./migrations")]
async fn one_key_twice_in_a_batch_or_taken_beside_another_principals_new_one_appends_nothing(
    pool: PgPool,
) {
    let log = EventLog::from_pool(pool);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    // Two aggregates' batches merged, one principal's one key on both.
    let twice = AppendBatch {
        streams: vec![stream(a, 0, 1), stream(b, 0, 1)],
        idempotency: vec![
            key_record("k1", Some((a, 1))),
            key_record("k1", Some((b, 1))),
        ],
        ..Default::default()
    };
    assert!(matches!(
        log.append(&twice).await,
        Err(StoreError::IdempotencyKeyTaken { .. })
    ));
    assert_eq!(log.head().await.unwrap(), 0);

    // user:7's k1 stored; then a batch with user:8's new k1 beside user:7's k1 again.
    log.append(&AppendBatch {
        streams: vec![stream(a, 0, 1)],
        idempotency: vec![key_record("k1", Some((a, 1)))],
        ..Default::default()
    })
    .await
    .unwrap();
    let other = IdempotencyRecord {
        principal: "user:8".into(),
        ..key_record("k1", Some((b, 1)))
    };
    let mixed = AppendBatch {
        streams: vec![stream(b, 0, 1), stream(a, 1, 1)],
        idempotency: vec![other, key_record("k1", Some((a, 2)))],
        ..Default::default()
    };
    assert!(matches!(
        log.append(&mixed).await,
        Err(StoreError::IdempotencyKeyTaken { .. })
    ));
    assert_eq!(log.head().await.unwrap(), 1);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_refusal_can_be_recorded_under_a_key_without_events(pool: PgPool) {
    let log = EventLog::from_pool(pool);
    let mut record = key_record("k2", None);
    record.status = 422;
    log.append(&AppendBatch {
        idempotency: vec![record],
        ..Default::default()
    })
    .await
    .unwrap();
    let answers = log
        .idempotent_answers("user:7", &["k2".into()])
        .await
        .unwrap();
    assert_eq!((answers[0].status, answers[0].position), (422, None));
    assert_eq!(log.head().await.unwrap(), 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn an_entity_is_found_through_the_stream_it_was_created_in(pool: PgPool) {
    let log = EventLog::from_pool(pool);
    let (policy, coupon) = (Uuid::new_v4(), Uuid::new_v4());
    let link = EntityLink {
        entity_id: coupon,
        stream_id: policy,
        category: "coupon",
    };
    let batch = AppendBatch {
        streams: vec![stream(policy, 0, 1)],
        links: vec![link.clone()],
        ..Default::default()
    };
    log.append(&batch).await.unwrap();
    assert_eq!(
        log.entity_stream(coupon).await.unwrap(),
        Some((policy, "coupon".into()))
    );
    assert_eq!(log.entity_stream(Uuid::new_v4()).await.unwrap(), None);
    let again = AppendBatch {
        streams: vec![stream(policy, 1, 1)],
        links: vec![link],
        ..Default::default()
    };
    assert!(matches!(
        log.append(&again).await,
        Err(StoreError::EntityTaken { .. })
    ));
}

#[sqlx::test(migrations = "./migrations")]
async fn a_stream_can_be_read_as_of_a_position(pool: PgPool) {
    let log = EventLog::from_pool(pool);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    log.append(&one(stream(a, 0, 2))).await.unwrap(); // positions 1, 2
    log.append(&one(stream(b, 0, 1))).await.unwrap(); // 3
    log.append(&one(stream(a, 2, 2))).await.unwrap(); // 4, 5
    let as_of_3 = log.read_stream(a, 0, Some(3)).await.unwrap();
    assert_eq!(
        as_of_3.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let after_v2 = log.read_stream(a, 2, None).await.unwrap();
    assert_eq!(
        after_v2.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![4, 5]
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn the_newest_snapshot_of_the_current_format_wins(pool: PgPool) {
    let log = EventLog::from_pool(pool);
    let id = Uuid::new_v4();
    let snap = |version| Snapshot {
        version,
        state: json!({ "v": version }),
    };
    log.save_snapshot(id, "test", 1, &snap(10)).await.unwrap();
    log.save_snapshot(id, "test", 1, &snap(5)).await.unwrap(); // older: ignored
    assert_eq!(log.load_snapshot(id, 1).await.unwrap(), Some(snap(10)));
    assert_eq!(
        log.load_snapshot(id, 2).await.unwrap(),
        None,
        "another state format is not loaded"
    );
    log.save_snapshot(id, "test", 2, &snap(3)).await.unwrap(); // new format replaces
    assert_eq!(log.load_snapshot(id, 2).await.unwrap(), Some(snap(3)));
}

#[sqlx::test(migrations = "./migrations")]
async fn many_streams_load_at_once_with_the_events_after_their_snapshots(pool: PgPool) {
    let log = EventLog::from_pool(pool);
    let (snapped, plain, empty) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    log.append(&one(stream(snapped, 0, 5))).await.unwrap();
    log.append(&one(stream(plain, 0, 3))).await.unwrap();
    let snapshot = Snapshot {
        version: 3,
        state: json!({ "v": 3 }),
    };
    log.save_snapshot(snapped, "test", 1, &snapshot)
        .await
        .unwrap();
    let loaded = log.load_streams(&[snapped, plain, empty], 1).await.unwrap();
    let (snap, after) = &loaded[&snapped];
    assert_eq!(snap.as_ref(), Some(&snapshot));
    assert_eq!(
        after.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![4, 5]
    );
    let (snap, all) = &loaded[&plain];
    assert_eq!(snap, &None);
    assert_eq!(
        all.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(all.iter().all(|e| e.stream_id == plain));
    assert!(
        !loaded.contains_key(&empty),
        "a stream with nothing stored is absent"
    );
    // Another state format: no snapshot, so every event.
    let other = log.load_streams(&[snapped], 2).await.unwrap();
    assert_eq!(other[&snapped].1.len(), 5);
}

// ---- the no-skip guarantee ----

/// Waits until some other session is blocked on a lock (pg_stat_activity), i.e. the second
/// writer is queued behind the first one's log-head lock.
async fn wait_until_a_session_waits_on_a_lock(pool: &PgPool) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the second writer never blocked on the log head");
}

/// The control: a plain `bigserial` position, with writer 1 taking position 1 and committing
/// after writer 2 took and committed position 2. A reader in between sees 2 without 1 and,
/// following `position > last`, never sees 1. This is the bug the log must not have.
#[sqlx::test(migrations = "./migrations")]
async fn a_naive_serial_position_does_skip_an_event_committed_late(pool: PgPool) {
    sqlx::query("CREATE TABLE naive (position bigserial PRIMARY KEY, n int)")
        .execute(&pool)
        .await
        .unwrap();
    let mut first = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO naive (n) VALUES (1)")
        .execute(&mut *first)
        .await
        .unwrap();
    sqlx::query("INSERT INTO naive (n) VALUES (2)")
        .execute(&pool)
        .await
        .unwrap();

    let read = |after: i64| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT position FROM naive WHERE position > $1 ORDER BY position",
            )
            .bind(after)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let seen = read(0).await;
    assert_eq!(seen, vec![2]);
    first.commit().await.unwrap();
    assert_eq!(
        read(2).await,
        Vec::<i64>::new(),
        "position 1 is skipped for good"
    );
}

/// The same choreography against the event log: writer 2 cannot take a position while
/// writer 1's transaction is open, so the reader never sees a gap.
#[sqlx::test(migrations = "./migrations")]
async fn the_log_never_lets_a_reader_skip_an_event_committed_late(pool: PgPool) {
    let log = EventLog::from_pool(pool.clone());
    let mut first = pool.begin().await.unwrap();
    append_in(&mut first, &one(stream(Uuid::new_v4(), 0, 1)))
        .await
        .unwrap();

    let second_log = log.clone();
    let second =
        tokio::spawn(async move { second_log.append(&one(stream(Uuid::new_v4(), 0, 1))).await });
    wait_until_a_session_waits_on_a_lock(&pool).await;

    assert!(
        log.read_all(0, 10).await.unwrap().is_empty(),
        "nothing visible while writer 1 is open"
    );
    first.commit().await.unwrap();
    second.await.unwrap().unwrap();
    let positions: Vec<i64> = log
        .read_all(0, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, vec![1, 2]);
}

/// Many writers whose transactions stay open for random times after taking their positions
/// (so commits interleave every way they can), some rolling back, and a reader tailing the
/// log meanwhile: the reader sees every committed event exactly once, in position order, with
/// no gap in what it has read so far.
#[sqlx::test(migrations = "./migrations")]
async fn a_tailing_reader_sees_every_event_once_in_order_under_interleaved_commits(pool: PgPool) {
    const WRITERS: usize = 8;
    const APPENDS: usize = 40;
    let log = EventLog::from_pool(pool.clone());
    let mut writers = vec![];
    for _ in 0..WRITERS {
        let pool = pool.clone();
        writers.push(tokio::spawn(async move {
            let mut committed = vec![];
            for n in 0..APPENDS {
                let (count, hold, roll_back) = {
                    let mut rng = rand::rng();
                    (
                        rng.random_range(1..4),
                        rng.random_range(0..3u64),
                        n % 7 == 3,
                    )
                };
                let mut tx = pool.begin().await.unwrap();
                let appended = append_in(&mut tx, &one(stream(Uuid::new_v4(), 0, count)))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(hold)).await;
                if roll_back {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                    committed
                        .extend(appended[0].first_position..appended[0].first_position + count);
                }
            }
            committed
        }));
    }

    let reader_log = log.clone();
    let reader = tokio::spawn(async move {
        let mut seen: Vec<i64> = vec![];
        let mut idle_rounds = 0;
        loop {
            let last = seen.last().copied().unwrap_or(0);
            let batch = reader_log.read_all(last, 7).await.unwrap();
            if batch.is_empty() {
                idle_rounds += 1;
                if idle_rounds > 200 {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            idle_rounds = 0;
            seen.extend(batch.iter().map(|e| e.position));
        }
    });

    let mut committed: Vec<i64> = vec![];
    for writer in writers {
        committed.extend(writer.await.unwrap());
    }
    committed.sort_unstable();
    let seen = reader.await.unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "positions read out of order"
    );
    assert_eq!(
        seen.iter().copied().collect::<HashSet<_>>().len(),
        seen.len(),
        "an event read twice"
    );
    assert_eq!(seen, committed, "the reader missed or invented events");
}

#[sqlx::test(migrations = "./migrations")]
async fn a_version_taken_past_the_streams_check_is_a_conflict_not_a_database_failure(pool: PgPool) {
    let log = EventLog::from_pool(pool.clone());
    let id = Uuid::new_v4();
    // An event at version 1 with no streams row (as a writer that raced past the check would
    // leave it): the append's own insert of version 1 collides.
    sqlx::query(
        "INSERT INTO events (position, event_id, stream_id, category, version, event_type, \
           schema_version, data, metadata) VALUES (1000, $1, $2, 'test', 1, 't', 1, '{}', '{}')",
    )
    .bind(Uuid::new_v4())
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    let error = log.append(&one(stream(id, 0, 1))).await.unwrap_err();
    assert!(error.is_race(), "{error:?}");
    assert!(
        matches!(error, StoreError::Conflict { stream_id } if stream_id == id),
        "{error:?}"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_guard_fails_the_batch_when_its_stream_moved(pool: PgPool) {
    let log = EventLog::from_pool(pool);
    let (moved, other) = (Uuid::new_v4(), Uuid::new_v4());
    log.append(&one(stream(moved, 0, 2))).await.unwrap();
    let keyed = |guard: i64| AppendBatch {
        streams: vec![stream(other, 0, 1)],
        guards: vec![(moved, guard)],
        ..Default::default()
    };
    let error = log.append(&keyed(1)).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict { stream_id } if stream_id == moved));
    assert_eq!(
        log.head().await.unwrap(),
        2,
        "nothing of the batch was appended"
    );
    log.append(&keyed(2)).await.unwrap();
    assert_eq!(log.head().await.unwrap(), 3);
}

#[sqlx::test(migrations = "./migrations")]
async fn idempotency_keys_past_their_retention_are_deleted_and_recent_ones_kept(pool: PgPool) {
    let log = EventLog::from_pool(pool.clone());
    let record = |key: &str| IdempotencyRecord {
        principal: "p".into(),
        key: key.into(),
        request_hash: vec![1],
        status: 422,
        body: json!({}),
        stream: None,
    };
    let batch = AppendBatch {
        idempotency: (0..5)
            .map(|n| record(&format!("old-{n}")))
            .chain([record("new")])
            .collect(),
        ..Default::default()
    };
    log.append(&batch).await.unwrap();
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key LIKE 'old-%'")
        .execute(&pool)
        .await
        .unwrap();
    let day = Duration::from_secs(24 * 3600);
    assert_eq!(
        log.delete_expired_keys(day, 3).await.unwrap(),
        3,
        "a batch at a time"
    );
    assert_eq!(log.delete_expired_keys(day, 3).await.unwrap(), 2);
    assert_eq!(log.delete_expired_keys(day, 3).await.unwrap(), 0);
    let left: Vec<String> = sqlx::query_scalar("SELECT key FROM idempotency_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, vec!["new".to_owned()]);
}

#[sqlx::test(migrations = "./migrations")]
async fn due_deadlines_page_earliest_first_past_the_last_one_seen(pool: PgPool) {
    use eventlog::deadlines::{apply_deadline_changes, Deadline, DeadlineChange};
    let log = EventLog::from_pool(pool.clone());
    let now = chrono::Utc::now();
    let deadline = |n: i64| Deadline {
        kind: "reservation".into(),
        entity_id: Uuid::from_u128(n as u128),
        stream_id: Uuid::from_u128(99),
        category: "timesale".into(),
        due_at: now - chrono::Duration::seconds(10 - n),
    };
    // Five due (two at one time), one not yet.
    let mut changes: Vec<DeadlineChange> =
        (1..=4).map(|n| DeadlineChange::Set(deadline(n))).collect();
    changes.push(DeadlineChange::Set(Deadline {
        entity_id: Uuid::from_u128(5),
        ..deadline(4)
    }));
    changes.push(DeadlineChange::Set(Deadline {
        entity_id: Uuid::from_u128(6),
        due_at: now + chrono::Duration::hours(1),
        ..deadline(1)
    }));
    let mut conn = pool.acquire().await.unwrap();
    apply_deadline_changes(&mut conn, &changes, 7)
        .await
        .unwrap();
    assert_eq!(log.deadline_checkpoint().await.unwrap(), 7);

    let mut seen = vec![];
    let mut after = None;
    loop {
        let page = log.due_deadlines(now, after, 2).await.unwrap();
        after = page.last().map(|d| (d.due_at, d.entity_id));
        seen.extend(page.iter().map(|d| d.entity_id.as_u128()));
        if page.len() < 2 {
            break;
        }
    }
    assert_eq!(
        seen,
        vec![1, 2, 3, 4, 5],
        "every due one once, earliest first, none not due"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn deadline_changes_in_one_batch_leave_each_deadlines_last_change(pool: PgPool) {
    use eventlog::deadlines::{apply_deadline_changes, Deadline, DeadlineChange};
    let log = EventLog::from_pool(pool.clone());
    let now = chrono::Utc::now();
    let deadline = |n: u128, seconds_ago: i64| Deadline {
        kind: "reservation".into(),
        entity_id: Uuid::from_u128(n),
        stream_id: Uuid::from_u128(99),
        category: "timesale".into(),
        due_at: now - chrono::Duration::seconds(seconds_ago),
    };
    let clear = |n: u128| DeadlineChange::Clear {
        kind: "reservation".into(),
        entity_id: Uuid::from_u128(n),
    };
    let mut conn = pool.acquire().await.unwrap();
    // 1 stands from an earlier batch; this one clears it, sets and clears 2, clears then
    // sets 3, sets 4 twice (the later due time stands), sets 5 under another kind too, and
    // sets, clears and sets 6 again (a coupon held, released, held again).
    apply_deadline_changes(&mut conn, &[DeadlineChange::Set(deadline(1, 50))], 3)
        .await
        .unwrap();
    let changes = vec![
        clear(1),
        DeadlineChange::Set(deadline(2, 40)),
        clear(2),
        clear(3),
        DeadlineChange::Set(deadline(3, 30)),
        DeadlineChange::Set(deadline(4, 20)),
        DeadlineChange::Set(deadline(4, 10)),
        DeadlineChange::Set(deadline(5, 5)),
        DeadlineChange::Set(Deadline {
            kind: "lot".into(),
            ..deadline(5, 1)
        }),
        DeadlineChange::Set(deadline(6, 45)),
        clear(6),
        DeadlineChange::Set(deadline(6, 15)),
    ];
    apply_deadline_changes(&mut conn, &changes, 12)
        .await
        .unwrap();
    assert_eq!(log.deadline_checkpoint().await.unwrap(), 12);
    let due: Vec<(String, u128, i64)> = log
        .due_deadlines(now, None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|d| {
            let ago = (now - d.due_at).num_seconds();
            (d.kind, d.entity_id.as_u128(), ago)
        })
        .collect();
    assert_eq!(
        due,
        vec![
            ("reservation".into(), 3, 30),
            ("reservation".into(), 6, 15),
            ("reservation".into(), 4, 10),
            ("reservation".into(), 5, 5),
            ("lot".into(), 5, 1),
        ]
    );
}
