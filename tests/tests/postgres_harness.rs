//! The PostgreSQL the shared-state tests will run against (the cluster issue) is real:
//! Debian's server in a temp dir, reachable on loopback with the `portcullis` role's
//! password and not without it, and gone when the test ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_tests::Postgres;

#[test]
fn the_test_server_takes_the_role_with_its_password_and_refuses_a_wrong_one() {
    let postgres = Postgres::start();
    let ran = postgres.psql("postgres", "select 40 + 2");
    assert_eq!(ran.code, Some(0), "{ran:?}\n{}", postgres.log());
    assert_eq!(ran.stdout.trim(), "42");
    let created = postgres.psql("postgres", "create database portcullis_a");
    assert_eq!(created.code, Some(0), "{created:?}");
    let listed = postgres.psql("portcullis_a", "select current_database()");
    assert_eq!(listed.stdout.trim(), "portcullis_a", "{listed:?}");
    let refused = postgres.psql_with_password("not-the-password", "postgres", "select 1");
    assert_ne!(refused.code, Some(0), "{refused:?}");
    assert!(
        refused.stderr.contains("password authentication failed"),
        "{refused:?}"
    );
    assert!(postgres.url("portcullis_a").ends_with("/portcullis_a"));
    let data = std::path::PathBuf::from(
        postgres
            .psql("postgres", "show data_directory")
            .stdout
            .trim(),
    );
    assert!(data.exists());
    drop(postgres);
    assert!(!data.exists(), "the server's files outlive the test");
}
