//! The bastion's own command interface, for logins without a target (`ssh alice@bastion`).
//! For now it answers `help` and `targets` (the same listing) and says how to connect.

use portcullis_config::Access;

use crate::server::Broker;

/// What the menu answers: text for stdout, and an exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Output.
    pub text: String,
    /// Exit status.
    pub status: u32,
}

/// Answers `command` (None: an interactive login) for `user`.
pub fn respond(broker: &Broker, user: &str, command: Option<&str>) -> Reply {
    let listing = targets(broker, user);
    match command.map(str::trim) {
        None | Some("") | Some("help") | Some("targets") => Reply {
            text: listing,
            status: 0,
        },
        Some(other) => Reply {
            text: format!(
                "portcullis: unknown command {:?}; commands: help, targets\n\n{listing}",
                other.split_whitespace().next().unwrap_or(other)
            ),
            status: 2,
        },
    }
}

fn targets(broker: &Broker, user: &str) -> String {
    let reachable = broker.policy.reachable(user);
    let listen = broker
        .listening
        .get()
        .copied()
        .unwrap_or(broker.config.server.listen);
    let mut text = format!("portcullis: you are {user}.\n");
    if reachable.is_empty() {
        text.push_str("No targets are open to you. Ask an administrator for a role.\n");
        return text;
    }
    text.push_str("Targets you may reach:\n");
    let width = reachable.iter().map(|r| r.target.len()).max().unwrap_or(0);
    for entry in &reachable {
        let login = broker
            .directory
            .target(&entry.target)
            .map(|t| format!("{}@{}", t.login, t.address))
            .unwrap_or_default();
        let access = match entry.access {
            Access::Standing => "standing",
        };
        text.push_str(&format!(
            "  {:width$}  {login}  ({access}, role {})\n",
            entry.target, entry.role
        ));
    }
    let example = &reachable[0].target;
    text.push_str(&format!(
        "Connect with: ssh -p {} {user}+{example}@<bastion>\n",
        listen.port()
    ));
    text
}
