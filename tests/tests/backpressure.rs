//! A slow reader on either side slows the sender instead of growing the bastion's memory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::process::Stdio;
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
        .ssh_command(Some("yes portcullis-backpressure-line"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = vec![0u8; 256 * 1024];
    stdout.read_exact(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first).contains("portcullis-backpressure-line"));

    // Now the client reads nothing: its windows close, and the relay must wait.
    std::thread::sleep(Duration::from_secs(2));
    let early = rss_kib(pid);
    std::thread::sleep(Duration::from_secs(3));
    let late = rss_kib(pid);
    portcullis_tests::util::stop(&mut child);
    assert!(
        late < early + 16 * MIB,
        "memory grew from {early} KiB to {late} KiB while the client was not reading"
    );
    assert!(
        late < idle + 128 * MIB,
        "idle {idle} KiB, stalled {late} KiB"
    );
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
    let writer = std::thread::spawn(move || {
        let block = vec![b'x'; 64 * 1024];
        let mut sent = 0u64;
        while stdin.write_all(&block).is_ok() {
            sent += block.len() as u64;
        }
        sent
    });
    std::thread::sleep(Duration::from_secs(3));
    let early = rss_kib(pid);
    std::thread::sleep(Duration::from_secs(3));
    let late = rss_kib(pid);
    portcullis_tests::util::stop(&mut child);
    let sent = writer.join().unwrap();
    assert!(
        late < early + 16 * MIB,
        "memory grew from {early} KiB to {late} KiB while the upstream was not reading"
    );
    assert!(
        late < idle + 128 * MIB,
        "idle {idle} KiB, stalled {late} KiB"
    );
    assert!(
        sent < 256 * 1024 * 1024,
        "the client was slowed down, not absorbed: sent {sent} bytes"
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
    assert!(
        ended["detail"]
            .as_str()
            .unwrap()
            .contains("without reading what it was sent"),
        "{ended}"
    );
    assert!(peak < idle + 160 * MIB, "idle {idle} KiB, peak {peak} KiB");
}
