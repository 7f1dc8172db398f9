//! The bastion's own command interface, for logins without a target: one command as
//! `ssh alice@bastion CMD`, or a prompt on an interactive login. Commands are split like a
//! shell would (`--reason "INC-42 disk full"`).
//!
//! `targets`, `whoami`, `request`, `requests`, `approve`, `deny`, `cancel`, `grants`,
//! `revoke`, `help` are answered here; `watch ID` streams, so the session layer runs it.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use portcullis_config::Access;
use portcullis_policy::{Request, RequestKind, RequestState};

use portcullis_policy::Reviewer;

use crate::access::AccessError;
use crate::access::jit::{self as jit_ops, Activated, Answers, Approved, left};
use crate::services::Services;
use crate::text::Shown;

/// What a command answers: text, and an exit status (non-zero: the text is an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Output, or the error message.
    pub text: String,
    /// Exit status.
    pub status: u32,
}

impl Reply {
    fn ok(text: String) -> Self {
        Self { text, status: 0 }
    }

    fn error(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            status: 1,
        }
    }

    /// Whether it reports an error.
    pub fn is_error(&self) -> bool {
        self.status != 0
    }
}

/// A command given to the bastion itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// What there is to type.
    Help,
    /// What I may reach, and my grants and requests.
    Targets,
    /// Who I am, how I logged in, my roles.
    WhoAmI,
    /// Activate a target I am eligible for.
    Request {
        /// The target.
        target: String,
        /// `--for`.
        duration: Option<Duration>,
        /// `--reason`.
        reason: String,
        /// `--code`: a TOTP code for roles with `require_mfa`.
        code: Option<String>,
    },
    /// Open requests I may review, and my own.
    Requests,
    /// Approve a request.
    Approve {
        /// The request.
        id: u64,
        /// `--comment`.
        comment: Option<String>,
    },
    /// Deny a request.
    Deny {
        /// The request.
        id: u64,
        /// `--reason`.
        reason: String,
    },
    /// Withdraw my request.
    Cancel {
        /// The request.
        id: u64,
    },
    /// My active grants.
    Grants,
    /// End one of my grants now.
    Revoke {
        /// The grant.
        id: u64,
        /// `--reason`.
        reason: Option<String>,
    },
    /// Follow a live session.
    Watch(String),
    /// Leave the prompt.
    Exit,
}

const USAGE: &str = "\
Commands:
  targets                                   what you may reach, your grants and requests
  request TARGET --for 1h --reason TEXT     activate a target you are eligible for
          [--code CODE]                     (with a code from your authenticator if asked)
  requests                                  requests waiting for you (and your own)
  approve ID [--comment TEXT]               approve a request
  deny ID --reason TEXT                     deny a request
  cancel ID                                 withdraw your request
  grants                                    your active grants
  revoke ID [--reason TEXT]                 end your grant now (and its sessions)
  watch ID                                  follow a live session (if your role allows)
  whoami                                    your account and roles
  help                                      this text
";

/// Parses a command line. The error is for the user.
pub fn parse(line: &str) -> Result<Command, String> {
    let words = split_words(line)?;
    let Some((name, rest)) = words.split_first() else {
        return Ok(Command::Help);
    };
    let mut args = Args::parse(name, rest)?;
    let command = match name.as_str() {
        "help" | "?" => Command::Help,
        "targets" | "ls" => Command::Targets,
        "whoami" => Command::WhoAmI,
        "requests" => Command::Requests,
        "grants" => Command::Grants,
        "exit" | "quit" | "logout" => Command::Exit,
        "watch" => Command::Watch(args.positional(name, "ID")?),
        "request" => Command::Request {
            target: args.positional(name, "TARGET")?,
            duration: args
                .option("for")
                .map(|text| {
                    humantime::parse_duration(&text)
                        .map_err(|e| format!("--for {text:?}: {e} (say 30m, 1h, 2h30m)"))
                })
                .transpose()?,
            reason: args.option("reason").unwrap_or_default(),
            code: args.option("code"),
        },
        "approve" => Command::Approve {
            id: id(&args.positional(name, "ID")?)?,
            comment: args.option("comment"),
        },
        "deny" => Command::Deny {
            id: id(&args.positional(name, "ID")?)?,
            reason: args
                .option("reason")
                .ok_or("deny needs --reason TEXT (the requester is told)")?,
        },
        "cancel" => Command::Cancel {
            id: id(&args.positional(name, "ID")?)?,
        },
        "revoke" => Command::Revoke {
            id: id(&args.positional(name, "ID")?)?,
            reason: args.option("reason"),
        },
        other => return Err(format!("unknown command {other:?}; type help for the list")),
    };
    args.finish(name)?;
    Ok(command)
}

/// Splits a command line into words the way a shell quotes them ('…', "…", backslash),
/// without a shell's other rules: `#17` is a word here, not a comment.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => words.extend(word.take()),
            '\'' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => {
                            return Err("cannot read that command line: a ' is not closed".into());
                        }
                    }
                }
            }
            '"' => {
                let current = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => current.push(c),
                            Some(c) => {
                                current.push('\\');
                                current.push(c);
                            }
                            None => break,
                        },
                        Some(c) => current.push(c),
                        None => {
                            return Err("cannot read that command line: a \" is not closed".into());
                        }
                    }
                }
            }
            '\\' => {
                if let Some(c) = chars.next() {
                    word.get_or_insert_with(String::new).push(c);
                }
            }
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    Ok(words)
}

fn id(text: &str) -> Result<u64, String> {
    text.trim_start_matches('#')
        .parse()
        .map_err(|_| format!("{text:?} is not a number (request and grant ids look like 17)"))
}

/// A command's words: positionals and `--name value` / `--name=value` options.
struct Args {
    positionals: Vec<String>,
    options: Vec<(String, String)>,
}

impl Args {
    const OPTIONS: [&'static str; 4] = ["for", "reason", "code", "comment"];

    fn parse(command: &str, words: &[String]) -> Result<Self, String> {
        let mut positionals = Vec::new();
        let mut options = Vec::new();
        let mut words = words.iter();
        while let Some(word) = words.next() {
            let Some(option) = word.strip_prefix("--") else {
                positionals.push(word.clone());
                continue;
            };
            let (name, inline) = match option.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (option, None),
            };
            if !Self::OPTIONS.contains(&name) {
                return Err(format!("{command}: unknown option --{name}"));
            }
            let value = match inline {
                Some(value) => value,
                None => words
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{command}: --{name} needs a value"))?,
            };
            options.push((name.to_owned(), value));
        }
        Ok(Self {
            positionals,
            options,
        })
    }

    fn positional(&mut self, command: &str, what: &str) -> Result<String, String> {
        if self.positionals.is_empty() {
            return Err(format!("{command} needs {what}; type help for the list"));
        }
        Ok(self.positionals.remove(0))
    }

    fn option(&mut self, name: &str) -> Option<String> {
        let index = self.options.iter().position(|(n, _)| n == name)?;
        Some(self.options.remove(index).1)
    }

    fn finish(self, command: &str) -> Result<(), String> {
        if let Some(extra) = self.positionals.first() {
            return Err(format!("{command}: unexpected {extra:?}"));
        }
        if let Some((name, _)) = self.options.first() {
            return Err(format!("{command}: --{name} does not apply here"));
        }
        Ok(())
    }
}

/// Where the user reached the bastion: for commands they are told to run.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The bastion's address as the client reached it.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `[server] connect_command`: how people reach the bastion, `{login}` to fill in.
    pub command: Option<String>,
    /// Where the client connects from (activation conditions are checked against it).
    pub client: std::net::IpAddr,
}

impl Origin {
    /// The command that logs in as `login`: the configured one, or `ssh -p PORT LOGIN@HOST`.
    pub fn ssh(&self, login: &str) -> String {
        match &self.command {
            Some(command) => command.replace("{login}", login),
            None => format!("ssh -p {} {login}@{}", self.port, self.host),
        }
    }
}

/// A listing, or the sentence saying why it could not be made.
fn listing(text: Result<String, AccessError>) -> Reply {
    match text {
        Ok(text) => Reply::ok(text),
        Err(error) => Reply::error(error.to_string()),
    }
}

/// Runs a command that needs no streaming (everything but `watch`).
pub async fn run(services: &Services, user: &str, origin: &Origin, command: &Command) -> Reply {
    let now = services.clock.now();
    match command {
        Command::Help => Reply::ok(format!("portcullis: you are {user}.\n{USAGE}")),
        Command::Targets => listing(targets(services, user, origin, now).await),
        Command::WhoAmI => Reply::ok(whoami(services, user)),
        Command::Request {
            target,
            duration,
            reason,
            code,
        } => {
            request(
                services,
                user,
                origin,
                target,
                Answers {
                    reason: reason.clone(),
                    duration: *duration,
                    code: code.clone(),
                },
            )
            .await
        }
        Command::Requests => listing(requests(services, user, now).await),
        Command::Approve { id, comment } => {
            match jit_ops::approve(services, *id, Reviewer::User(user), comment.as_deref()).await {
                Ok((request, Approved::Pending { have, need })) => Reply::ok(format!(
                    "approved request #{id} ({} for {}); {have} of {need} approvals so far\n",
                    request.user, request.target
                )),
                Ok((request, Approved::Command)) => Reply::ok(format!(
                    "approved request #{id}: {}'s command may run\n",
                    request.user
                )),
                Ok((request, Approved::Granted(grant))) => Reply::ok(format!(
                    "approved request #{id}: {} may reach {} until {} (grant #{})\n",
                    request.user,
                    request.target,
                    clock(grant.grant.expires_at),
                    grant.grant.id
                )),
                Err(error) => Reply::error(error.to_string()),
            }
        }
        Command::Deny { id, reason } => {
            match jit_ops::deny(services, *id, Reviewer::User(user), reason).await {
                Ok(request) => Reply::ok(format!(
                    "denied request #{id} ({} for {})\n",
                    request.user, request.target
                )),
                Err(error) => Reply::error(error.to_string()),
            }
        }
        Command::Cancel { id } => match jit_ops::cancel(services, *id, user).await {
            Ok(request) => Reply::ok(format!("withdrew request #{id} for {}\n", request.target)),
            Err(error) => Reply::error(error.to_string()),
        },
        Command::Grants => listing(grants(services, user, now).await),
        Command::Revoke { id, reason } => {
            let reason = reason.as_deref().unwrap_or("revoked by its holder");
            match jit_ops::revoke(services, *id, user, reason, Some(user)).await {
                Ok((record, ended)) => Reply::ok(format!(
                    "revoked grant #{id} for {}; {ended} live session(s) ended\n",
                    record.grant.target
                )),
                Err(error) => Reply::error(error.to_string()),
            }
        }
        Command::Watch(_) => Reply::error("watch streams; the session runs it"),
        Command::Exit => Reply::ok(String::new()),
    }
}

/// A wall-clock time for people, in UTC.
pub fn clock(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

async fn request(
    services: &Services,
    user: &str,
    origin: &Origin,
    target: &str,
    answers: Answers,
) -> Reply {
    let connect = origin.ssh(&format!("{user}+{target}"));
    match jit_ops::activate(
        services,
        user,
        target,
        &answers,
        "ssh-command",
        origin.client,
    )
    .await
    {
        Ok(Activated::Granted(record)) => {
            let mut text = format!(
                "access to {target} granted until {} ({}; grant #{})\n",
                clock(record.grant.expires_at),
                left(record.grant.expires_at, services.clock.now()),
                record.grant.id
            );
            if record.break_glass {
                text.push_str("This was a break-glass activation: security has been alerted and will review it.\n");
            }
            let _ = writeln!(text, "Connect with: {connect}");
            Reply::ok(text)
        }
        Ok(Activated::Requested(request)) => {
            let approvers = services
                .policy
                .eligibility(user, target)
                .map(|e| e.approvers.join(", "))
                .unwrap_or_default();
            Reply::ok(format!(
                "request #{} for {target} is waiting for approval by {approvers}.\n\
                 Once approved, connect with: {connect}\n\
                 (the {} counts from the approval; `requests` shows where it stands)\n",
                request.id,
                humantime::format_duration(request.duration)
            ))
        }
        Err(error) => Reply::error(error.to_string()),
    }
}

async fn targets(
    services: &Services,
    user: &str,
    origin: &Origin,
    now: SystemTime,
) -> Result<String, AccessError> {
    let grants = jit_ops::active_grants(services, user, now).await?;
    let reachable = services.policy.reachable(user, &grants, now);
    let pending = jit_ops::pending(services).await?;
    let mut text = format!("portcullis: you are {user}.\n");
    if reachable.is_empty() {
        text.push_str("No targets are open to you. Ask an administrator for a role.\n");
        return Ok(text);
    }
    text.push_str("Targets you may reach:\n");
    let width = reachable.iter().map(|r| r.target.len()).max().unwrap_or(0);
    let login_width = reachable
        .iter()
        .map(|r| login_of(services, &r.target).len())
        .max()
        .unwrap_or(0);
    let mut eligible = None;
    for entry in &reachable {
        let login = login_of(services, &entry.target);
        let state = match (entry.access, &entry.grant) {
            (Access::Standing, _) => format!("standing, role {}", entry.role),
            (Access::Eligible, Some(grant)) => format!(
                "eligible, role {}: ACTIVE, grant #{}, {} left",
                entry.role,
                grant.id,
                left(grant.expires_at, now)
            ),
            (Access::Eligible, None) => {
                eligible.get_or_insert(entry.target.clone());
                match pending.iter().find(|r| {
                    r.user == user && r.target == entry.target && r.kind == RequestKind::Access
                }) {
                    Some(request) => format!(
                        "eligible, role {}: request #{} waiting for approval",
                        entry.role, request.id
                    ),
                    None => format!("eligible, role {}: needs activation", entry.role),
                }
            }
        };
        let _ = writeln!(
            text,
            "  {:width$}  {login:login_width$}  ({state})",
            entry.target
        );
    }
    let example = &reachable[0].target;
    let _ = writeln!(
        text,
        "Connect with: {}",
        origin.ssh(&format!("{user}+{example}"))
    );
    if let Some(target) = eligible {
        let _ = writeln!(
            text,
            "Activate with: {} request {target} --for 1h --reason \"…\" (or just connect, on a terminal)",
            origin.ssh(user)
        );
    }
    Ok(text)
}

fn login_of(services: &Services, target: &str) -> String {
    services
        .directory
        .target(target)
        .map(|t| format!("{}@{}", t.login, t.address))
        .unwrap_or_default()
}

fn whoami(services: &Services, user: &str) -> String {
    let roles: Vec<String> = services
        .config
        .roles
        .iter()
        .filter(|role| role.members.iter().any(|m| m == user))
        .map(|role| {
            let access = match role.access {
                Access::Standing => "standing",
                Access::Eligible => "eligible",
            };
            format!("{} ({access}: {})", role.name, role.targets.join(", "))
        })
        .collect();
    let mut text = format!("you are {user}\n");
    if roles.is_empty() {
        text.push_str("roles: none\n");
    } else {
        let _ = writeln!(text, "roles: {}", roles.join("; "));
    }
    if services.policy.may_watch(user) {
        text.push_str("you may watch live sessions\n");
    }
    text
}

fn describe(request: &Request, now: SystemTime) -> String {
    let approvals = if request.approved_by.is_empty() {
        format!("0 of {} approvals", request.needed)
    } else {
        format!(
            "{} of {} approvals ({})",
            request.approved_by.len(),
            request.needed,
            request.approved_by.join(", ")
        )
    };
    match &request.kind {
        RequestKind::Access => format!(
            "#{:<4} {} → {} for {} (role {}), {approvals}, lapses in {}\n       reason: {}\n",
            request.id,
            request.user,
            request.target,
            humantime::format_duration(request.duration),
            request.role,
            left(request.expires_at, now),
            Shown(&request.reason)
        ),
        RequestKind::Command {
            line,
            rule,
            session,
        } => format!(
            "#{:<4} {} on {} wants to run a command held by rule {rule} (session {session}), lapses in {}\n       $ {}\n",
            request.id,
            request.user,
            request.target,
            left(request.expires_at, now),
            Shown(line),
        ),
    }
}

async fn requests(services: &Services, user: &str, now: SystemTime) -> Result<String, AccessError> {
    let pending = jit_ops::pending(services).await?;
    let (own, others): (Vec<&Request>, Vec<&Request>) =
        pending.iter().partition(|r| r.user == user);
    let reviewable: Vec<&Request> = others
        .into_iter()
        .filter(|r| services.policy.may_review(user, r, now).is_ok())
        .collect();
    let mut text = String::new();
    if reviewable.is_empty() {
        text.push_str("No requests are waiting for you.\n");
    } else {
        text.push_str("Waiting for your review (approve ID / deny ID --reason TEXT):\n");
        for request in reviewable {
            text.push_str(&describe(request, now));
        }
    }
    if !own.is_empty() {
        text.push_str("Your requests:\n");
        for request in own {
            text.push_str(&describe(request, now));
        }
    }
    Ok(text)
}

async fn grants(services: &Services, user: &str, now: SystemTime) -> Result<String, AccessError> {
    let mut grants = jit_ops::active_grants(services, user, now).await?;
    if grants.is_empty() {
        return Ok("You have no active grants.\n".to_owned());
    }
    grants.sort_by_key(|g| g.id);
    let mut text = String::from("Your active grants:\n");
    for grant in grants {
        let _ = writeln!(
            text,
            "#{:<4} {} (role {}) until {}, {} left",
            grant.id,
            grant.target,
            grant.role,
            clock(grant.expires_at),
            left(grant.expires_at, now)
        );
    }
    Ok(text)
}

/// Where a request stands, in words (for a login waiting on it).
pub fn state_in_words(id: u64, state: &RequestState) -> String {
    match state {
        RequestState::Pending => format!("request #{id} is waiting for approval"),
        RequestState::Approved { grant: Some(grant) } => {
            format!("request #{id} was approved (grant #{grant})")
        }
        RequestState::Approved { grant: None } => format!("request #{id} was approved"),
        RequestState::Denied { by, reason } => {
            format!(
                "request #{id} was denied by {}: {}",
                Shown(by),
                Shown(reason)
            )
        }
        RequestState::Expired => format!("request #{id} lapsed without a decision"),
        RequestState::Cancelled => format!("request #{id} was withdrawn"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_like_a_shell() {
        assert_eq!(parse(""), Ok(Command::Help));
        assert_eq!(parse(" targets "), Ok(Command::Targets));
        assert_eq!(parse("watch 01a2b3"), Ok(Command::Watch("01a2b3".into())));
        assert_eq!(
            parse("request db01 --for 2h --reason \"INC-42 disk full\""),
            Ok(Command::Request {
                target: "db01".into(),
                duration: Some(Duration::from_secs(7200)),
                reason: "INC-42 disk full".into(),
                code: None
            })
        );
        assert_eq!(
            parse("request db01 --reason=CHG-1 --code 123456"),
            Ok(Command::Request {
                target: "db01".into(),
                duration: None,
                reason: "CHG-1".into(),
                code: Some("123456".into())
            })
        );
        assert_eq!(
            parse("approve #17 --comment 'ok by me'"),
            Ok(Command::Approve {
                id: 17,
                comment: Some("ok by me".into())
            })
        );
        assert_eq!(
            parse("deny 3 --reason no"),
            Ok(Command::Deny {
                id: 3,
                reason: "no".into()
            })
        );
        assert_eq!(
            parse("revoke 4"),
            Ok(Command::Revoke {
                id: 4,
                reason: None
            })
        );
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        assert_eq!(
            parse("touch forbidden"),
            Err("unknown command \"touch\"; type help for the list".into())
        );
        assert!(parse("watch").unwrap_err().contains("needs ID"));
        assert!(parse("watch a b").unwrap_err().contains("unexpected \"b\""));
        assert!(parse("deny 3").unwrap_err().contains("--reason"));
        assert!(parse("approve x").unwrap_err().contains("not a number"));
        assert!(
            parse("request db01 --for soon")
                .unwrap_err()
                .contains("--for")
        );
        assert!(
            parse("request db01 --force")
                .unwrap_err()
                .contains("unknown option --force")
        );
        assert!(
            parse("request db01 --reason")
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse("grants --reason x")
                .unwrap_err()
                .contains("does not apply")
        );
        assert!(parse("request 'db01").unwrap_err().contains("cannot read"));
        assert!(
            parse("deny 1 --reason \"x")
                .unwrap_err()
                .contains("not closed")
        );
    }
}
