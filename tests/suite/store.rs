//! The store's behaviour, the same for every backend: SQLite always, PostgreSQL when
//! `ROOMHOST_TEST_DATABASE_URL` (or `DATABASE_URL`) names a server (`.ci/run` starts one). Each
//! test gets a fresh database.

use std::sync::Arc;
use std::time::Duration;

use roomhost::store::{
    self, RunLog, RunRecord, RunStatus, Store, ThreadRecord, Write, Writer, MAX_QUEUED_EVENTS,
};
use sqlx::Connection;

use crate::support::harness::TempDir;

/// A fresh database on each backend: its name and URL. The temp dirs live as long as the list.
async fn databases() -> (Vec<(&'static str, String)>, TempDir) {
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
    store::open(url)
        .await
        .expect("store opens")
        .expect("a store")
}

/// A run recorded through the writer (and its thread in room `r1`), and its log keeping at most `cap` events.
fn logged(writer: &Writer, thread_id: &str, run_id: &str, cap: usize) -> RunLog {
    writer.send(Write::Thread(thread("r1", thread_id, 1)));
    writer.send(Write::Run(run(thread_id, run_id, 2)));
    RunLog::new(Some(writer.clone()), run_id, cap)
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
        events_cut: false,
    }
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
async fn store_runs_are_created_once_and_listed_oldest_first() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        s.put_thread(&thread("r1", "t", 1)).await.unwrap();
        assert!(s.create_run(&run("t", "run2", 20)).await.unwrap());
        assert!(s.create_run(&run("t", "run1", 10)).await.unwrap());
        assert!(
            !s.create_run(&run("t", "run1", 30)).await.unwrap(),
            "{backend}: a run id is used once"
        );
        let runs = s.thread_runs("r1", "t").await.unwrap();
        let ids: Vec<_> = runs.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["run1", "run2"], "{backend}");
        assert_eq!(runs[0], run("t", "run1", 10), "{backend}");
        assert!(
            s.thread_runs("r2", "t").await.unwrap().is_empty(),
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
        let mut log = logged(&writer, "t", "run", 10_000);
        for i in 0..1500 {
            assert_eq!(log.record(&format!(r#"{{"i":{i}}}"#)), i, "{backend}");
        }
        log.finish(
            RunStatus::Finished,
            Some(r#"{"ok":true}"#.into()),
            Some("[]".into()),
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
        assert!(stored.finished.is_some() && !stored.events_cut);
    }
}

#[tokio::test]
async fn store_caps_the_events_of_a_run_and_marks_it_cut() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        let writer = Writer::spawn(s.clone(), MAX_QUEUED_EVENTS);
        let mut log = logged(&writer, "t", "run", 5);
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
        let mut log = logged(&writer, "t", "run", 1000);
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
async fn store_reopen_marks_running_runs_interrupted_and_keeps_their_events() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        {
            let s = open(&url).await;
            s.put_thread(&thread("r1", "t", 1)).await.unwrap();
            s.create_run(&run("t", "cut", 2)).await.unwrap();
            s.create_run(&run("t", "done", 3)).await.unwrap();
            s.write(&[
                Write::Event {
                    run_id: "cut".into(),
                    seq: 0,
                    data: "{}".into(),
                },
                Write::Finish {
                    run_id: "done".into(),
                    status: RunStatus::Finished,
                    finished: 4,
                    result: None,
                    usage: None,
                },
            ])
            .await
            .unwrap();
        }
        let s = open(&url).await;
        let cut = s.run("r1", "cut").await.unwrap().unwrap();
        assert_eq!(cut.status, RunStatus::Interrupted, "{backend}");
        assert!(cut.finished.is_some());
        assert_eq!(s.events("cut", -1, 10).await.unwrap().len(), 1, "{backend}");
        let done = s.run("r1", "done").await.unwrap().unwrap();
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
        s.create_run(&run("t", "run", 2)).await.unwrap();
        s.create_run(&run("keep", "kept", 2)).await.unwrap();
        let event = |run_id: &str| Write::Event {
            run_id: run_id.into(),
            seq: 0,
            data: "{}".into(),
        };
        s.write(&[event("run"), event("kept")]).await.unwrap();
        assert!(s.add_feedback("run", r#"{"feedback":"up"}"#).await.unwrap());
        assert!(!s.add_feedback("nope", "{}").await.unwrap(), "{backend}");

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

#[tokio::test]
async fn store_purge_deletes_only_threads_without_recent_or_running_runs() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        for id in ["old", "old_busy", "old_recent", "new"] {
            let created = if id == "new" { 500 } else { 10 };
            s.put_thread(&thread("r1", id, created)).await.unwrap();
        }
        let mut finished = run("old", "a", 10);
        finished.status = RunStatus::Finished;
        s.create_run(&finished).await.unwrap();
        s.create_run(&run("old_busy", "b", 10)).await.unwrap();
        let mut recent = run("old_recent", "c", 400);
        recent.status = RunStatus::Finished;
        s.create_run(&recent).await.unwrap();
        assert_eq!(s.purge(100).await.unwrap(), 1, "{backend}");
        let left: Vec<_> = s.threads("r1", "", 10, None).await.unwrap();
        let mut left: Vec<_> = left.into_iter().map(|t| t.id).collect();
        left.sort();
        assert_eq!(left, ["new", "old_busy", "old_recent"], "{backend}");
    }
}

#[tokio::test]
async fn store_open_refuses_unknown_schemes_and_unusable_files() {
    let err = store::open("mysql://x").await.err().expect("refused");
    assert!(err.to_string().contains("unsupported scheme"), "{err}");
    let err = store::open("sqlite:///nonexistent-dir/x/y.db")
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("unable to open"), "{err}");
    assert!(store::open("none").await.unwrap().is_none());
    let memory = store::open("sqlite::memory:")
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

#[tokio::test]
async fn store_writer_drops_a_refused_write_and_keeps_the_rest() {
    let (dbs, _dir) = databases().await;
    for (backend, url) in dbs {
        let s = open(&url).await;
        let writer = Writer::spawn(s.clone(), MAX_QUEUED_EVENTS);
        // A run of a thread that is not there (deleted meanwhile) breaks a foreign key.
        writer.send(Write::Run(run("gone", "orphan", 2)));
        let mut orphan = RunLog::new(Some(writer.clone()), "orphan", 100);
        orphan.record("{}");
        let mut log = logged(&writer, "t", "run", 100);
        log.record("{}");
        log.finish(RunStatus::Finished, None, None);
        assert!(writer.flush(Duration::from_secs(30)).await);
        assert_eq!(writer.health.error(), None, "{backend}");
        assert!(s.run("r1", "orphan").await.unwrap().is_none(), "{backend}");
        let kept = s
            .run("r1", "run")
            .await
            .unwrap()
            .expect("the good run is written");
        assert_eq!(kept.status, RunStatus::Finished, "{backend}");
        assert_eq!(s.events("run", -1, 10).await.unwrap().len(), 1, "{backend}");
    }
}
