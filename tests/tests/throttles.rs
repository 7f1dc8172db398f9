//! Guessing is slowed down, and the brakes cannot be turned against the people they protect:
//! parallel answers get no more verifications than the limit, wrong activation codes are
//! limited, audited and alerted, one address's failures lock out neither the user's other
//! methods nor other addresses, a valid API token always gets through, and a flood of
//! attempts from one address writes a bounded number of audit lines (with client text
//! escaped in the log).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis::credentials::{password, totp};
use portcullis_tests::keys::sign_user_certificate;
use portcullis_tests::raw::{self, runtime};
use portcullis_tests::util::run_with_timeout;
use portcullis_tests::{Keypair, Ran, World};

const TOTP_SECRET: [u8; 20] = *b"portcullis-code-test";
const LIMIT: usize = 5;
/// Activation codes tried at once over one connection.
const GUESSES: usize = 10;

fn code_at_offset(steps: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    format!(
        "{:06}",
        totp::code_at(&TOTP_SECRET, (now / 30 + steps) as u64)
    )
}

/// A code that is wrong now and stays wrong for a minute or two (it is none of the codes of
/// the steps around now).
fn wrong_code() -> String {
    let valid: Vec<String> = (-2..=3).map(code_at_offset).collect();
    (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !valid.contains(c))
        .unwrap()
}

/// carol (password), erin (password), dave (key + TOTP, eligible for web01 with a code), bob
/// (key and password); `auth_max_failures = 5`.
struct People {
    world: World,
    bob: Keypair,
    dave: Keypair,
}

fn people(extra: &str) -> People {
    let carol = password::hash("carols-password").unwrap();
    let erin = password::hash("erins-password").unwrap();
    let bob_password = password::hash("bobs-password").unwrap();
    let dave_password = password::hash("daves-password").unwrap();
    let secret = portcullis_config::base32::encode(&TOTP_SECRET);
    let mut keys = None;
    let extra = extra.to_owned();
    let world = World::start(|config, _, scratch| {
        let bob = Keypair::generate(scratch.path(), "bob");
        let dave = Keypair::generate(scratch.path(), "dave");
        config.server(&format!(
            "auth_max_failures = {LIMIT}\nauth_failure_window = \"10m\""
        ));
        config.raw(&format!(
            "[[users]]\nname = \"carol\"\npassword_hash = {carol:?}\n\n\
             [[users]]\nname = \"erin\"\npassword_hash = {erin:?}\n\n\
             [[users]]\nname = \"bob\"\npassword_hash = {bob_password:?}\npublic_keys = [{bob_key:?}]\n\n\
             [[users]]\nname = \"dave\"\npublic_keys = [{dave_key:?}]\npassword_hash = {dave_password:?}\ntotp_secret = {secret:?}\n\n\
             [[roles]]\nname = \"password-people\"\nmembers = [\"carol\", \"erin\", \"bob\"]\ntargets = [\"web01\"]\n\n\
             [[roles]]\nname = \"db-on-call\"\nmembers = [\"dave\"]\ntargets = [\"web01\"]\naccess = \"eligible\"\n\
             max_duration = \"1h\"\nrequire_mfa = true\n\n{extra}",
            bob_key = bob.public,
            dave_key = dave.public,
        ));
        keys = Some((bob, dave));
    });
    let (bob, dave) = keys.unwrap();
    People { world, bob, dave }
}

fn failures(world: &World, user: &str, reason: &str) -> usize {
    world
        .bastion
        .audit_events("auth.failure")
        .iter()
        .filter(|e| e["user"] == user && e["reason"] == reason)
        .count()
}

#[test]
fn answers_arriving_together_get_no_more_checks_than_the_limit() {
    let people = people("");
    let world = &people.world;
    let runtime = runtime();
    runtime.block_on(async {
        // Twelve clients, from twelve addresses, each at carol's password prompt.
        let mut clients = Vec::new();
        for i in 0..12u8 {
            let mut ssh = world.bastion.raw_from([127, 0, 0, 20 + i]).await;
            let prompts = ssh.kbd_prompts("carol+web01").await;
            assert_eq!(prompts, Some(vec!["Password: ".to_owned()]), "client {i}");
            clients.push(ssh);
        }
        let last = clients.pop().unwrap();
        // Eleven wrong answers at the same instant.
        let answers = clients.into_iter().map(|mut ssh| {
            tokio::spawn(async move { ssh.kbd_answer(vec!["wrong-guess".into()]).await })
        });
        for answer in futures_join(answers).await {
            assert!(!answer, "a wrong password logged in");
        }
        // The twelfth was at the prompt all along, and brings the right password: too late.
        let mut last = last;
        assert!(
            !last.kbd_answer(vec!["carols-password".into()]).await,
            "the right password got in after {LIMIT} failures"
        );
    });
    assert_eq!(
        failures(world, "carol", "wrong password or unknown user"),
        LIMIT,
        "exactly the limit was verified"
    );
    let throttled = world
        .bastion
        .audit_events("auth.throttled")
        .into_iter()
        .filter(|e| e["user"] == "carol")
        .count();
    assert_eq!(throttled, 12 - LIMIT, "the rest were refused unverified");
    assert!(world.bastion.audit_events("auth.success").is_empty());

    // The password method races the same way.
    runtime.block_on(async {
        let logins = (0..12u8).map(|i| {
            let address = world.bastion.address();
            let host_key = world.bastion.host_public_key();
            tokio::spawn(async move {
                let ssh = raw::RawSsh::connect_from([127, 0, 0, 40 + i].into(), address, &host_key)
                    .await
                    .unwrap();
                let mut handle = ssh.handle;
                handle
                    .authenticate_password("erin+web01", "wrong-guess")
                    .await
                    .is_ok_and(|r| r.success())
            })
        });
        assert!(futures_join(logins).await.iter().all(|ok| !ok));
    });
    assert_eq!(
        failures(world, "erin", "wrong password or unknown user"),
        LIMIT
    );
}

async fn futures_join<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut results = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        results.push(task.await.unwrap());
    }
    results
}

#[test]
fn wrong_activation_codes_are_limited_audited_and_alerted() {
    let people = people("");
    let world = &people.world;
    let wrong = wrong_code();
    let runtime = runtime();
    runtime.block_on(async {
        let mut ssh = world.bastion.raw().await;
        assert!(ssh.login_key("dave", &people.dave).await);
        // Ten guesses on one connection (its most channels at once), all at once.
        let command = format!("request web01 --for 5m --reason guess --code {wrong}");
        let ssh = std::sync::Arc::new(ssh);
        let guesses = (0..GUESSES).map(|_| {
            let ssh = ssh.clone();
            let command = command.clone();
            tokio::spawn(async move { raw::exec(&ssh, command.as_bytes()).await })
        });
        let outcomes = futures_join(guesses).await;
        let wrong_told = outcomes
            .iter()
            .filter(|o| o.stderr_text() == "portcullis: wrong verification code\n")
            .count();
        let throttled_told = outcomes
            .iter()
            .filter(|o| {
                o.stderr_text()
                    .contains("too many wrong verification codes")
            })
            .count();
        assert_eq!(
            (wrong_told, throttled_told),
            (LIMIT, GUESSES - LIMIT),
            "{outcomes:?}"
        );
        // Now even the right code is refused.
        let right = format!(
            "request web01 --for 5m --reason real --code {}",
            code_at_offset(0)
        );
        let out = raw::exec(&ssh, right.as_bytes()).await;
        assert!(
            out.stderr_text()
                .contains("too many wrong verification codes"),
            "{out:?}"
        );
    });
    assert!(world.bastion.audit_events("grant.activated").is_empty());
    let failures = world.bastion.audit_events("access.code_failure");
    assert_eq!(failures.len(), LIMIT, "{failures:#?}");
    assert!(
        failures
            .iter()
            .all(|e| e["user"] == "dave" && e["target"] == "web01")
    );
    assert!(
        world
            .bastion
            .audit_events("access.code_throttled")
            .iter()
            .any(|e| e["limit_reached"] == true)
    );
    assert_eq!(
        world.bastion.wait_for_alert("activation_code_failures")["user"],
        "dave"
    );
    assert!(
        world
            .bastion
            .log()
            .contains("ALERT: too many wrong activation codes"),
        "{}",
        world.bastion.log()
    );
    // dave can still log in with his key: only activation codes are throttled.
    let ran = world.bastion.ssh(&people.dave, "dave").exec("whoami");
    assert_eq!(ran.code, Some(0), "{ran:?}");
}

fn bind(world: &World, key: &Keypair, login: &str, source: &str) -> portcullis_tests::SshCommand {
    world
        .bastion
        .ssh(key, login)
        .option(&format!("BindAddress={source}"))
}

#[test]
fn one_addresss_failures_lock_out_neither_other_addresses_nor_other_methods() {
    let scratch = tempfile::tempdir().unwrap();
    let corp_ca = Keypair::generate(scratch.path(), "corp-ca");
    let rogue_ca = Keypair::generate(scratch.path(), "rogue-ca");
    let people = people(&format!(
        "[[user_cas]]\nname = \"corp\"\npublic_key = {:?}\n",
        corp_ca.public
    ));
    let world = &people.world;
    let runtime = runtime();
    runtime.block_on(async {
        // Six wrong passwords for bob from 127.0.0.2.
        for _ in 0..6 {
            let mut ssh = world.bastion.raw_from([127, 0, 0, 2]).await;
            if ssh.kbd_prompts("bob+web01").await.is_some() {
                assert!(!ssh.kbd_answer(vec!["guess".into()]).await);
            }
        }
    });
    // Six certificates for bob from an attacker's own CA, from 127.0.0.3.
    let forged = Keypair::generate(scratch.path(), "forged");
    sign_user_certificate(&rogue_ca, &forged, "bob", "-5m:+1h");
    for _ in 0..6 {
        let ran = bind(world, &forged, "bob+web01", "127.0.0.3")
            .option(&format!(
                "CertificateFile={}",
                forged.certificate_path().display()
            ))
            .exec("true");
        assert_eq!(ran.code, Some(255), "{ran:?}");
    }
    assert!(
        failures(world, "bob", "certificate signed by an untrusted CA") >= LIMIT,
        "{:#?}",
        world.bastion.audit_events("auth.failure")
    );

    // bob's key works, from his own address and from a fresh one.
    for source in ["127.0.0.1", "127.0.0.4"] {
        let ran = bind(world, &people.bob, "bob+web01", source).exec("echo key-$((1+1))");
        assert_eq!(ran.stdout, "key-2\n", "from {source}: {ran:?}");
    }
    // bob's own certificate from the trusted CA works too.
    let real = Keypair::generate(scratch.path(), "bob-cert");
    sign_user_certificate(&corp_ca, &real, "bob", "-5m:+1h");
    let ran = bind(world, &real, "bob+web01", "127.0.0.5")
        .option(&format!(
            "CertificateFile={}",
            real.certificate_path().display()
        ))
        .exec("echo cert-ok");
    assert_eq!(ran.stdout, "cert-ok\n", "{ran:?}");

    // What was guessed stays protected: bob's password, from anywhere.
    runtime.block_on(async {
        let mut ssh = world.bastion.raw_from([127, 0, 0, 6]).await;
        let answered = match ssh.kbd_prompts("bob+web01").await {
            Some(_) => ssh.kbd_answer(vec!["bobs-password".into()]).await,
            None => false,
        };
        assert!(!answered, "bob's password stays throttled");
    });
    // And the guessing addresses are throttled for everyone: alice's key from 127.0.0.2.
    let ran = bind(world, &world.alice, "alice+web01", "127.0.0.2").exec("true");
    assert_eq!(ran.code, Some(255), "{ran:?}");
}

fn curl(world: &World, source: &str, token: &str) -> u16 {
    let (url, _) = world.bastion.api();
    let ran: Ran = run_with_timeout(
        30,
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--interface",
                source,
            ])
            .arg("--cacert")
            .arg(world.bastion.data_dir().join("admin-cert.pem"))
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("{url}/api/v1/me")),
    )
    .into();
    ran.stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{ran:?}"))
}

#[test]
fn bad_api_tokens_from_one_address_never_shut_out_a_valid_token() {
    const TOKEN: &str = "secops-token-0123456789abcdef";
    let world = World::start(|config, _, _| {
        config.server(&format!("auth_max_failures = {LIMIT}"));
        config.admin(&[("secops", TOKEN, &["read", "operate"])]);
    });
    let codes: Vec<u16> = (0..7)
        .map(|i| curl(&world, "127.0.0.2", &format!("guess-{i}")))
        .collect();
    assert_eq!(&codes[..LIMIT], &[401; LIMIT], "{codes:?}");
    assert!(codes[LIMIT..].iter().all(|&c| c == 429), "{codes:?}");
    // A valid token from elsewhere is answered…
    assert_eq!(curl(&world, "127.0.0.1", TOKEN), 200);
    // …and, once proven good, even from the throttled address.
    assert_eq!(curl(&world, "127.0.0.2", TOKEN), 200);
    assert_eq!(curl(&world, "127.0.0.2", "guess-again"), 429);
}

#[test]
fn a_flood_of_attempts_from_one_address_writes_a_bounded_audit_and_a_clean_log() {
    let world = World::start(|_, _, _| {});
    let mallory = Keypair::generate(world.scratch.path(), "mallory");
    let forged = "mallory\n2031-01-01T00:00:00.000000Z  INFO forged line \u{1b}[31m";
    let runtime = runtime();
    runtime.block_on(async {
        for batch in 0..6 {
            let attempts = (0..10).map(|i| {
                let address = world.bastion.address();
                let host_key = world.bastion.host_public_key();
                let key = mallory.clone();
                let user = if i % 2 == 0 { "alice" } else { forged };
                tokio::spawn(async move {
                    let mut ssh =
                        raw::RawSsh::connect_from([127, 0, 0, 9].into(), address, &host_key)
                            .await
                            .unwrap();
                    ssh.login_key(user, &key).await
                })
            });
            let results = futures_join(attempts).await;
            assert!(results.iter().all(|ok| !ok), "batch {batch}");
        }
    });
    let from_flood: Vec<_> = world
        .bastion
        .audit()
        .into_iter()
        .filter(|e| {
            e["source"]
                .as_str()
                .is_some_and(|s| s.starts_with("127.0.0.9:"))
        })
        .collect();
    assert!(
        !from_flood.is_empty() && from_flood.len() <= 20,
        "60 attempts wrote {} audit lines",
        from_flood.len()
    );
    let log = world.bastion.log();
    assert!(
        !log.lines().any(|l| l.starts_with("2031-01-01")),
        "a client forged a log line:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
    assert!(
        log.contains("mallory\\n2031-01-01"),
        "the name is logged, escaped"
    );
}

#[test]
fn one_host_cannot_take_every_connection_slot_before_login() {
    use std::io::Read;
    let world = World::start(|config, _, _| {
        config.server(
            "max_connections = 40\nmax_unauthenticated_per_source = 10\nbanner_timeout = \"2s\"",
        );
    });
    // 60 silent sockets from 127.0.0.2: more than max_connections, far more than its share.
    let runtime = runtime();
    let idle: Vec<std::net::TcpStream> = runtime.block_on(async {
        let mut idle = Vec::new();
        for _ in 0..60 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            let stream = socket.connect(world.bastion.address()).await.unwrap();
            idle.push(stream.into_std().unwrap());
        }
        idle
    });
    // A login from another address goes through while they are held.
    let started = std::time::Instant::now();
    let ran = world.alice("alice+web01").exec("echo in-$((3*14))");
    let took = started.elapsed();
    assert_eq!(ran.stdout, "in-42\n", "after {took:?}: {ran:?}");
    // Not a latency test (the benchmark measures speed): a loose bound against a login left
    // hanging behind the held sockets. The time is printed for the record.
    assert!(
        took < std::time::Duration::from_secs(10),
        "the login took {took:?}"
    );
    eprintln!("login while 60 silent sockets were held by another address: {took:?}");
    // The silent ones are all closed: the excess at once, the rest after banner_timeout.
    for mut stream in idle {
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut rest = Vec::new();
        // The bastion's version line, maybe, then end of stream (an error would be a timeout).
        stream
            .read_to_end(&mut rest)
            .expect("the bastion closes silent connections");
    }
}

#[test]
fn logged_in_sessions_have_a_budget_of_their_own() {
    let world = World::start(|config, _, _| {
        config.server("max_connections = 1");
    });
    let mut holder = world
        .alice("alice+web01")
        .ssh_command(Some("echo holding; sleep 60"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    world.bastion.wait_for_audit("channel.start", |_| true);
    let ran = world.alice("alice+web01").exec("true");
    assert_eq!(ran.code, Some(255), "{ran:?}");
    assert!(
        ran.stderr
            .contains("the bastion is serving as many sessions as it may"),
        "{ran:?}"
    );
    portcullis_tests::util::stop(&mut holder);
    // Once the first session is over its permit is free again.
    world
        .bastion
        .wait_for_audit("session.end", |e| e["user"] == "alice");
    let ran = world.alice("alice+web01").exec("echo again");
    assert_eq!(ran.stdout, "again\n", "{ran:?}");
}
