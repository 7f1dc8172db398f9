//! The terminal gate: the keystroke model fed any keys, the screen fed any output; what
//! they make of it is read back. Neither may panic or keep more than its bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::relay::gate::keys::KeyLine;
use portcullis::relay::gate::screen::Screen;

fuzz_target!(|data: &[u8]| {
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (keys, output) = data.split_at(cut);
    let mut line = KeyLine::default();
    line.set_paste_allowed(keys.len() % 2 == 0);
    for byte in keys {
        let _ = line.feed(*byte);
        if line.needs_sync() {
            line.resync("echo resynced", 4);
        }
    }
    let _ = line.reading();
    let screen = Screen::new(24, 80);
    screen.feed(output);
    screen.resize(5, 7);
    screen.feed(keys);
    let _ = screen.cursor_line();
    let _ = screen.alternate();
    let _ = screen.line_editor();
});
