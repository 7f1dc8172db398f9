//! SFTP: packets cut out of any client stream, and each request read as the file rules read
//! it (paths resolved against a home).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::relay::sftp::rules::{read_request, resolve};
use portcullis::relay::sftp::wire::Packets;

fuzz_target!(|data: &[u8]| {
    let mut packets = Packets::default();
    // Fed in two pieces, as a channel may deliver them.
    let (first, second) = data.split_at(data.len() / 2);
    for piece in [first, second] {
        let _ = packets.cut(piece, true, |kind, payload| {
            let _ = read_request(kind, payload, Some("/home/alice"), |_| Some("/tmp/open"));
            let _ = read_request(kind, payload, None, |_| None);
            true
        });
    }
    if let Ok(path) = resolve(data, Some("/home/alice")) {
        assert!(path.starts_with('/'), "{path}");
        assert!(
            !path.split('/').any(|part| part == ".." || part == "."),
            "{path}"
        );
    }
});
