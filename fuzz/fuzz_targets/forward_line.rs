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
    // The header: six fields of printable ASCII, none empty, separated by single spaces.
    let fields: Vec<&str> = message.splitn(7, ' ').collect();
    assert_eq!(fields.len(), 7, "{message:?}");
    for field in &fields[..6] {
        assert!(!field.is_empty() && field.bytes().all(|b| b.is_ascii_graphic()), "{message:?}");
    }
    assert!(
        fields[1] == "-" || fields[1].bytes().take(4).all(|b| b.is_ascii_digit()),
        "{message:?}"
    );
    // The structured data ends at the first `]` outside a quoted value, as a receiver
    // reads it (RFC 5424 escapes `"`, `\` and `]` inside values); the JSON follows.
    let sd = fields[6];
    assert!(sd.starts_with("[portcullis@32473 "), "{message:?}");
    let (mut quoted, mut escaped, mut end) = (false, false, None);
    for (at, c) in sd.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ']' if !quoted => {
                end = Some(at);
                break;
            }
            _ => {}
        }
    }
    let end = end.expect("the structured data ends");
    assert!(!sd[..end].chars().any(char::is_control), "{sd:?}");
    assert!(sd[end..].starts_with("] {\"id\":"), "{message:?}");
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"0123456789abcdef0123456789abcdef");
    let signature = portcullis::forward::webhook::signature(&key, 1, &event.json);
    assert!(signature.starts_with("t=1,sha256="));
});
