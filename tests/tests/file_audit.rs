//! Every file operation that passes through an sftp channel — OpenSSH's sftp, and scp, which
//! speaks SFTP — is audited one by one: which file, read or written, how many bytes, and the
//! content's sha256 when the whole file went one way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;

use portcullis_tests::World;
use portcullis_tests::util::sha256;

const READER: &str = "reader-token-0123456789";

fn events(world: &World, name: &str) -> Vec<Value> {
    world.bastion.audit_events(name)
}

/// Waits for the sftp channel to end, so every event is written.
fn channel_ended(world: &World, count: usize) {
    let ended = portcullis_tests::util::wait_for(std::time::Duration::from_secs(20), || {
        (world.bastion.audit_events("channel.end").len() >= count).then_some(())
    });
    assert!(ended.is_some());
}

fn content(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 11) as u8)
        .collect()
}

#[test]
fn sftp_operations_are_audited_with_paths_sizes_and_sha256() {
    let world = World::start(|config, _, _| {
        config.admin(&[("auditor", READER, &["read"])]);
    });
    let local = world.path("local.bin");
    let data = content(1_500_000, 1);
    std::fs::write(&local, &data).unwrap();
    let dir = world.path("remote-dir");
    let up = format!("{}/up.bin", dir.display());
    let renamed = format!("{}/renamed.bin", dir.display());
    let down = world.path("down.bin");
    let link = format!("{}/link", dir.display());
    let batch = format!(
        "mkdir {dir}\nput {local} {up}\nchmod 600 {up}\nrename {up} {renamed}\nget {renamed} {down}\nsymlink {renamed} {link}\nrm {link}\nrm {renamed}\nrmdir {dir}\n",
        dir = dir.display(),
        local = local.display(),
        down = down.display(),
    );
    let ran = world.alice("alice+web01").sftp(&batch);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(std::fs::read(&down).unwrap(), data);
    channel_ended(&world, 1);

    let dir = dir.display().to_string();
    let ok = |e: &Value| e["outcome"] == "ok";
    let mkdir = events(&world, "sftp.mkdir");
    assert!(
        mkdir.iter().any(|e| e["path"] == dir && ok(e)),
        "{mkdir:#?}"
    );
    let opens = events(&world, "sftp.open");
    assert!(
        opens.iter().any(|e| e["path"] == up
            && e["mode"].as_str().unwrap().contains("write")
            && e["mode"].as_str().unwrap().contains("create")
            && ok(e)),
        "{opens:#?}"
    );
    assert!(
        opens
            .iter()
            .any(|e| e["path"] == renamed && e["mode"] == "read" && ok(e)),
        "{opens:#?}"
    );
    let closes = events(&world, "sftp.close");
    let written = closes.iter().find(|e| e["path"] == up).unwrap();
    assert_eq!(written["bytes_written"], data.len());
    assert_eq!(written["sha256"], sha256(&data), "{written}");
    let read = closes.iter().find(|e| e["path"] == renamed).unwrap();
    assert_eq!(read["bytes_read"], data.len());
    assert_eq!(read["sha256"], sha256(&data), "{read}");
    let renames = events(&world, "sftp.rename");
    assert!(
        renames
            .iter()
            .any(|e| e["from"] == up && e["to"] == renamed && ok(e)),
        "{renames:#?}"
    );
    let setstat = events(&world, "sftp.setstat");
    assert!(
        setstat
            .iter()
            .any(|e| e["path"] == up && e["attributes"] == "mode=0600"),
        "{setstat:#?}"
    );
    let symlinks = events(&world, "sftp.symlink");
    assert!(
        symlinks
            .iter()
            .any(|e| e["path"] == link && e["points_to"] == renamed && e["target"] == "web01"),
        "{symlinks:#?}"
    );
    let removes = events(&world, "sftp.remove");
    assert!(removes.iter().any(|e| e["path"] == renamed && ok(e)));
    assert!(removes.iter().any(|e| e["path"] == link && ok(e)));
    let rmdirs = events(&world, "sftp.rmdir");
    assert!(rmdirs.iter().any(|e| e["path"] == dir && ok(e)));
    // Each names who and where.
    for event in opens.iter().chain(&closes).chain(&removes) {
        assert_eq!(event["user"], "alice");
        assert_eq!(event["target"], "web01");
        assert!(event["session"].as_str().is_some());
    }
    // They are found by path: in `audit search --files` and the API, for one session.
    let found = world
        .bastion
        .cli(&["audit", "search", "--files", r"renamed\.bin$"]);
    assert_eq!(found.code, Some(0), "{found:?}");
    let rename_row = found
        .stdout
        .lines()
        .find(|l| l.contains("sftp.rename"))
        .unwrap_or_else(|| panic!("{found:?}"));
    assert!(
        rename_row.contains(&format!("{up} -> {renamed}")),
        "{rename_row}"
    );
    assert!(
        found
            .stdout
            .contains(&format!("sha256={}", &sha256(&data)[..16])),
        "{found:?}"
    );
    assert!(!found.stdout.contains("sftp.mkdir"), "{found:?}");
    let session = opens[0]["session"].as_str().unwrap().to_owned();
    let (status, answer) = world.bastion.api_request(
        READER,
        "GET",
        &format!("/api/v1/transfers?q=renamed&session={session}"),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    let names: Vec<&str> = answer["transfers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"sftp.rename") && names.contains(&"sftp.close"),
        "{names:?}"
    );
    let (status, answer) = world.bastion.api_request(
        READER,
        "GET",
        &format!("/api/v1/audit?event=sftp.*&session={session}"),
        None,
    );
    assert_eq!(status, 200, "{answer}");
    let listed = answer["events"].as_array().unwrap();
    assert!(listed.len() >= 9, "{listed:#?}");
    assert!(
        listed
            .iter()
            .all(|e| e["event"].as_str().unwrap().starts_with("sftp.")
                && e["session"] == session.as_str())
    );

    // The channel's recording carries the same timeline as markers, chained with its bytes.
    let markers = world.bastion.sealed_recording_markers(READER);
    assert!(
        markers.iter().any(
            |m| m.starts_with(&format!("sftp.mkdir path={dir} ")) && m.ends_with(" outcome=ok")
        ),
        "{markers:#?}"
    );
    assert!(
        markers
            .iter()
            .any(|m| m.starts_with(&format!("sftp.close path={up} "))
                && m.contains(&format!("sha256={}", sha256(&data)))),
        "{markers:#?}"
    );
    assert!(
        markers.iter().any(|m| m.starts_with("end: ")),
        "{markers:#?}"
    );

    // A failure is audited as one.
    let ran = world
        .alice("alice+web01")
        .sftp(&format!("-rm {dir}/never-there\n"));
    assert_eq!(ran.code, Some(0), "{ran:?}");
    channel_ended(&world, 2);
    let removes = events(&world, "sftp.remove");
    let failed = removes
        .iter()
        .find(|e| e["path"] == format!("{dir}/never-there"))
        .unwrap();
    assert_eq!(failed["outcome"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("no such file"),
        "{failed}"
    );
}

#[test]
fn scp_uploads_and_downloads_are_audited_with_their_sha256() {
    let world = World::start(|_, _, _| {});
    let (data, remote) = scp_round_trip(&world, "scp", 700_000, false);
    assert_transfers_audited(&world, &data, &remote, 2);
}

/// Copies a file up to web01 and back with scp (`legacy`: `scp -O`); the content and the
/// remote path it went through.
fn scp_round_trip(world: &World, name: &str, len: usize, legacy: bool) -> (Vec<u8>, String) {
    let local = world.path(&format!("{name}-local.bin"));
    let data = content(len, len as u32);
    std::fs::write(&local, &data).unwrap();
    let remote = world
        .path(&format!("{name}-remote.bin"))
        .display()
        .to_string();
    let back = world.path(&format!("{name}-back.bin"));
    let client = world.alice("alice+web01");
    let up = client.scp(&local.display().to_string(), &format!(":{remote}"), legacy);
    assert_eq!(up.code, Some(0), "{up:?}");
    let down = client.scp(&format!(":{remote}"), &back.display().to_string(), legacy);
    assert_eq!(down.code, Some(0), "{down:?}");
    assert_eq!(std::fs::read(&back).unwrap(), data);
    (data, remote)
}

/// The SHA256 fingerprint of the bastion's host key, as PuTTY's `-hostkey` takes it.
fn host_fingerprint(world: &World) -> String {
    let listed = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(world.bastion.known_hosts())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    text.split_whitespace()
        .find(|word| word.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint in {text}"))
        .to_owned()
}

/// A put and a get of `data` with `client` (which names the remote file it used), then the
/// audit holds both transfers with the content's sha256.
fn assert_transfers_audited(world: &World, data: &[u8], remote: &str, channels: usize) {
    channel_ended(world, channels);
    let closes = events(world, "sftp.close");
    let wrote = closes
        .iter()
        .find(|e| e["path"] == remote && e["bytes_written"] == data.len())
        .unwrap_or_else(|| panic!("no upload of {remote}: {closes:#?}"));
    assert_eq!(wrote["sha256"], sha256(data), "{wrote}");
    let read = closes
        .iter()
        .find(|e| e["path"] == remote && e["bytes_read"] == data.len())
        .unwrap_or_else(|| panic!("no download of {remote}: {closes:#?}"));
    assert_eq!(read["sha256"], sha256(data), "{read}");
}

#[test]
fn putty_psftp_and_pscp_are_audited_like_openssh() {
    let world = World::start(|_, _, _| {});
    let data = content(400_000, 3);
    let local = world.path("putty-up.bin");
    std::fs::write(&local, &data).unwrap();
    let remote = world.path("putty-remote.bin").display().to_string();
    let back = world.path("putty-back.bin");
    let ppk = world.path("alice.ppk");
    let converted = std::process::Command::new("puttygen")
        .arg(&world.alice.private)
        .args(["-O", "private", "-o"])
        .arg(&ppk)
        .output()
        .unwrap();
    assert!(converted.status.success(), "{converted:?}");
    let batch = world.path("psftp-batch");
    std::fs::write(
        &batch,
        format!(
            "put {} {remote}\nget {remote} {}\n",
            local.display(),
            back.display()
        ),
    )
    .unwrap();
    let ran = portcullis_tests::util::run_with_timeout(
        120,
        std::process::Command::new("psftp")
            .args(["-batch", "-i"])
            .arg(&ppk)
            .args(["-P", &world.bastion.address().port().to_string()])
            .args(["-hostkey", &host_fingerprint(&world)])
            .arg("-b")
            .arg(&batch)
            .arg("alice+web01@127.0.0.1"),
    );
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(std::fs::read(&back).unwrap(), data);
    assert_transfers_audited(&world, &data, &remote, 1);

    // pscp: over SFTP (its default where the server has it), and over legacy SCP (-scp).
    let pscp = |args: &[&str]| {
        let ran = portcullis_tests::util::run_with_timeout(
            120,
            std::process::Command::new("pscp")
                .args(["-batch", "-q", "-i"])
                .arg(&ppk)
                .args(["-P", &world.bastion.address().port().to_string()])
                .args(["-hostkey", &host_fingerprint(&world)])
                .args(args),
        );
        assert!(ran.status.success(), "{args:?}: {ran:?}");
    };
    let remote2 = world.path("pscp-remote.bin").display().to_string();
    let back2 = world.path("pscp-back.bin");
    pscp(&[
        "-sftp",
        local.to_str().unwrap(),
        &format!("alice+web01@127.0.0.1:{remote2}"),
    ]);
    pscp(&[
        "-sftp",
        &format!("alice+web01@127.0.0.1:{remote2}"),
        back2.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&back2).unwrap(), data);
    assert_transfers_audited(&world, &data, &remote2, 3);
    let remote3 = world.path("pscp-legacy.bin").display().to_string();
    pscp(&[
        "-scp",
        local.to_str().unwrap(),
        &format!("alice+web01@127.0.0.1:{remote3}"),
    ]);
    channel_ended(&world, 4);
    let files = events(&world, "scp.file");
    let sent = files
        .iter()
        .find(|e| e["direction"] == "upload")
        .unwrap_or_else(|| panic!("{files:#?}"));
    assert_eq!(sent["size"], data.len(), "{sent}");
    assert_eq!(sent["sha256"], sha256(&data), "{sent}");
}

#[test]
fn python_paramiko_is_audited_like_openssh() {
    // paramiko 2.12 (Debian 12) has no AES-GCM: it needs a CTR cipher offered.
    let world = World::start(|config, _, _| {
        config.server("ciphers = [\"aes256-gcm@openssh.com\", \"aes256-ctr\"]\n");
    });
    let data = content(400_000, 4);
    let local = world.path("paramiko-up.bin");
    std::fs::write(&local, &data).unwrap();
    let remote = world.path("paramiko-remote.bin").display().to_string();
    let back = world.path("paramiko-back.bin");
    let script = r#"
import sys, paramiko
host, port, key, known, local, remote, back = sys.argv[1:]
client = paramiko.SSHClient()
client.load_host_keys(known)
client.set_missing_host_key_policy(paramiko.RejectPolicy())
client.connect(host, int(port), username="alice+web01", key_filename=key,
               look_for_keys=False, allow_agent=False)
sftp = client.open_sftp()
sftp.put(local, remote)
sftp.get(remote, back)
sftp.rename(remote, remote + ".moved")
sftp.remove(remote + ".moved")
sftp.close()
client.close()
"#;
    // Debian's python3, where python3-paramiko is installed.
    let ran = portcullis_tests::util::run_with_timeout(
        120,
        std::process::Command::new("/usr/bin/python3")
            .args(["-c", script, "127.0.0.1"])
            .arg(world.bastion.address().port().to_string())
            .arg(&world.alice.private)
            .arg(world.bastion.known_hosts())
            .arg(&local)
            .arg(&remote)
            .arg(&back),
    );
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(std::fs::read(&back).unwrap(), data);
    assert_transfers_audited(&world, &data, &remote, 1);
    let renames = events(&world, "sftp.rename");
    assert!(
        renames
            .iter()
            .any(|e| e["from"] == remote && e["to"] == format!("{remote}.moved")),
        "{renames:#?}"
    );
    let removes = events(&world, "sftp.remove");
    assert!(
        removes
            .iter()
            .any(|e| e["path"] == format!("{remote}.moved"))
    );
}

#[test]
fn legacy_scp_uploads_and_downloads_are_audited_with_names_sizes_and_sha256() {
    let world = World::start(|_, _, _| {});
    let (data, remote) = scp_round_trip(&world, "legacy", 333_333, true);
    channel_ended(&world, 2);
    let files = events(&world, "scp.file");
    for (direction, name) in [
        ("upload", "legacy-local.bin"),
        ("download", "legacy-remote.bin"),
    ] {
        let file = files
            .iter()
            .find(|e| e["direction"] == direction)
            .unwrap_or_else(|| panic!("no {direction}: {files:#?}"));
        assert_eq!(file["path"], remote, "{file}");
        assert_eq!(file["name"], name, "{file}");
        assert_eq!(file["size"], data.len(), "{file}");
        assert_eq!(file["mode"], "0644", "{file}");
        assert_eq!(file["sha256"], sha256(&data), "{file}");
        assert_eq!(file["user"], "alice");
    }
}
