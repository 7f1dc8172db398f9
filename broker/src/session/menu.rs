//! The bastion's own command interface, for logins without a target (`ssh alice@bastion`):
//! `help` and `targets` (the same listing, with how to connect) and `watch ID` (for users
//! whose role allows watching; the session layer streams it).

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

/// A command given to the bastion itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuCommand {
    /// `help`, `targets`, or an interactive login: the listing.
    Help,
    /// `watch ID`: follow a live session.
    Watch(String),
    /// Anything else (the first word).
    Unknown(String),
}

/// Parses an exec command (None: an interactive login).
pub fn parse(command: Option<&str>) -> MenuCommand {
    let mut words = command.unwrap_or_default().split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (None | Some("help") | Some("targets"), None, None) => MenuCommand::Help,
        (Some("watch"), Some(id), None) => MenuCommand::Watch(id.to_owned()),
        (Some(word), _, _) => MenuCommand::Unknown(word.to_owned()),
        (None, _, _) => MenuCommand::Help,
    }
}

/// Answers a command that needs no streaming (help, or an unknown one).
pub fn respond(broker: &Broker, user: &str, command: &MenuCommand) -> Reply {
    let listing = targets(broker, user);
    match command {
        MenuCommand::Unknown(word) => Reply {
            text: format!(
                "portcullis: unknown command {word:?}; commands: help, targets, watch ID\n\n{listing}"
            ),
            status: 2,
        },
        MenuCommand::Help | MenuCommand::Watch(_) => Reply {
            text: listing,
            status: 0,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse(None), MenuCommand::Help);
        assert_eq!(parse(Some(" targets ")), MenuCommand::Help);
        assert_eq!(
            parse(Some("watch 01a2b3")),
            MenuCommand::Watch("01a2b3".into())
        );
        assert_eq!(parse(Some("watch")), MenuCommand::Unknown("watch".into()));
        assert_eq!(
            parse(Some("watch a b")),
            MenuCommand::Unknown("watch".into())
        );
        assert_eq!(parse(Some("rm -rf /")), MenuCommand::Unknown("rm".into()));
    }
}
