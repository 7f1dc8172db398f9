//! The store contract against the PostgreSQL backend (a real server, started per test), plus
//! what only a shared store has: changes written through one store reach the others, two
//! nodes migrating at once agree, and an operator is told plainly what is wrong with the
//! database settings.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../state/tests/contract/mod.rs"]
mod contract;

use std::sync::Arc;
use std::time::Duration;

use portcullis_state::{Change, PostgresSettings, PostgresStore, StateError, StateStore};
use portcullis_tests::Postgres;

/// Settings for `database` on `postgres`, as node `node`.
fn settings(postgres: &Postgres, database: &str, node: &str) -> PostgresSettings {
    let mut settings = PostgresSettings::new(postgres.url(database), node);
    settings.password = Some(postgres.password().to_owned());
    settings
}

/// Opens a store from synchronous code (the contract's `Open`): on a thread of its own, as
/// a tokio runtime must not be blocked on from inside another.
fn open_blocking(settings: PostgresSettings) -> Result<PostgresStore, StateError> {
    std::thread::spawn(move || futures::executor::block_on(PostgresStore::open(settings)))
        .join()
        .unwrap()
}

/// A server with an empty database, and a way to open (again) a store on it.
fn fresh() -> (Postgres, Box<contract::Open>) {
    let postgres = Postgres::start();
    let created = postgres.psql("postgres", "CREATE DATABASE state");
    assert_eq!(created.code, Some(0), "{created:?}");
    let settings = settings(&postgres, "state", "a");
    let open =
        move || -> Arc<dyn StateStore> { Arc::new(open_blocking(settings.clone()).unwrap()) };
    (postgres, Box::new(open))
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let (_postgres, open) = fresh();
            contract::$name(&*open).await;
        }
    )*};
}

contract!(
    locks_hold_until_their_time_survive_a_restart_and_are_announced,
    requests_keep_their_approvals_and_are_decided_once,
    grants_end_once_whoever_ends_them,
    the_vault_keeps_one_data_key_and_sealed_rows,
    totp_steps_and_anchors_persist,
    racing_writers_agree,
    guesses_are_limited_per_key_given_back_on_success_and_forgotten_in_time,
    sessions_are_indexed_from_start_to_end_and_outlive_the_process,
);

/// The next change on `feed` that is not one of the store's own kind filter, waiting up to
/// a generous bound (the condition, not the time, is what is asserted).
async fn next(feed: &mut tokio::sync::broadcast::Receiver<Change>) -> Change {
    tokio::time::timeout(Duration::from_secs(30), feed.recv())
        .await
        .expect("no change arrived")
        .unwrap()
}

#[tokio::test]
async fn a_change_written_through_one_node_reaches_the_others_once_and_in_order() {
    let (postgres, _) = fresh();
    let a = PostgresStore::open(settings(&postgres, "state", "a"))
        .await
        .unwrap();
    let b = PostgresStore::open(settings(&postgres, "state", "b"))
        .await
        .unwrap();
    let mut on_a = a.changes();
    let mut on_b = b.changes();
    a.place_lock(portcullis_policy::Lock {
        user: "alice".into(),
        reason: "INC-7".into(),
        by: "secops".into(),
        since: std::time::SystemTime::now(),
        until: None,
    })
    .await
    .unwrap();
    b.request_kill("s-1", "secops", "suspicious").await.unwrap();
    let kill = Change::KillRequested {
        session: "s-1".into(),
        by: "secops".into(),
        reason: "suspicious".into(),
    };
    let lock = Change::LockPlaced {
        user: "alice".into(),
    };
    // Each store announces its own change at once and the other's when it reads the log:
    // both, once each, whatever the interleaving.
    for feed in [&mut on_a, &mut on_b] {
        let mut seen = vec![next(feed).await, next(feed).await];
        seen.sort_by_key(|change| format!("{change:?}"));
        assert_eq!(seen, vec![kill.clone(), lock.clone()]);
    }
    let id = a
        .insert_grant(portcullis_state::NewGrant {
            user: "alice".into(),
            target: "db01".into(),
            role: "dba".into(),
            reason: "r".into(),
            starts_at: std::time::SystemTime::now(),
            duration: Duration::from_secs(60),
            request: None,
            break_glass: false,
        })
        .await
        .unwrap()
        .grant
        .id;
    assert!(
        b.revoke_grant(id, "secops", "done", std::time::SystemTime::now())
            .await
            .unwrap()
    );
    // Written one after the other (b revoked only after a's grant was committed). a hears
    // its own at once and b's from the log, so in that order. b hears its own at once too,
    // and a's when its follower reads the log: possibly after its own later one — a
    // subscriber re-reads the state it is told changed, so what is promised is every change,
    // once, on every node.
    let activated = Change::GrantActivated {
        id,
        user: "alice".into(),
    };
    let ended = Change::GrantEnded {
        id,
        user: "alice".into(),
        revoked: true,
    };
    assert_eq!(next(&mut on_a).await, activated);
    assert_eq!(next(&mut on_a).await, ended);
    let mut on_b_seen = vec![next(&mut on_b).await, next(&mut on_b).await];
    on_b_seen.sort_by_key(|change| format!("{change:?}"));
    assert_eq!(on_b_seen, vec![activated, ended]);
    assert!(on_a.try_recv().is_err() && on_b.try_recv().is_err());
}

#[tokio::test]
async fn nodes_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let (postgres, _) = fresh();
    let opens: Vec<_> = (0..4)
        .map(|n| {
            let settings = settings(&postgres, "state", &format!("n{n}"));
            std::thread::spawn(move || open_blocking(settings))
        })
        .collect();
    for open in opens {
        open.join().unwrap().unwrap();
    }
    let applied = postgres.psql(
        "state",
        "SELECT count(*), count(DISTINCT version) FROM schema_migrations",
    );
    let (count, distinct) = applied.stdout.trim().split_once('|').unwrap();
    assert_eq!(count, distinct, "{applied:?}");
    let raised = postgres.psql(
        "state",
        "INSERT INTO schema_migrations (version, applied_at, applied_by) VALUES (999, 0, 'future')",
    );
    assert_eq!(raised.code, Some(0), "{raised:?}");
    let error = PostgresStore::open(settings(&postgres, "state", "a"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, StateError::TooNew { found: 999, .. }),
        "{error}"
    );
    assert!(error.needs_operator());
    assert!(error.to_string().contains("upgrade portcullis"), "{error}");
}

#[tokio::test]
async fn wrong_credentials_a_missing_database_and_no_server_are_told_apart() {
    let (postgres, _) = fresh();
    let mut wrong = settings(&postgres, "state", "a");
    wrong.password = Some("not-the-password".into());
    let error = PostgresStore::open(wrong).await.unwrap_err();
    assert!(matches!(error, StateError::Rejected { .. }), "{error}");
    assert!(
        error.to_string().contains("password authentication failed"),
        "{error}"
    );
    let error = PostgresStore::open(settings(&postgres, "no_such_db", "a"))
        .await
        .unwrap_err();
    assert!(matches!(error, StateError::Rejected { .. }), "{error}");
    assert!(error.to_string().contains("does not exist"), "{error}");
    let port = portcullis_tests::util::free_port();
    let mut nobody =
        PostgresSettings::new(format!("postgres://portcullis@127.0.0.1:{port}/state"), "a");
    nobody.password = Some("x".into());
    let error = PostgresStore::open(nobody).await.unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(error.to_string().contains("cannot be reached"), "{error}");
    // A failed open leaves nothing behind: the right settings still work.
    PostgresStore::open(settings(&postgres, "state", "a"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_node_whose_heartbeats_stop_is_claimed_once_and_its_sessions_end_as_node_lost() {
    let (postgres, _) = fresh();
    let a = PostgresStore::open(settings(&postgres, "state", "a"))
        .await
        .unwrap();
    let b = PostgresStore::open(settings(&postgres, "state", "b"))
        .await
        .unwrap();
    let session = |id: &str| portcullis_state::SessionRecord {
        id: id.into(),
        user: "alice".into(),
        target: Some("web01".into()),
        client: "127.0.0.1:50000".into(),
        started_at: std::time::SystemTime::now(),
        ended: None,
        node: None,
        progress: None,
        grant: None,
    };
    a.open_session(session("on-a")).await.unwrap();
    b.open_session(session("on-b")).await.unwrap();
    let beat = |sessions: Vec<portcullis_state::SessionProgress>| portcullis_state::NodeBeat {
        admin: Some("127.0.0.1:9443".into()),
        sessions,
    };
    a.heartbeat(beat(vec![portcullis_state::SessionProgress {
        id: "on-a".into(),
        bytes_from_client: 10,
        bytes_to_client: 2_000,
        grant: Some(7),
    }]))
    .await
    .unwrap();
    b.heartbeat(beat(Vec::new())).await.unwrap();
    let live = b.open_sessions().await.unwrap();
    assert_eq!(live.len(), 2);
    assert_eq!(live[0].node.as_deref(), Some("a"));
    assert_eq!(live[0].progress, Some((10, 2_000)));
    assert_eq!(live[0].grant, Some(7));
    assert_eq!(live[1].progress, None);
    let nodes = b.nodes().await.unwrap();
    assert_eq!(
        nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    // Within a long lease nobody is lost.
    assert!(
        b.claim_lost_nodes(Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty()
    );
    // With a lease shorter than the time since a's beat, b claims a (never itself), once.
    let mut lost = Vec::new();
    for _ in 0..1000 {
        lost = b.claim_lost_nodes(Duration::from_millis(1)).await.unwrap();
        if !lost.is_empty() {
            break;
        }
    }
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert_eq!(lost[0].node, "a");
    let ended = &lost[0].sessions;
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].id, "on-a");
    let end = ended[0].ended.as_ref().unwrap();
    assert_eq!(end.reason, "node_lost");
    assert_eq!((end.bytes_from_client, end.bytes_to_client), (10, 2_000));
    assert!(
        b.claim_lost_nodes(Duration::from_millis(1))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        a.claim_lost_nodes(Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        b.open_sessions()
            .await
            .unwrap()
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        ["on-b"]
    );
    let nodes = b.nodes().await.unwrap();
    assert!(nodes[0].lost_at.is_some(), "{nodes:?}");
    // A node that beats again is back.
    a.heartbeat(beat(Vec::new())).await.unwrap();
    assert!(b.nodes().await.unwrap()[0].lost_at.is_none());
}

/// Runs `openssl ARGS` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let ran: portcullis_tests::Ran = portcullis_tests::util::run_with_timeout(
        60,
        std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args),
    )
    .into();
    assert_eq!(ran.code, Some(0), "openssl {args:?}: {ran:?}");
}

/// A CA, and a server certificate it signed for 127.0.0.1 (`ca.pem`, `server.pem`,
/// `server.key`), plus a CA that signed nothing (`other-ca.pem`).
fn certificates(dir: &std::path::Path) {
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN=test {ca}"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("san.ext"), "subjectAltName = IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

#[tokio::test]
async fn tls_follows_sslmode_verify_full_checks_the_chain_and_the_name() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let postgres = Postgres::start_with(|dir| {
        for file in ["server.pem", "server.key"] {
            std::fs::copy(certs.path().join(file), dir.join(file)).unwrap();
        }
        format!(
            "-c ssl=on -c ssl_cert_file={0}/server.pem -c ssl_key_file={0}/server.key",
            dir.display()
        )
    });
    let created = postgres.psql("postgres", "CREATE DATABASE state");
    assert_eq!(created.code, Some(0), "{created:?}");
    let with = |mode: portcullis_state::SslMode, root: Option<&str>, host: &str| {
        let mut settings = settings(&postgres, "state", "a");
        settings.url = settings.url.replace("127.0.0.1", host);
        settings.ssl_mode = Some(mode);
        settings.root_cert = root.map(|name| certs.path().join(name));
        settings
    };
    use portcullis_state::SslMode::{Disable, Require, VerifyCa, VerifyFull};
    // The right CA and the address the certificate names: in, encrypted.
    let store = PostgresStore::open(with(VerifyFull, Some("ca.pem"), "127.0.0.1"))
        .await
        .unwrap();
    let encrypted = postgres.psql(
        "postgres",
        "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.application_name = 'portcullis a'",
    );
    assert_eq!(encrypted.stdout.trim(), "t", "{encrypted:?}");
    drop(store);
    // A CA that did not sign it: refused, saying why.
    let error = PostgresStore::open(with(VerifyFull, Some("other-ca.pem"), "127.0.0.1"))
        .await
        .unwrap_err();
    assert!(matches!(error, StateError::Rejected { .. }), "{error}");
    assert!(error.to_string().contains("TLS"), "{error}");
    // The right CA, another name (localhost): verify-full refuses, verify-ca accepts.
    let error = PostgresStore::open(with(VerifyFull, Some("ca.pem"), "localhost"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("TLS"), "{error}");
    PostgresStore::open(with(VerifyCa, Some("ca.pem"), "localhost"))
        .await
        .unwrap();
    // SCRAM bound to the TLS session (tls-server-end-point): the server's required binding
    // is given.
    let mut bound = with(VerifyFull, Some("ca.pem"), "127.0.0.1");
    bound.url.push_str("?channel_binding=require");
    PostgresStore::open(bound).await.unwrap();
    // require without a CA encrypts without checking; disable does not encrypt.
    PostgresStore::open(with(Require, None, "127.0.0.1"))
        .await
        .unwrap();
    PostgresStore::open(with(Disable, None, "127.0.0.1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_change_whose_notification_was_lost_still_arrives_with_the_next_re_read() {
    let (postgres, _) = fresh();
    let a = PostgresStore::open(settings(&postgres, "state", "a"))
        .await
        .unwrap();
    let mut feed = a.changes();
    // A row in the log with no NOTIFY (as if the notification had been lost with a
    // connection): only the periodic re-read can find it.
    let written = postgres.psql(
        "state",
        "INSERT INTO changes (origin, at, kind, subject) VALUES ('elsewhere', 0, 'lock_placed', 'mallory')",
    );
    assert_eq!(written.code, Some(0), "{written:?}");
    assert_eq!(
        next(&mut feed).await,
        Change::LockPlaced {
            user: "mallory".into()
        }
    );
    // A kind this build does not know (a newer node's) is skipped, and what follows arrives.
    let written = postgres.psql(
        "state",
        "INSERT INTO changes (origin, at, kind, subject) VALUES ('elsewhere', 0, 'from_the_future', 'x');
         INSERT INTO changes (origin, at, kind, subject) VALUES ('elsewhere', 0, 'lock_lifted', 'mallory')",
    );
    assert_eq!(written.code, Some(0), "{written:?}");
    assert_eq!(
        next(&mut feed).await,
        Change::LockLifted {
            user: "mallory".into()
        }
    );
}
