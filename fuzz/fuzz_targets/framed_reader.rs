//! The framed recording reader: units out of any byte stream, each decoded as a frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_recorder::framed::{Unit, UnitReader, decode_frame};

fuzz_target!(|data: &[u8]| {
    let mut reader = UnitReader::new(std::io::Cursor::new(data));
    // Every unit consumes input: at most as many units as bytes.
    for _ in 0..=data.len() {
        match reader.next_unit() {
            Ok(Unit::Whole(unit)) => {
                let _ = decode_frame(&unit);
            }
            Ok(Unit::Fragment | Unit::End) | Err(_) => return,
        }
    }
    panic!("more units than bytes");
});
