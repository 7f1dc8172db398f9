//! Login names (`user+target`, with whatever a client puts in the SSH user field).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let login = portcullis::session::login::parse(&raw);
    // What was parsed came from the input.
    assert!(raw.contains(login.user.as_str()));
});
