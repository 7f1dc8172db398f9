//! Audit forwarding and alerts, with real receivers: a webhook over HTTPS in the test, and
//! Debian's rsyslog over TLS and plain TCP. Receivers are stopped mid-session and the
//! bastion is restarted with a backlog: every event still arrives, identified by its id.
//!
//! Blocked commands are harmless sentinels (`touch` of a marker that must stay absent).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use portcullis_tests::Tmux;
use portcullis_tests::rsyslog::{Rsyslog, Transport};
use portcullis_tests::util::wait_for;
use portcullis_tests::webhook::WebhookReceiver;
use portcullis_tests::{ConfigText, World};
use serde_json::Value;

const READER: &str = "reader-token-0123456789";
const HMAC_SECRET: &str = "a-webhook-secret-of-more-than-32-characters";
const BEARER: &str = "bearer-token-for-the-siem-webhook";

const DENY_FORBIDDEN: &str = r#"
[[command_rules]]
name = "no-forbidden"
pattern = 'touch\s+\S*forbidden-'
action = "deny"
message = "forbidden markers are not allowed"
"#;

/// A bastion (in front of an sshd, alice allowed) whose forwarders `forwarders` adds, with
/// the reader token for `/metrics` and the rule stopping `forbidden-` sentinels.
fn forwarding_world(forwarders: impl FnOnce(&mut ConfigText)) -> World {
    World::start(|config, _, _| {
        config
            .admin(&[("reader", READER, &["read"])])
            .raw(DENY_FORBIDDEN);
        forwarders(config);
    })
}

/// The id a forwarded event carries for an audit line: its chain tag's first 32 digits.
fn id_of(line: &Value) -> String {
    line["mac"].as_str().expect("a mac")[..32].to_owned()
}

/// Ids of the audit log's events, in order, that `take` selects.
fn audit_ids(world: &World, take: impl Fn(&Value) -> bool) -> Vec<String> {
    world
        .bastion
        .audit()
        .iter()
        .filter(|e| take(e))
        .map(id_of)
        .collect()
}

/// Ids in arrival order with repeats dropped (what a receiver de-duplicating by id keeps).
fn first_seen(ids: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.into_iter()
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

fn write_secret(dir: &Path, name: &str, secret: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path.display().to_string()
}

fn metric(world: &World, name: &str) -> u64 {
    let (status, text) = world.bastion.api_request(READER, "GET", "/metrics", None);
    assert_eq!(status, 200);
    let text = text.as_str().unwrap().to_owned();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// A forwarder named `oncall` taking only alerts to `receiver`, signed with `secret_file`.
fn oncall_forwarder(receiver: &WebhookReceiver, path: &str, secret_file: &str) -> String {
    format!(
        r#"
[[audit.forward]]
name = "oncall"
kind = "webhook"
url = "{}"
events = ["alert"]
hmac_secret_file = "{secret_file}"
ca_file = "{}"
"#,
        receiver.url(path),
        receiver.ca_file().display()
    )
}

/// Checks `X-Portcullis-Signature: t=UNIX,sha256=HEX` against the shared secret.
fn signature_holds(header: &str, body: &str) -> bool {
    let Some((t, mac)) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",sha256="))
    else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HMAC_SECRET.as_bytes());
    let signed = format!("{t}.{body}");
    hex::decode(mac).is_ok_and(|mac| ring::hmac::verify(&key, signed.as_bytes(), &mac).is_ok())
}

#[test]
fn alerts_reach_a_signed_webhook_and_none_is_lost_while_it_is_down() {
    let scratch = tempfile::tempdir().unwrap();
    let mut receiver = WebhookReceiver::start(scratch.path());
    let secret = write_secret(scratch.path(), "hmac", HMAC_SECRET);
    let world = forwarding_world(|config| {
        config.raw(&oncall_forwarder(&receiver, "/hooks/portcullis", &secret));
    });
    let sentinel = |n: u32| world.path(&format!("forbidden-{n}"));
    let blocked = world
        .alice("alice+web01")
        .exec(&format!("touch {}", sentinel(1).display()));
    assert_ne!(blocked.code, Some(0));
    assert!(!sentinel(1).exists());

    let alert = receiver.wait_for_event("the blocked command's alert", |e| {
        e["alert"] == "command_blocked"
    });
    let events = receiver.events();
    assert_eq!(alert["event"], "alert");
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["user"], "alice");
    assert_eq!(alert["target"], "web01");
    assert_eq!(alert["rule"], "no-forbidden");
    assert!(alert["message"].as_str().unwrap().contains("no-forbidden"));
    assert_eq!(alert["id"].as_str().unwrap().len(), 32);
    assert!(alert["seq"].as_u64().unwrap() > 0);
    assert!(alert["node"].is_string());
    // Only alerts travel on this forwarder, and each request is signed.
    assert!(events.iter().all(|e| e["event"] == "alert"), "{events:#?}");
    for request in receiver.requests() {
        let header = request.header("x-portcullis-signature").unwrap();
        assert!(signature_holds(header, &request.body), "{header}");
        assert_eq!(request.header("content-type"), Some("application/json"));
    }

    // The receiver goes away; alerts keep happening.
    receiver.stop();
    for n in 2..=3 {
        let ran = world
            .alice("alice+web01")
            .exec(&format!("touch {}", sentinel(n).display()));
        assert_ne!(ran.code, Some(0));
        assert!(!sentinel(n).exists());
    }
    wait_for(Duration::from_secs(20), || {
        (world.bastion.audit_events("alert").len() >= 3).then_some(())
    })
    .expect("three alerts in the audit log");
    receiver.restart();
    let expected = audit_ids(&world, |e| e["event"] == "alert");
    let events = receiver.wait_until("every alert", |events| {
        first_seen(events.iter().map(|e| e["id"].as_str().unwrap().to_owned())) == expected
    });
    assert!(events.iter().all(|e| e["event"] == "alert"));
    for request in receiver.requests() {
        let header = request.header("x-portcullis-signature").unwrap();
        assert!(signature_holds(header, &request.body));
    }
}

#[test]
fn a_bastion_restarted_with_a_backlog_resumes_where_it_stopped_and_raises_the_lag() {
    let scratch = tempfile::tempdir().unwrap();
    let siem = WebhookReceiver::start(&scratch.path().join("siem").tap_create());
    let oncall = WebhookReceiver::start(&scratch.path().join("oncall").tap_create());
    let token = write_secret(scratch.path(), "bearer", BEARER);
    let secret = write_secret(scratch.path(), "hmac", HMAC_SECRET);
    let mut world = forwarding_world(|config| {
        config
            .raw(&format!(
                r#"
[[audit.forward]]
name = "siem"
kind = "webhook"
url = "{}"
bearer_token_file = "{token}"
ca_file = "{}"
max_lag = 5
batch = 3
"#,
                siem.url("/events"),
                siem.ca_file().display(),
            ))
            .raw(&oncall_forwarder(&oncall, "/alerts", &secret));
    });
    assert_eq!(world.alice("alice+web01").exec("echo one").stdout, "one\n");
    let all = |world: &World| audit_ids(world, |_| true);
    siem.wait_until("the first session's end", |events| {
        events.iter().any(|e| e["event"] == "session.end")
    });

    // The SIEM answers 503 from now on: events wait in the audit log, the lag shows, and
    // once it passes max_lag the on-call webhook hears of it.
    siem.answer(503);
    assert_eq!(world.alice("alice+web01").exec("echo two").stdout, "two\n");
    let behind = oncall.wait_for_event("the forwarder_behind alert", |e| {
        e["alert"] == "forwarder_behind"
    });
    assert_eq!(behind["forwarder"], "siem");
    assert!(behind["lag"].as_u64().unwrap() > 5);
    wait_for(Duration::from_secs(20), || {
        (metric(
            &world,
            "portcullis_audit_forward_lag_events{forwarder=\"siem\"}",
        ) > 5)
            .then_some(())
    })
    .expect("the lag metric shows the backlog");
    wait_for(Duration::from_secs(20), || {
        (metric(
            &world,
            "portcullis_audit_forward_failures_total{forwarder=\"siem\"}",
        ) > 0)
            .then_some(())
    })
    .expect("the refused deliveries are counted");

    // Restarted with its backlog, while the SIEM still refuses; then the SIEM recovers.
    assert_eq!(world.bastion.terminate(), Some(0));
    world.bastion.start();
    assert_eq!(
        world.alice("alice+web01").exec("echo three").stdout,
        "three\n"
    );
    siem.answer(200);
    let expected_through_now = all(&world);
    let events = siem.wait_until("every event, the backlog first", |events| {
        let ids: Vec<String> = events
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        ids.len() >= expected_through_now.len()
            && ids[..expected_through_now.len()] == expected_through_now[..]
    });
    // Batches are confirmed one by one (a 2xx each): nothing was delivered twice, and the
    // restart resumed after the last event the SIEM had taken.
    let ids: Vec<String> = events
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first_seen(ids.clone()), ids, "an event arrived twice");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(events.iter().any(|e| e["event"] == "server.stop"));
    for request in siem.requests() {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {BEARER}").as_str())
        );
        assert!(
            serde_json::from_str::<Vec<Value>>(&request.body)
                .unwrap()
                .len()
                <= 3
        );
    }
    wait_for(Duration::from_secs(20), || {
        (metric(
            &world,
            "portcullis_audit_forward_lag_events{forwarder=\"siem\"}",
        ) == 0)
            .then_some(())
    })
    .expect("the lag returns to zero");
}

/// A syslog forwarder named `siem` to `rsyslog`, over its transport (TLS, the default, with
/// its CA and, if it asks for one, the client certificate), plus the lines in `extra`.
fn siem_syslog(rsyslog: &Rsyslog, extra: &str) -> String {
    let mut toml = format!(
        "[[audit.forward]]\nname = \"siem\"\nkind = \"syslog\"\naddress = \"{}\"\n",
        rsyslog.address()
    );
    match rsyslog.transport() {
        Transport::Tcp => toml.push_str("transport = \"tcp\"\n"),
        Transport::Udp => toml.push_str("transport = \"udp\"\n"),
        Transport::Tls | Transport::TlsWithClientCertificate => {}
    }
    if let Some(ca) = rsyslog.ca_file() {
        toml.push_str(&format!("ca_file = \"{}\"\n", ca.display()));
    }
    if let Some((cert, key)) = rsyslog.client_certificate() {
        toml.push_str(&format!(
            "client_cert_file = \"{}\"\nclient_key_file = \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    toml + extra
}

/// One RFC 5424 message as rsyslog received it, taken apart.
#[derive(Debug)]
struct Syslog {
    pri: u32,
    hostname: String,
    app: String,
    msgid: String,
    /// The structured data, `[portcullis@32473 …]`.
    sd: String,
    /// The message: the event's JSON.
    event: Value,
}

fn parse_syslog(raw: &str) -> Syslog {
    let rest = raw
        .strip_prefix('<')
        .unwrap_or_else(|| panic!("no PRI: {raw}"));
    let (pri, rest) = rest.split_once('>').unwrap();
    let mut header = rest.splitn(7, ' ');
    assert_eq!(header.next(), Some("1"), "{raw}");
    let _time = header.next().unwrap();
    let hostname = header.next().unwrap().to_owned();
    let app = header.next().unwrap().to_owned();
    let _pid = header.next().unwrap();
    let msgid = header.next().unwrap().to_owned();
    let rest = header.next().unwrap();
    let split = rest
        .find("] {\"id\":")
        .unwrap_or_else(|| panic!("no structured data and JSON: {raw}"));
    Syslog {
        pri: pri.parse().unwrap(),
        hostname,
        app,
        msgid,
        sd: rest[..=split].to_owned(),
        event: serde_json::from_str(&rest[split + 2..])
            .unwrap_or_else(|e| panic!("the message is not JSON ({e}): {raw}")),
    }
}

fn syslog_ids(messages: &[String]) -> Vec<String> {
    messages
        .iter()
        .map(|m| parse_syslog(m).event["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_event_of_a_session_reaches_rsyslog_over_tls_in_order_with_its_fields() {
    let rsyslog = Rsyslog::start(Transport::TlsWithClientCertificate);
    let world = forwarding_world(|config| {
        config.raw(&siem_syslog(&rsyslog, "facility = \"local3\"\n"));
    });
    assert_eq!(
        world.alice("alice+web01").exec("echo hello").stdout,
        "hello\n"
    );
    let sentinel = world.path("forbidden-tls");
    let blocked = world
        .alice("alice+web01")
        .exec(&format!("touch {}", sentinel.display()));
    assert_ne!(blocked.code, Some(0));
    assert!(!sentinel.exists());
    wait_for(Duration::from_secs(20), || {
        (world.bastion.audit_events("session.end").len() == 2).then_some(())
    })
    .expect("both sessions end");

    let expected = audit_ids(&world, |_| true);
    rsyslog.wait_until("every event of both sessions", |messages| {
        first_seen(syslog_ids(messages)) == expected
    });
    // Confirmed by an orderly close, once: no failure, no event sent twice, nothing waiting.
    wait_for(Duration::from_secs(20), || {
        (metric(
            &world,
            "portcullis_audit_forward_lag_events{forwarder=\"siem\"}",
        ) == 0)
            .then_some(())
    })
    .expect("every event confirmed");
    assert_eq!(
        metric(
            &world,
            "portcullis_audit_forward_failures_total{forwarder=\"siem\"}"
        ),
        0,
        "{}",
        world.bastion.log()
    );
    let messages = rsyslog.messages();
    assert_eq!(syslog_ids(&messages), expected, "an event arrived twice");
    let parsed: Vec<Syslog> = messages.iter().map(|m| parse_syslog(m)).collect();
    let audit = world.bastion.audit();
    for message in &parsed {
        assert_eq!(message.app, "portcullis");
        assert!(!message.hostname.is_empty() && message.hostname != "-");
        assert_eq!(message.event["node"], message.hostname.as_str());
        assert_eq!(message.msgid, message.event["event"].as_str().unwrap());
        assert!(
            message.sd.starts_with("[portcullis@32473 id=\""),
            "{}",
            message.sd
        );
        // The message is the audit line, with its id, place and node in front.
        let line = &audit[message.event["seq"].as_u64().unwrap() as usize - 1];
        assert_eq!(id_of(line), message.event["id"].as_str().unwrap());
        for (key, value) in line.as_object().unwrap() {
            assert_eq!(&message.event[key], value, "{key}");
        }
    }
    // local3 (19): informational events, and the alert at its severity (warning).
    let start = parsed.iter().find(|m| m.msgid == "session.start").unwrap();
    assert_eq!(start.pri, 19 * 8 + 6);
    assert!(start.sd.contains(" user=\"alice\""), "{}", start.sd);
    assert!(start.sd.contains(" target=\"web01\""), "{}", start.sd);
    let alert = parsed.iter().find(|m| m.msgid == "alert").unwrap();
    assert_eq!(alert.pri, 19 * 8 + 4);
    assert!(
        alert.sd.contains(" alert=\"command_blocked\""),
        "{}",
        alert.sd
    );
    let command = parsed
        .iter()
        .find(|m| m.msgid == "command" && m.event["outcome"] == "blocked")
        .unwrap();
    assert!(
        command
            .sd
            .contains(&format!(" line=\"touch {}\"", sentinel.display())),
        "{}",
        command.sd
    );
}

#[test]
fn a_receiver_stopped_mid_session_misses_no_event_and_the_filter_holds() {
    let mut rsyslog = Rsyslog::start(Transport::Tcp);
    let world = forwarding_world(|config| {
        config.raw(&siem_syslog(
            &rsyslog,
            "events = [\"session.*\", \"command\", \"alert\"]\n",
        ));
    });
    let carried = |e: &Value| {
        let event = e["event"].as_str().unwrap();
        event.starts_with("session.") || event == "command" || event == "alert"
    };
    let tmux = Tmux::start(&world.alice("alice+web01").shell_line(&["-tt"]), 120, 40);
    tmux.line("echo line-$((1+0))");
    tmux.wait_for_text("line-1", Duration::from_secs(20));
    rsyslog.wait_until("the first line", |messages| {
        messages.iter().any(|m| m.contains("echo line-$((1+0))"))
    });

    // The receiver stops in the middle of the session; the session goes on regardless.
    rsyslog.stop();
    for n in 2..=4 {
        tmux.line(&format!("echo line-$(({n}+0))"));
        tmux.wait_for_text(&format!("line-{n}"), Duration::from_secs(20));
    }
    wait_for(Duration::from_secs(20), || {
        world
            .bastion
            .audit_events("command")
            .iter()
            .any(|e| e["line"] == "echo line-$((4+0))")
            .then_some(())
    })
    .expect("the lines typed while the receiver is down are audited");
    rsyslog.restart();
    tmux.line("echo line-$((5+0))");
    tmux.wait_for_text("line-5", Duration::from_secs(20));
    tmux.line("exit");
    assert!(tmux.wait_exit(Duration::from_secs(20)).is_some());
    world.bastion.wait_for_audit("session.end", |_| true);

    let expected = audit_ids(&world, carried);
    let messages = rsyslog.wait_until(
        "every carried event, once each after de-duplication",
        |messages| first_seen(syslog_ids(messages)) == expected,
    );
    for message in &messages {
        assert!(carried(&parse_syslog(message).event), "{message}");
    }
    wait_for(Duration::from_secs(20), || {
        (metric(
            &world,
            "portcullis_audit_forward_lag_events{forwarder=\"siem\"}",
        ) == 0)
            .then_some(())
    })
    .expect("the lag returns to zero once the receiver is back");
    assert!(
        metric(
            &world,
            "portcullis_audit_forward_failures_total{forwarder=\"siem\"}"
        ) > 0
    );
    for n in 1..=5 {
        let typed = format!("echo line-$(({n}+0))");
        assert!(
            messages
                .iter()
                .any(|m| parse_syslog(m).event["line"] == typed.as_str()),
            "{typed} never arrived"
        );
    }
}

#[test]
fn events_a_crashed_receiver_took_but_never_read_are_sent_again() {
    let mut rsyslog = Rsyslog::start(Transport::Tcp);
    let world = forwarding_world(|config| {
        config.raw(&siem_syslog(&rsyslog, "timeout = \"3s\"\n"));
    });
    assert_eq!(
        world.alice("alice+web01").exec("echo before").stdout,
        "before\n"
    );
    world.bastion.wait_for_audit("session.end", |_| true);
    let before = audit_ids(&world, |_| true);
    rsyslog.wait_until("the first session", |messages| {
        first_seen(syslog_ids(messages)) == before
    });

    // The receiver hangs: its kernel takes the next session's events, it reads none of
    // them, and then it dies. Nothing of that session reached its file.
    rsyslog.freeze();
    assert_eq!(
        world.alice("alice+web01").exec("echo unread").stdout,
        "unread\n"
    );
    wait_for(Duration::from_secs(20), || {
        (world.bastion.audit_events("session.end").len() == 2).then_some(())
    })
    .expect("the second session ends");
    rsyslog.crash();
    let held = syslog_ids(&rsyslog.messages());
    assert_eq!(
        first_seen(held.clone()),
        before,
        "the frozen receiver wrote something: {held:?} against {before:?}; audit: {:#?}",
        world.bastion.audit()
    );

    rsyslog.restart();
    let expected = audit_ids(&world, |_| true);
    rsyslog.wait_until("the events the crashed receiver never read", |messages| {
        first_seen(syslog_ids(messages)) == expected
    });
}

#[test]
fn a_bastion_restarted_with_a_syslog_backlog_sends_it_and_nothing_it_had_confirmed() {
    let mut rsyslog = Rsyslog::start(Transport::Tls);
    let mut world = forwarding_world(|config| {
        config.raw(&siem_syslog(&rsyslog, ""));
    });
    let lag = |world: &World| {
        metric(
            world,
            "portcullis_audit_forward_lag_events{forwarder=\"siem\"}",
        )
    };
    assert_eq!(world.alice("alice+web01").exec("echo one").stdout, "one\n");
    world.bastion.wait_for_audit("session.end", |_| true);
    wait_for(Duration::from_secs(20), || (lag(&world) == 0).then_some(()))
        .expect("the first session is delivered and confirmed");
    let confirmed = audit_ids(&world, |_| true);

    rsyslog.stop();
    assert_eq!(world.alice("alice+web01").exec("echo two").stdout, "two\n");
    wait_for(Duration::from_secs(20), || {
        (world.bastion.audit_events("session.end").len() == 2).then_some(())
    })
    .expect("the second session ends");
    wait_for(Duration::from_secs(20), || (lag(&world) > 0).then_some(()))
        .expect("the undelivered session shows as lag");
    assert_eq!(world.bastion.terminate(), Some(0));
    rsyslog.restart();
    world.bastion.start();
    let expected = audit_ids(&world, |_| true);
    let messages = rsyslog.wait_until("the backlog", |messages| {
        let ids = first_seen(syslog_ids(messages));
        ids.len() >= expected.len() && ids[..expected.len()] == expected[..]
    });
    // What was confirmed before the restart is not sent again.
    let ids = syslog_ids(&messages);
    for id in &confirmed {
        assert_eq!(
            ids.iter().filter(|i| *i == id).count(),
            1,
            "{id} sent again"
        );
    }
}

#[test]
fn udp_carries_each_event_as_one_datagram() {
    let rsyslog = Rsyslog::start(Transport::Udp);
    let world = forwarding_world(|config| {
        config.raw(&siem_syslog(&rsyslog, "facility = \"local7\"\n"));
    });
    assert_eq!(world.alice("alice+web01").exec("echo udp").stdout, "udp\n");
    world.bastion.wait_for_audit("session.end", |_| true);
    let expected = audit_ids(&world, |_| true);
    // Best effort by nature, but nothing is lost on an idle loopback: each event once.
    let messages = rsyslog.wait_until("the session's events", |messages| {
        syslog_ids(messages) == expected
    });
    let start = messages
        .iter()
        .map(|m| parse_syslog(m))
        .find(|m| m.msgid == "session.start")
        .unwrap();
    assert_eq!(start.pri, 23 * 8 + 6);
    assert_eq!(start.event["user"], "alice");
}

#[test]
fn a_webhook_that_hangs_slows_no_session_and_gets_everything_once_it_answers() {
    let scratch = tempfile::tempdir().unwrap();
    let receiver = WebhookReceiver::start(scratch.path());
    // The receiver takes each request and never answers.
    receiver.hang();
    let world = forwarding_world(|config| {
        config.raw(&format!(
            r#"
[[audit.forward]]
name = "siem"
kind = "webhook"
url = "{}"
ca_file = "{}"
timeout = "1s"
"#,
            receiver.url("/events"),
            receiver.ca_file().display()
        ));
    });
    // Sessions go on regardless, each as it would (no session waits for a delivery).
    for n in 0..3 {
        let ran = world.alice("alice+web01").exec(&format!("echo hung-{n}"));
        assert_eq!(ran.stdout, format!("hung-{n}\n"), "{ran:?}");
    }
    wait_for(Duration::from_secs(30), || {
        (metric(
            &world,
            "portcullis_audit_forward_failures_total{forwarder=\"siem\"}",
        ) > 0)
            .then_some(())
    })
    .expect("the hanging deliveries time out and count as failures");
    assert!(
        metric(
            &world,
            "portcullis_audit_forward_lag_events{forwarder=\"siem\"}"
        ) > 0
    );
    assert!(receiver.events().is_empty());

    receiver.answer(200);
    wait_for(Duration::from_secs(20), || {
        (world.bastion.audit_events("session.end").len() == 3).then_some(())
    })
    .expect("three sessions end");
    let expected = audit_ids(&world, |_| true);
    receiver.wait_until("every event once it answers", |events| {
        first_seen(events.iter().map(|e| e["id"].as_str().unwrap().to_owned())) == expected
    });
}

#[test]
fn a_forwarder_whose_files_cannot_be_read_stops_the_start_and_says_which() {
    let scratch = tempfile::tempdir().unwrap();
    let short = write_secret(scratch.path(), "short", "too-short");
    let cases = [
        (
            r#"kind = "syslog"
address = "127.0.0.1:6514"
ca_file = "/nonexistent/ca.pem""#
                .to_owned(),
            "audit forwarder \"siem\": /nonexistent/ca.pem:",
        ),
        (
            format!(
                r#"kind = "webhook"
url = "https://127.0.0.1:9/x"
hmac_secret_file = "{short}""#
            ),
            "must hold at least 32 characters",
        ),
    ];
    for (settings, expected) in cases {
        let mut config = portcullis_tests::ConfigText::default();
        config.raw(&format!("[[audit.forward]]\nname = \"siem\"\n{settings}\n"));
        let bastion = portcullis_tests::Bastion::new(&config);
        let ran: portcullis_tests::Ran =
            portcullis_tests::util::run_with_timeout(30, bastion.command().arg("serve")).into();
        assert_ne!(ran.code, Some(0), "{ran:?}");
        assert!(ran.stderr.contains(expected), "{expected}: {ran:?}");
    }
}

/// Creating a directory inline.
trait TapCreate {
    fn tap_create(self) -> Self;
}

impl TapCreate for std::path::PathBuf {
    fn tap_create(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
