//! The answer to the verification-code prompt: any text, checked against a key.
#![no_main]

use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"portcullis-fuzz-totp-key";

fuzz_target!(|data: &[u8]| {
    let (time, answer) = data.split_at(data.len().min(8));
    let mut now = [0u8; 8];
    now[..time.len()].copy_from_slice(time);
    let now = u64::from_le_bytes(now);
    let answer = String::from_utf8_lossy(answer);
    if let Some(step) = portcullis::credentials::totp::matching_step(KEY, &answer, now) {
        // Accepted only for the code of the step it names.
        assert_eq!(
            format!("{:06}", portcullis::credentials::totp::code_at(KEY, step)),
            answer.trim()
        );
    }
});
