//! The recording verifier (asciicast and framed files) on any bytes and any seal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_recorder::chain::ChainKey;

fuzz_target!(|data: &[u8]| {
    let key = ChainKey::new(b"portcullis-fuzz-recording-key-32");
    // The first bytes are taken as the .mac file's text, the rest as the recording.
    let cut = data.iter().position(|b| *b == b'\n').unwrap_or(0);
    let mac = String::from_utf8_lossy(&data[..cut]);
    let verdict = portcullis_recorder::verify::verify_bytes(&data[cut..], &mac, &key);
    // Garbage never verifies as intact.
    if verdict.is_intact() {
        assert!(!mac.is_empty());
    }
});
