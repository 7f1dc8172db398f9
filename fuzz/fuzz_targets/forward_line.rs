//! An audit line made into what forwarders send: the outgoing event, its RFC 5424 message and
//! a webhook signature, from any bytes (the log is stored input: a damaged or edited line
//! must be skipped or sent whole, never panic or break the syslog header).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::forward::outgoing::Outgoing;
use portcullis::forward::syslog::{Stamp, format};

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let Some(event) = Outgoing::from_line(&line, 7, "node-a") else {
        return;
    };
    assert_eq!(event.id.len(), 32);
    let stamp = Stamp {
        facility: 10,
        hostname: "node-a".into(),
        pid: 1,
    };
    let message = format(&event, &stamp);
    // The header (up to the structured data) is printable ASCII, one line.
    let header_end = message.find(" [").expect("the structured data");
    assert!(message[..header_end].bytes().all(|b| (0x20..0x7f).contains(&b)));
    let (sd, rest) = message[header_end..].split_at(message[header_end..].find("] {").expect("the end of the structured data") + 2);
    assert!(!sd.chars().any(char::is_control), "{sd:?}");
    assert!(rest.starts_with("{\"id\":"));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
    let signature = portcullis::forward::webhook::signature(&key, 1, &event.json);
    assert!(signature.starts_with("t=1,sha256="));
});
