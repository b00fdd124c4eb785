//! The PostgreSQL peer: a real cluster that checks passwords, on loopback, gone after the test.
//!
//! These tests need `initdb` and `pg_ctl` (`./scripts/test` installs Debian's `postgresql`) and fail, never
//! skip, without.

use std::net::{Ipv4Addr, TcpStream};

use skm_testing::Postgres;

#[tokio::test]
async fn the_cluster_checks_passwords_over_tcp() {
    let pg = Postgres::start().await;
    pg.login(pg.admin_user(), pg.admin_password()).await.unwrap();

    let refused = pg.login(pg.admin_user(), "not-the-password").await.unwrap_err();
    assert!(refused.contains("password authentication failed"), "{refused}");

    pg.execute("CREATE ROLE app LOGIN PASSWORD 'first-password'").await;
    pg.login("app", "first-password").await.unwrap();
    let refused = pg.login("app", "any-other").await.unwrap_err();
    assert!(refused.contains("password authentication failed"), "{refused}");

    pg.execute("ALTER ROLE app PASSWORD 'second-password'").await;
    assert!(pg.login("app", "first-password").await.is_err());
    pg.login("app", "second-password").await.unwrap();

    assert!(pg.role_exists("app").await);
    assert_eq!(pg.valid_until("app").await, None);
    pg.execute("ALTER ROLE app VALID UNTIL '2100-01-01 00:00:00+00'").await;
    assert!(pg.valid_until("app").await.unwrap().starts_with("2100-01-01"));
    pg.execute("DROP ROLE app").await;
    assert!(!pg.role_exists("app").await);
    let refused = pg.login("app", "second-password").await.unwrap_err();
    assert!(refused.contains("password authentication failed"), "{refused}");
}

#[tokio::test]
async fn two_clusters_run_side_by_side_and_stop_when_dropped() {
    let (a, b) = tokio::join!(Postgres::start(), Postgres::start());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.admin_password(), b.admin_password());
    // Each has its own superuser password.
    assert!(a.login(a.admin_user(), b.admin_password()).await.is_err());
    b.login(b.admin_user(), b.admin_password()).await.unwrap();

    let (port, log) = (a.port(), a.log_path());
    let dir = log.parent().unwrap().to_path_buf();
    drop(a);
    assert!(
        TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
        "the server still listens after drop"
    );
    assert!(!dir.exists(), "{} was not removed", dir.display());
    b.login(b.admin_user(), b.admin_password()).await.unwrap();
}
