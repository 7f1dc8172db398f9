//! The state store's contract, written once: every backend runs these (SQLite in
//! `sqlite.rs`; PostgreSQL, on a real server, in the tests crate's `state_postgres.rs`). Each test gets a way to open the
//! same store again, as a restart would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_policy::{Lock, Request, RequestKind, RequestState};
use portcullis_state::{
    Anchor, Change, CredentialRow, NewGrant, SessionEnd, SessionRecord, StateStore,
};

/// Opens the store under test (again: the same data).
pub type Open = dyn Fn() -> Arc<dyn StateStore>;

fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

fn lock(user: &str, until: Option<u64>) -> Lock {
    Lock {
        user: user.into(),
        reason: "investigation".into(),
        by: "secops".into(),
        since: at(1_000),
        until: until.map(at),
    }
}

fn request(user: &str, target: &str, needed: u32) -> Request {
    Request {
        id: 0,
        user: user.into(),
        target: target.into(),
        role: "db-admins".into(),
        reason: "INC-42".into(),
        duration: Duration::from_secs(3600),
        created_at: at(1_000),
        expires_at: at(4_600),
        needed,
        approved_by: Vec::new(),
        state: RequestState::Pending,
        kind: RequestKind::Access,
        approvers: vec!["secops".into()],
    }
}

fn new_grant(user: &str, starts: u64, seconds: u64, break_glass: bool) -> NewGrant {
    NewGrant {
        user: user.into(),
        target: "db01".into(),
        role: "db-admins".into(),
        reason: "INC-42".into(),
        starts_at: at(starts),
        duration: Duration::from_secs(seconds),
        request: None,
        break_glass,
    }
}

fn next_change(feed: &mut tokio::sync::broadcast::Receiver<Change>) -> Option<Change> {
    feed.try_recv().ok()
}

pub async fn locks_hold_until_their_time_survive_a_restart_and_are_announced(open: &Open) {
    let store = open();
    let mut feed = store.changes();
    store.place_lock(lock("alice", None)).await.unwrap();
    store.place_lock(lock("bob", Some(2_000))).await.unwrap();
    assert_eq!(
        next_change(&mut feed),
        Some(Change::LockPlaced {
            user: "alice".into()
        })
    );
    assert_eq!(
        next_change(&mut feed),
        Some(Change::LockPlaced { user: "bob".into() })
    );
    assert!(store.active_lock("bob", at(1_999)).await.unwrap().is_some());
    assert!(store.active_lock("bob", at(2_000)).await.unwrap().is_none());
    assert_eq!(
        store.active_lock("alice", at(9_999)).await.unwrap(),
        Some(lock("alice", None))
    );
    drop(store);
    let store = open();
    let users: Vec<String> = store
        .active_locks(at(1_500))
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.user)
        .collect();
    assert_eq!(users, ["alice", "bob"]);
    assert_eq!(store.active_locks(at(3_000)).await.unwrap().len(), 1);
    let mut feed = store.changes();
    assert!(store.lift_lock("alice").await.unwrap());
    assert!(!store.lift_lock("alice").await.unwrap());
    assert_eq!(
        next_change(&mut feed),
        Some(Change::LockLifted {
            user: "alice".into()
        })
    );
    assert_eq!(
        next_change(&mut feed),
        None,
        "nothing to announce the second time"
    );
}

pub async fn requests_keep_their_approvals_and_are_decided_once(open: &Open) {
    let store = open();
    let mut feed = store.changes();
    let first = store
        .insert_request(request("alice", "db01", 2))
        .await
        .unwrap();
    let second = store
        .insert_request(request("bob", "db02", 1))
        .await
        .unwrap();
    assert!(second.id > first.id);
    assert_eq!(
        next_change(&mut feed),
        Some(Change::RequestCreated { id: first.id })
    );
    assert!(
        store
            .add_approval(first.id, "carol", Some("ok"), at(1_100))
            .await
            .unwrap()
    );
    assert!(
        !store
            .add_approval(first.id, "carol", None, at(1_200))
            .await
            .unwrap()
    );
    assert!(
        store
            .add_approval(first.id, "dave", None, at(1_300))
            .await
            .unwrap()
    );
    let stored = store.request(first.id).await.unwrap().unwrap();
    assert_eq!(stored.approved_by, ["carol", "dave"]);
    assert_eq!(stored.approvers, ["secops"]);
    assert_eq!(stored.duration, Duration::from_secs(3600));

    let pending: Vec<u64> = store
        .pending_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(pending, [first.id, second.id]);
    let _ = feed.try_recv();
    let denied = RequestState::Denied {
        by: "carol".into(),
        reason: "use the replica".into(),
    };
    assert!(
        store
            .settle_request(second.id, denied.clone())
            .await
            .unwrap()
    );
    assert!(
        !store
            .settle_request(second.id, RequestState::Cancelled)
            .await
            .unwrap(),
        "a decided request stays decided"
    );
    assert_eq!(
        next_change(&mut feed),
        Some(Change::RequestDecided {
            id: second.id,
            state: denied.clone()
        })
    );
    assert_eq!(next_change(&mut feed), None);
    drop(store);
    let store = open();
    assert_eq!(
        store.request(second.id).await.unwrap().unwrap().state,
        denied
    );
    let recent: Vec<u64> = store
        .recent_requests(10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(recent, [second.id, first.id], "newest first");
    assert_eq!(store.recent_requests(1).await.unwrap().len(), 1);
    assert_eq!(store.request(9_999).await.unwrap(), None);

    // A held command line is a request too.
    let mut held = request("alice", "web01", 1);
    held.kind = RequestKind::Command {
        line: "systemctl restart nginx".into(),
        rule: "restarts".into(),
        session: "01a2".into(),
    };
    let held = store.insert_request(held).await.unwrap();
    let stored = store.request(held.id).await.unwrap().unwrap();
    assert_eq!(stored.kind, held.kind);
}

pub async fn grants_end_once_whoever_ends_them(open: &Open) {
    let store = open();
    let mut feed = store.changes();
    let one = store
        .insert_grant(new_grant("alice", 1_000, 60, false))
        .await
        .unwrap();
    let two = store
        .insert_grant(new_grant("alice", 1_000, 600, true))
        .await
        .unwrap();
    assert_eq!(one.grant.expires_at, at(1_060));
    assert_eq!(
        next_change(&mut feed),
        Some(Change::GrantActivated {
            id: one.grant.id,
            user: "alice".into()
        })
    );
    let _ = feed.try_recv();
    assert_eq!(store.live_grants().await.unwrap().len(), 2);

    assert!(store.close_expired_grant(one.grant.id).await.unwrap());
    assert!(!store.close_expired_grant(one.grant.id).await.unwrap());
    assert!(
        !store
            .revoke_grant(one.grant.id, "secops", "too late", at(1_100))
            .await
            .unwrap(),
        "an ended grant cannot be revoked"
    );
    assert!(
        store
            .revoke_grant(two.grant.id, "secops", "incident closed", at(1_100))
            .await
            .unwrap()
    );
    assert_eq!(
        next_change(&mut feed),
        Some(Change::GrantEnded {
            id: one.grant.id,
            user: "alice".into(),
            revoked: false
        })
    );
    assert_eq!(
        next_change(&mut feed),
        Some(Change::GrantEnded {
            id: two.grant.id,
            user: "alice".into(),
            revoked: true
        })
    );
    assert_eq!(next_change(&mut feed), None);
    assert!(store.live_grants().await.unwrap().is_empty());

    let revoked = store.grant(two.grant.id).await.unwrap().unwrap();
    assert_eq!(revoked.grant.revoked_at, Some(at(1_100)));
    assert_eq!(
        revoked.revoked,
        Some(("secops".into(), "incident closed".into()))
    );
    assert_eq!(store.unacknowledged_break_glass().await.unwrap().len(), 1);
    assert!(
        store
            .acknowledge_grant(two.grant.id, "auditor", at(1_200))
            .await
            .unwrap()
    );
    assert!(store.unacknowledged_break_glass().await.unwrap().is_empty());
    let usage = store.usage().await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].activations, 2);
    let recent = store.recent_grants(1).await.unwrap();
    assert_eq!(recent[0].grant.id, two.grant.id);
}

pub async fn the_vault_keeps_one_data_key_and_sealed_rows(open: &Open) {
    let store = open();
    assert_eq!(store.wrapped_data_key().await.unwrap(), None);
    let mine = store
        .init_wrapped_data_key(vec![1, 2, 3], at(1))
        .await
        .unwrap();
    let theirs = store
        .init_wrapped_data_key(vec![9, 9, 9], at(2))
        .await
        .unwrap();
    assert_eq!(mine, vec![1, 2, 3]);
    assert_eq!(theirs, vec![1, 2, 3], "the first one stays");
    // A rekey's commit replaces it only if it is still what the rekey read.
    assert!(
        !store
            .replace_wrapped_data_key(vec![7, 7, 7], vec![4, 5, 6])
            .await
            .unwrap()
    );
    assert_eq!(store.wrapped_data_key().await.unwrap(), Some(vec![1, 2, 3]));
    assert!(
        store
            .replace_wrapped_data_key(vec![1, 2, 3], vec![4, 5, 6])
            .await
            .unwrap()
    );
    assert_eq!(store.wrapped_data_key().await.unwrap(), Some(vec![4, 5, 6]));
    assert!(
        !store
            .replace_wrapped_data_key(vec![1, 2, 3], vec![8, 8, 8])
            .await
            .unwrap(),
        "a second rekey from the same old key loses"
    );
    let row = |name: &str, sealed: u8| CredentialRow {
        name: name.into(),
        kind: "password".into(),
        fingerprint: None,
        public_key: None,
        created_at: at(1_000),
        sealed: vec![sealed; 4],
    };
    assert!(store.put_credential(row("web01", 1), false).await.unwrap());
    assert!(!store.put_credential(row("web01", 2), false).await.unwrap());
    assert_eq!(
        store.credential("web01").await.unwrap().unwrap().sealed,
        vec![1; 4]
    );
    assert!(store.put_credential(row("web01", 3), true).await.unwrap());
    assert!(store.put_credential(row("db01", 4), false).await.unwrap());
    drop(store);
    let store = open();
    let names: Vec<String> = store
        .credentials()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["db01", "web01"]);
    assert_eq!(
        store.credential("web01").await.unwrap().unwrap().sealed,
        vec![3; 4]
    );
    assert_eq!(
        store.credential("web01").await.unwrap().unwrap().created_at,
        at(1_000)
    );
    assert!(store.remove_credential("db01").await.unwrap());
    assert!(!store.remove_credential("db01").await.unwrap());
    assert_eq!(store.credential("db01").await.unwrap(), None);
}

pub async fn totp_steps_and_anchors_persist(open: &Open) {
    let store = open();
    assert!(store.accept_totp_step("alice", 10).await.unwrap());
    assert!(!store.accept_totp_step("alice", 10).await.unwrap());
    assert!(!store.accept_totp_step("alice", 9).await.unwrap());
    assert!(store.accept_totp_step("bob", 10).await.unwrap());
    let anchor = Anchor {
        count: 7,
        tag: "ab".into(),
        sealed: true,
    };
    store
        .set_anchor("recording:r1", anchor.clone())
        .await
        .unwrap();
    drop(store);
    let store = open();
    assert!(!store.accept_totp_step("alice", 10).await.unwrap());
    assert!(store.accept_totp_step("alice", 11).await.unwrap());
    assert_eq!(
        store.anchor("recording:r1").await.unwrap(),
        Some(anchor.clone())
    );
    assert_eq!(store.anchor("audit").await.unwrap(), None);
    // A session's recordings, by the prefix of their names (and nothing that merely
    // resembles it: `_` and `%` are not wildcards).
    let open_one = Anchor {
        count: 0,
        tag: String::new(),
        sealed: false,
    };
    for name in [
        "recording:s1-1",
        "recording:s1-2",
        "recording:s10-1",
        "recording:s1_x",
    ] {
        store.set_anchor(name, open_one.clone()).await.unwrap();
    }
    assert_eq!(
        store.anchors_named("recording:s1-").await.unwrap(),
        vec![
            ("recording:s1-1".to_owned(), open_one.clone()),
            ("recording:s1-2".to_owned(), open_one.clone()),
        ]
    );
    assert_eq!(
        store.anchors_named("recording:s1%").await.unwrap(),
        Vec::new()
    );
}

pub async fn racing_writers_agree(open: &Open) {
    let store = open();
    let request = store
        .insert_request(request("alice", "db01", 1))
        .await
        .unwrap();
    // Ten deciders at once: exactly one wins.
    let decisions = (0..10).map(|n| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .settle_request(
                    request.id,
                    RequestState::Denied {
                        by: format!("reviewer-{n}"),
                        reason: "no".into(),
                    },
                )
                .await
                .unwrap()
        })
    });
    let mut won = 0;
    for decision in decisions.collect::<Vec<_>>() {
        won += usize::from(decision.await.unwrap());
    }
    assert_eq!(won, 1);
    // The same TOTP step from ten logins at once: accepted once.
    let steps = (0..10).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.accept_totp_step("carol", 77).await.unwrap() })
    });
    let mut accepted = 0;
    for step in steps.collect::<Vec<_>>() {
        accepted += usize::from(step.await.unwrap());
    }
    assert_eq!(accepted, 1);
}

pub async fn guesses_are_limited_per_key_given_back_on_success_and_forgotten_in_time(open: &Open) {
    let store = open();
    let keys = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let (since, now) = (at(1_000), at(1_010));
    let first = store
        .reserve_guess(keys(&["src", "alice"]), 3, since, now)
        .await
        .unwrap()
        .unwrap();
    store
        .reserve_guess(keys(&["src"]), 3, since, now)
        .await
        .unwrap()
        .unwrap();
    store
        .reserve_guess(keys(&["src", "bob"]), 3, since, now)
        .await
        .unwrap()
        .unwrap();
    // "src" holds three: nothing more on it, whatever else is asked with it.
    assert_eq!(
        store
            .reserve_guess(keys(&["bob", "src"]), 3, since, now)
            .await
            .unwrap(),
        Err("src".to_owned())
    );
    assert_eq!(
        store
            .full_guess_key(keys(&["alice", "src"]), 3, since)
            .await
            .unwrap(),
        Some("src".to_owned())
    );
    // A success gives its slot back on every key it held.
    store.release_guess(first).await.unwrap();
    assert_eq!(
        store
            .full_guess_key(keys(&["src"]), 3, since)
            .await
            .unwrap(),
        None
    );
    // Plain failures keep only the newest `limit` per key, and survive a restart.
    for _ in 0..5 {
        store
            .record_guess_failures(keys(&["carol"]), 3, since, now)
            .await
            .unwrap();
    }
    store.release_guess(0).await.unwrap();
    drop(store);
    let store = open();
    assert_eq!(
        store
            .full_guess_key(keys(&["carol"]), 3, since)
            .await
            .unwrap(),
        Some("carol".to_owned())
    );
    // Once the window has passed them, they decide nothing.
    let later = at(1_011);
    assert_eq!(
        store
            .full_guess_key(keys(&["carol", "src"]), 3, later)
            .await
            .unwrap(),
        None
    );
    store
        .reserve_guess(keys(&["carol"]), 3, later, at(1_020))
        .await
        .unwrap()
        .unwrap();
    // Twelve verifications racing on one key: exactly the limit get a slot.
    let racing = (0..12).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .reserve_guess(vec!["dave".to_owned()], 5, since, now)
                .await
                .unwrap()
                .is_ok()
        })
    });
    let mut granted = 0;
    for attempt in racing {
        granted += usize::from(attempt.await.unwrap());
    }
    assert_eq!(granted, 5);
}

pub async fn sessions_are_indexed_from_start_to_end_and_outlive_the_process(open: &Open) {
    let store = open();
    // The store records its own node (none for a store only one node uses).
    let node = store.node().map(str::to_owned);
    let session = |id: &str, started: u64| SessionRecord {
        id: id.into(),
        user: "alice".into(),
        target: Some("web01".into()),
        client: "127.0.0.1:50000".into(),
        started_at: at(started),
        ended: None,
        node: node.clone(),
        progress: None,
        grant: None,
    };
    store.open_session(session("s2", 1_005)).await.unwrap();
    store.open_session(session("s1", 1_000)).await.unwrap();
    let open_ids =
        |sessions: Vec<SessionRecord>| sessions.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(open_ids(store.open_sessions().await.unwrap()), ["s1", "s2"]);
    let end = SessionEnd {
        at: at(1_060),
        reason: "client_closed".into(),
        bytes_from_client: 12,
        bytes_to_client: 3_456,
    };
    assert!(store.close_session("s1", end.clone()).await.unwrap());
    // Ended once: a second end (another pass, another node) changes nothing.
    let other = SessionEnd {
        reason: "killed".into(),
        ..end.clone()
    };
    assert!(!store.close_session("s1", other).await.unwrap());
    assert!(!store.close_session("nope", end.clone()).await.unwrap());
    drop(store);
    let store = open();
    assert_eq!(open_ids(store.open_sessions().await.unwrap()), ["s2"]);
    let ended = store.session("s1").await.unwrap().unwrap();
    assert_eq!(
        ended,
        SessionRecord {
            ended: Some(end),
            ..session("s1", 1_000)
        }
    );
    assert_eq!(store.session("nope").await.unwrap(), None);
    // A kill is asked for through the feed, to whichever node runs the session.
    let mut feed = store.changes();
    store
        .request_kill("s2", "secops", "incident 7")
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut feed),
        Some(Change::KillRequested {
            session: "s2".into(),
            by: "secops".into(),
            reason: "incident 7".into()
        })
    );
}
