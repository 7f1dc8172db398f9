//! What a custom client can send that OpenSSH never would: NUL bytes and control characters
//! in a command, environment variables meant to hijack the upstream shell, a 65535×65535
//! terminal, floods of window changes and channels. Each gets a clear refusal or is bounded,
//! and never takes the bastion or another session with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_tests::World;
use portcullis_tests::raw::{self, runtime};

const RULES: &str = r#"
[[command_rules]]
name = "no-sentinel"
pattern = '^\s*touch\s+\S*forbidden-nul(\s|$)'
action = "deny"
"#;

#[test]
fn a_nul_byte_in_a_command_is_refused_not_cut_and_run() {
    let world = World::start(|config, _, _| {
        config.raw(RULES);
    });
    let sentinel = world.path("forbidden-nul");
    let runtime = runtime();
    runtime.block_on(async {
        let mut ssh = world.bastion.raw().await;
        assert!(ssh.login_key("alice+web01", &world.alice).await);
        // sshd would cut at the NUL and run `touch …forbidden-nul`, which the anchored
        // pattern does not see with the NUL still attached.
        let mut command = format!("touch {}", sentinel.display()).into_bytes();
        command.push(0);
        let out = raw::exec(&ssh, &command).await;
        assert_eq!(out.status, Some(126), "{out:?}");
        let stderr = out.stderr_text();
        assert!(
            stderr.contains("not run: it contains the control character \\x00"),
            "{stderr}"
        );
        // An escape sequence and invalid UTF-8 are refused the same way.
        let out = raw::exec(&ssh, b"echo \x1b[2Jcleared").await;
        assert_eq!(out.status, Some(126), "{out:?}");
        let out = raw::exec(&ssh, b"echo \xff\xfe").await;
        assert_eq!(out.status, Some(126), "{out:?}");
        assert!(out.stderr_text().contains("UTF-8"), "{out:?}");
        // The connection is fine for a proper command.
        let out = raw::exec(&ssh, b"echo still-$((40+2))").await;
        assert_eq!(out.stdout_text(), "still-42\n", "{out:?}");
    });
    assert!(!sentinel.exists(), "the command ran cut at its NUL");
    let refused: Vec<_> = world
        .bastion
        .audit_events("command")
        .into_iter()
        .filter(|e| e["outcome"] == "refused")
        .collect();
    assert_eq!(refused.len(), 3, "{refused:#?}");
    assert!(
        refused[0]["line"]
            .as_str()
            .unwrap()
            .ends_with("forbidden-nul\u{0}")
    );
}

#[test]
fn only_accepted_environment_variables_reach_the_upstream() {
    // The test sshd accepts all of these (AcceptEnv): only the bastion stands in between.
    let world = World::start(|config, _, _| {
        config.server("accept_env = [\"LANG\", \"LC_*\", \"PORTCULLIS_TEST_*\"]");
    });
    let ran = world
        .alice("alice+web01")
        .option("SetEnv=LD_PRELOAD=/tmp/evil.so BASH_ENV=/tmp/evil LC_TIME=C.UTF-8 PORTCULLIS_TEST_OK=yes")
        .exec("echo pre=${LD_PRELOAD:-unset} bash_env=${BASH_ENV:-unset} lc=${LC_TIME:-unset} ok=${PORTCULLIS_TEST_OK:-unset}");
    assert_eq!(
        ran.stdout, "pre=unset bash_env=unset lc=C.UTF-8 ok=yes\n",
        "{ran:?}"
    );
}

#[test]
fn a_huge_terminal_and_a_resize_flood_cost_a_few_mb_and_harm_no_other_session() {
    use std::time::Duration;
    let world = World::start(|config, _, _| {
        config.raw(RULES);
    });
    let pid = world.bastion.pid().unwrap();
    let runtime = runtime();
    runtime.block_on(async {
        // Another user's session, already running: it must come through unharmed.
        let mut other = world.bastion.raw().await;
        assert!(other.login_key("alice+web01", &world.alice).await);
        let mut bystander = raw::shell(&other, 80, 24).await;
        bystander.data_bytes(&b"echo warm-$((1+1))\r"[..]).await.unwrap();
        assert!(raw::read_until(&mut bystander, "warm-2", Duration::from_secs(20)).await);
        let (before, _) = raw::memory_kib(pid);

        let mut attacker = world.bastion.raw().await;
        assert!(attacker.login_key("alice+web01", &world.alice).await);
        let mut huge = raw::shell(&attacker, 65535, 65535).await;
        for i in 0..5000u32 {
            huge.window_change(65535 - i % 7, 65535 - i % 11, 0, 0)
                .await
                .unwrap();
        }
        // The gate reads lines on the clamped screen: a command still runs and is checked.
        huge.data_bytes(&b"echo huge-$((20+22))\r"[..]).await.unwrap();
        assert!(raw::read_until(&mut huge, "huge-42", Duration::from_secs(30)).await);
        let (after, _) = raw::memory_kib(pid);
        let grown = after.saturating_sub(before);
        eprintln!("bastion memory: {before} KiB before, {after} KiB after one huge terminal and 5000 resizes");
        assert!(
            grown < 8 * 1024,
            "the bastion grew by {grown} KiB for one huge terminal"
        );
        bystander
            .data_bytes(&b"echo still-$((2+2))\r"[..])
            .await
            .unwrap();
        assert!(raw::read_until(&mut bystander, "still-4", Duration::from_secs(20)).await);
        drop(other);
        drop(attacker);
    });
    assert!(world.bastion.log().contains("listening on"));
    let mut bastion = world.bastion;
    assert!(bastion.is_running(), "the bastion died");
}

#[test]
fn a_connection_runs_any_number_of_commands_but_holds_ten_channels_at_most() {
    let world = World::start(|_, _, _| {});
    let runtime = runtime();
    runtime.block_on(async {
        let mut ssh = world.bastion.raw().await;
        assert!(ssh.login_key("alice+web01", &world.alice).await);
        // One after another: closed channels give their place back.
        for n in 0..25 {
            let out = raw::exec(&ssh, format!("echo n-{n}").as_bytes()).await;
            assert_eq!(out.stdout_text(), format!("n-{n}\n"), "{out:?}");
        }
        // Held open at once: the eleventh is refused.
        let mut held = Vec::new();
        for _ in 0..10 {
            held.push(ssh.session().await);
        }
        let refused = ssh.handle.channel_open_session().await;
        assert!(
            matches!(
                refused,
                Err(russh::Error::ChannelOpenFailure(
                    russh::ChannelOpenFailure::ResourceShortage
                ))
            ),
            "{:?}",
            refused.err()
        );
        drop(held);
    });
}
