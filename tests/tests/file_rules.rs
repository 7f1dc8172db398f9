//! File rules (`[[command_rules]]` with `kind = "sftp"`): a file operation a rule denies is
//! answered "permission denied" for that operation only — it never reaches the server — the
//! session goes on, and the refusal is audited. Proven with OpenSSH's sftp and scp, an sftp
//! server run as a command, and a custom client sending what no sftp client would: NUL
//! bytes in paths, relative paths, requests cut short, unknown types, a huge length.
//!
//! Every refused write aims at a sentinel that must stay absent: a file named
//! `/etc/portcullis-file-rule-…` that nothing else creates, or files in a temp dir.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_tests::World;
use portcullis_tests::raw::{self, runtime};
use russh::ChannelMsg;
use russh::client::Msg;
use serde_json::Value;

/// The rules: /etc sentinels are read-only, the protected dir's files stay put, and reads
/// of notes are logged.
fn rules(protected: &Path) -> String {
    format!(
        r#"
[[command_rules]]
name = "etc-is-read-only"
kind = "sftp"
pattern = '^(write|remove|rename|mkdir|rmdir|setstat|symlink|link) /etc/portcullis-file-rule-'
action = "deny"
message = "/etc is changed through configuration management"

[[command_rules]]
name = "keep-the-evidence"
kind = "sftp"
pattern = '^(write|remove|rename) {}/'
action = "deny"

[[command_rules]]
name = "note-reads"
kind = "sftp"
pattern = '^read .*/notes\.txt$'
action = "log"
"#,
        protected.display().to_string().replace('.', r"\.")
    )
}

const READER: &str = "reader-token-0123456789";

struct Setup {
    world: World,
    /// Files the rules protect: `keep.txt`, `notes.txt`.
    protected: PathBuf,
    /// A file under /etc that must never appear.
    etc_sentinel: PathBuf,
}

fn setup() -> Setup {
    let mut protected = None;
    let world = World::start(|config, _, scratch| {
        let dir = scratch.path().join("protected");
        config
            .raw(&rules(&dir))
            .admin(&[("auditor", READER, &["read"])]);
        protected = Some(dir);
    });
    let protected = protected.unwrap();
    std::fs::create_dir_all(&protected).unwrap();
    std::fs::write(protected.join("keep.txt"), "evidence\n").unwrap();
    std::fs::write(protected.join("notes.txt"), "notes\n").unwrap();
    let etc_sentinel = PathBuf::from(format!(
        "/etc/portcullis-file-rule-{}-{}",
        std::process::id(),
        world.bastion.address().port()
    ));
    Setup {
        world,
        protected,
        etc_sentinel,
    }
}

impl Setup {
    /// The file rules' refusals in the audit log: (line, rule, outcome).
    fn refusals(&self) -> Vec<(String, String, String)> {
        self.world
            .bastion
            .audit_events("command")
            .into_iter()
            .filter(|e| e["kind"] == "sftp")
            .map(|e| {
                let text = |key: &str| e[key].as_str().unwrap_or_default().to_owned();
                (text("line"), text("rule"), text("outcome"))
            })
            .collect()
    }

    fn assert_untouched(&self) {
        let created = self.etc_sentinel.exists();
        if created {
            // A harmless empty-or-small file, but not ours to leave behind.
            let _ = std::fs::remove_file(&self.etc_sentinel);
        }
        assert!(!created, "a refused write reached /etc");
        assert_eq!(
            std::fs::read_to_string(self.protected.join("keep.txt")).unwrap(),
            "evidence\n"
        );
    }
}

fn wait_for_events(world: &World, name: &str, count: usize) -> Vec<Value> {
    portcullis_tests::util::wait_for(Duration::from_secs(20), || {
        let events = world.bastion.audit_events(name);
        (events.len() >= count).then_some(events)
    })
    .unwrap_or_else(|| panic!("fewer than {count} {name} events"))
}

#[test]
fn a_denied_file_operation_gets_permission_denied_and_the_session_goes_on() {
    let s = setup();
    let world = &s.world;
    let local = world.path("local.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| ((i * 7) >> 3) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let sentinel = s.etc_sentinel.display().to_string();
    let protected = s.protected.display().to_string();
    let allowed = world.path("allowed.bin");
    let batch = format!(
        "-put {local} {sentinel}\n\
         -put {local} /etc/../etc//./{name}\n\
         cd {protected}\n\
         -rm keep.txt\n\
         -rename keep.txt {stolen}\n\
         -symlink {sentinel} {link}\n\
         get keep.txt {copy}\n\
         get notes.txt {notes}\n\
         put {local} {allowed}\n",
        local = local.display(),
        name = s.etc_sentinel.file_name().unwrap().to_str().unwrap(),
        stolen = world.path("stolen.txt").display(),
        link = world.path("link").display(),
        copy = world.path("keep-copy.txt").display(),
        notes = world.path("notes-copy.txt").display(),
        allowed = allowed.display(),
    );
    let ran = world.alice("alice+web01").sftp(&batch);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(
        ran.stderr.matches("Permission denied").count(),
        5,
        "{ran:?}"
    );
    s.assert_untouched();
    assert!(!world.path("stolen.txt").exists());
    assert!(world.path("link").symlink_metadata().is_err());
    // What the rules let through worked, before and after the refusals.
    assert_eq!(
        std::fs::read_to_string(world.path("keep-copy.txt")).unwrap(),
        "evidence\n"
    );
    assert_eq!(std::fs::read(&allowed).unwrap(), data);

    wait_for_events(world, "channel.end", 1);
    let etc = "etc-is-read-only".to_owned();
    let keep = "keep-the-evidence".to_owned();
    let blocked = "blocked".to_owned();
    assert_eq!(
        s.refusals(),
        [
            (format!("write {sentinel}"), etc.clone(), blocked.clone()),
            (format!("write {sentinel}"), etc.clone(), blocked.clone()),
            (
                format!("remove {protected}/keep.txt"),
                keep.clone(),
                blocked.clone()
            ),
            (
                format!("rename {protected}/keep.txt"),
                keep,
                blocked.clone()
            ),
            (format!("symlink {sentinel}"), etc, blocked),
            (
                format!("read {protected}/notes.txt"),
                "note-reads".to_owned(),
                "ran".to_owned()
            ),
        ]
    );
    // The channel's recording marks each refusal where it happened.
    let markers = world.bastion.sealed_recording_markers(READER);
    let refused: Vec<&str> = markers
        .iter()
        .map(String::as_str)
        .filter(|m| m.starts_with("sftp refused: "))
        .collect();
    assert_eq!(
        refused.first().copied(),
        Some(format!("sftp refused: write {sentinel} (rule etc-is-read-only)").as_str()),
        "{refused:#?}"
    );
    assert_eq!(refused.len(), 5, "{refused:#?}");
    // A refused operation never reached the server, so it has no sftp.* event; the
    // allowed ones have theirs.
    let opens = world.bastion.audit_events("sftp.open");
    assert!(
        opens.iter().all(|e| e["path"] != sentinel.as_str()),
        "{opens:#?}"
    );
    assert!(
        opens
            .iter()
            .any(|e| e["path"] == allowed.display().to_string() && e["outcome"] == "ok")
    );
    assert!(world.bastion.audit_events("sftp.remove").is_empty());
}

#[test]
fn file_rules_hold_for_scp_and_an_sftp_server_run_as_a_command_and_refuse_legacy_scp() {
    let s = setup();
    let world = &s.world;
    let local = world.path("local.txt");
    std::fs::write(&local, "payload\n").unwrap();
    let sentinel = s.etc_sentinel.display().to_string();
    // scp speaks SFTP: the write is refused like sftp's.
    let ran =
        world
            .alice("alice+web01")
            .scp(local.to_str().unwrap(), &format!(":{sentinel}"), false);
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("Permission denied"), "{ran:?}");
    // `sftp -s` runs the server as an exec command: the same rules apply.
    let ran = world.alice("alice+web01").sftp_with(
        &["-s", "/usr/lib/openssh/sftp-server"],
        &format!(
            "-put {} {sentinel}\nput {} {}\n",
            local.display(),
            local.display(),
            world.path("via-exec.txt").display()
        ),
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("Permission denied"), "{ran:?}");
    assert_eq!(
        std::fs::read_to_string(world.path("via-exec.txt")).unwrap(),
        "payload\n"
    );
    // On a terminal, the command gate and not the SFTP reader would see the bytes: refused.
    let ran = world
        .alice("alice+web01")
        .flags(&["-tt"])
        .exec("/usr/lib/openssh/sftp-server");
    assert_eq!(ran.code, Some(126), "{ran:?}");
    assert!(
        (ran.stdout.clone() + &ran.stderr).contains("an sftp server on a terminal"),
        "{ran:?}"
    );
    // Legacy scp is its own protocol, which the rules cannot check: refused, saying so.
    let ran = world.alice("alice+web01").scp(
        local.to_str().unwrap(),
        &format!(":{}", world.path("legacy.txt").display()),
        true,
    );
    assert_ne!(ran.code, Some(0), "{ran:?}");
    assert!(ran.stderr.contains("legacy scp (scp -O)"), "{ran:?}");
    assert!(!world.path("legacy.txt").exists());
    s.assert_untouched();
    let lines: Vec<String> = s.refusals().into_iter().map(|(line, ..)| line).collect();
    assert_eq!(
        lines,
        [format!("write {sentinel}"), format!("write {sentinel}")],
        "{lines:?}"
    );
}

/// A hand-driven SFTP conversation on one channel.
struct Sftp {
    channel: russh::Channel<Msg>,
    buffer: Vec<u8>,
    closed: bool,
}

fn string(text: &[u8]) -> Vec<u8> {
    let mut out = (text.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(text);
    out
}

fn packet(kind: u8, parts: &[&[u8]]) -> Vec<u8> {
    let body: Vec<u8> = parts.concat();
    let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(kind);
    out.extend(body);
    out
}

const WRITE_CREATE: u32 = 0x02 | 0x08 | 0x10;

impl Sftp {
    async fn open(ssh: &raw::RawSsh) -> Self {
        let channel = ssh.session().await;
        channel.request_subsystem(true, "sftp").await.unwrap();
        let mut sftp = Self {
            channel,
            buffer: Vec::new(),
            closed: false,
        };
        let (kind, _) = sftp.ask(&packet(1, &[&3u32.to_be_bytes()])).await.unwrap();
        assert_eq!(kind, 2, "VERSION");
        sftp
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.channel.data(bytes).await.unwrap();
    }

    /// Sends a request; the answer's type and payload, `None` once the channel closed.
    async fn ask(&mut self, request: &[u8]) -> Option<(u8, Vec<u8>)> {
        self.send(request).await;
        self.answer().await
    }

    async fn answer(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if self.buffer.len() >= 4 {
                let length = u32::from_be_bytes(self.buffer[..4].try_into().unwrap()) as usize;
                if self.buffer.len() >= 4 + length {
                    let packet: Vec<u8> = self.buffer.drain(..4 + length).collect();
                    return Some((packet[4], packet[5..].to_vec()));
                }
            }
            if self.closed {
                return None;
            }
            match tokio::time::timeout(Duration::from_secs(30), self.channel.wait())
                .await
                .expect("an answer within 30 s")
            {
                Some(ChannelMsg::Data { data }) => self.buffer.extend_from_slice(&data),
                Some(ChannelMsg::Close | ChannelMsg::Eof) | None => self.closed = true,
                Some(_) => {}
            }
        }
    }

    /// Sends a request with id `id`; the status it got: (id, code, message).
    async fn status(&mut self, request: &[u8]) -> (u32, u32, String) {
        let (kind, payload) = self.ask(request).await.expect("an answer");
        assert_eq!(kind, 101, "a STATUS answer, got type {kind}");
        let id = u32::from_be_bytes(payload[..4].try_into().unwrap());
        let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
        let length = u32::from_be_bytes(payload[8..12].try_into().unwrap()) as usize;
        let message = String::from_utf8_lossy(&payload[12..12 + length]).into_owned();
        (id, code, message)
    }
}

const ID: &[u8] = &[0, 0, 0, 7];

/// An extended request no server knows.
fn unknown_extension() -> Vec<u8> {
    packet(200, &[ID, &string(b"nothing@example.org"), b"junk"])
}

#[test]
fn a_custom_client_cannot_slip_a_file_operation_past_the_rules() {
    let s = setup();
    let world = &s.world;
    let sentinel = s.etc_sentinel.display().to_string();
    let made = world.path("made-by-hand");
    runtime().block_on(async {
        let mut ssh = world.bastion.raw().await;
        assert!(ssh.login_key("alice+web01", &world.alice).await);
        let mut sftp = Sftp::open(&ssh).await;
        // A relative path before the server said where relative paths start: unknowable.
        let (id, code, message) = sftp.status(&packet(13, &[ID, &string(b"keep.txt")])).await;
        assert_eq!((id, code), (7, 3), "{message}");
        assert!(message.contains("relative path"), "{message}");
        // A NUL cuts the path where the server's C string ends: still the sentinel.
        let mut with_nul = sentinel.clone().into_bytes();
        with_nul.extend(b"\0.txt");
        let (_, code, message) = sftp
            .status(&packet(
                3,
                &[ID, &string(&with_nul), &WRITE_CREATE.to_be_bytes(), &[0; 4]],
            ))
            .await;
        assert_eq!(code, 3, "{message}");
        assert!(message.contains("rule etc-is-read-only"), "{message}");
        // An open cut short (no flags) cannot be checked: refused.
        let (_, code, message) = sftp
            .status(&packet(3, &[ID, &string(sentinel.as_bytes())]))
            .await;
        assert_eq!(code, 3, "{message}");
        assert!(message.contains("cut short"), "{message}");
        // An unknown extension is the server's business: relayed, and it says so.
        let (_, code, _) = sftp.status(&unknown_extension()).await;
        assert_eq!(code, 8, "SSH_FX_OP_UNSUPPORTED from the server");
        // Once the server has named the home directory, relative paths are read from it.
        let (kind, _) = sftp.ask(&packet(16, &[ID, &string(b".")])).await.unwrap();
        assert_eq!(kind, 104, "NAME");
        let sneaky = format!("../../../../../..{}/keep.txt", s.protected.display());
        let (_, code, message) = sftp
            .status(&packet(13, &[ID, &string(sneaky.as_bytes())]))
            .await;
        assert_eq!(code, 3, "{message}");
        assert!(message.contains("rule keep-the-evidence"), "{message}");
        // The next operation works.
        let path = made.display().to_string();
        let (_, code, message) = sftp
            .status(&packet(14, &[ID, &string(path.as_bytes()), &[0; 4]]))
            .await;
        assert_eq!(code, 0, "{message}");
        // A length no client sends: the stream cannot be followed, so nothing more is
        // forwarded and the channel ends.
        sftp.send(&[0xff, 0xff, 0xff, 0xff, 3]).await;
        assert!(sftp.answer().await.is_none(), "the channel should close");
        // The connection and the bastion are fine.
        let out = raw::exec(&ssh, b"echo fine").await;
        assert_eq!(out.stdout_text(), "fine\n", "{out:?}");
    });
    assert!(made.is_dir());
    assert!(!PathBuf::from(format!("{sentinel}\0.txt").replace('\0', "")).exists());
    s.assert_untouched();
    let refusals = s.refusals();
    let lines: Vec<&str> = refusals.iter().map(|(line, ..)| line.as_str()).collect();
    assert_eq!(
        lines,
        [
            "remove ?",
            &format!("write {sentinel}"),
            "open ?",
            &format!("remove {}/keep.txt", s.protected.display()),
            "",
        ],
        "{refusals:#?}"
    );
    let commands = world.bastion.audit_events("command");
    let lost = commands
        .iter()
        .find(|e| e["kind"] == "sftp" && e["line"].is_null())
        .unwrap();
    assert!(
        lost["reason"]
            .as_str()
            .unwrap()
            .contains("cannot be followed"),
        "{lost}"
    );
}

#[test]
fn a_flood_of_refused_requests_is_answered_in_order_and_held_back_not_piled_up() {
    let s = setup();
    let world = &s.world;
    let sentinel = s.etc_sentinel.display().to_string();
    let made = world.path("after-the-flood");
    // Far more answers than the bastion queues (64 KiB), sent before any is read: the
    // client's requests wait for its answers to be read, and none is lost or reordered.
    let count = 3000u32;
    runtime().block_on(async {
        let mut ssh = world.bastion.raw().await;
        assert!(ssh.login_key("alice+web01", &world.alice).await);
        let mut sftp = Sftp::open(&ssh).await;
        let flood: Vec<u8> = (0..count)
            .flat_map(|id| packet(13, &[&id.to_be_bytes(), &string(sentinel.as_bytes())]))
            .collect();
        let writer = sftp.channel.make_writer();
        let sending = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let mut writer = writer;
            writer.write_all(&flood).await.unwrap();
            writer.flush().await.unwrap();
        });
        for expected in 0..count {
            let (kind, payload) = sftp.answer().await.expect("an answer");
            assert_eq!(kind, 101);
            let id = u32::from_be_bytes(payload[..4].try_into().unwrap());
            let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
            assert_eq!((id, code), (expected, 3));
        }
        sending.await.unwrap();
        let path = made.display().to_string();
        let (_, code, message) = sftp
            .status(&packet(14, &[ID, &string(path.as_bytes()), &[0; 4]]))
            .await;
        assert_eq!(code, 0, "{message}");
    });
    assert!(made.is_dir());
    s.assert_untouched();
    assert_eq!(s.refusals().len(), count as usize);
}

#[test]
fn without_rules_malformed_packets_are_relayed_to_the_server_and_audited() {
    let world = World::start(|_, _, _| {});
    runtime().block_on(async {
        let mut ssh = world.bastion.raw().await;
        assert!(ssh.login_key("alice+web01", &world.alice).await);
        let mut sftp = Sftp::open(&ssh).await;
        // An unknown extension: relayed, the server answers. (Not an unknown packet type:
        // OpenSSH's server then drops whatever it had already read after it.)
        let (_, code, _) = sftp.status(&unknown_extension()).await;
        assert_eq!(code, 8);
        // A remove whose path runs past the packet: the server decides (OpenSSH's gives up
        // on the channel), the bastion relays it and goes on.
        sftp.send(&packet(13, &[ID, &[0, 0, 0x10, 0], b"/tmp"]))
            .await;
        assert!(
            sftp.answer().await.is_none(),
            "sftp-server ends on a bad packet"
        );
        let out = raw::exec(&ssh, b"echo fine").await;
        assert_eq!(out.stdout_text(), "fine\n", "{out:?}");
    });
    let unparseable = wait_for_events(&world, "sftp.unparseable", 1);
    assert!(
        unparseable
            .iter()
            .any(|e| e["from"] == "client" && e["type"] == 13),
        "{unparseable:#?}"
    );
    assert!(
        world
            .bastion
            .audit_events("command")
            .iter()
            .all(|e| e["kind"] != "sftp")
    );
}
