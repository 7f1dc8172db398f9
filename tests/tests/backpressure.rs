//! A slow reader on either side slows the sender instead of growing the bastion's memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use portcullis_tests::World;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

const MIB: u64 = 1024;

#[test]
fn a_client_that_stops_reading_does_not_grow_the_bastions_memory() {
    let world = World::start(|_, _, _| {});
    let pid = world.bastion.pid().unwrap();
    let idle = rss_kib(pid);
    let mut child = world
        .alice("alice+web01")
        .ssh_command(Some(&format!("yes {LINE}")))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = vec![0u8; 256 * 1024];
    stdout.read_exact(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first).contains(LINE));

    // Now the client reads nothing: its windows close, the relay must wait, and so the
    // remote `yes` blocks in write. Wait for that, then look at the bastion's memory.
    let produced = wait_until_stalled(|| bytes_written_by(&["yes", LINE]));
    let stalled = rss_kib(pid);
    portcullis_tests::util::stop(&mut child);
    let produced = produced.expect("the remote `yes` never blocked: nothing slowed it down");
    assert!(
        produced < 64 * 1024 * 1024,
        "the relay absorbed {produced} bytes instead of slowing the sender"
    );
    assert!(
        stalled < idle + 128 * MIB,
        "idle {idle} KiB, stalled {stalled} KiB"
    );
}

const LINE: &str = "portcullis-backpressure-line";

/// Bytes written so far by the one process whose arguments are exactly `argv`, if it runs.
fn bytes_written_by(argv: &[&str]) -> Option<u64> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let dir = entry.path();
            if std::fs::read(dir.join("cmdline")).ok()? != wanted {
                return None;
            }
            let io = std::fs::read_to_string(dir.join("io")).ok()?;
            io.lines()
                .find_map(|l| l.strip_prefix("wchar:"))
                .and_then(|v| v.trim().parse().ok())
        })
}

/// Waits until `count` has stopped growing (the same value over half a second of polls),
/// and returns it; None if it was still moving after a minute.
fn wait_until_stalled(mut count: impl FnMut() -> Option<u64>) -> Option<u64> {
    let mut last = None;
    let mut unchanged = 0;
    portcullis_tests::util::wait_for(Duration::from_secs(60), || {
        let now = count()?;
        if last == Some(now) {
            unchanged += 1;
        } else {
            unchanged = 0;
            last = Some(now);
        }
        (unchanged >= 25).then_some(now)
    })
}

#[test]
fn an_upstream_that_stops_reading_does_not_grow_the_bastions_memory() {
    let world = World::start(|_, _, _| {});
    let pid = world.bastion.pid().unwrap();
    let idle = rss_kib(pid);
    // The remote command never reads its stdin; the client keeps sending.
    let mut child = world
        .alice("alice+web01")
        .ssh_command(Some("sleep 60"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let writer = std::thread::spawn({
        let sent = Arc::clone(&sent);
        move || {
            let block = vec![b'x'; 64 * 1024];
            while stdin.write_all(&block).is_ok() {
                sent.fetch_add(block.len() as u64, Ordering::Relaxed);
            }
        }
    });
    // The client's writes block once every window and buffer on the way is full.
    let absorbed = wait_until_stalled(|| Some(sent.load(Ordering::Relaxed)));
    let stalled = rss_kib(pid);
    portcullis_tests::util::stop(&mut child);
    writer.join().unwrap();
    let absorbed = absorbed.expect("the client was never slowed down: its writes never blocked");
    assert!(
        absorbed < 64 * 1024 * 1024,
        "the relay absorbed {absorbed} bytes instead of slowing the client"
    );
    assert!(
        stalled < idle + 128 * MIB,
        "idle {idle} KiB, stalled {stalled} KiB"
    );
}

#[test]
fn the_upstream_ending_a_command_ends_it_even_while_the_client_is_still_sending() {
    // The remote command exits while the client is blocked pushing stdin at it: the close
    // must still reach the client (an uplink stuck on a closed channel must not hold the
    // client's session loop).
    let world = World::start(|_, _, _| {});
    let mut child = world
        .alice("alice+web01")
        .ssh_command(Some("sleep 2; echo done-sleeping"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let block = vec![b'x'; 64 * 1024];
        while stdin.write_all(&block).is_ok() {}
    });
    let exited = portcullis_tests::util::wait_for(Duration::from_secs(20), || {
        child.try_wait().ok().flatten()
    });
    let Some(status) = exited else {
        portcullis_tests::util::stop(&mut child);
        panic!("the client never saw the command end");
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out, "done-sleeping\n");
    assert_eq!(status.code(), Some(0));
    writer.join().unwrap();
}

#[test]
fn a_client_that_floods_input_without_reading_output_is_cut_off_not_buffered() {
    // `cat` echoes everything; the client pushes stdin but never reads stdout. Its window
    // closes, the echo stalls, and the bastion must neither deadlock nor buffer without end.
    let world = World::start(|_, _, _| {});
    let pid = world.bastion.pid().unwrap();
    let idle = rss_kib(pid);
    let mut child = world
        .alice("alice+web01")
        .ssh_command(Some("cat"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let _stdout_never_read = child.stdout.take().unwrap();
    let writer = std::thread::spawn(move || {
        let block = vec![b'y'; 64 * 1024];
        while stdin.write_all(&block).is_ok() {}
    });
    let mut peak = idle;
    let ended = portcullis_tests::util::wait_for(Duration::from_secs(60), || {
        peak = peak.max(rss_kib(pid));
        world.bastion.audit_events("session.end").into_iter().next()
    });
    portcullis_tests::util::stop(&mut child);
    writer.join().unwrap();
    let ended = ended.unwrap_or_else(|| {
        panic!(
            "the flooding session was not ended; peak {peak} KiB; audit {:#?}",
            world.bastion.audit()
        )
    });
    assert_eq!(ended["reason"], "flow_control", "{ended}");
    assert_eq!(ended["side"], "client", "{ended}");
    assert!(
        ended["detail"]
            .as_str()
            .unwrap()
            .contains("without reading what it was sent"),
        "{ended}"
    );
    assert!(peak < idle + 160 * MIB, "idle {idle} KiB, peak {peak} KiB");
}
