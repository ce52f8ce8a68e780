//! The engine-neutral API, exercised on whichever engine the test run selects (see
//! `testing.rs`): the same assertions hold for SQLite and PostgreSQL.

use super::testing::{TestStore, fresh_db};
use super::{DbError, Dialect, Value};
use crate::params;

const SCHEMA: &[&str] = &["CREATE TABLE t (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    n INTEGER NOT NULL,
    score REAL,
    raw BLOB
)"];

#[test]
fn rows_round_trip_every_storage_class() {
    let db = fresh_db();
    db.migrate_component("t", SCHEMA).unwrap();
    let id: i64 = db
        .with_conn(|c| {
            c.query_row(
                "INSERT INTO t (name, n, score, raw) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                &params![String::from("雷达"), 1_700_000_000_000_i64, 2.5, vec![0u8, 255]],
                |r| r.get(0),
            )
        })
        .unwrap();
    let (name, n, score, raw, missing): (String, i64, f64, Vec<u8>, Option<f64>) = db
        .with_conn(|c| {
            c.query_row("SELECT name, n, score, raw, NULL FROM t WHERE id = ?1", &[id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
        })
        .unwrap();
    assert_eq!((name.as_str(), n, score, raw, missing), ("雷达", 1_700_000_000_000, 2.5, vec![0, 255], None));
    // Aggregates read back as plain integers and floats on both engines (PostgreSQL's are NUMERIC).
    db.with_conn(|c| c.execute("INSERT INTO t (name, n) VALUES ('b', 3)", &())).unwrap();
    let (sum, count, avg): (i64, i64, f64) = db
        .with_conn(|c| {
            c.query_row("SELECT SUM(n), COUNT(*), AVG(n) FROM t WHERE n < 10", &(), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
        })
        .unwrap();
    assert_eq!((sum, count, avg), (3, 1, 3.0));
    let none: Option<i64> =
        db.with_conn(|c| c.query_opt("SELECT n FROM t WHERE name = ?1", &["zz"], |r| r.get(0))).unwrap();
    assert_eq!(none, None);
    assert!(matches!(
        db.with_conn(|c| c.query_row("SELECT n FROM t WHERE id < 0", &(), |r| r.get::<i64>(0))),
        Err(DbError::NoRows)
    ));
}

#[test]
fn a_column_of_the_wrong_type_names_the_column() {
    let db = fresh_db();
    db.migrate_component("t", SCHEMA).unwrap();
    db.with_conn(|c| c.execute("INSERT INTO t (name, n) VALUES ('a', 1)", &())).unwrap();
    let err = db.with_conn(|c| c.query_row("SELECT name FROM t", &(), |r| r.get::<i64>(0))).unwrap_err();
    assert!(matches!(err, DbError::Column { index: 0, .. }), "{err}");
}

#[test]
fn unique_violations_are_conflicts() {
    let db = fresh_db();
    db.migrate_component("t", SCHEMA).unwrap();
    db.with_conn(|c| c.execute("INSERT INTO t (name, n) VALUES (?1, 1)", &["a"])).unwrap();
    let err = db.with_conn(|c| c.execute("INSERT INTO t (name, n) VALUES (?1, 2)", &["a"])).unwrap_err();
    assert!(matches!(err, DbError::Conflict(_)), "{err}");
    // The shared upsert forms work on both.
    db.with_conn(|c| {
        c.execute("INSERT INTO t (name, n) VALUES (?1, 5) ON CONFLICT(name) DO UPDATE SET n = excluded.n", &["a"])?;
        c.execute("INSERT INTO t (name, n) VALUES (?1, 9) ON CONFLICT DO NOTHING", &["a"])
    })
    .unwrap();
    let n: i64 = db.with_conn(|c| c.query_row("SELECT n FROM t WHERE name = 'a'", &(), |r| r.get(0))).unwrap();
    assert_eq!(n, 5);
}

#[test]
fn transactions_commit_roll_back_and_nest() {
    let db = fresh_db();
    db.migrate_component("t", SCHEMA).unwrap();
    let count =
        |db: &super::Db| -> i64 { db.with_conn(|c| c.query_row("SELECT COUNT(*) FROM t", &(), |r| r.get(0))).unwrap() };
    db.with_conn(|c| c.transaction(|tx| tx.execute("INSERT INTO t (name, n) VALUES ('a', 1)", &()))).unwrap();
    let failed: Result<(), DbError> = db.with_conn(|c| {
        c.transaction(|tx| {
            tx.execute("INSERT INTO t (name, n) VALUES ('b', 1)", &())?;
            Err(DbError::Invalid("changed my mind".into()))
        })
    });
    assert!(failed.is_err());
    assert_eq!(count(&db), 1, "the failed transaction left nothing");
    // An inner failure rolls back only the inner part.
    db.with_conn(|c| {
        c.transaction(|tx| {
            tx.execute("INSERT INTO t (name, n) VALUES ('c', 1)", &())?;
            let inner: Result<(), DbError> = tx.transaction(|tx2| {
                tx2.execute("INSERT INTO t (name, n) VALUES ('d', 1)", &())?;
                Err(DbError::Invalid("no".into()))
            });
            assert!(inner.is_err());
            Ok::<_, DbError>(())
        })
    })
    .unwrap();
    assert_eq!(count(&db), 2);
    // A panic inside a transaction rolls it back and leaves the connection usable.
    let db = std::sync::Arc::new(db);
    let db2 = db.clone();
    let panicked = std::thread::spawn(move || {
        let _: Result<(), DbError> = db2.with_conn(|c| {
            c.transaction(|tx| {
                tx.execute("INSERT INTO t (name, n) VALUES ('e', 1)", &())?;
                panic!("boom");
            })
        });
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(count(&db), 2);
    db.with_conn(|c| c.transaction(|tx| tx.execute("INSERT INTO t (name, n) VALUES ('f', 1)", &()))).unwrap();
    assert_eq!(count(&db), 3);
}

#[test]
fn migrations_apply_once_and_survive_reopening() {
    let store = TestStore::new();
    {
        let db = store.open();
        db.migrate_component("t", SCHEMA).unwrap();
        db.with_conn(|c| c.execute("INSERT INTO t (name, n) VALUES ('kept', 1)", &())).unwrap();
    }
    let db = store.open();
    let more = [SCHEMA[0], "ALTER TABLE t ADD COLUMN note TEXT"];
    db.migrate_component("t", &more).unwrap();
    db.migrate_component("t", &more).unwrap();
    let (name, note): (String, Option<String>) =
        db.with_conn(|c| c.query_row("SELECT name, note FROM t", &(), |r| Ok((r.get(0)?, r.get(1)?)))).unwrap();
    assert_eq!((name.as_str(), note), ("kept", None));
}

#[test]
fn placeholders_bind_by_number_and_reuse() {
    let db = fresh_db();
    db.migrate_component("t", SCHEMA).unwrap();
    db.with_conn(|c| c.execute("INSERT INTO t (name, n, score) VALUES (?1, ?2, ?3)", &params!["x", 7, 7.0])).unwrap();
    let v = db
        .with_conn(|c| {
            c.query_row(
                "SELECT n, score FROM t WHERE name = ?1 AND (?2 IS NULL OR n = ?2)",
                &params!["x", None::<i64>],
                |r| Ok((r.get::<Option<i64>>(0)?, r.get::<f64>(1)?)),
            )
        })
        .unwrap();
    assert_eq!(v, (Some(7), 7.0));
    // Several NULL-able filters of different types in one statement.
    let n: i64 = db
        .with_conn(|c| {
            c.query_row(
                "SELECT COUNT(*) FROM t WHERE (?1 IS NULL OR name = ?1) AND (?2 IS NULL OR n >= ?2)
                 AND (?3 IS NULL OR score < ?3)",
                &params![None::<String>, None::<i64>, None::<f64>],
                |r| r.get(0),
            )
        })
        .unwrap();
    assert_eq!(n, 1);
    let expected =
        if std::env::var(super::testing::TEST_DATABASE_URL).is_ok() { Dialect::Postgres } else { Dialect::Sqlite };
    assert_eq!(db.dialect(), expected, "the run tests the engine it says it does");
    let raw = db
        .with_conn(|c| c.query_row("SELECT name FROM t", &(), |r| Ok(matches!(r.value(0)?, Value::Text("x")))))
        .unwrap();
    assert!(raw);
}

/// A backup of the SQLite store opens as a store of its own with the rows at backup time;
/// PostgreSQL's backups are the database server's, so the call says it wrote nothing.
#[test]
fn backup_to_copies_a_sqlite_store_and_leaves_postgresql_to_its_server() {
    let db = fresh_db();
    db.migrate_component("t", SCHEMA).unwrap();
    db.with_conn(|c| c.execute("INSERT INTO t (name, n) VALUES ('before', 1)", &())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    let wrote = db.backup_to(&copy).unwrap();
    assert_eq!(wrote, db.dialect() == Dialect::Sqlite);
    if !wrote {
        assert!(!copy.exists());
        return;
    }
    db.with_conn(|c| c.execute("INSERT INTO t (name, n) VALUES ('after', 2)", &())).unwrap();
    let restored = super::Db::open(&copy).unwrap();
    let names: Vec<String> =
        restored.with_conn(|c| c.query_map("SELECT name FROM t ORDER BY name", &(), |r| r.get(0))).unwrap();
    assert_eq!(names, ["before"]);
    // An existing file is not overwritten (VACUUM INTO refuses it).
    assert!(db.backup_to(&copy).is_err());
}
