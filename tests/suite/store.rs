//! The store's behaviour, the same for every backend: SQLite always, PostgreSQL when
//! `ROOMHOST_TEST_DATABASE_URL` (or `DATABASE_URL`) names a server (`.ci/run` starts one). Each
//! test gets a fresh database.

use std::sync::Arc;
use std::time::Duration;

use roomhost::store::{
    self, FeedbackAdded, Quotas, RunEnd, RunLog, RunRecord, RunStatus, Started, Store,
    ThreadRecord, Write, Writer, MAX_QUEUED_EVENTS,
};
use sqlx::Connection;

use crate::support::harness::TempDir;

/// A fresh database on each backend: its name and URL. The temp dirs live as long as the list.
pub async fn databases() -> (Vec<(&'static str, String)>, TempDir) {
    let dir = TempDir::new();
    let mut all = vec![(
        "sqlite",
        format!("sqlite://{}", dir.path.join("t.db").display()),
    )];
    if let Some(url) = postgres().await {
        all.push(("postgres", url));
    }
    (all, dir)
}

/// A fresh database on the test PostgreSQL server, when `ROOMHOST_TEST_DATABASE_URL` (or
/// `DATABASE_URL`) names one.
pub async fn postgres() -> Option<String> {
    let server = std::env::var("ROOMHOST_TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .ok()
        .filter(|u| u.starts_with("postgres"))?;
    let name = format!("rh_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .expect("the test PostgreSQL server answers");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    let mut url = reqwest::Url::parse(&server).expect("a database URL");
    url.set_path(&name);
    Some(url.to_string())
}

pub async fn open(url: &str) -> Arc<dyn Store> {
    store::open(url, Quotas::default())
        .await
        .expect("store opens")
        .expect("a store")
}

/// The token the tests' runs are started with.
const TOKEN: &str = "start-token";

/// A start deadline no test reaches.
fn later() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(600)
}

/// A run started (with its thread in room `r1`), and its log keeping at most `cap` events.
async fn logged(
    s: &Arc<dyn Store>,
    writer: &Writer,
    thread_id: &str,
    run_id: &str,
    cap: usize,
) -> RunLog {
    let t = thread("r1", thread_id, 1);
    assert_eq!(
        start(s, &t, run(thread_id, run_id, 2), None).await,
        Started::Recorded
    );
    RunLog::new(Some(writer.clone()), run_id, TOKEN, cap)
}

fn thread(room: &str, id: &str, created: i64) -> ThreadRecord {
    ThreadRecord {
        id: id.into(),
        room: room.into(),
        owner: String::new(),
        created,
        name: Some(format!("name {id}")),
        description: None,
    }
}

fn run(thread_id: &str, id: &str, created: i64) -> RunRecord {
    RunRecord {
        id: id.into(),
        thread_id: thread_id.into(),
        parent_run_id: None,
        created,
        finished: None,
        status: RunStatus::Running,
        input: r#"{"messages":[]}"#.into(),
        result: None,
        usage: None,
        answer: None,
        llm_requests: None,
        events_cut: false,
        input_cut: false,
        metadata: None,
    }
}

/// Starts the run in thread `t` within `max` runs; what the store said.
async fn start(s: &Arc<dyn Store>, t: &ThreadRecord, run: RunRecord, max: Option<i64>) -> Started {
    s.start_run(t, &run, max, TOKEN, later()).await.unwrap()
}

/// Stores the run with its thread (in room `r1`, made if new); what the store said.
async fn add(s: &Arc<dyn Store>, mut run: RunRecord) -> Started {
    let thread = thread("r1", &run.thread_id, 1);
    s.create_run(&thread, &mut run, 1000).await.unwrap()
}

#[tokio::test]
async fn store_threads_are_per_room_newest_first_and_paginated() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            assert!(s
                .put_thread(&thread("r1", id, 1000 + i as i64))
                .await
                .unwrap());
        }
        // Same timestamp: the id breaks the tie, so pagination neither skips nor repeats.
        assert!(s.put_thread(&thread("r1", "e", 1003)).await.unwrap());
        assert!(s.put_thread(&thread("r2", "x", 5000)).await.unwrap());
        assert!(
            !s.put_thread(&thread("r2", "a", 1)).await.unwrap(),
            "{backend}: a thread id of another room is refused"
        );
        assert!(
            s.put_thread(&thread("r1", "a", 1)).await.unwrap(),
            "{backend}: again is fine"
        );

        let ids = |ts: Vec<ThreadRecord>| ts.into_iter().map(|t| t.id).collect::<Vec<_>>();
        let first = s.threads("r1", "", 2, None).await.unwrap();
        assert_eq!(ids(first.clone()), ["e", "d"], "{backend}");
        let last = first.last().unwrap();
        let next = s
            .threads("r1", "", 10, Some((last.created, last.id.clone())))
            .await
            .unwrap();
        assert_eq!(ids(next), ["c", "b", "a"], "{backend}");
        assert_eq!(
            s.thread("r1", "a").await.unwrap().unwrap(),
            thread("r1", "a", 1000)
        );
        assert_eq!(s.thread("r2", "a").await.unwrap(), None, "{backend}");
    }
}

#[tokio::test]
async fn store_rename_sets_a_threads_name_in_its_room_only() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        assert!(s.put_thread(&thread("r1", "a", 1)).await.unwrap());
        assert!(s
            .rename_thread("r1", "a", Some("new"), Some("d"))
            .await
            .unwrap());
        assert!(
            !s.rename_thread("r2", "a", Some("x"), None).await.unwrap(),
            "{backend}"
        );
        assert!(
            !s.rename_thread("r1", "nope", None, None).await.unwrap(),
            "{backend}"
        );
        let got = s.thread("r1", "a").await.unwrap().unwrap();
        assert_eq!(
            (got.name.as_deref(), got.description.as_deref()),
            (Some("new"), Some("d"))
        );
    }
}

#[tokio::test]
async fn store_runs_are_created_once_and_listed_in_the_order_they_were_made() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        s.put_thread(&thread("r1", "t", 1)).await.unwrap();
        assert_eq!(add(&s, run("t", "run1", 10)).await, Started::Recorded);
        // Made in the same millisecond, or by a replica whose clock is behind: still after it.
        let mut second = run("t", "run0", 10);
        let t = thread("r1", "t", 1);
        let made = s.create_run(&t, &mut second, 1000).await.unwrap();
        assert_eq!(made, Started::Recorded, "{backend}");
        assert_eq!(second.created, 11, "{backend}");
        assert_eq!(
            add(&s, run("t", "run1", 30)).await,
            Started::RunExists,
            "{backend}: a run id is used once"
        );
        // Also when it comes with a thread never seen: refused, and that thread not made.
        let fresh = thread("r1", "t-new", 40);
        let reused = s
            .start_run(
                &fresh,
                &run("t-new", "run1", 40),
                Some(1000),
                TOKEN,
                later(),
            )
            .await
            .unwrap();
        assert_eq!(reused, Started::RunExists, "{backend}");
        assert_eq!(s.thread("r1", "t-new").await.unwrap(), None, "{backend}");
        let runs = s.thread_runs("r1", "t", i64::MAX).await.unwrap();
        let ids: Vec<_> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["run1", "run0"], "{backend}");
        assert_eq!(runs[0], run("t", "run1", 10), "{backend}");
        assert_eq!(runs[1], second, "{backend}");
        assert!(
            s.thread_runs("r2", "t", i64::MAX).await.unwrap().is_empty(),
            "{backend}"
        );
        assert_eq!(s.run("r2", "run1").await.unwrap(), None, "{backend}");
        assert!(s.run("r1", "nope").await.unwrap().is_none(), "{backend}");
    }
}

#[tokio::test]
async fn store_writer_keeps_every_event_in_order_and_the_outcome() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        let writer = Writer::spawn(s.clone(), MAX_QUEUED_EVENTS);
        let mut log = logged(&s, &writer, "t", "run", 10_000).await;
        for i in 0..1500 {
            assert_eq!(log.record(&format!(r#"{{"i":{i}}}"#)), i, "{backend}");
        }
        log.finish(
            RunStatus::Finished,
            RunEnd {
                result: Some(r#"{"ok":true}"#.into()),
                usage: Some("[]".into()),
                answer: Some("the answer".into()),
                llm_requests: Some(3),
            },
        );
        assert!(writer.flush(Duration::from_secs(30)).await, "{backend}");
        assert_eq!(writer.health.error(), None);

        let all = s.events("run", -1, 10_000).await.unwrap();
        assert_eq!(all.len(), 1500, "{backend}");
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.seq, i as i64, "{backend}");
            assert_eq!(e.data, format!(r#"{{"i":{i}}}"#), "{backend}");
        }
        let tail = s.events("run", 1497, 100).await.unwrap();
        assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), [1498, 1499]);
        assert!(s.events("run", 1499, 100).await.unwrap().is_empty());
        assert!(s.events("other", -1, 100).await.unwrap().is_empty());

        let stored = s.run("r1", "run").await.unwrap().unwrap();
        assert_eq!(stored.status, RunStatus::Finished, "{backend}");
        assert_eq!(stored.result.as_deref(), Some(r#"{"ok":true}"#));
        assert_eq!(stored.answer.as_deref(), Some("the answer"), "{backend}");
        assert_eq!(stored.llm_requests, Some(3), "{backend}");
        assert!(stored.finished.is_some() && !stored.events_cut);
    }
}

#[tokio::test]
async fn store_caps_the_events_of_a_run_and_marks_it_cut() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        let writer = Writer::spawn(s.clone(), MAX_QUEUED_EVENTS);
        let mut log = logged(&s, &writer, "t", "run", 5).await;
        for i in 0..8 {
            assert_eq!(
                log.record("{}"),
                i,
                "{backend}: numbering goes on past the cap"
            );
        }
        assert!(writer.flush(Duration::from_secs(30)).await);
        assert_eq!(
            s.events("run", -1, 100).await.unwrap().len(),
            5,
            "{backend}"
        );
        assert!(s.run("r1", "run").await.unwrap().unwrap().events_cut);
    }
}

#[tokio::test]
async fn store_writer_drops_events_past_its_queue_and_marks_the_run_cut() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        // A queue of 3: the writer cannot take a burst of 50 at once.
        let writer = Writer::spawn(s.clone(), 3);
        let mut log = logged(&s, &writer, "t", "run", 1000).await;
        for _ in 0..50 {
            log.record("{}");
        }
        assert!(writer.flush(Duration::from_secs(30)).await);
        let kept = s.events("run", -1, 100).await.unwrap();
        assert_eq!(
            kept.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [0, 1, 2],
            "{backend}"
        );
        assert!(
            s.run("r1", "run").await.unwrap().unwrap().events_cut,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn store_a_run_is_orphaned_only_once_its_owners_lease_expired_and_is_claimed_once() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let owner = open(&url).await;
        let now = store::now_ms();
        owner.renew_lease(now, now + 60_000).await.unwrap();
        let t = thread("r1", "t", 1);
        start(&owner, &t, run("t", "cut", 2), None).await;
        start(&owner, &t, run("t", "done", 3), None).await;
        owner
            .write(&[
                Write::Event {
                    run_id: "cut".into(),
                    token: TOKEN.into(),
                    seq: 0,
                    data: "{}".into(),
                },
                Write::Finish {
                    run_id: "done".into(),
                    token: TOKEN.into(),
                    status: RunStatus::Finished,
                    finished: 4,
                    end: Box::default(),
                },
            ])
            .await
            .unwrap();

        // A replica starting next to a live one leaves its runs alone.
        let (a, b) = (open(&url).await, open(&url).await);
        assert_eq!(a.orphans(store::now_ms()).await.unwrap(), [], "{backend}");
        let cut = a.run("r1", "cut").await.unwrap().unwrap();
        assert_eq!(cut.status, RunStatus::Running, "{backend}");

        // Its lease ended (handed over, or expired): its running run is an orphan, claimed by one.
        owner.release_lease().await.unwrap();
        let orphans = a.orphans(store::now_ms()).await.unwrap();
        assert_eq!(orphans.len(), 1, "{backend}: {orphans:?}");
        assert_eq!(orphans[0].run_id, "cut");
        assert_eq!(orphans[0].owner.as_deref(), Some(owner.instance()));
        let (won_a, won_b) = tokio::join!(a.claim(&orphans[0]), b.claim(&orphans[0]));
        let (won_a, won_b) = (won_a.unwrap(), won_b.unwrap());
        assert!(won_a ^ won_b, "{backend}: exactly one claims it");
        let (winner, loser) = if won_a { (&a, &b) } else { (&b, &a) };
        assert!(!loser.claim(&orphans[0]).await.unwrap(), "{backend}");

        // Ended by its new owner: `interrupted`, its last event stored under the reserved last id.
        assert!(!owner.interrupt("cut", 5, "{\"last\":1}").await.unwrap());
        assert!(!loser.interrupt("cut", 5, "{\"last\":1}").await.unwrap());
        assert!(
            winner.interrupt("cut", 5, "{\"last\":1}").await.unwrap(),
            "{backend}"
        );
        let cut = winner.run("r1", "cut").await.unwrap().unwrap();
        assert_eq!(
            (cut.status, cut.finished),
            (RunStatus::Interrupted, Some(5))
        );
        let events = winner.events("cut", -1, 10).await.unwrap();
        assert_eq!(
            events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [0, store::FINAL_SEQ],
            "{backend}"
        );
        let done = winner.run("r1", "done").await.unwrap().unwrap();
        assert_eq!((done.status, done.finished), (RunStatus::Finished, Some(4)));
    }
}

#[tokio::test]
async fn store_delete_takes_the_runs_events_and_feedback_with_the_thread() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        s.put_thread(&thread("r1", "t", 1)).await.unwrap();
        s.put_thread(&thread("r1", "keep", 1)).await.unwrap();
        start(&s, &thread("r1", "t", 1), run("t", "run", 2), None).await;
        start(&s, &thread("r1", "keep", 1), run("keep", "kept", 2), None).await;
        let event = |run_id: &str| Write::Event {
            run_id: run_id.into(),
            token: TOKEN.into(),
            seq: 0,
            data: "{}".into(),
        };
        s.write(&[event("run"), event("kept")]).await.unwrap();
        assert_eq!(
            s.add_feedback("run", r#"{"feedback":"up"}"#).await.unwrap(),
            FeedbackAdded::Added
        );
        assert_eq!(
            s.add_feedback("nope", "{}").await.unwrap(),
            FeedbackAdded::NoSuchRun,
            "{backend}"
        );

        assert!(
            !s.delete_thread("r2", "t").await.unwrap(),
            "{backend}: other room"
        );
        assert!(s.delete_thread("r1", "t").await.unwrap(), "{backend}");
        assert!(
            !s.delete_thread("r1", "t").await.unwrap(),
            "{backend}: gone"
        );
        assert!(s.thread("r1", "t").await.unwrap().is_none());
        assert!(s.run("r1", "run").await.unwrap().is_none());
        assert!(
            s.events("run", -1, 10).await.unwrap().is_empty(),
            "{backend}"
        );
        assert_eq!(
            s.events("kept", -1, 10).await.unwrap().len(),
            1,
            "{backend}"
        );
    }
}

fn pending(thread_id: &str, id: &str, created: i64) -> RunRecord {
    RunRecord {
        status: RunStatus::Pending,
        ..run(thread_id, id, created)
    }
}

#[tokio::test]
async fn store_purge_deletes_only_threads_without_recent_or_running_runs() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        for id in ["old", "old_busy", "old_recent", "old_pending", "new"] {
            let created = if id == "new" { 500 } else { 10 };
            s.put_thread(&thread("r1", id, created)).await.unwrap();
        }
        let mut finished = run("old", "a", 10);
        finished.status = RunStatus::Finished;
        add(&s, finished).await;
        add(&s, run("old_busy", "b", 10)).await;
        // A run made long ago and never started keeps nothing, and goes itself.
        add(&s, pending("old_recent", "never", 20)).await;
        let mut recent = run("old_recent", "c", 400);
        recent.status = RunStatus::Finished;
        add(&s, recent).await;
        add(&s, pending("old_pending", "p", 10)).await;
        add(&s, pending("new", "waiting", 600)).await;
        assert_eq!(s.purge(100).await.unwrap(), 2, "{backend}");
        let left: Vec<_> = s.threads("r1", "", 10, None).await.unwrap();
        let mut left: Vec<_> = left.into_iter().map(|t| t.id).collect();
        left.sort();
        assert_eq!(left, ["new", "old_busy", "old_recent"], "{backend}");
        assert!(s.run("r1", "never").await.unwrap().is_none(), "{backend}");
        assert!(s.run("r1", "waiting").await.unwrap().is_some(), "{backend}");
    }
}

#[tokio::test]
async fn store_open_refuses_unknown_schemes_and_unusable_files() {
    let err = store::open("mysql://x", Quotas::default())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("unsupported scheme"), "{err}");
    let err = store::open("sqlite:///nonexistent-dir/x/y.db", Quotas::default())
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("unable to open"), "{err}");
    assert!(store::open("none", Quotas::default())
        .await
        .unwrap()
        .is_none());
    let memory = store::open("sqlite::memory:", Quotas::default())
        .await
        .unwrap()
        .expect("a store");
    assert!(memory.put_thread(&thread("r", "t", 1)).await.unwrap());
    assert!(memory.thread("r", "t").await.unwrap().is_some());
    assert_eq!(
        store::mask_password("postgres://me:secret@db:5432/x"),
        "postgres://me:***@db:5432/x"
    );
}

/// Makes the database refuse events whose data is `"bad"`, as it refuses a value it cannot
/// store: a trigger (SQLite) or a check constraint (PostgreSQL).
async fn refuse_bad_events(backend: &str, url: &str) {
    let refusal = if backend == "sqlite" {
        "CREATE TRIGGER refuse_bad BEFORE INSERT ON events WHEN NEW.data = '\"bad\"' \
         BEGIN SELECT RAISE(ABORT, 'refused'); END"
    } else {
        "ALTER TABLE events ADD CONSTRAINT refuse_bad CHECK (data <> '\"bad\"')"
    };
    if backend == "sqlite" {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("connect");
        sqlx::query(refusal)
            .execute(&mut conn)
            .await
            .expect("refusal added");
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query(refusal)
            .execute(&mut conn)
            .await
            .expect("refusal added");
    }
}

#[tokio::test]
async fn store_writer_drops_a_write_refused_for_its_data_marks_its_run_and_keeps_the_rest() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        refuse_bad_events(backend, &url).await;
        let writer = Writer::spawn(s.clone(), MAX_QUEUED_EVENTS);
        let mut bad = logged(&s, &writer, "t1", "bad", 100).await;
        let mut good = logged(&s, &writer, "t2", "good", 100).await;
        // One batch: the refused event between good ones of both runs.
        bad.record("{}");
        good.record("{}");
        bad.record(r#""bad""#);
        good.record("{}");
        bad.record("{}");
        bad.finish(RunStatus::Finished, RunEnd::default());
        good.finish(RunStatus::Finished, RunEnd::default());
        assert!(writer.flush(Duration::from_secs(30)).await);
        assert_eq!(
            writer.health.error(),
            None,
            "{backend}: not retried for ever"
        );
        let kept = s.run("r1", "good").await.unwrap().unwrap();
        assert_eq!(kept.status, RunStatus::Finished, "{backend}");
        assert!(!kept.events_cut, "{backend}");
        assert_eq!(
            s.events("good", -1, 10).await.unwrap().len(),
            2,
            "{backend}"
        );
        let marked = s.run("r1", "bad").await.unwrap().unwrap();
        assert_eq!(marked.status, RunStatus::Finished, "{backend}");
        assert!(marked.events_cut, "{backend}: its run is marked");
        let seqs: Vec<i64> = s
            .events("bad", -1, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [0, 2], "{backend}: only the refused one is dropped");
        // Later writes flow.
        let mut later = logged(&s, &writer, "t3", "later", 100).await;
        later.record("{}");
        assert!(writer.flush(Duration::from_secs(30)).await);
        assert_eq!(
            s.events("later", -1, 10).await.unwrap().len(),
            1,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn store_a_pending_run_starts_once_keeping_what_it_was_made_with() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        let t = thread("r1", "t", 1);
        let mut earlier = pending("t", "earlier", 2);
        assert_eq!(
            s.create_run(&t, &mut earlier, 100).await.unwrap(),
            Started::Recorded
        );
        let mut made = RunRecord {
            parent_run_id: Some("earlier".into()),
            metadata: Some(r#"{"label":"x"}"#.into()),
            input: r#"{"threadId":"t","runId":"p","state":{}}"#.into(),
            ..pending("t", "p", 5)
        };
        assert_eq!(
            s.create_run(&t, &mut made, 100).await.unwrap(),
            Started::Recorded
        );
        assert_eq!(
            s.thread_runs("r1", "t", i64::MAX).await.unwrap(),
            [earlier, made.clone()]
        );

        // Started: its status and input are the start's; its time, parent and metadata stay.
        let real = RunRecord {
            input: r#"{"messages":["real"]}"#.into(),
            ..run("t", "p", 50)
        };
        assert_eq!(
            s.start_run(&t, &real, Some(100), TOKEN, later())
                .await
                .unwrap(),
            Started::Recorded,
            "{backend}"
        );
        let got = s.run("r1", "p").await.unwrap().unwrap();
        assert_eq!(
            got,
            RunRecord {
                status: RunStatus::Running,
                input: real.input.clone(),
                ..made.clone()
            },
            "{backend}"
        );
        assert_eq!(
            s.start_run(&t, &real, Some(100), TOKEN, later())
                .await
                .unwrap(),
            Started::RunExists,
            "{backend}: started once"
        );
        // Another thread (or another user's) cannot start it.
        add(&s, pending("t", "q", 6)).await;
        let elsewhere = start(&s, &thread("r1", "u", 1), run("u", "q", 7), None).await;
        assert_eq!(elsewhere, Started::RunExists, "{backend}");
        let stranger = ThreadRecord {
            owner: "someone".into(),
            ..thread("r1", "t", 1)
        };
        let theirs = start(&s, &stranger, run("t", "q", 7), None).await;
        assert_eq!(theirs, Started::OtherRoom, "{backend}");
        assert_eq!(
            s.run("r1", "q").await.unwrap().unwrap().status,
            RunStatus::Pending
        );

        // Many starts of one pending run at once: exactly one finds it pending.
        add(&s, pending("t", "race", 8)).await;
        let starts = (0..8).map(|i| {
            let (s, t) = (s.clone(), t.clone());
            tokio::spawn(async move {
                let input = format!(r#"{{"start":{i}}}"#);
                let attempt = RunRecord {
                    input,
                    ..run("t", "race", 60)
                };
                s.start_run(&t, &attempt, Some(100), TOKEN, later())
                    .await
                    .unwrap()
            })
        });
        let mut outcomes = Vec::new();
        for start in starts.collect::<Vec<_>>() {
            outcomes.push(start.await.unwrap());
        }
        let won = outcomes.iter().filter(|o| **o == Started::Recorded).count();
        assert_eq!(won, 1, "{backend}: {outcomes:?}");
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, Started::Recorded | Started::RunExists)));

        // Its owner gone (it never held a lease), another process finds its running runs
        // orphaned, not its pending ones.
        drop(s);
        let s = open(&url).await;
        let orphans = s.orphans(store::now_ms()).await.unwrap();
        let mut ids: Vec<&str> = orphans.iter().map(|o| o.run_id.as_str()).collect();
        ids.sort_unstable();
        assert!(ids.contains(&"p"), "{backend}: {ids:?}");
        assert!(!ids.contains(&"q"), "{backend}: {ids:?}");
    }
}

#[tokio::test]
async fn store_pending_runs_count_toward_a_threads_runs() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        let t = thread("r1", "t", 1);
        for i in 0..3 {
            let mut p = pending("t", &format!("p{i}"), i);
            assert_eq!(
                s.create_run(&t, &mut p, 3).await.unwrap(),
                Started::Recorded
            );
        }
        let mut more = pending("t", "p3", 9);
        let refused = s.create_run(&t, &mut more, 3).await.unwrap();
        assert_eq!(refused, Started::ThreadFull, "{backend}");
        let made_up = start(&s, &t, run("t", "new", 9), Some(3)).await;
        assert_eq!(made_up, Started::ThreadFull, "{backend}");
        let reused = start(&s, &t, run("t", "p0", 9), Some(0)).await;
        assert_eq!(
            reused,
            Started::Recorded,
            "{backend}: a run made within the limit starts"
        );
        let again = start(&s, &t, run("t", "p0", 9), Some(3)).await;
        assert_eq!(again, Started::RunExists, "{backend}");
        let unlimited = start(&s, &t, run("t", "plain", 9), None).await;
        assert_eq!(unlimited, Started::Recorded, "{backend}");

        // Runs made at the same time in one thread are counted one after another.
        let u = thread("r1", "u", 1);
        s.put_thread(&u).await.unwrap();
        let makes = (0..12).map(|i| {
            let (s, u) = (s.clone(), u.clone());
            tokio::spawn(async move {
                let mut p = pending("u", &format!("u{i}"), 1);
                s.create_run(&u, &mut p, 5).await.unwrap()
            })
        });
        let mut made = 0;
        for make in makes.collect::<Vec<_>>() {
            let outcome = make.await.unwrap();
            assert!(matches!(outcome, Started::Recorded | Started::ThreadFull));
            made += usize::from(outcome == Started::Recorded);
        }
        assert_eq!(made, 5, "{backend}");
        assert_eq!(
            s.thread_runs("r1", "u", i64::MAX).await.unwrap().len(),
            5,
            "{backend}"
        );
    }
}

#[tokio::test]
async fn store_a_database_made_before_pending_runs_migrates_and_keeps_its_runs() {
    let dir = TempDir::new();
    let sqlite = format!("sqlite://{}", dir.path.join("old.db").display());
    let mut dbs = vec![("sqlite", sqlite)];
    if let Some(url) = postgres().await {
        dbs.push(("postgres", url));
    }
    for (backend, url) in dbs {
        // The schema as its first migration left it, with a thread and a run in it.
        let first = dir.path.join(format!("{backend}-first"));
        std::fs::create_dir_all(&first).unwrap();
        let source = format!(
            "{}/migrations/{backend}/0001_store.sql",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::copy(source, first.join("0001_store.sql")).unwrap();
        let migrator = sqlx::migrate::Migrator::new(first.as_path()).await.unwrap();
        let insert = [
            "INSERT INTO threads (id, room, owner, created) VALUES ('t', 'r1', '', 1)",
            "INSERT INTO runs (id, thread_id, created, finished, status, input) \
             VALUES ('old', 't', 2, 3, 'finished', '{}')",
        ];
        if backend == "sqlite" {
            let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
                .await
                .unwrap();
            migrator.run_direct(&mut conn).await.unwrap();
            for statement in insert {
                sqlx::query(statement).execute(&mut conn).await.unwrap();
            }
        } else {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            migrator.run_direct(&mut conn).await.unwrap();
            for statement in insert {
                sqlx::query(statement).execute(&mut conn).await.unwrap();
            }
        }
        let s = open(&url).await;
        let old = s.run("r1", "old").await.unwrap().unwrap();
        assert_eq!(
            (old.status, old.metadata),
            (RunStatus::Finished, None),
            "{backend}"
        );
        let mut made = RunRecord {
            metadata: Some("{}".into()),
            ..pending("t", "new", 9)
        };
        let t = thread("r1", "t", 1);
        assert_eq!(
            s.create_run(&t, &mut made, 100).await.unwrap(),
            Started::Recorded,
            "{backend}"
        );
        assert_eq!(s.thread_runs("r1", "t", i64::MAX).await.unwrap().len(), 2);
    }
}
