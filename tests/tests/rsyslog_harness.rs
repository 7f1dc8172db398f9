//! The syslog receiver of the forwarding tests is Debian's real rsyslogd: it takes
//! octet-counted RFC 5424 messages over TCP and TLS and hands back their exact text, refuses
//! a TLS client without a certificate when it requires one, and comes back on its port,
//! keeping what it had, after a stop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use portcullis_tests::rsyslog::{Rsyslog, Transport};
use portcullis_tests::util::wait_for;

fn message(text: &str) -> String {
    format!("<14>1 2026-12-07T05:00:00.000Z host portcullis - - - {text}")
}

/// RFC 6587 octet counting: `LEN SP MSG`, the length in bytes.
fn frame(message: &str) -> String {
    format!("{} {message}", message.len())
}

fn send_over_tcp(rsyslog: &Rsyslog, messages: &[String]) {
    let mut stream = TcpStream::connect(rsyslog.address()).unwrap();
    for message in messages {
        stream.write_all(frame(message).as_bytes()).unwrap();
    }
}

/// Sends one framed message with `openssl s_client`, which checks rsyslog's certificate
/// against the test CA (and its IP address), presenting `client` if given.
fn send_over_tls(rsyslog: &Rsyslog, client: Option<(PathBuf, PathBuf)>, message: &str) -> Output {
    let mut command = Command::new("timeout");
    command
        .args(["-k", "5", "60", "openssl", "s_client", "-connect"])
        .arg(rsyslog.address())
        .arg("-CAfile")
        .arg(rsyslog.ca_file().expect("a TLS receiver has a CA"))
        .args(["-verify_return_error", "-verify_ip", "127.0.0.1"])
        // Quiet, but hang up at the end of the input instead of waiting for the server.
        .args(["-quiet", "-no_ign_eof"]);
    if let Some((cert, key)) = client {
        command.arg("-cert").arg(cert).arg("-key").arg(key);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl s_client");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(frame(message).as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn plain_tcp_keeps_every_message_whole_and_appends_after_a_restart() {
    let mut rsyslog = Rsyslog::start(Transport::Tcp);
    assert_eq!(rsyslog.address(), format!("127.0.0.1:{}", rsyslog.port()));
    assert!(rsyslog.ca_file().is_none());
    assert!(rsyslog.client_certificate().is_none());
    let sent = vec![
        message("first"),
        message(&format!("{{\"pad\":\"{}\"}}", "x".repeat(20 * 1024))),
        // A newline inside, quotes, a backslash, a slash and a trailing newline.
        message("{\"text\":\"one\ntwo \\\"three\\\" a/b\"} é\n"),
        message("the same twice"),
        message("the same twice"),
    ];
    send_over_tcp(&rsyslog, &sent);
    let got = rsyslog.wait_until("all messages", |m| m.len() >= sent.len());
    assert_eq!(got, sent);

    rsyslog.stop();
    assert!(TcpStream::connect(rsyslog.address()).is_err());
    rsyslog.restart();
    let after = message("after the restart");
    send_over_tcp(&rsyslog, std::slice::from_ref(&after));
    let got = rsyslog.wait_until("the message after the restart", |m| m.len() > sent.len());
    assert_eq!(got[..sent.len()], sent[..]);
    assert_eq!(got[sent.len()..], [after]);
}

#[test]
fn tls_takes_a_client_that_trusts_the_test_ca() {
    let rsyslog = Rsyslog::start(Transport::Tls);
    assert!(rsyslog.ca_file().unwrap().exists());
    assert!(rsyslog.client_certificate().is_none());
    let sent = message("over TLS");
    let ran = send_over_tls(&rsyslog, None, &sent);
    assert!(ran.status.success(), "{ran:?}\n{}", rsyslog.log());
    let got = rsyslog.wait_until("the TLS message", |m| !m.is_empty());
    assert_eq!(got, [sent]);
}

#[test]
fn tls_with_client_certificates_drops_a_client_without_one() {
    let rsyslog = Rsyslog::start(Transport::TlsWithClientCertificate);
    let (cert, key) = rsyslog.client_certificate().unwrap();
    assert!(cert.exists() && key.exists());
    // TLS 1.3 lets the client write before the server has judged its (missing)
    // certificate, so what shows the refusal is rsyslog's log and the missing message.
    send_over_tls(&rsyslog, None, &message("without a certificate"));
    wait_for(Duration::from_secs(60), || {
        rsyslog
            .log()
            .contains("did not provide a certificate")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no refusal logged:\n{}", rsyslog.log()));
    let sent = message("with a certificate");
    let ran = send_over_tls(&rsyslog, rsyslog.client_certificate(), &sent);
    assert!(ran.status.success(), "{ran:?}\n{}", rsyslog.log());
    let got = rsyslog.wait_until("the message with a certificate", |m| !m.is_empty());
    assert_eq!(got, [sent]);
}
