//! Semantic checks that serde cannot express: names, references between sections, shapes of
//! values. Every problem is collected, so one run of `check-config` shows them all.
//!
//! Checks that need SSH key parsing (public keys, host keys, certificates' CAs) live in the
//! broker, which reports them through the same [`Problem`] type.

use std::collections::HashSet;
use std::time::Duration;

use crate::conditions::{Hours, Network};
use crate::problem::{KeyPath, Problem};
use crate::schema::{
    Config, ForwardKind, ROTATE_AFTER, SSL_MODES, SYSLOG_FACILITIES, Scope, StateBackend,
    SyslogTransport, TargetAuth, UserKind,
};

/// Characters allowed in user, target and role names. `+` separates user from target in a
/// login, `@` separates login from host, so neither may appear in a name.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name.len() <= 64
}

/// A role target pattern is a glob when it contains `*` or `?`.
pub fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// `HOST:PORT` split in two (`[v6]:PORT` too); `None` unless both parts are there.
pub fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port = port.parse().ok().filter(|&p| p != 0)?;
    (!host.is_empty()).then_some((host, port))
}

/// A webhook's URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    /// Whether it is `https`.
    pub tls: bool,
    /// The host (a name or an address, without brackets).
    pub host: String,
    /// The port (443 or 80 unless given).
    pub port: u16,
    /// The path and query, at least `/`.
    pub path: String,
}

impl WebhookUrl {
    /// Parses `https://HOST[:PORT][/PATH]`; plain `http://` only to a loopback address, so a
    /// token or the events never cross a network in the clear.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("{url:?} is not an https:// URL"));
        };
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(format!(
                "{url:?} carries credentials: put a token in bearer_token_file instead"
            ));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if authority.ends_with(']') || !authority.contains(':') {
            (
                authority.trim_start_matches('[').trim_end_matches(']'),
                default_port,
            )
        } else {
            split_host_port(authority).ok_or_else(|| format!("{url:?} has a bad port"))?
        };
        if host.is_empty() || path.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!("{url:?} is not a URL"));
        }
        if !tls {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(format!(
                    "{url:?} is plain http: use https (http only to a loopback address)"
                ));
            }
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

/// The shortest TOTP key accepted, in bytes (RFC 4226 asks for at least 128 bits).
pub const MIN_TOTP_KEY_BYTES: usize = 16;

impl Config {
    /// Every semantic problem in this config; empty when it is usable.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let root = KeyPath::root();
        self.validate_server(&root.key("server"), &mut problems);
        let users = validate_names(
            self.users.iter().map(|u| u.name.as_str()),
            &root.key("users"),
            "user",
            &mut problems,
        );
        let targets = validate_names(
            self.targets.iter().map(|t| t.name.as_str()),
            &root.key("targets"),
            "target",
            &mut problems,
        );
        validate_names(
            self.roles.iter().map(|r| r.name.as_str()),
            &root.key("roles"),
            "role",
            &mut problems,
        );
        self.validate_users(&root.key("users"), &mut problems);
        self.validate_cas(&root.key("user_cas"), &mut problems);
        self.validate_targets(&root.key("targets"), &mut problems);
        self.validate_roles(&root.key("roles"), &users, &targets, &mut problems);
        self.validate_admin(&root.key("admin"), &mut problems);
        self.validate_command_rules(&root.key("command_rules"), &mut problems);
        self.validate_state(&root, &mut problems);
        self.validate_forwarders(&root.key("audit").key("forward"), &mut problems);
        problems
    }

    fn validate_forwarders(&self, path: &KeyPath, problems: &mut Vec<Problem>) {
        let mut names = HashSet::new();
        for (i, forward) in self.audit.forward.iter().enumerate() {
            let path = path.index(i);
            let mut problem = |key: &str, message: String| {
                problems.push(Problem::new(path.key(key), message));
            };
            if !is_valid_name(&forward.name) {
                problem(
                    "name",
                    format!(
                        "{:?} is not a valid name (letters, digits, '.', '_' and '-')",
                        forward.name
                    ),
                );
            } else if !names.insert(forward.name.as_str()) {
                problem("name", format!("{:?} names two forwarders", forward.name));
            }
            if forward.events.is_empty() || forward.events.iter().any(|e| e.trim().is_empty()) {
                problem(
                    "events",
                    "needs event names or globs (\"*\" for every event, \"alert\" for alerts)"
                        .into(),
                );
            }
            if forward.max_lag == 0 {
                problem("max_lag", "must be at least 1".into());
            }
            if forward.timeout.is_zero() {
                problem("timeout", "must be longer than zero".into());
            }
            if forward.client_cert_file.is_some() != forward.client_key_file.is_some() {
                problem(
                    "client_cert_file",
                    "client_cert_file and client_key_file go together".into(),
                );
            }
            let syslog_only = [("address", forward.address.is_some())];
            let webhook_only = [
                ("url", forward.url.is_some()),
                ("bearer_token_file", forward.bearer_token_file.is_some()),
                ("hmac_secret_file", forward.hmac_secret_file.is_some()),
            ];
            match forward.kind {
                None => problem("kind", "is required: \"syslog\" or \"webhook\"".into()),
                Some(ForwardKind::Syslog) => {
                    for (key, _) in webhook_only.iter().filter(|(_, set)| *set) {
                        problem(key, "is only used with kind = \"webhook\"".into());
                    }
                    match forward.address.as_deref() {
                        None => problem("address", "is required for syslog (HOST:PORT)".into()),
                        Some(address) if split_host_port(address).is_none() => {
                            problem("address", format!("{address:?} is not HOST:PORT"))
                        }
                        Some(_) => {}
                    }
                    if !SYSLOG_FACILITIES
                        .iter()
                        .any(|(name, _)| *name == forward.facility)
                    {
                        problem(
                            "facility",
                            format!(
                                "{:?} is not a syslog facility ({})",
                                forward.facility,
                                SYSLOG_FACILITIES
                                    .iter()
                                    .map(|(name, _)| *name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                    }
                    let tls_only = [
                        ("ca_file", forward.ca_file.is_some()),
                        ("client_cert_file", forward.client_cert_file.is_some()),
                    ];
                    if forward.transport != SyslogTransport::Tls {
                        for (key, _) in tls_only.iter().filter(|(_, set)| *set) {
                            problem(key, "is only used with transport = \"tls\"".into());
                        }
                    }
                }
                Some(ForwardKind::Webhook) => {
                    for (key, _) in syslog_only.iter().filter(|(_, set)| *set) {
                        problem(key, "is only used with kind = \"syslog\"".into());
                    }
                    match forward.url.as_deref().map(WebhookUrl::parse) {
                        None => problem(
                            "url",
                            "is required for a webhook (https://HOST/PATH)".into(),
                        ),
                        Some(Err(why)) => problem("url", why),
                        Some(Ok(_)) => {}
                    }
                    if forward.batch == 0 {
                        problem("batch", "must be at least 1".into());
                    }
                    if forward.bearer_token_file.is_some() && forward.hmac_secret_file.is_some() {
                        problem(
                            "hmac_secret_file",
                            "bearer_token_file and hmac_secret_file exclude each other: choose one"
                                .into(),
                        );
                    }
                }
            }
        }
    }

    fn validate_state(&self, root: &KeyPath, problems: &mut Vec<Problem>) {
        let state = &self.state;
        let path = root.key("state");
        if let Some(node) = &self.cluster.node
            && !is_valid_name(node)
        {
            problems.push(Problem::new(
                root.key("cluster").key("node"),
                format!("{node:?} is not a valid name (letters, digits, '.', '_' and '-')"),
            ));
        }
        if self.cluster.heartbeat.is_zero() {
            problems.push(Problem::new(
                root.key("cluster").key("heartbeat"),
                "must be longer than zero",
            ));
        } else if self.cluster.lease < self.cluster.heartbeat * 2 {
            problems.push(Problem::new(
                root.key("cluster").key("lease"),
                format!(
                    "must be at least two heartbeats ({}), or a node that is only slow is taken for lost",
                    humantime::format_duration(self.cluster.heartbeat * 2)
                ),
            ));
        }
        if self.cluster.database_grace > self.cluster.lease {
            problems.push(Problem::new(
                root.key("cluster").key("database_grace"),
                format!(
                    "is longer than lease ({}): the other nodes would record this node's sessions as ended (node lost) while they still run here",
                    humantime::format_duration(self.cluster.lease)
                ),
            ));
        }
        if let Some(mode) = &state.sslmode
            && !SSL_MODES.contains(&mode.as_str())
        {
            problems.push(Problem::new(
                path.key("sslmode"),
                format!("{mode:?} is not one of {}", SSL_MODES.join(", ")),
            ));
        }
        if state.client_cert_file.is_some() != state.client_key_file.is_some() {
            problems.push(Problem::new(
                path.key("client_cert_file"),
                "client_cert_file and client_key_file go together",
            ));
        }
        if state.backend == StateBackend::Sqlite {
            if state.url.is_some() {
                problems.push(Problem::new(
                    path.key("url"),
                    "is only used with backend = \"postgres\"",
                ));
            }
            return;
        }
        if state.pool_size < 2 {
            problems.push(Problem::new(path.key("pool_size"), "must be at least 2"));
        }
        match &state.url {
            None => problems.push(Problem::new(
                path.key("url"),
                "is required with backend = \"postgres\" (postgres://USER@HOST:PORT/DATABASE)",
            )),
            Some(url) if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) => {
                problems.push(Problem::new(path.key("url"), "must start with postgres://"));
            }
            Some(url) if url_has_password(url) => problems.push(Problem::new(
                path.key("url"),
                "holds a password: put it in password_file or PORTCULLIS_STATE_PASSWORD, not in the config",
            )),
            Some(_) => {}
        }
        if self.cluster.node.is_none() {
            problems.push(Problem::new(
                root.key("cluster").key("node"),
                "is required with backend = \"postgres\": a name unique to this node",
            ));
        }
    }

    fn validate_command_rules(&self, path: &KeyPath, problems: &mut Vec<Problem>) {
        validate_names(
            self.command_rules.iter().map(|r| r.name.as_str()),
            path,
            "command rule",
            problems,
        );
        let role_names: HashSet<&str> = self.roles.iter().map(|r| r.name.as_str()).collect();
        for (i, rule) in self.command_rules.iter().enumerate() {
            let at = path.index(i);
            if rule.pattern.is_empty() {
                problems.push(Problem::new(
                    at.key("pattern"),
                    "is missing: a regular expression on the command line",
                ));
            } else if let Err(error) = regex::Regex::new(&rule.pattern) {
                problems.push(Problem::new(
                    at.key("pattern"),
                    format!("is not a valid regular expression: {error}"),
                ));
            }
            for (key, patterns) in [("roles", &rule.roles), ("targets", &rule.targets)] {
                for (p, pattern) in patterns.iter().enumerate() {
                    let shaped = !pattern.is_empty()
                        && pattern
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.*?".contains(c));
                    if !shaped {
                        problems.push(Problem::new(
                            at.key(key).index(p),
                            format!(
                                "{pattern:?} is not a name or a glob of letters, digits, - _ . * ?"
                            ),
                        ));
                    }
                }
            }
            for (a, approver) in rule.approvers.iter().enumerate() {
                if !role_names.contains(approver.as_str()) {
                    problems.push(Problem::new(
                        at.key("approvers").index(a),
                        format!("no role named {approver:?}"),
                    ));
                }
            }
            if rule.kind == crate::schema::RuleKind::Sftp
                && matches!(
                    rule.action,
                    crate::schema::CommandAction::Warn | crate::schema::CommandAction::Review
                )
            {
                problems.push(Problem::new(
                    at.key("action"),
                    format!(
                        "{:?} cannot apply to file operations (it asks the user at a terminal, which an sftp session has none of): use allow, log, deny or terminate",
                        rule.action.as_str()
                    ),
                ));
            }
            if rule.action == crate::schema::CommandAction::Review && rule.approvers.is_empty() {
                let covered = |role: &str| {
                    rule.roles.is_empty()
                        || rule.roles.iter().any(|p| crate::glob::matches(p, role))
                };
                let without: Vec<&str> = self
                    .roles
                    .iter()
                    .filter(|r| covered(&r.name) && r.approvers.is_empty())
                    .map(|r| r.name.as_str())
                    .collect();
                if !without.is_empty() {
                    problems.push(Problem::new(
                        at.key("approvers"),
                        format!(
                            "is empty and roles {} have no approvers: nobody could approve a line this rule holds",
                            without.join(", ")
                        ),
                    ));
                }
            }
        }
    }

    fn validate_server(&self, path: &KeyPath, problems: &mut Vec<Problem>) {
        let server = &self.server;
        if server.max_connections == 0 {
            problems.push(Problem::new(
                path.key("max_connections"),
                "must be at least 1",
            ));
        }
        for (key, value) in [
            ("max_unauthenticated", server.max_unauthenticated),
            (
                "max_unauthenticated_per_source",
                server.max_unauthenticated_per_source,
            ),
        ] {
            if value == 0 {
                problems.push(Problem::new(path.key(key), "must be at least 1"));
            }
        }
        if server.max_unauthenticated_per_source > server.max_unauthenticated {
            problems.push(Problem::new(
                path.key("max_unauthenticated_per_source"),
                format!(
                    "is larger than max_unauthenticated ({}): one source could still take every slot",
                    server.max_unauthenticated
                ),
            ));
        }
        for (i, name) in server.accept_env.iter().enumerate() {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '*' | '?'))
            {
                problems.push(Problem::new(
                    path.key("accept_env").index(i),
                    format!(
                        "{name:?} is not a variable name or glob (letters, digits, _, * and ?)"
                    ),
                ));
            }
        }
        if let Some(command) = &server.connect_command
            && !command.contains("{login}")
        {
            problems.push(Problem::new(
                path.key("connect_command"),
                "must contain {login}, where the user's login (USER+TARGET) goes",
            ));
        }
        if server.auth_max_failures == 0 {
            problems.push(Problem::new(
                path.key("auth_max_failures"),
                "must be at least 1",
            ));
        }
        for (key, value) in [
            ("approval_wait", self.access.approval_wait),
            ("request_ttl", self.access.request_ttl),
        ] {
            if value == Duration::ZERO {
                problems.push(Problem::new(
                    KeyPath::root().key("access").key(key),
                    "must be longer than zero",
                ));
            }
        }
        for (key, value) in [
            ("login_grace_time", server.login_grace_time),
            ("upstream_connect_timeout", server.upstream_connect_timeout),
            ("auth_failure_window", server.auth_failure_window),
            ("keepalive_interval", server.keepalive_interval),
            ("banner_timeout", server.banner_timeout),
        ] {
            if value == Duration::ZERO {
                problems.push(Problem::new(path.key(key), "must be longer than zero"));
            }
        }
        if server.ciphers.is_empty() {
            problems.push(Problem::new(
                path.key("ciphers"),
                "must name at least one cipher",
            ));
        }
        for (i, cipher) in server.ciphers.iter().enumerate() {
            if !crate::schema::SUPPORTED_CIPHERS.contains(&cipher.as_str()) {
                problems.push(Problem::new(
                    path.key("ciphers").index(i),
                    format!(
                        "unknown cipher {cipher:?}; supported: {}",
                        crate::schema::SUPPORTED_CIPHERS.join(", ")
                    ),
                ));
            }
        }
        if server.data_dir.as_os_str().is_empty() {
            problems.push(Problem::new(path.key("data_dir"), "must not be empty"));
        }
    }

    fn validate_users(&self, path: &KeyPath, problems: &mut Vec<Problem>) {
        for (i, user) in self.users.iter().enumerate() {
            let at = path.index(i);
            for (k, key) in user.public_keys.iter().enumerate() {
                if key.trim().is_empty() {
                    problems.push(Problem::new(at.key("public_keys").index(k), "is empty"));
                }
            }
            if user.kind == UserKind::Service {
                for (key, set) in [
                    ("password_hash", user.password_hash.is_some()),
                    ("totp_secret", user.totp_secret.is_some()),
                ] {
                    if set {
                        problems.push(Problem::new(
                            at.key(key),
                            "a service has no password: it checks out a certificate through the \
                             API (a token with scope \"request\" and user = this service)",
                        ));
                    }
                }
            }
            if let Some(hash) = &user.password_hash
                && !hash.expose().starts_with("$argon2")
            {
                problems.push(Problem::new(
                    at.key("password_hash"),
                    "is not an argon2 hash (it must start with \"$argon2\"; `portcullis hash-password` prints one)",
                ));
            }
            if let Some(secret) = &user.totp_secret {
                match crate::base32::decode(secret.expose()) {
                    None => problems.push(Problem::new(
                        at.key("totp_secret"),
                        "is not base32 (letters A-Z and digits 2-7)",
                    )),
                    Some(key) if key.len() < MIN_TOTP_KEY_BYTES => problems.push(Problem::new(
                        at.key("totp_secret"),
                        format!(
                            "is too short: {} bytes, at least {MIN_TOTP_KEY_BYTES} needed",
                            key.len()
                        ),
                    )),
                    Some(_) => {}
                }
                if user.password_hash.is_none() {
                    problems.push(Problem::new(
                        at.key("totp_secret"),
                        "needs password_hash too: the code is asked for together with the password",
                    ));
                }
            }
        }
    }

    fn validate_cas(&self, path: &KeyPath, problems: &mut Vec<Problem>) {
        for (i, ca) in self.user_cas.iter().enumerate() {
            if ca.public_key.trim().is_empty() {
                problems.push(Problem::new(path.index(i).key("public_key"), "is missing"));
            }
        }
    }

    fn validate_targets(&self, path: &KeyPath, problems: &mut Vec<Problem>) {
        for (i, target) in self.targets.iter().enumerate() {
            let at = path.index(i);
            if target.address.trim().is_empty() {
                problems.push(Problem::new(
                    at.key("address"),
                    "is missing (host:port of the target's sshd)",
                ));
            } else if let Err(message) = check_address(&target.address) {
                problems.push(Problem::new(at.key("address"), message));
            }
            for (key, value, hint) in [
                ("login", &target.login, "the account to log in as upstream"),
                ("host_key", &target.host_key, "the target's pinned host key"),
            ] {
                if value.trim().is_empty() {
                    problems.push(Problem::new(at.key(key), format!("is missing ({hint})")));
                }
            }
            let has_credential = !target.credential.trim().is_empty();
            match target.auth {
                TargetAuth::Credential if !has_credential => problems.push(Problem::new(
                    at.key("credential"),
                    "is missing (the vault entry to log in with; or set auth = \"certificate\" \
                     to log in with a certificate from the bastion's CA)",
                )),
                TargetAuth::Certificate if has_credential => problems.push(Problem::new(
                    at.key("credential"),
                    "is not used with auth = \"certificate\" (each login gets its own \
                     certificate); remove one of the two",
                )),
                _ => {}
            }
            if target.auth == TargetAuth::Certificate {
                for (key, set) in [
                    ("rotate_every", target.rotate_every.is_some()),
                    ("rotate_after", !target.rotate_after.is_empty()),
                    ("authorized_keys", target.authorized_keys.is_some()),
                    ("password_command", target.password_command.is_some()),
                ] {
                    if set {
                        problems.push(Problem::new(
                            at.key(key),
                            "only means something with a vaulted credential (a certificate \
                             target has nothing to rotate)",
                        ));
                    }
                }
            }
            if target
                .rotate_every
                .is_some_and(|every| every < Duration::from_secs(60))
            {
                problems.push(Problem::new(
                    at.key("rotate_every"),
                    "must be at least a minute",
                ));
            }
            for (n, after) in target.rotate_after.iter().enumerate() {
                if !ROTATE_AFTER.contains(&after.as_str()) {
                    problems.push(Problem::new(
                        at.key("rotate_after").index(n),
                        format!("{after:?} is not one of {}", ROTATE_AFTER.join(", ")),
                    ));
                }
            }
        }
    }

    fn validate_roles(
        &self,
        path: &KeyPath,
        users: &HashSet<&str>,
        targets: &HashSet<&str>,
        problems: &mut Vec<Problem>,
    ) {
        let role_names: HashSet<&str> = self.roles.iter().map(|r| r.name.as_str()).collect();
        for (i, role) in self.roles.iter().enumerate() {
            let at = path.index(i);
            self.validate_activation(role, &at, &role_names, problems);
            for (m, member) in role.members.iter().enumerate() {
                if !users.contains(member.as_str()) {
                    problems.push(Problem::new(
                        at.key("members").index(m),
                        format!("no user named {member:?}"),
                    ));
                }
            }
            // A role without targets still matters if it watches or approves.
            let approves = self
                .roles
                .iter()
                .any(|other| other.approvers.contains(&role.name));
            if role.targets.is_empty() && !role.can_watch && !approves {
                problems.push(Problem::new(
                    at.key("targets"),
                    "is empty: the role grants nothing (it neither watches nor approves)",
                ));
            }
            for (t, pattern) in role.targets.iter().enumerate() {
                if pattern.is_empty() {
                    problems.push(Problem::new(at.key("targets").index(t), "is empty"));
                } else if !is_glob(pattern) && !targets.contains(pattern.as_str()) {
                    problems.push(Problem::new(
                        at.key("targets").index(t),
                        format!("no target named {pattern:?}"),
                    ));
                }
            }
        }
    }
}

impl Config {
    /// The just-in-time settings of one role.
    fn validate_activation(
        &self,
        role: &crate::schema::RoleConfig,
        at: &KeyPath,
        role_names: &HashSet<&str>,
        problems: &mut Vec<Problem>,
    ) {
        use crate::schema::Access;
        let eligible_only = [
            ("max_duration", role.max_duration.is_some()),
            ("default_duration", role.default_duration.is_some()),
            ("require_reason", role.require_reason),
            ("reason_pattern", role.reason_pattern.is_some()),
            ("approvals", role.approvals > 0),
            ("require_mfa", role.require_mfa),
            ("break_glass", role.break_glass),
            ("activation_hours", role.activation_hours.is_some()),
            ("timezone", role.timezone.is_some()),
            ("activation_networks", !role.activation_networks.is_empty()),
        ];
        for (a, approver) in role.approvers.iter().enumerate() {
            if !role_names.contains(approver.as_str()) {
                problems.push(Problem::new(
                    at.key("approvers").index(a),
                    format!("no role named {approver:?}"),
                ));
            }
        }
        if role.access == Access::Standing {
            for (key, set) in eligible_only {
                if set {
                    problems.push(Problem::new(
                        at.key(key),
                        "only means something with access = \"eligible\"",
                    ));
                }
            }
            return;
        }
        match (role.default_duration, role.max_duration) {
            (_, None) => problems.push(Problem::new(
                at.key("max_duration"),
                "is missing: an eligible role must bound its activations (e.g. \"4h\")",
            )),
            (Some(default), Some(max)) if default > max => problems.push(Problem::new(
                at.key("default_duration"),
                "is longer than max_duration",
            )),
            (_, Some(max)) if max.is_zero() => problems.push(Problem::new(
                at.key("max_duration"),
                "must be longer than zero",
            )),
            _ => {}
        }
        if let Some(hours) = &role.activation_hours
            && let Err(message) = Hours::parse(hours, role.timezone.as_deref())
        {
            let key = if message.starts_with("unknown time zone") {
                "timezone"
            } else {
                "activation_hours"
            };
            problems.push(Problem::new(at.key(key), message));
        } else if role.timezone.is_some() && role.activation_hours.is_none() {
            problems.push(Problem::new(
                at.key("timezone"),
                "only means something with activation_hours",
            ));
        }
        for (n, network) in role.activation_networks.iter().enumerate() {
            if let Err(message) = Network::parse(network) {
                problems.push(Problem::new(
                    at.key("activation_networks").index(n),
                    message,
                ));
            }
        }
        if let Some(pattern) = &role.reason_pattern
            && let Err(error) = regex::Regex::new(pattern)
        {
            problems.push(Problem::new(
                at.key("reason_pattern"),
                format!("is not a valid regular expression: {error}"),
            ));
        }
        if role.approvals > 0 && role.approvers.is_empty() && !role.break_glass {
            problems.push(Problem::new(
                at.key("approvers"),
                "is empty, but approvals are needed: nobody could approve",
            ));
        }
        if role.require_mfa {
            for (m, member) in role.members.iter().enumerate() {
                let has_totp = self
                    .users
                    .iter()
                    .any(|u| &u.name == member && u.totp_secret.is_some());
                if !has_totp {
                    problems.push(Problem::new(
                        at.key("members").index(m),
                        format!("{member:?} has no totp_secret, but this role requires a TOTP code to activate"),
                    ));
                }
            }
        }
    }

    fn validate_admin(&self, path: &KeyPath, problems: &mut Vec<Problem>) {
        let admin = &self.admin;
        if admin.tls_cert.is_some() != admin.tls_key.is_some() {
            problems.push(Problem::new(
                path.key(if admin.tls_cert.is_some() {
                    "tls_key"
                } else {
                    "tls_cert"
                }),
                "tls_cert and tls_key go together (or leave both out for a self-signed pair)",
            ));
        }
        validate_names(
            admin.tokens.iter().map(|t| t.name.as_str()),
            &path.key("tokens"),
            "token",
            problems,
        );
        for (i, token) in admin.tokens.iter().enumerate() {
            let at = path.key("tokens").index(i);
            match &token.hash {
                None => problems.push(Problem::new(
                    at.key("hash"),
                    "is missing (the token's argon2 hash; `portcullis hash-password` prints one)",
                )),
                Some(hash) if !hash.expose().starts_with("$argon2") => problems.push(Problem::new(
                    at.key("hash"),
                    "is not an argon2 hash (it must start with \"$argon2\")",
                )),
                Some(_) => {}
            }
            if token.scopes.is_empty() {
                problems.push(Problem::new(
                    at.key("scopes"),
                    "is empty: the token could do nothing",
                ));
            }
            let services: HashSet<&str> = self
                .users
                .iter()
                .filter(|u| u.kind == UserKind::Service)
                .map(|u| u.name.as_str())
                .collect();
            match (&token.user, token.scopes.contains(&Scope::Request)) {
                (None, true) => problems.push(Problem::new(
                    at.key("user"),
                    "is missing: a token with scope \"request\" acts as a service user",
                )),
                (Some(_), false) => problems.push(Problem::new(
                    at.key("user"),
                    "only means something with scope \"request\"",
                )),
                (Some(user), true) if !services.contains(user.as_str()) => {
                    problems.push(Problem::new(
                        at.key("user"),
                        format!("no user named {user:?} with kind = \"service\""),
                    ));
                }
                _ => {}
            }
        }
        if !admin.tokens.is_empty() && admin.listen.is_none() {
            problems.push(Problem::new(
                path.key("listen"),
                "is missing: tokens are configured but the API is not listening anywhere",
            ));
        }
    }
}

/// Checks names of one kind: valid characters, no duplicates. Returns the set of names.
fn validate_names<'a>(
    names: impl Iterator<Item = &'a str>,
    path: &KeyPath,
    kind: &str,
    problems: &mut Vec<Problem>,
) -> HashSet<&'a str> {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        let at = path.index(i).key("name");
        if name.is_empty() {
            problems.push(Problem::new(at, format!("every {kind} needs a name")));
        } else if !is_valid_name(name) {
            problems.push(Problem::new(
                at,
                format!("{name:?} is not a valid {kind} name (letters, digits, '_', '-', '.'; no '+' or '@')"),
            ));
        } else if !seen.insert(name) {
            problems.push(Problem::new(
                at,
                format!("another {kind} is already named {name:?}"),
            ));
        }
    }
    seen
}

/// A password in `postgres://user:password@host/db` or `?password=`.
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let in_authority = authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'));
    let in_query = url
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("password=")));
    in_authority || in_query
}

/// `host:port`, `host` (port 22), `[v6]:port` or `[v6]`.
fn check_address(address: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{address:?} has an unclosed '['"))?;
        (host, after.strip_prefix(':'))
    } else {
        match address.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => {
                return Err(format!(
                    "{address:?}: write IPv6 addresses in brackets, e.g. [::1]:22"
                ));
            }
            None => (address, None),
        }
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{address:?} has no valid host"));
    }
    match port.map(str::parse::<u16>) {
        None | Some(Ok(1..)) => Ok(()),
        Some(_) => Err(format!("{address:?} has no valid port (1-65535)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_valid_name("alice"));
        assert!(is_valid_name("web-01.prod"));
        assert!(!is_valid_name("alice+web01"));
        assert!(!is_valid_name("a@b"));
        assert!(!is_valid_name("-dash"));
        assert!(!is_valid_name(""));
    }

    #[test]
    fn addresses() {
        assert!(check_address("10.0.0.5:22").is_ok());
        assert!(check_address("web01.internal").is_ok());
        assert!(check_address("[::1]:2200").is_ok());
        assert!(check_address("[::1]").is_ok());
        assert!(check_address("::1").is_err());
        assert!(check_address("host:0").is_err());
        assert!(check_address("host:99999").is_err());
        assert!(check_address(":22").is_err());
    }
}
