//! Channels without a terminal are recorded byte for byte, each stream apart: what the
//! client received from `tar`, what went to stderr, what the client sent — read back with
//! `recordings cat` (or the API) with the same sha256, refused when the file was tampered
//! with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use portcullis_tests::World;
use portcullis_tests::util::run_with_timeout;
use portcullis_tests::util::sha256;

const READER: &str = "reader-token-0123456789";

/// Runs `command` on web01 through the bastion, with `stdin`; the raw output.
fn exec_bytes(world: &World, command: &str, stdin: &[u8]) -> Output {
    let mut child = world
        .alice("alice+web01")
        .ssh_command(Some(command))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success(), "{command}: {output:?}");
    output
}

/// The recording of the session that just ended, once it is sealed.
fn last_recording(world: &World) -> (String, PathBuf) {
    last_recording_after(world, "")
}

/// The recording of the next channel to end, other than `previous`, once it is sealed.
fn last_recording_after(world: &World, previous: &str) -> (String, PathBuf) {
    let ended = world.bastion.wait_for_audit("channel.end", |e| {
        e["recording_seal"].as_str().is_some() && e["recording"] != previous
    });
    let id = ended["recording"].as_str().unwrap().to_owned();
    let path = world
        .bastion
        .data_dir()
        .join("recordings")
        .join(format!("{id}.rec"));
    assert!(path.exists(), "{} missing", path.display());
    (id, path)
}

/// `portcullis recordings cat ID --stream S [--force]`: exit code, stdout bytes, stderr.
fn cat(world: &World, id: &str, stream: &str, force: bool) -> (Option<i32>, Vec<u8>, String) {
    let mut command = world.bastion.command();
    command.args(["recordings", "cat", id, "--stream", stream]);
    if force {
        command.arg("--force");
    }
    let output = run_with_timeout(60, &mut command);
    (
        output.status.code(),
        output.stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A directory of files that do not compress, on this machine (the upstream is local).
fn random_tree(dir: &Path) {
    for n in 0..4 {
        portcullis_tests::util::random_file(
            &dir.join(format!("file-{n}.bin")),
            700_000 + n * 123_457,
            n as u8,
        );
    }
}

#[test]
fn a_tar_stream_is_recorded_exactly_and_stderr_kept_apart() {
    let world = World::start(|_, _, _| {});
    let tree = world.path("tree");
    std::fs::create_dir_all(&tree).unwrap();
    random_tree(&tree);
    let tar = exec_bytes(
        &world,
        &format!("tar cf - -C {} . ; echo tar-done >&2", tree.display()),
        b"",
    );
    assert!(tar.stdout.len() > 2_800_000);
    let (id, path) = last_recording(&world);
    let (code, stdout, stderr) = cat(&world, &id, "stdout", false);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(sha256(&stdout), sha256(&tar.stdout), "stdout differs");
    let (_, err, _) = cat(&world, &id, "stderr", false);
    assert_eq!(err, tar.stderr);
    assert_eq!(err, b"tar-done\n");
    // Random bytes take no more room than they are.
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size as f64 <= tar.stdout.len() as f64 * 1.05, "{size}");
    // The list says what it is, and verify vouches for it.
    let listed = world.bastion.cli(&["recordings", "list"]);
    let row = listed.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains(" bytes "), "{row}");
    let verified = world.bastion.cli(&["recordings", "verify", &id]);
    assert_eq!(verified.code, Some(0), "{verified:?}");
}

#[test]
fn what_the_client_sends_is_recorded_and_zeros_take_almost_no_room() {
    let world = World::start(|_, _, _| {});
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let target = world.path("received.bin");
    exec_bytes(&world, &format!("cat > {}", target.display()), &blob);
    assert_eq!(std::fs::read(&target).unwrap(), blob);
    let (id, _) = last_recording(&world);
    let (code, stdin, stderr) = cat(&world, &id, "stdin", false);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(sha256(&stdin), sha256(&blob));

    let zeros = exec_bytes(&world, "head -c 33554432 /dev/zero", b"");
    assert_eq!(zeros.stdout.len(), 32 << 20);
    let (id, path) = last_recording_after(&world, &id);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size < (32 << 20) / 100, "{size} bytes for 32 MiB of zeros");
    let (_, stdout, _) = cat(&world, &id, "stdout", false);
    assert!(stdout == zeros.stdout);
}

#[test]
fn a_tampered_recording_is_refused_and_forced_gives_only_what_verifies() {
    let world = World::start(|config, _, _| {
        config.admin(&[("auditor", READER, &["read"])]);
    });
    let script = "for i in $(seq 1 2000); do echo line-$i; done";
    let ran = exec_bytes(&world, script, b"");
    let (id, path) = last_recording(&world);

    // The API: streams with their lengths and a preview, and each one's bytes.
    let (status, answer) = world.bastion.api_request(
        READER,
        "GET",
        &format!("/api/v1/recordings/{id}/streams"),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "intact", "{answer}");
    let stdout = &answer["streams"][0];
    assert_eq!(stdout["name"], "stdout");
    assert_eq!(stdout["bytes"], ran.stdout.len());
    assert_eq!(stdout["text"], true);
    assert!(
        stdout["preview"]
            .as_str()
            .unwrap()
            .starts_with("line-1\nline-2\n")
    );
    let (status, body) = world
        .bastion
        .api_bytes(READER, &format!("/api/v1/recordings/{id}/streams/stdout"));
    assert_eq!(status, 200);
    assert!(body == ran.stdout);

    // A byte changed in the middle of the file.
    let mut file = std::fs::read(&path).unwrap();
    let middle = file.len() / 2;
    file[middle] ^= 0x20;
    std::fs::write(&path, &file).unwrap();
    let (code, out, stderr) = cat(&world, &id, "stdout", false);
    assert_eq!(code, Some(1));
    assert!(out.is_empty(), "nothing written");
    assert!(
        stderr.contains("TAMPERED") && stderr.contains("--force"),
        "{stderr}"
    );
    let (code, out, stderr) = cat(&world, &id, "stdout", true);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("frames that verify"), "{stderr}");
    assert!(out.len() < ran.stdout.len() && ran.stdout.starts_with(&out));
    let (status, _) = world
        .bastion
        .api_bytes(READER, &format!("/api/v1/recordings/{id}/streams/stdout"));
    assert_eq!(status, 409, "refused through the API too");
}

#[test]
fn an_sftp_session_is_recorded_byte_for_byte_both_ways() {
    let world = World::start(|_, _, _| {});
    let local = world.path("up.bin");
    let tree = world.path("sftp-tree");
    std::fs::create_dir_all(&tree).unwrap();
    random_tree(&tree);
    std::fs::copy(tree.join("file-1.bin"), &local).unwrap();
    let size = std::fs::metadata(&local).unwrap().len();
    let remote = world.path("up-remote.bin");
    let back = world.path("back.bin");
    let ran = world.alice("alice+web01").sftp(&format!(
        "put {} {}\nget {} {}\n",
        local.display(),
        remote.display(),
        remote.display(),
        back.display()
    ));
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(
        std::fs::read(&back).unwrap(),
        std::fs::read(&local).unwrap()
    );
    let (id, _) = last_recording(&world);
    let info = world.bastion.cli(&["recordings", "list"]);
    let row = info.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("subsystem"), "{row}");
    // The file went up in what the client sent and came back in what it received, inside
    // the SFTP packets.
    let (code, stdin, stderr) = cat(&world, &id, "stdin", false);
    assert_eq!(code, Some(0), "{stderr}");
    let (_, stdout, _) = cat(&world, &id, "stdout", false);
    assert!(stdin.len() as u64 > size && stdout.len() as u64 > size);
    let chunk = &std::fs::read(&local).unwrap()[..4096];
    let contains = |hay: &[u8]| hay.windows(chunk.len()).any(|w| w == chunk);
    assert!(contains(&stdin) && contains(&stdout));
}
