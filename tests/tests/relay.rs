//! An admin with nothing but OpenSSH reaches a target through portcullis: commands,
//! shells, file transfers, several channels at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use portcullis_tests::util::{random_file, sha256_file};
use portcullis_tests::{Tmux, World};

#[test]
fn exec_keeps_stdout_and_stderr_apart_and_returns_the_exit_code() {
    let world = World::start(|_, _, _| {});
    let ran = world
        .alice("alice+web01")
        .exec("echo to-stdout; echo to-stderr >&2; whoami; exit 7");
    assert_eq!(ran.stdout, "to-stdout\nroot\n", "{ran:?}");
    assert_eq!(ran.stderr, "to-stderr\n", "{ran:?}");
    assert_eq!(ran.code, Some(7));

    let ended = world
        .bastion
        .wait_for_audit("channel.end", |e| e["exit_status"] == 7);
    assert_eq!(ended["kind"], "exec");
    let started = world.bastion.audit_events("channel.start");
    assert_eq!(
        started[0]["command"],
        "echo to-stdout; echo to-stderr >&2; whoami; exit 7"
    );
}

#[test]
fn stdin_reaches_the_command_and_a_signal_death_is_reported() {
    let world = World::start(|_, _, _| {});
    let input = world.path("input.txt");
    std::fs::write(&input, "line one\nline two\n").unwrap();
    let output = world
        .alice("alice+web01")
        .ssh_command(Some("wc -l"))
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "2");

    // The client reports a remote process killed by a signal as exit status 255 with a message.
    let ran = world.alice("alice+web01").exec("kill -KILL $$");
    assert_eq!(ran.code, Some(255), "{ran:?}");
    let ended = world.bastion.wait_for_audit("channel.end", |e| {
        e["end"].as_str().is_some_and(|s| s.contains("signal"))
    });
    assert!(ended["end"].as_str().unwrap().contains("KILL"), "{ended}");
}

#[test]
fn an_interactive_shell_follows_a_resize() {
    let world = World::start(|_, _, _| {});
    let tmux = Tmux::start(&world.alice("alice+web01").shell_line(&["-tt"]), 100, 30);
    tmux.line("echo ready-$((6*7))");
    tmux.wait_for_text("ready-42", Duration::from_secs(20));
    tmux.line("stty size");
    tmux.wait_for_text("30 100", Duration::from_secs(10));
    tmux.resize(120, 40);
    // The new size reaches the remote shell through tmux, ssh and the bastion; ask until it
    // has (each try waits for its own answer).
    let resized = (1..=20).any(|attempt| {
        // `$((N+0))` prints N: the answer, not the typed line, is what is waited for.
        tmux.line(&format!("echo size-$(({attempt}+0)): $(stty size)"));
        let screen = tmux.wait_for_text(&format!("size-{attempt}: "), Duration::from_secs(10));
        screen.contains(&format!("size-{attempt}: 40 120"))
    });
    assert!(resized, "the resize never arrived: {}", tmux.screen());
    tmux.line("exit 3");
    assert_eq!(tmux.wait_exit(Duration::from_secs(20)), Some(3));

    let recording = world.bastion.wait_for_audit("channel.end", |_| true)["recording"]
        .as_str()
        .unwrap()
        .to_owned();
    let cast = std::fs::read_to_string(
        world
            .bastion
            .data_dir()
            .join("recordings")
            .join(format!("{recording}.cast")),
    )
    .unwrap();
    assert!(cast.contains(r#""r","120x40""#), "the resize is recorded");
    assert!(cast.contains("ready-42"));
    assert!(cast.contains(r#""width":100,"height":30"#));
}

#[test]
fn scp_and_sftp_move_20_megabytes_both_ways_intact() {
    let world = World::start(|_, _, _| {});
    let source = world.path("source.bin");
    random_file(&source, 20 * 1024 * 1024, 1);
    let expected = sha256_file(&source);
    let remote_dir = world.sshd.dir();
    let client = world.alice("alice+web01");

    // scp over the SFTP protocol (OpenSSH's default), up and down.
    let up = remote_dir.join("scp-up.bin");
    let ran = client.scp(
        source.to_str().unwrap(),
        &format!(":{}", up.display()),
        false,
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(sha256_file(&up), expected);
    let down = world.path("scp-down.bin");
    let ran = client.scp(&format!(":{}", up.display()), down.to_str().unwrap(), false);
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(sha256_file(&down), expected);

    // Legacy scp runs as an exec channel (`scp -t`/`scp -f`).
    let legacy_up = remote_dir.join("legacy-up.bin");
    let ran = client.scp(
        source.to_str().unwrap(),
        &format!(":{}", legacy_up.display()),
        true,
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(sha256_file(&legacy_up), expected);
    let legacy_down = world.path("legacy-down.bin");
    let ran = client.scp(
        &format!(":{}", legacy_up.display()),
        legacy_down.to_str().unwrap(),
        true,
    );
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(sha256_file(&legacy_down), expected);

    // sftp put and get.
    let sftp_up = remote_dir.join("sftp-up.bin");
    let sftp_down = world.path("sftp-down.bin");
    let ran = client.sftp(&format!(
        "put {} {}\nget {} {}\n",
        source.display(),
        sftp_up.display(),
        sftp_up.display(),
        sftp_down.display()
    ));
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(sha256_file(&sftp_up), expected);
    assert_eq!(sha256_file(&sftp_down), expected);

    let subsystems = world
        .bastion
        .audit_events("channel.start")
        .into_iter()
        .filter(|e| e["subsystem"] == "sftp")
        .count();
    assert_eq!(
        subsystems, 3,
        "two scp runs and one sftp run use the sftp subsystem"
    );
}

#[test]
fn rsync_works_through_the_bastion() {
    let world = World::start(|_, _, _| {});
    let source = world.path("tree.bin");
    random_file(&source, 3 * 1024 * 1024, 2);
    let target = world.sshd.dir().join("rsynced.bin");
    let ran = world
        .alice("alice+web01")
        .rsync(source.to_str().unwrap(), &format!(":{}", target.display()));
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert_eq!(sha256_file(&target), sha256_file(&source));
}

#[test]
fn two_channels_share_one_connection() {
    let world = World::start(|_, _, _| {});
    let control = world.path("control.sock");
    let client = world
        .alice("alice+web01")
        .option(&format!("ControlPath={}", control.display()));
    // A master connection in the background, then two commands over it at the same time.
    let mut master = client
        .clone()
        .option("ControlMaster=yes")
        .flags(&["-N"])
        .ssh_command(None)
        .spawn()
        .unwrap();
    assert!(
        portcullis_tests::util::wait_for(Duration::from_secs(20), || control
            .exists()
            .then_some(()))
        .is_some(),
        "the master connection never came up"
    );
    let first = client
        .clone()
        .option("ControlMaster=no")
        .ssh_command(Some("sleep 1; echo first"));
    let second = client
        .clone()
        .option("ControlMaster=no")
        .ssh_command(Some("echo second"));
    let (mut first, mut second) = (first, second);
    let first = std::thread::spawn(move || first.output().unwrap());
    let second = std::thread::spawn(move || second.output().unwrap());
    assert_eq!(
        String::from_utf8_lossy(&first.join().unwrap().stdout),
        "first\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&second.join().unwrap().stdout),
        "second\n"
    );
    let _ = master.kill();
    let _ = master.wait();

    let starts = world.bastion.audit_events("channel.start");
    assert_eq!(starts.len(), 2);
    assert_eq!(
        starts[0]["session"], starts[1]["session"],
        "one SSH connection, two channels"
    );
    assert_ne!(
        starts[0]["recording"], starts[1]["recording"],
        "one recording per channel"
    );
    assert_eq!(world.bastion.audit_events("upstream.connected").len(), 1);
}

#[test]
fn port_agent_and_x11_forwarding_are_refused() {
    let world = World::start(|_, _, _| {});
    let run = |command: &mut std::process::Command| command.output().unwrap();

    // Remote forwarding: the tcpip-forward request is refused, so the client gives up.
    let ran = run(&mut world
        .alice("alice+web01")
        .option("ExitOnForwardFailure=yes")
        .flags(&["-R", "0:127.0.0.1:22"])
        .ssh_command(Some("true")));
    assert_ne!(ran.status.code(), Some(0), "a remote forward must fail");

    // ssh -W opens a direct-tcpip channel at once (as -L does per connection): refused.
    let ran = run(&mut world
        .alice("alice+web01")
        .flags(&["-W", &world.sshd.address()])
        .ssh_command(None));
    assert_ne!(ran.status.code(), Some(0));

    // Agent and X11 requests are refused; the session itself goes on without them.
    let agent_socket = world.path("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&agent_socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    portcullis_tests::util::wait_for(Duration::from_secs(10), || {
        agent_socket.exists().then_some(())
    })
    .expect("ssh-agent socket");
    let ran = run(world
        .alice("alice+web01")
        .option("ForwardAgent=yes")
        .option("ForwardX11=yes")
        .ssh_command(Some(
            "echo agent=${SSH_AUTH_SOCK:-none} display=${DISPLAY:-none}",
        ))
        .env("DISPLAY", ":0")
        .env("SSH_AUTH_SOCK", &agent_socket));
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "agent=none display=none\n",
        "{ran:?}"
    );

    let kinds: Vec<String> = world
        .bastion
        .audit_events("forwarding.denied")
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    for kind in ["tcpip-forward", "direct-tcpip", "agent", "x11"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} not audited: {kinds:?}"
        );
    }
}

#[test]
fn bulk_data_both_ways_at_once_through_cat() {
    // stdin streams up while the same bytes stream back down: both directions busy at once.
    let world = World::start(|_, _, _| {});
    let source = world.path("both-ways.bin");
    random_file(&source, 30 * 1024 * 1024, 3);
    let echoed = world.path("echoed.bin");
    let status = world
        .alice("alice+web01")
        .ssh_command(Some("cat"))
        .stdin(std::fs::File::open(&source).unwrap())
        .stdout(std::fs::File::create(&echoed).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(sha256_file(&echoed), sha256_file(&source));
}

#[test]
fn aes_gcm_is_offered_by_default_and_other_ciphers_on_request() {
    let world = World::start(|_, _, _| {});
    let ran = world
        .alice("alice+web01")
        .flags(&["-c", "aes128-gcm@openssh.com"])
        .exec("echo gcm");
    assert_eq!(ran.stdout, "gcm\n", "{ran:?}");
    let ran = world
        .alice("alice+web01")
        .flags(&["-c", "chacha20-poly1305@openssh.com"])
        .exec("true");
    assert_eq!(
        ran.code,
        Some(255),
        "chacha20 is not offered by default: {ran:?}"
    );

    let world = World::start(|config, _, _| {
        config.server("ciphers = [\"chacha20-poly1305@openssh.com\", \"aes256-gcm@openssh.com\"]");
    });
    let ran = world
        .alice("alice+web01")
        .flags(&["-c", "chacha20-poly1305@openssh.com"])
        .exec("echo chacha");
    assert_eq!(ran.stdout, "chacha\n", "{ran:?}");
}
