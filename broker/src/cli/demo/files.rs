//! The files the demo writes: the bastion's config (with example command rules), the demo
//! sshd's config, and the `ssh_config` that makes connecting one short line.

use std::path::Path;

use super::account::{Account, AccountOrigin};

/// The logins the ssh_config knows (alice to the demo target, to the JIT target, to the menu).
pub const LOGINS: [&str; 3] = ["alice+demo", "alice+demo-jit", "alice"];

/// What the bastion's config is made of.
pub struct BastionConfig<'a> {
    /// Front door port.
    pub port: u16,
    /// Admin API port.
    pub admin_port: u16,
    /// The demo sshd's port.
    pub sshd_port: u16,
    /// alice's public key.
    pub alice_key: &'a str,
    /// The demo sshd's host key.
    pub sshd_host_key: &'a str,
    /// The account the target logs in as.
    pub login: &'a str,
    /// The vault entry of the target's key.
    pub credential: &'a str,
    /// argon2 hash of the admin token.
    pub token_hash: &'a str,
    /// How users connect (`{login}` to fill in), for the bastion's hints.
    pub connect_command: &'a str,
}

/// `portcullis.toml` for the demo. The command rules are the README's examples; the one to
/// try is `touch forbidden`, which is harmless even if it ran.
pub fn bastion_config(c: &BastionConfig<'_>) -> String {
    format!(
        r#"# Written by `portcullis demo` at each start; edit a copy for real use.
[server]
listen = "127.0.0.1:{port}"
data_dir = "data"
connect_command = {connect:?}

[recording]
input = true
on_failure = "terminate"

[[users]]
name = "alice"
public_keys = ["{alice}"]

[[targets]]
name = "demo"
address = "127.0.0.1:{sshd_port}"
login = "{login}"
credential = "{credential}"
host_key = "{host}"

# The same sshd under a second name, for just-in-time access: alice is only eligible for it,
# and connecting asks her for a reason and a duration first.
[[targets]]
name = "demo-jit"
address = "127.0.0.1:{sshd_port}"
login = "{login}"
credential = "{credential}"
host_key = "{host}"

[[roles]]
name = "demo-admins"
members = ["alice"]
targets = ["demo"]
access = "standing"
can_watch = true

[[roles]]
name = "demo-jit"
members = ["alice"]
targets = ["demo-jit"]
access = "eligible"
max_duration = "1h"
default_duration = "15m"
require_reason = true
approvals = 0

[access]
warn_before = ["5m", "1m"]

# Command control. Try `touch forbidden`: it is stopped before it runs.
[[command_rules]]
name = "no-wipe"
pattern = '^\s*(sudo\s+)?rm\s+-[a-zA-Z]*r[a-zA-Z]*f?\s+/(\s|$)'
action = "deny"
message = "wiping / is never allowed"

[[command_rules]]
name = "demo-forbidden"
pattern = '\btouch\s+\S*forbidden'
action = "deny"
message = "the demo's harmless example of a blocked command"

[[command_rules]]
name = "service-restart"
pattern = '^\s*(sudo\s+)?systemctl\s+(restart|stop)\s'
action = "warn"
message = "restarting a service interrupts its users"

# File rules: sftp and scp. Try `sftp -F portcullis-demo/ssh_config alice+demo`, then
# `put portcullis-demo/ssh_config forbidden.txt`: permission denied.
[[command_rules]]
name = "demo-forbidden-file"
kind = "sftp"
pattern = '^(write|remove|rename) .*/forbidden[^/]*$'
action = "deny"
message = "the demo's harmless example of a blocked file operation"

[[command_rules]]
name = "second-person"
pattern = '^\s*(sudo\s+)?crontab\s+-r\b'
action = "review"
approvers = ["demo-admins"]
message = "removing a crontab needs a second person (approve it in the console)"

[admin]
listen = "127.0.0.1:{admin_port}"

[[admin.tokens]]
name = "demo-operator"
hash = "{token_hash}"
scopes = ["read", "operate"]
"#,
        port = c.port,
        connect = c.connect_command,
        alice = c.alice_key,
        sshd_port = c.sshd_port,
        login = c.login,
        credential = c.credential,
        host = c.sshd_host_key,
        admin_port = c.admin_port,
        token_hash = c.token_hash,
    )
}

/// The demo sshd's config: only `account` may log in, with the vault's key only.
pub fn sshd_config(sshd_dir: &Path, account: &Account, cat: &Path) -> String {
    let dir = sshd_dir.display();
    // As root, sshd reads authorized_keys as the target account, which may not be able to
    // reach the demo directory (under /root, say): root hands the keys over instead.
    let keys = match account.origin {
        AccountOrigin::Created { .. } => format!(
            "AuthorizedKeysFile none\nAuthorizedKeysCommand {cat} {dir}/authorized_keys\nAuthorizedKeysCommandUser root\n",
            cat = cat.display()
        ),
        AccountOrigin::Invoker => format!("AuthorizedKeysFile {dir}/authorized_keys\n"),
    };
    format!(
        "ListenAddress 127.0.0.1\nHostKey {dir}/host_ed25519\n{keys}\
         PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
         PermitRootLogin no\nAllowUsers {login}\nUsePAM no\nStrictModes no\n\
         Subsystem sftp internal-sftp\nPidFile {dir}/sshd.pid\n",
        login = account.name
    )
}

/// `ssh_config` with one Host per demo login, so `ssh -F FILE alice+demo` is all it takes.
pub fn ssh_config(port: u16, dir: &Path) -> String {
    let dir = dir.display();
    let mut text = String::from(
        "# Written by `portcullis demo`: `ssh -F THIS_FILE alice+demo` reaches the demo target.\n",
    );
    for login in LOGINS {
        text.push_str(&format!("Host {login}\n    User {login}\n"));
    }
    text.push_str(&format!(
        "Host {}\n    HostName 127.0.0.1\n    Port {port}\n    IdentityFile {dir}/alice_ed25519\n    \
         IdentitiesOnly yes\n    UserKnownHostsFile {dir}/known_hosts\n    StrictHostKeyChecking yes\n",
        LOGINS.join(" ")
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        bastion_config(&BastionConfig {
            port: 2222,
            admin_port: 8443,
            sshd_port: 40000,
            alice_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3Jjjbm6g9JXNpzJQ4Ht7QwY3Zr1Ch4eQ8vZq3W7cZf alice",
            sshd_host_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB3Jjjbm6g9JXNpzJQ4Ht7QwY3Zr1Ch4eQ8vZq3W7cZf host",
            login: "portcullis-demo",
            credential: "demo",
            token_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$0000000000000000000000000000000000000000000",
            connect_command: "ssh -F portcullis-demo/ssh_config {login}",
        })
    }

    #[test]
    fn the_demo_config_is_valid_and_its_rules_stop_what_the_readme_says() {
        // Parsing validates too: a rule with a bad pattern or approver would fail here.
        let config = portcullis_config::from_toml_str(&sample()).unwrap();
        let rules = portcullis_policy::CommandRules::new(&config).unwrap();
        let action = |line: &str| {
            rules
                .evaluate("demo-admins", "demo", line)
                .map(|r| (r.name.clone(), r.action))
        };
        use portcullis_config::CommandAction::*;
        // The README's no-wipe rule, as the README writes it (checked as config: no
        // destructive line is written here, not even as a string to evaluate).
        let no_wipe = config
            .command_rules
            .iter()
            .find(|r| r.name == "no-wipe")
            .expect("the no-wipe rule");
        assert_eq!(no_wipe.action, Deny);
        assert!(
            include_str!("../../../../README.md")
                .contains(&format!("pattern = '{}'", no_wipe.pattern)),
            "{}",
            no_wipe.pattern
        );
        assert_eq!(
            action("touch forbidden"),
            Some(("demo-forbidden".into(), Deny))
        );
        assert_eq!(
            action("systemctl restart nginx"),
            Some(("service-restart".into(), Warn))
        );
        assert_eq!(action("crontab -r"), Some(("second-person".into(), Review)));
        assert_eq!(action("ls -la"), None);
        let file = |line: &str| {
            rules
                .evaluate_kind(
                    portcullis_config::RuleKind::Sftp,
                    "demo-admins",
                    "demo",
                    line,
                )
                .map(|r| r.name.clone())
        };
        assert_eq!(
            file("write /home/x/forbidden.txt").as_deref(),
            Some("demo-forbidden-file")
        );
        assert_eq!(file("read /home/x/forbidden.txt"), None);
        assert_eq!(file("write /home/x/notes.txt"), None);
    }

    #[test]
    fn the_ssh_config_names_every_login() {
        let text = ssh_config(2222, Path::new("/d"));
        for login in LOGINS {
            assert!(text.contains(&format!("Host {login}\n    User {login}\n")));
        }
        assert!(text.contains("Port 2222"));
        assert!(text.contains("IdentityFile /d/alice_ed25519"));
    }
}
