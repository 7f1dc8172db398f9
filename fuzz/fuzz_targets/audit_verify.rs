//! The audit log reader and verifier on any file content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_recorder::chain::ChainKey;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("audit.jsonl");
    std::fs::write(&path, data).expect("write the log");
    let key = ChainKey::new(b"portcullis-fuzz-audit-key-32-byt");
    let _ = portcullis::audit::verify_log(&path, &key, None);
});
