//! Command control with a real bash upstream in tmux: forbidden lines are stopped however
//! they were typed (plainly, edited, recalled, completed, pasted), warned lines ask first,
//! reviewed lines wait for a second person, a terminating rule ends the session, exec
//! commands are checked before they reach the upstream; what runs is audited, marked in the
//! recording and searchable; secrets typed at a no-echo prompt are redacted.
//!
//! Every "blocked" check uses a harmless sentinel: `touch` of a marker file in a temp dir,
//! then the file must not exist. A gate that failed would create an empty file, nothing worse.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_tests::{Keypair, Tmux, World};

const READER: &str = "reader-token-0123456789";

const RULES: &str = r#"
[[command_rules]]
name = "no-forbidden"
pattern = 'touch\s+\S*forbidden-'
action = "deny"
message = "forbidden markers are not allowed"

[[command_rules]]
name = "no-forbidden-upload"
pattern = '^scp\s.*-t\s.*forbidden-'
action = "deny"
message = "no uploads there"

[[command_rules]]
name = "confirm-warned"
pattern = 'touch\s+\S*warned-'
action = "warn"
message = "warned markers need a second thought"

[[command_rules]]
name = "review-reviewed"
pattern = 'touch\s+\S*reviewed-'
action = "review"
approvers = ["secops"]

[[command_rules]]
name = "end-it"
pattern = 'touch\s+\S*terminate-'
action = "terminate"
message = "that ends your session"

[[command_rules]]
name = "note-listings"
pattern = '^ls\b'
action = "log"
"#;

struct Gate {
    world: World,
    bob: Keypair,
    /// Where the sentinels go.
    dir: PathBuf,
}

fn gate() -> Gate {
    let mut bob = None;
    let world = World::start(|config, _, scratch| {
        let key = Keypair::generate(scratch.path(), "bob");
        config
            .user("bob", &[&key.public])
            .role("secops", &["bob"], &["web01"])
            .admin(&[("auditor", READER, &["read"])])
            .raw(RULES);
        bob = Some(key);
    });
    let dir = world.path("sentinels");
    std::fs::create_dir_all(&dir).unwrap();
    Gate {
        world,
        bob: bob.unwrap(),
        dir,
    }
}

/// A failed test shows what the terminal received and what the gate decided, as recorded.
impl Drop for Gate {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for cast in self.world.bastion.recordings() {
            let text = std::fs::read_to_string(&cast).unwrap_or_default();
            eprintln!("--- {}\n{text}", cast.display());
        }
        let log = self.world.bastion.log();
        for line in log.lines().filter(|l| {
            l.contains("gate")
                || l.contains("line submitted")
                || l.contains("interrupt")
                || l.contains("discarded")
                || l.contains("eras")
        }) {
            eprintln!("{line}");
        }
    }
}

impl Gate {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// alice's interactive shell on web01, ready.
    fn shell(&self) -> Tmux {
        let tmux = Tmux::start(
            &self.world.alice("alice+web01").shell_line(&["-tt"]),
            120,
            40,
        );
        tmux.line("echo ready-$((40+2))");
        tmux.wait_for_text("ready-42", Duration::from_secs(20));
        // Keys sent before the shell reads again are typeahead, echoed by the terminal
        // driver and, after a blocked line, flushed with the Ctrl-C that discards it.
        prompt_back(&tmux);
        tmux
    }

    fn audit_commands(&self) -> Vec<serde_json::Value> {
        self.world.bastion.audit_events("command")
    }

    /// Ends the shell, and once the bastion has sealed its recording (the client may exit a
    /// moment before), returns the recording's path and text.
    fn exit_and_recording(&self, tmux: &Tmux) -> (PathBuf, String) {
        tmux.line("exit");
        tmux.wait_exit(Duration::from_secs(20));
        self.world.bastion.wait_for_audit("session.end", |_| true);
        let cast = self.world.bastion.recordings().pop().unwrap();
        let text = std::fs::read_to_string(&cast).unwrap();
        (cast, text)
    }

    /// Waits until `count` lines have been blocked: typing before the bastion has answered
    /// a blocked line is typing ahead, which it drops.
    fn wait_blocked(&self, count: usize) {
        let done = portcullis_tests::util::wait_for(Duration::from_secs(10), || {
            (self.blocked_lines().len() >= count).then_some(())
        });
        // On failure, every command event: whether the line was seen at all, and as what.
        assert!(
            done.is_some(),
            "{count} blocked lines never came; command events: {:#?}",
            self.audit_commands()
        );
    }

    fn blocked_lines(&self) -> Vec<String> {
        self.audit_commands()
            .into_iter()
            .filter(|e| e["outcome"] == "blocked")
            .map(|e| e["line"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Waits for the shell's prompt to be the last thing on the screen (after a refusal, or a
/// full-screen program): what is typed before it would be dropped or eaten.
fn prompt_back(tmux: &Tmux) {
    let back = portcullis_tests::util::wait_for(Duration::from_secs(10), || {
        let last = last_line(tmux)?;
        (last.ends_with('#') || last.ends_with('$')).then_some(())
    });
    assert!(back.is_some(), "no prompt; screen:\n{}", tmux.screen());
}

/// The screen's last line with something on it, without trailing blanks.
fn last_line(tmux: &Tmux) -> Option<String> {
    let screen = tmux.screen();
    let last = screen.lines().rev().find(|l| !l.trim().is_empty())?;
    Some(last.trim_end().to_owned())
}

/// The session is still usable: a command runs and shows its output, and the shell is
/// ready for the next.
fn alive(tmux: &Tmux, tag: u32) {
    prompt_back(tmux);
    tmux.line(&format!("echo alive-$(({tag}+1000))"));
    tmux.wait_for_text(&format!("alive-{}", tag + 1000), Duration::from_secs(10));
    prompt_back(tmux);
}

fn absent(path: &str) {
    assert!(
        !Path::new(path).exists(),
        "{path} was created: the gate let it run"
    );
}

#[test]
fn a_plainly_typed_forbidden_line_is_stopped_and_the_session_goes_on() {
    let gate = gate();
    let tmux = gate.shell();
    let target = gate.path("forbidden-1");
    tmux.line(&format!("touch {target}"));
    tmux.wait_for_text(
        "portcullis: blocked by rule no-forbidden: forbidden markers are not allowed",
        Duration::from_secs(10),
    );
    gate.wait_blocked(1);
    alive(&tmux, 1);
    absent(&target);
    assert_eq!(gate.blocked_lines(), vec![format!("touch {target}")]);
    let event = gate
        .audit_commands()
        .into_iter()
        .find(|e| e["outcome"] == "blocked")
        .unwrap();
    assert_eq!(event["rule"], "no-forbidden");
    assert_eq!(event["action"], "deny");
    assert_eq!(event["user"], "alice");
    assert_eq!(event["target"], "web01");
    assert!(
        gate.world
            .bastion
            .log()
            .contains("ALERT: command stopped by a rule")
    );
}

#[test]
fn lines_assembled_by_editing_recall_and_completion_are_read_as_they_will_run() {
    let gate = gate();
    let tmux = gate.shell();

    // Typo fixed with the cursor keys: "tuch" → Home, Right, "o".
    let edited = gate.path("forbidden-2");
    tmux.type_text(&format!("tuch {edited}"));
    tmux.keys(&["Home", "Right"]);
    tmux.type_text("o");
    tmux.keys(&["Enter"]);
    tmux.wait_for_text("blocked by rule no-forbidden", Duration::from_secs(10));
    gate.wait_blocked(1);
    alive(&tmux, 2);
    absent(&edited);

    // Backspace and ^U.
    let rubbed = gate.path("forbidden-3");
    tmux.type_text("echo harmless");
    tmux.keys(&["C-u"]);
    tmux.type_text(&format!("touch {rubbed}x"));
    tmux.keys(&["BSpace", "Enter"]);
    gate.wait_blocked(2);
    alive(&tmux, 3);
    absent(&rubbed);
    assert_eq!(gate.blocked_lines().len(), 2, "{:?}", gate.blocked_lines());

    // History recall: a harmless line, recalled and turned into a forbidden one.
    let recalled = gate.path("forbidden-4");
    tmux.line(&format!("ls {recalled} 2>/dev/null; echo listed-$((5*5))"));
    tmux.wait_for_text("listed-25", Duration::from_secs(10));
    prompt_back(&tmux);
    tmux.keys(&["Up", "Home", "Delete", "Delete"]);
    tmux.type_text("touch");
    tmux.keys(&["Enter"]);
    gate.wait_blocked(3);
    alive(&tmux, 4);
    absent(&recalled);
    assert!(
        gate.blocked_lines()
            .iter()
            .any(|l| l.starts_with(&format!("touch {recalled}"))),
        "{:?}",
        gate.blocked_lines()
    );

    // Tab completion supplies the forbidden part: only the screen knows it.
    let completed_dir = gate.path("zz-forbidden-dir");
    std::fs::create_dir(&completed_dir).unwrap();
    tmux.type_text(&format!("touch {}/zz", gate.dir.display()));
    tmux.keys(&["Tab"]);
    tmux.type_text("x");
    tmux.keys(&["Enter"]);
    tmux.wait_for_text("blocked by rule no-forbidden", Duration::from_secs(10));
    gate.wait_blocked(4);
    alive(&tmux, 5);
    absent(&format!("{completed_dir}/x"));
    assert!(
        gate.blocked_lines()
            .iter()
            .any(|l| l == &format!("touch {completed_dir}/x")),
        "{:?}",
        gate.blocked_lines()
    );
}

#[test]
fn history_recalled_while_a_command_runs_never_runs_unread_and_the_command_goes_on() {
    // Up pressed while a command still runs: the terminal driver echoes `^[[A` and keeps the
    // keys for bash, which later replays them through readline (recall, edit) out of sight
    // of the screen. Such a line is refused as unreadable (or blocked), never run; the
    // refusal erases it without a signal, so the running command is not interrupted.
    let gate = gate();
    let tmux = gate.shell();
    for round in 0..3u32 {
        let recalled = gate.path(&format!("forbidden-early-{round}"));
        tmux.line(&format!(
            "ls {recalled} 2>/dev/null; sleep 0.5; echo early-$((10+{round}))"
        ));
        tmux.keys(&["Up", "Home", "Delete", "Delete"]);
        tmux.type_text("touch");
        tmux.keys(&["Enter"]);
        let stopped = portcullis_tests::util::wait_for(Duration::from_secs(10), || {
            (refusals(&gate) > round as usize).then_some(())
        });
        assert!(stopped.is_some(), "{:#?}", gate.audit_commands());
        tmux.wait_for_text(&format!("early-{}", 10 + round), Duration::from_secs(10));
        // bash may bring back what it had already taken of those keys at its prompt (the
        // terminal driver had passed them on as a line of their own); the next key erases it.
        let prompt = portcullis_tests::util::wait_for(Duration::from_secs(10), || {
            last_line(&tmux)?.starts_with("root@vm:~#").then_some(())
        });
        assert!(prompt.is_some(), "{}", tmux.screen());
        tmux.line(&format!("echo alive-$(({}+1000))", 30 + round));
        tmux.wait_for_text(&format!("alive-{}", 1030 + round), Duration::from_secs(10));
        prompt_back(&tmux);
        absent(&recalled);
    }
}

/// Keys typed while a command runs wait in the terminal driver, which echoes them literally
/// (`^[[A`); bash's readline takes them later and recalls and edits with them out of the
/// screen's sight. `held_command` prints `shows` (printf's format), then runs until `go`
/// exists, so the keys are typed while it runs, however loaded the machine is.
fn recall_while_held(
    gate: &Gate,
    tmux: &Tmux,
    (name, tag): (&str, u32),
    shows: &str,
    in_one_write: bool,
) {
    let recalled = gate.path(&format!("forbidden-{name}"));
    let go = gate.path(&format!("go-{name}"));
    let held_command = format!(
        "ls {recalled} 2>/dev/null; printf '{shows}'; until [ -e {go} ]; do sleep 0.05; done; echo held-$((20+{tag}))"
    );
    let edit = "\x1b[A\x1b[1~\x1b[3~\x1b[3~touch\r";
    let refusals_before = refusals(gate);
    if in_one_write {
        // The command, then the keys, before bash has even taken the Enter.
        tmux.bytes(format!("{held_command}\r{edit}").as_bytes());
    } else {
        tmux.line(&held_command);
        // What the command printed is on the screen, the command still runs.
        let printed = portcullis_tests::util::wait_for(Duration::from_secs(10), || {
            (last_line(tmux)? == shows.replace("\\n", "").trim_end()).then_some(())
        });
        assert!(printed.is_some(), "{}", tmux.screen());
        tmux.bytes(edit.as_bytes());
    }
    let refused = portcullis_tests::util::wait_for(Duration::from_secs(10), || {
        (refusals(gate) > refusals_before).then_some(())
    });
    assert!(refused.is_some(), "{:#?}", gate.audit_commands());
    std::fs::write(&go, b"").unwrap();
    tmux.wait_for_text(&format!("held-{}", 20 + tag), Duration::from_secs(10));
    alive(tmux, 50 + tag);
    absent(&recalled);
    let ran: Vec<_> = gate
        .audit_commands()
        .into_iter()
        .filter(|e| e["outcome"] == "ran" && e["line"].as_str().unwrap().contains("touch"))
        .collect();
    assert!(ran.is_empty(), "{ran:#?}");
    std::fs::remove_file(&go).unwrap();
}

/// Lines refused, as unreadable or by a rule.
fn refusals(gate: &Gate) -> usize {
    gate.audit_commands()
        .into_iter()
        .filter(|e| e["outcome"] == "blocked" || e["outcome"] == "unreadable")
        .count()
}

#[test]
fn keys_typed_while_a_command_runs_are_refused_whatever_the_command_printed() {
    let gate = gate();
    let tmux = gate.shell();
    // A command that prints what looks like bash's prompt and keeps running: the screen
    // shows a prompt, but bash's readline is not the one reading.
    recall_while_held(&gate, &tmux, ("fake-prompt", 1), "root@vm:~# ", false);
    // One that prints a line of its own: the cursor waits on an empty row.
    recall_while_held(&gate, &tmux, ("line", 2), "working\\n", false);
    // The keys sent together with the command's Enter, before bash answered it.
    recall_while_held(&gate, &tmux, ("one-write", 3), "", true);
}

#[test]
fn a_paste_is_checked_line_by_line_and_nothing_after_a_blocked_line_runs() {
    let gate = gate();
    let tmux = gate.shell();
    let forbidden = gate.path("forbidden-5");
    let after = gate.path("after-5");
    tmux.paste(
        &format!("echo first-$((2+3))\ntouch {forbidden}\ntouch {after}\necho third-$((3+4))\n"),
        false,
    );
    tmux.wait_for_text("blocked by rule no-forbidden", Duration::from_secs(10));
    tmux.wait_for_text("first-5", Duration::from_secs(5));
    gate.wait_blocked(1);
    alive(&tmux, 6);
    absent(&forbidden);
    absent(&after);
    assert!(!tmux.screen().contains("third-7"), "{}", tmux.screen());

    // Bracketed (bash asks for it): the shell keeps the lines in one buffer, and none runs.
    let bracketed = gate.path("forbidden-6");
    let before = gate.path("before-6");
    tmux.paste(&format!("touch {before}\ntouch {bracketed}\n"), true);
    tmux.keys(&["Enter"]);
    tmux.wait_for_text(
        "portcullis: blocked by rule no-forbidden",
        Duration::from_secs(10),
    );
    gate.wait_blocked(2);
    alive(&tmux, 7);
    absent(&bracketed);
    absent(&before);
}

#[test]
fn full_screen_programs_and_no_echo_prompts_are_left_alone_and_secrets_redacted() {
    let gate = gate();
    let tmux = gate.shell();
    let notes = gate.path("notes.txt");
    let looks_forbidden = gate.path("forbidden-7");
    tmux.line(&format!("vi {notes}"));
    tmux.wait_for_text("[New]", Duration::from_secs(10));
    tmux.type_text("i");
    tmux.type_text(&format!("touch {looks_forbidden}"));
    tmux.keys(&["Enter"]);
    tmux.type_text("second line");
    tmux.keys(&["Escape"]);
    tmux.type_text(":wq");
    tmux.keys(&["Enter"]);
    alive(&tmux, 8);
    let written = std::fs::read_to_string(&notes).unwrap();
    assert!(
        written.contains(&format!("touch {looks_forbidden}")),
        "{written:?}"
    );
    assert!(
        gate.blocked_lines().is_empty(),
        "{:?}",
        gate.blocked_lines()
    );

    // A secret typed at a prompt that does not echo (like sudo or passwd). Echo is off
    // before the prompt shows (`read -s` may print its prompt first, and typing then would
    // race the terminal mode); the prompt is not in the command line, so seeing it means
    // the command has got that far.
    tmux.line(
        "stty -echo; printf '%sword: ' Pass; read secret; stty echo; echo; echo got-${#secret}-chars",
    );
    tmux.wait_for_text("Password:", Duration::from_secs(10));
    tmux.type_text("hunter2-sekrit");
    tmux.keys(&["Enter"]);
    tmux.wait_for_text("got-14-chars", Duration::from_secs(10));
    tmux.line("exit");
    tmux.wait_exit(Duration::from_secs(20));
    // The client may exit a moment before the bastion has sealed the recording.
    gate.world.bastion.wait_for_audit("session.end", |_| true);
    let cast = gate
        .world
        .bastion
        .recordings()
        .into_iter()
        .find(|p| std::fs::read_to_string(p).unwrap().contains("got-"))
        .unwrap();
    let text = std::fs::read_to_string(&cast).unwrap();
    assert!(!text.contains("hunter2"), "the secret is in the recording");
    assert!(text.contains("[redacted]"), "{text}");
    assert!(
        !gate
            .audit_commands()
            .iter()
            .any(|e| e["line"].as_str().unwrap_or_default().contains("hunter2")),
        "the secret is in the audit log"
    );
}

#[test]
fn a_sudo_password_never_lands_in_the_recording() {
    let gate = gate();
    let user = portcullis_tests::LocalUser::create();
    let _sudo = user.allow_sudo();
    let tmux = gate.shell();
    tmux.line(&format!("su - {}", user.name));
    tmux.wait_for_text(&format!("{}@", user.name), Duration::from_secs(10));
    prompt_back(&tmux);
    tmux.line("sudo -k; sudo sh -c 'echo sudo-ok-$((40+2))'");
    tmux.wait_for_text("[sudo] password for", Duration::from_secs(10));
    tmux.type_text(&user.password);
    tmux.keys(&["Enter"]);
    tmux.wait_for_text("sudo-ok-42", Duration::from_secs(10));
    tmux.line("exit");
    prompt_back(&tmux);
    let (_, text) = gate.exit_and_recording(&tmux);
    assert!(text.contains("sudo-ok-42"), "{text}");
    assert!(
        !text.contains(&user.password),
        "the sudo password is in the recording"
    );
    assert!(text.contains(r#""i","[redacted]""#), "{text}");
    let audit = std::fs::read_to_string(gate.world.bastion.data_dir().join("audit.jsonl")).unwrap();
    assert!(
        !audit.contains(&user.password),
        "the sudo password is in the audit log"
    );
    assert!(
        !gate.world.bastion.log().contains(&user.password),
        "the sudo password is in the log"
    );
}

#[test]
fn warn_asks_first_and_runs_only_on_yes() {
    let gate = gate();
    let tmux = gate.shell();
    let yes = gate.path("warned-1");
    tmux.line(&format!("touch {yes}"));
    tmux.wait_for_text(
        "portcullis: rule confirm-warned: warned markers need a second thought — run it anyway? [y/N]",
        Duration::from_secs(10),
    );
    tmux.type_text("y");
    tmux.wait_for_text("confirmed; running it", Duration::from_secs(5));
    alive(&tmux, 9);
    assert!(Path::new(&yes).exists(), "confirmed, so it ran");

    let no = gate.path("warned-2");
    tmux.line(&format!("touch {no}"));
    tmux.wait_for_text("run it anyway? [y/N]", Duration::from_secs(10));
    tmux.type_text("n");
    tmux.wait_for_text("portcullis: not run", Duration::from_secs(5));
    alive(&tmux, 10);
    absent(&no);
    let outcomes: Vec<String> = gate
        .audit_commands()
        .iter()
        .filter(|e| e["rule"] == "confirm-warned")
        .map(|e| e["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, vec!["confirmed", "ran", "declined"]);
}

#[test]
fn review_holds_the_line_until_a_second_person_approves() {
    let gate = gate();
    let tmux = gate.shell();
    let held = gate.path("reviewed-1");
    tmux.line(&format!("touch {held}"));
    tmux.wait_for_text(
        "request #1 waits for approval by secops… (Ctrl-C withdraws it)",
        Duration::from_secs(10),
    );
    absent(&held);
    let bob = gate.world.bastion.ssh(&gate.bob, "bob");
    let pending = bob.exec("requests");
    assert!(
        pending.stdout.contains(&format!("$ touch {held}")),
        "{pending:?}"
    );
    let own = gate.world.alice("alice").exec("approve 1");
    assert!(
        own.stderr.contains("nobody may approve their own request"),
        "{own:?}"
    );
    let approved = bob.exec("approve 1");
    assert_eq!(approved.code, Some(0), "{approved:?}");
    tmux.wait_for_text("request #1 approved; running it", Duration::from_secs(5));
    alive(&tmux, 11);
    assert!(Path::new(&held).exists(), "approved, so it ran");

    // Ctrl-C withdraws a held line.
    let withdrawn = gate.path("reviewed-2");
    tmux.line(&format!("touch {withdrawn}"));
    tmux.wait_for_text("request #2 waits for approval", Duration::from_secs(10));
    tmux.keys(&["C-c"]);
    tmux.wait_for_text(
        "request #2 was not approved; not run",
        Duration::from_secs(5),
    );
    alive(&tmux, 12);
    absent(&withdrawn);
}

#[test]
fn a_terminating_rule_ends_the_session() {
    let gate = gate();
    let tmux = gate.shell();
    let target = gate.path("terminate-1");
    tmux.line(&format!("touch {target}"));
    tmux.wait_for_text(
        "portcullis: session terminated by rule end-it: that ends your session",
        Duration::from_secs(10),
    );
    assert!(tmux.wait_exit(Duration::from_secs(10)).is_some());
    absent(&target);
    let end = gate.world.bastion.wait_for_audit("session.end", |_| true);
    assert_eq!(end["reason"], "command_rule");
    let alert = gate.world.bastion.wait_for_alert("command_terminated");
    assert_eq!(alert["severity"], "error");
    assert_eq!(alert["rule"], "end-it");
    assert_eq!(alert["session"], end["session"]);
}

#[test]
fn exec_commands_are_checked_before_they_reach_the_upstream() {
    let gate = gate();
    let target = gate.path("forbidden-8");
    let ran = gate
        .world
        .alice("alice+web01")
        .exec(&format!("touch {target}"));
    assert_eq!(ran.code, Some(126), "{ran:?}");
    assert_eq!(
        ran.stderr,
        "portcullis: blocked by rule no-forbidden: forbidden markers are not allowed\n"
    );
    absent(&target);
    let alert = gate.world.bastion.wait_for_alert("command_blocked");
    assert_eq!(alert["severity"], "warning");
    assert_eq!(alert["line"], format!("touch {target}"));

    let upload = gate.path("forbidden-upload");
    let local = gate.world.path("payload");
    std::fs::write(&local, "x").unwrap();
    let scp =
        gate.world
            .alice("alice+web01")
            .scp(local.to_str().unwrap(), &format!(":{upload}"), true);
    assert_ne!(scp.code, Some(0), "{scp:?}");
    absent(&upload);

    // warn and review need a terminal to ask on.
    let warned = gate.path("warned-3");
    let ran = gate
        .world
        .alice("alice+web01")
        .exec(&format!("touch {warned}"));
    assert_eq!(ran.code, Some(126));
    assert!(
        ran.stderr
            .contains("needs your confirmation first, which needs a terminal"),
        "{ran:?}"
    );
    absent(&warned);

    let ok = gate.world.alice("alice+web01").exec("echo fine-$((2*21))");
    assert_eq!(ok.stdout, "fine-42\n");
    let kinds: Vec<(String, String)> = gate
        .audit_commands()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("exec".into(), "blocked".into())),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("exec".into(), "ran".into())), "{kinds:?}");
}

#[test]
fn every_key_a_line_editor_runs_a_line_on_is_an_enter_to_the_gate() {
    let gate = gate();
    let tmux = gate.shell();
    // Ctrl-O: bash's operate-and-get-next runs the line without an Enter.
    let ctrl_o = gate.path("forbidden-ctrl-o");
    tmux.type_text(&format!("touch {ctrl_o}"));
    tmux.keys(&["C-o"]);
    gate.wait_blocked(1);
    alive(&tmux, 20);
    // An Enter inside an unfinished escape sequence: readline drops the sequence and takes
    // the CR as Enter.
    for (n, sequence) in [&b"\x1b[?"[..], b"\x1b[;"].into_iter().enumerate() {
        let target = gate.path(&format!("forbidden-escape-{n}"));
        tmux.type_text(&format!("touch {target}"));
        let mut bytes = sequence.to_vec();
        bytes.push(b'\r');
        tmux.bytes(&bytes);
        gate.wait_blocked(2 + n);
        alive(&tmux, 21 + n as u32);
        absent(&target);
    }
    absent(&ctrl_o);
}

#[test]
fn neither_a_lone_paste_start_nor_the_alternate_screen_turns_the_gate_off() {
    let gate = gate();
    let tmux = gate.shell();
    // The alternate screen with no full-screen program in it: bash goes on reading lines.
    tmux.line("printf '\\e[?1049h'");
    prompt_back(&tmux);
    let in_alternate = gate.path("forbidden-alternate");
    tmux.line(&format!("touch {in_alternate}"));
    gate.wait_blocked(1);
    alive(&tmux, 30);
    // Even after a command has run there.
    let after_command = gate.path("forbidden-alternate-2");
    tmux.line(&format!("touch {after_command}"));
    gate.wait_blocked(2);
    tmux.line("printf '\\e[?1049l'");
    alive(&tmux, 31);

    // A bracketed-paste start that never ends, typed at sh (which has no bracketed paste)
    // with a forbidden line after it: its Enter still ends a line the gate checks. sh
    // announces no line editor while bash said a command runs, so whoever reads these keys
    // may replay the escape: the line cannot be followed, and is refused.
    tmux.line("sh");
    prompt_back(&tmux);
    let after_paste_start = gate.path("forbidden-sh-paste");
    tmux.bytes(format!("\x1b[200~touch {after_paste_start}\r").as_bytes());
    tmux.wait_for_text("this line could not be read", Duration::from_secs(10));
    // sh has no line editor: a refused line is erased from the terminal's buffer and sh
    // waits on at the same prompt (it prints no new one). Keys typed right after a refusal
    // are dropped (they may be the rest of a paste) for a moment, and sh shows no prompt to
    // say when that is over: type until one lands.
    let in_sh = gate.path("forbidden-sh");
    let landed = (0..10).any(|_| {
        tmux.line(&format!("touch {in_sh}"));
        portcullis_tests::util::wait_for(Duration::from_secs(2), || {
            (gate.blocked_lines().len() >= 3).then_some(())
        })
        .is_some()
    });
    assert!(landed, "{:#?}", gate.audit_commands());
    let landed = (0..10).any(|_| {
        tmux.line("echo sh-alive-$((30+2))");
        portcullis_tests::util::wait_for(Duration::from_secs(2), || {
            tmux.screen().contains("sh-alive-32").then_some(())
        })
        .is_some()
    });
    assert!(landed, "{}", tmux.screen());
    tmux.line("exit");
    alive(&tmux, 33);
    for path in [&in_alternate, &after_command, &after_paste_start, &in_sh] {
        absent(path);
    }
}

#[test]
fn editing_the_line_in_an_editor_is_refused_where_rules_apply() {
    let gate = gate();
    let tmux = gate.shell();
    let target = gate.path("forbidden-editor");
    tmux.type_text(&format!("echo {target}"));
    tmux.keys(&["C-x", "C-e"]);
    tmux.wait_for_text(
        "editing the command line in an editor (Ctrl-X Ctrl-E) is not available here",
        Duration::from_secs(10),
    );
    alive(&tmux, 40);
    let refused = gate
        .audit_commands()
        .into_iter()
        .find(|e| e["outcome"] == "refused")
        .unwrap();
    assert_eq!(refused["line"], format!("echo {target}"));
}

#[test]
fn a_shell_without_a_terminal_is_no_way_around_the_rules() {
    use std::io::Write;
    let gate = gate();
    let target = gate.path("forbidden-stdin");
    // `ssh -T` and a script on stdin: a shell with no pty, reading lines nobody echoes.
    let mut child = gate
        .world
        .alice("alice+web01")
        .flags(&["-T"])
        .ssh_command(None)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The client may already be gone when the script is written: that is the refusal.
    let _ = writeln!(stdin, "touch {target}\necho stdin-ran");
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(126), "{stderr}");
    assert!(
        stderr.contains("a shell without a terminal is not allowed on web01")
            && stderr.contains("ssh -t"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&output.stdout).contains("stdin-ran"));
    absent(&target);
    let refused = gate
        .world
        .bastion
        .wait_for_audit("command", |e| e["kind"] == "shell");
    assert_eq!(refused["outcome"], "refused");
}

#[test]
fn a_shell_without_a_terminal_still_works_where_nothing_is_checked() {
    use std::io::Write;
    let world = World::start(|config, _, _| {
        config.raw("[recording]\ncommands = false\n");
    });
    let mut child = world
        .alice("alice+web01")
        .flags(&["-T"])
        .ssh_command(None)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "echo piped-$((6*7))").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "piped-42\n");
}

#[test]
fn lines_that_run_are_marked_in_the_recording_and_searchable() {
    let gate = gate();
    let tmux = gate.shell();
    tmux.line("ls / >/dev/null; echo listed-$((6*7))");
    tmux.wait_for_text("listed-42", Duration::from_secs(10));
    let forbidden = gate.path("forbidden-9");
    tmux.line(&format!("touch {forbidden}"));
    tmux.wait_for_text("blocked by rule", Duration::from_secs(10));
    prompt_back(&tmux);
    let (cast, text) = gate.exit_and_recording(&tmux);
    assert!(text.contains(r#""m","$ echo ready-$((40+2))"]"#), "{text}");
    assert!(
        text.contains(r#""m","$ ls / >/dev/null; echo listed-$((6*7))"]"#),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#""m","blocked by rule no-forbidden: touch {forbidden}"]"#
        )),
        "{text}"
    );
    let played = gate
        .world
        .bastion
        .cli(&["recordings", "verify", cast.to_str().unwrap()]);
    assert_eq!(played.code, Some(0), "{played:?}");

    let found = gate
        .world
        .bastion
        .cli(&["audit", "search", "--command", "^ls\\b"]);
    assert_eq!(found.code, Some(0), "{found:?}");
    assert!(found.stdout.contains("note-listings"), "{found:?}");
    assert!(found.stdout.contains("ls / >/dev/null"), "{found:?}");
    assert!(!found.stdout.contains("touch"), "{found:?}");
    let bad = gate
        .world
        .bastion
        .cli(&["audit", "search", "--command", "("]);
    assert_eq!(bad.code, Some(1));
    assert!(
        bad.stderr.contains("not a valid regular expression"),
        "{bad:?}"
    );

    let (status, body) = gate.world.bastion.api_request(
        READER,
        "GET",
        "/api/v1/commands?q=forbidden&user=alice",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let commands = body["commands"].as_array().unwrap();
    assert_eq!(commands.len(), 1, "{body}");
    assert_eq!(commands[0]["outcome"], "blocked");
}

#[test]
fn what_a_pattern_cannot_stop_is_documented_and_true() {
    // README, "What command control can and cannot stop": these get around a pattern on the
    // command line. The sentinel is created: the test proves the gap is real, harmlessly.
    let gate = gate();
    let tmux = gate.shell();
    let encoded = gate.path("forbidden-b64");
    tmux.line(&format!("$(echo dG91Y2g= | base64 -d) {encoded}"));
    let aliased = gate.path("forbidden-alias");
    tmux.line("alias t=touch");
    tmux.line(&format!("t {aliased}"));
    let quoted = gate.path("forbidden-quoted");
    tmux.line(&format!("to''uch {quoted}"));
    alive(&tmux, 13);
    for path in [&encoded, &aliased, &quoted] {
        assert!(
            Path::new(path).exists(),
            "{path}: expected the documented gap"
        );
    }
    // And the forms it does catch: extra spaces, sudo, after another command.
    for (n, line) in ["touch    {}", "sudo touch {}", "echo x; touch {}"]
        .iter()
        .enumerate()
    {
        let path = gate.path(&format!("forbidden-caught-{n}"));
        tmux.line(&line.replace("{}", &path));
        gate.wait_blocked(n + 1);
        alive(&tmux, 20 + n as u32);
        absent(&path);
    }
}

#[test]
fn a_line_typed_ahead_while_a_command_holds_the_alternate_screen_is_still_checked() {
    let gate = gate();
    let tmux = gate.shell();
    // A command that puts the terminal on the alternate screen and keeps the shell busy: what
    // is typed meanwhile waits in the terminal driver for the shell, not for a full-screen
    // program.
    let running = gate.path("alternate-running");
    tmux.line(&format!(
        "printf '\\e[?1049h'; touch {running}; sleep 3; printf '\\e[?1049l'"
    ));
    let started = portcullis_tests::util::wait_for(Duration::from_secs(10), || {
        Path::new(&running).exists().then_some(())
    });
    assert!(started.is_some(), "{}", tmux.screen());
    let typed_ahead = gate.path("forbidden-typed-ahead");
    tmux.line(&format!("touch {typed_ahead}"));
    gate.wait_blocked(1);
    // The shell comes back and finds the keys without their Enter: the line waits at the
    // prompt, and an Enter there is checked like any.
    tmux.wait_for_text(&format!("# touch {typed_ahead}"), Duration::from_secs(10));
    tmux.keys(&["Enter"]);
    gate.wait_blocked(2);
    alive(&tmux, 40);
    absent(&typed_ahead);
}
