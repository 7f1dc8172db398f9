//! The TOML schema. Field names are a contract: the README documents them and operators'
//! files depend on them.
//!
//! Every struct takes `#[serde(default)]` so a file only says what differs from the defaults.
//! Unknown keys are errors, but they are found with `serde_ignored` (see `load.rs`) rather than
//! `deny_unknown_fields`, so one run reports every unknown key instead of stopping at the first.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::secret::Secret;

/// A whole portcullis configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The SSH front door and where state lives.
    pub server: ServerConfig,
    /// How sessions are recorded.
    pub recording: RecordingConfig,
    /// Where the vault's master key comes from.
    pub vault: VaultConfig,
    /// The admin API (HTTPS) that the CLI and the web console use.
    pub admin: AdminConfig,
    /// Just-in-time access: how long requests and logins wait, when sessions are warned.
    pub access: AccessConfig,
    /// People who may log in.
    pub users: Vec<UserConfig>,
    /// Certificate authorities whose OpenSSH user certificates are trusted.
    pub user_cas: Vec<UserCaConfig>,
    /// Servers reachable through the bastion.
    pub targets: Vec<TargetConfig>,
    /// Who may reach which targets.
    pub roles: Vec<RoleConfig>,
    /// What may be typed or run there: evaluated in order, the first match decides.
    pub command_rules: Vec<CommandRuleConfig>,
    /// Where locks, grants, throttles and the session index live.
    pub state: StateConfig,
    /// This node among several sharing one PostgreSQL state store.
    pub cluster: ClusterConfig,
    /// Where audit events go besides `<data_dir>/audit.jsonl`.
    pub audit: AuditConfig,
}

/// `[audit]`: copies of the audit log's events for a SIEM and for the people on call.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuditConfig {
    /// `[[audit.forward]]`: each follows the audit log on its own, from its own position.
    pub forward: Vec<ForwardConfig>,
}

/// One `[[audit.forward]]`: a receiver of audit events and which events it takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ForwardConfig {
    /// Names the forwarder in logs, metrics and its position file; unique.
    pub name: String,
    /// `syslog` or `webhook`.
    pub kind: Option<ForwardKind>,
    /// Event names (globs) this forwarder carries: `["*"]` (the default) for all,
    /// `["alert"]` for alerts only, `["session.*", "command"]`.
    pub events: Vec<String>,
    /// Events not yet delivered past which an `alert` says the forwarder is behind.
    pub max_lag: u64,
    /// How long one delivery (connect, TLS, send, answer) may take before it counts as
    /// failed and is retried.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// syslog: `HOST:PORT` of the receiver (6514 for TLS, 514 for TCP or UDP).
    pub address: Option<String>,
    /// syslog: `tls` (RFC 5425, the default), `tcp` (octet-counted, RFC 6587) or `udp`
    /// (RFC 5426; one datagram per event, no delivery can be confirmed).
    pub transport: SyslogTransport,
    /// syslog: the facility of every message (`authpriv`, `auth`, `local0`..`local7`, ...).
    pub facility: String,
    /// webhook: `https://HOST[:PORT]/PATH` the events are POSTed to (plain `http://` only to a
    /// loopback address).
    pub url: Option<String>,
    /// webhook: most events per POST.
    pub batch: usize,
    /// webhook: file holding a token sent as `Authorization: Bearer TOKEN`.
    pub bearer_token_file: Option<PathBuf>,
    /// webhook: file holding a secret (at least 32 characters) the body is signed with:
    /// `X-Portcullis-Signature: t=UNIX,sha256=HEX` over `UNIX.BODY` (HMAC-SHA256).
    pub hmac_secret_file: Option<PathBuf>,
    /// PEM CA certificate(s) the receiver's certificate must chain to. Default: the
    /// system's bundle (`/etc/ssl/certs/ca-certificates.crt`).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for receivers that ask for one; with `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            kind: None,
            events: vec!["*".into()],
            max_lag: 10_000,
            timeout: Duration::from_secs(10),
            address: None,
            transport: SyslogTransport::Tls,
            facility: "authpriv".into(),
            url: None,
            batch: 100,
            bearer_token_file: None,
            hmac_secret_file: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
        }
    }
}

/// What a forwarder speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardKind {
    /// RFC 5424 syslog.
    Syslog,
    /// JSON POSTed over HTTPS.
    Webhook,
}

/// How syslog messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    /// TLS (RFC 5425), octet-counted.
    Tls,
    /// Plain TCP, octet-counted (RFC 6587).
    Tcp,
    /// UDP (RFC 5426): best effort.
    Udp,
}

/// Syslog facility names and their codes (RFC 5424, table 1).
pub const SYSLOG_FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// `[server]`: the SSH listener, the data directory and connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Address the SSH front door listens on.
    pub listen: SocketAddr,
    /// Directory for state, vault, recordings, audit log and host key; created on first start.
    /// A relative path is taken relative to the config file's directory.
    pub data_dir: PathBuf,
    /// Most authenticated sessions served at once; a login beyond it is refused with a
    /// message. Connections that have not authenticated yet have their own budget
    /// (`max_unauthenticated`), so unauthenticated sockets can never crowd sessions out.
    pub max_connections: usize,
    /// Most connections that have not authenticated yet, from all sources together; more
    /// are closed at accept (like sshd's MaxStartups).
    pub max_unauthenticated: usize,
    /// Most connections one source address may hold before authenticating; more from it
    /// are closed at accept, so one host cannot take every pre-login slot.
    pub max_unauthenticated_per_source: usize,
    /// A connection that has not sent its SSH version line within this time is closed.
    #[serde(with = "humantime_serde")]
    pub banner_timeout: Duration,
    /// How long a client has to authenticate before it is disconnected.
    #[serde(with = "humantime_serde")]
    pub login_grace_time: Duration,
    /// How long to wait for an upstream to answer (TCP connect, handshake and login together).
    #[serde(with = "humantime_serde")]
    pub upstream_connect_timeout: Duration,
    /// Failed authentications allowed per source address, and per user, within `auth_failure_window`.
    pub auth_max_failures: u32,
    /// The window over which failed authentications are counted; a throttled source or user
    /// is refused until its failures age out of it.
    #[serde(with = "humantime_serde")]
    pub auth_failure_window: Duration,
    /// How often to probe a silent client; three unanswered probes end the connection.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long SIGTERM waits for sessions to finish their recordings before exiting anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Ciphers offered to clients. The client picks by its own preference among these, so
    /// the default offers only AES-GCM: FIPS-approved, and with AES-NI the cheapest per byte
    /// for the client and the bastion alike. Add "chacha20-poly1305@openssh.com" for clients
    /// without AES hardware, or the CTR modes for very old clients.
    pub ciphers: Vec<String>,
    /// Environment variables a client may pass to the target (`SendEnv`/`SetEnv`), as names
    /// or globs (`LC_*`). Everything else is dropped (and logged): `LD_PRELOAD`, `PATH` and
    /// friends must never reach an upstream shell. `TERM` comes with the terminal request.
    pub accept_env: Vec<String>,
    /// How people reach this bastion, for the commands it tells them to run: `{login}`
    /// stands for `USER+TARGET` (or `USER`). Default: `ssh -p PORT {login}@ADDRESS` with the
    /// address the client connected to, which is wrong behind NAT or a load balancer.
    pub connect_command: Option<String>,
}

/// Cipher names `server.ciphers` accepts.
pub const SUPPORTED_CIPHERS: &[&str] = &[
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
];

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 2222)),
            data_dir: PathBuf::from("data"),
            max_connections: 1024,
            max_unauthenticated: 100,
            max_unauthenticated_per_source: 10,
            banner_timeout: Duration::from_secs(10),
            login_grace_time: Duration::from_secs(60),
            upstream_connect_timeout: Duration::from_secs(10),
            auth_max_failures: 5,
            auth_failure_window: Duration::from_secs(300),
            keepalive_interval: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            ciphers: vec![
                "aes256-gcm@openssh.com".into(),
                "aes128-gcm@openssh.com".into(),
            ],
            accept_env: vec!["LANG".into(), "LC_*".into()],
            connect_command: None,
        }
    }
}

/// `[recording]`: what is recorded and what happens when recording fails.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RecordingConfig {
    /// Record keystrokes as asciicast "i" events.
    pub input: bool,
    /// What to do when a recording cannot be written.
    pub on_failure: OnRecordingFailure,
    /// Where recordings go; defaults to `<data_dir>/recordings`.
    pub dir: Option<PathBuf>,
    /// Follow the command lines typed in terminals (audit `command` events, recording
    /// markers), even where no command rule applies. Rules are enforced regardless.
    pub commands: bool,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            input: true,
            on_failure: OnRecordingFailure::Terminate,
            dir: None,
            commands: true,
        }
    }
}

/// `recording.on_failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnRecordingFailure {
    /// End the session (fail closed): nothing happens unrecorded.
    #[default]
    Terminate,
    /// Keep the session going unrecorded, with an audit event saying so.
    Continue,
}

/// `[state]`: the state store's backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StateConfig {
    /// `sqlite` (embedded, `<data_dir>/state.db`; one node) or `postgres` (shared by nodes).
    pub backend: StateBackend,
    /// `postgres://USER@HOST:PORT/DATABASE`, optionally with libpq's TLS parameters
    /// (`?sslmode=verify-full&sslrootcert=/etc/…/ca.pem`); never with a password.
    pub url: Option<String>,
    /// File holding the role's password; `PORTCULLIS_STATE_PASSWORD` takes precedence.
    pub password_file: Option<PathBuf>,
    /// libpq's `sslmode`: disable, prefer (the default), require, verify-ca, verify-full.
    pub sslmode: Option<String>,
    /// PEM CA certificate the server's certificate must chain to (verify-ca, verify-full).
    pub root_cert_file: Option<PathBuf>,
    /// PEM client certificate, for servers that ask for one; with `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
    /// Connections kept open to the database.
    pub pool_size: usize,
    /// How long connecting (or waiting for a free connection) may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            backend: StateBackend::Sqlite,
            url: None,
            password_file: None,
            sslmode: None,
            root_cert_file: None,
            client_cert_file: None,
            client_key_file: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Where state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateBackend {
    /// The embedded default.
    Sqlite,
    /// Shared by several nodes.
    Postgres,
}

/// libpq's `sslmode` words.
pub const SSL_MODES: &[&str] = &["disable", "prefer", "require", "verify-ca", "verify-full"];

/// `[cluster]`: this node's place among several.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ClusterConfig {
    /// This node's name, unique among the nodes sharing the state store (the session
    /// list, the audit log and the console name it). Required with the postgres backend.
    pub node: Option<String>,
    /// How often this node tells the others it is alive.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// How long without a heartbeat before the other nodes take a node for lost and end
    /// its sessions (`node_lost`).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How long live sessions go on while the state database is out of reach (nothing
    /// can be re-checked meanwhile: a lock or a revocation placed then is not heard of).
    /// New logins are refused at once. At most `lease`: past it, the other nodes take this
    /// one for lost and record its sessions as ended.
    #[serde(with = "humantime_serde")]
    pub database_grace: Duration,
    /// File holding the secret every node shares (at least 32 characters): node-to-node
    /// calls (watching a session, fetching a recording that lives on another node) are
    /// signed with it (HMAC-SHA256). Without it, those calls are refused.
    pub secret_file: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node: None,
            heartbeat: Duration::from_secs(5),
            lease: Duration::from_secs(20),
            database_grace: Duration::from_secs(20),
            secret_file: None,
        }
    }
}

/// `[vault]`: the master key that wraps the vault's data key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VaultConfig {
    /// File holding the 32-byte master key; defaults to `<data_dir>/master.key`, created
    /// (mode 0600) on first start. The environment variable `PORTCULLIS_MASTER_KEY`
    /// (64 hex digits) takes precedence.
    pub master_key_file: Option<PathBuf>,
}

/// `[access]`: the lifecycle of just-in-time access.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AccessConfig {
    /// How long a login waits for its request to be approved before giving up.
    #[serde(with = "humantime_serde")]
    pub approval_wait: Duration,
    /// How long a request nobody reviews stays open.
    #[serde(with = "humantime_serde")]
    pub request_ttl: Duration,
    /// When live sessions are warned before their grant ends.
    pub warn_before: Vec<humantime_serde::Serde<Duration>>,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            approval_wait: Duration::from_secs(600),
            request_ttl: Duration::from_secs(3600),
            warn_before: vec![
                Duration::from_secs(300).into(),
                Duration::from_secs(60).into(),
            ],
        }
    }
}

impl AccessConfig {
    /// The warning points, longest first.
    pub fn warnings(&self) -> Vec<Duration> {
        let mut warnings: Vec<Duration> = self.warn_before.iter().map(|d| **d).collect();
        warnings.sort_by(|a, b| b.cmp(a));
        warnings
    }
}

/// `[admin]`: the HTTPS admin API.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AdminConfig {
    /// Address of the API; the API is off unless this is set.
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain; with `tls_key`. When both are absent a self-signed pair is
    /// created in the data directory on first start (its fingerprint is logged for clients).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Bearer tokens that may use the API.
    pub tokens: Vec<AdminTokenConfig>,
}

/// `[[admin.tokens]]`: one API token, stored only as a hash.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AdminTokenConfig {
    /// Who holds it; audit records of its actions carry this name.
    pub name: String,
    /// Argon2 hash of the token (`portcullis hash-password`).
    pub hash: Option<Secret<String>>,
    /// What it may do: "read" (look), "operate" (kill, lock, unlock), "admin" (everything),
    /// "request" (ask for access and check out certificates as `user`).
    pub scopes: Vec<Scope>,
    /// For `request`: the service user (`kind = "service"`) the token acts as.
    pub user: Option<String>,
}

/// An API permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// List and watch sessions, read recordings and the audit log, metrics.
    Read,
    /// Kill sessions, lock and unlock users.
    Operate,
    /// Everything.
    Admin,
    /// Ask for access and check out login certificates, as the token's service user.
    Request,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Operate, Scope::Admin, Scope::Request];

    /// The config word.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Operate => "operate",
            Scope::Admin => "admin",
            Scope::Request => "request",
        }
    }

    /// The scope a config word names.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == name)
    }
}

/// `[[users]]`: a person who may log in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UserConfig {
    /// Login name (the part before `+` in `ssh alice+web01@bastion`).
    pub name: String,
    /// OpenSSH public keys, one per line as in `authorized_keys`.
    pub public_keys: Vec<String>,
    /// Argon2 PHC string (`portcullis hash-password` prints one).
    pub password_hash: Option<Secret<String>>,
    /// Base32 TOTP secret; when set, a password login also asks for a code.
    pub totp_secret: Option<Secret<String>>,
    /// `"person"` (default) or `"service"`: automation, which asks for access through the API
    /// and logs in with a checked-out certificate; no password, no terminal prompts.
    pub kind: UserKind,
}

/// Who a user is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserKind {
    /// A person.
    #[default]
    Person,
    /// A non-human identity (a CI job, a deploy pipeline).
    Service,
}

/// `[[user_cas]]`: an OpenSSH certificate authority for user certificates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UserCaConfig {
    /// The CA's public key in OpenSSH format.
    pub public_key: String,
    /// A name for audit records; defaults to the key's comment.
    pub name: Option<String>,
}

/// `[[targets]]`: a server reachable through the bastion.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TargetConfig {
    /// Name used in logins (`alice+web01`).
    pub name: String,
    /// `host:port` of the target's sshd; the port defaults to 22.
    pub address: String,
    /// The account portcullis logs in as upstream.
    pub login: String,
    /// How portcullis logs in there: with a vaulted credential, or with a certificate made
    /// for that one login.
    pub auth: TargetAuth,
    /// For `auth = "credential"`: the vault entry holding that account's private key or
    /// password.
    pub credential: String,
    /// The target's pinned host key in OpenSSH format; any other key is refused.
    pub host_key: String,
    /// For `auth = "credential"`: rotate the vaulted credential this often (e.g. `"30d"`).
    #[serde(with = "humantime_serde")]
    pub rotate_every: Option<Duration>,
    /// For `auth = "credential"`: rotate it also after these end: `"break-glass"` (a session
    /// on a break-glass grant), `"checkout"` (a service's checked-out grant).
    pub rotate_after: Vec<String>,
    /// For a vaulted key: the file on the target listing its authorized keys (default: the
    /// login's `~/.ssh/authorized_keys`), which rotation edits.
    pub authorized_keys: Option<String>,
    /// For a vaulted password: the command on the target that sets it, fed `LOGIN:PASSWORD`
    /// on stdin (e.g. `"sudo -n chpasswd"`); without it a password is not rotated.
    pub password_command: Option<String>,
}

/// What `rotate_after` may name.
pub const ROTATE_AFTER: &[&str] = &["break-glass", "checkout"];

/// How portcullis logs in to a target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetAuth {
    /// With the vault entry `credential` names (a standing secret).
    #[default]
    Credential,
    /// With a fresh key pair and a certificate the bastion's user CA signs for that one
    /// login: nothing per target is stored anywhere (the target trusts the CA).
    Certificate,
}

/// `[[roles]]`: who may reach which targets, and how.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RoleConfig {
    /// Role name, for audit records.
    pub name: String,
    /// User names.
    pub members: Vec<String>,
    /// Target names or globs (`web*`, `db-??`).
    pub targets: Vec<String>,
    /// How members reach those targets.
    pub access: Access,
    /// For `eligible`: the longest activation that may be asked for.
    #[serde(with = "humantime_serde")]
    pub max_duration: Option<Duration>,
    /// For `eligible`: the duration offered when none is given.
    #[serde(with = "humantime_serde")]
    pub default_duration: Option<Duration>,
    /// For `eligible`: an activation needs a justification.
    pub require_reason: bool,
    /// For `eligible`: a regular expression the justification must match (e.g. a ticket id).
    pub reason_pattern: Option<String>,
    /// For `eligible`: approvals needed; 0 means members activate themselves.
    pub approvals: u32,
    /// Roles whose members may approve (never the requester): activations of an eligible
    /// role, and command lines a `review` rule holds in any role's sessions.
    pub approvers: Vec<String>,
    /// For `eligible`: a fresh TOTP code is asked for at activation.
    pub require_mfa: bool,
    /// For `eligible`: activation without approval, alerted and queued for review.
    pub break_glass: bool,
    /// For `eligible`: when activation is allowed, e.g. `"Mon-Fri 08:00-18:00"` (in
    /// `timezone`); outside it requests are refused (a break-glass role overrides, alerted).
    pub activation_hours: Option<String>,
    /// The IANA time zone of `activation_hours` (default UTC).
    pub timezone: Option<String>,
    /// For `eligible`: address blocks activation may be asked from (the ssh client's or the
    /// API caller's address); elsewhere requests are refused (a break-glass role overrides,
    /// alerted).
    pub activation_networks: Vec<String>,
    /// End a member's session after this long without input from them.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    /// Members may watch live sessions over ssh (`ssh bob@bastion watch ID`), read-only.
    pub can_watch: bool,
}

/// `[[command_rules]]`: a pattern on command lines and what happens when it matches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CommandRuleConfig {
    /// The rule's name, shown to the user and audited.
    pub name: String,
    /// Role names or globs it applies to; empty (the default) means all.
    pub roles: Vec<String>,
    /// Target names or globs it applies to; empty (the default) means all.
    pub targets: Vec<String>,
    /// What the rule looks at: command lines (the default) or file operations.
    pub kind: RuleKind,
    /// A regular expression searched in the whole command line (for `kind = "sftp"`, the
    /// line `"<op> <path>"`, e.g. `write /etc/sudoers`).
    pub pattern: String,
    /// What happens to a matching line.
    pub action: CommandAction,
    /// Shown to the user (and audited) when the rule acts.
    pub message: Option<String>,
    /// For `review`: roles whose members may approve the line; default: the session role's
    /// approvers.
    pub approvers: Vec<String>,
}

/// `command_rules[].kind`: what a rule's pattern is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RuleKind {
    /// Command lines: typed at a terminal, or an exec request.
    #[default]
    Command,
    /// File operations over SFTP (and so OpenSSH's scp): `read PATH`, `write PATH`,
    /// `remove PATH`, `rename PATH`, `mkdir PATH`, `rmdir PATH`, `setstat PATH`,
    /// `symlink PATH`, `list PATH`.
    Sftp,
}

impl RuleKind {
    /// The config word.
    pub fn as_str(&self) -> &'static str {
        match self {
            RuleKind::Command => "command",
            RuleKind::Sftp => "sftp",
        }
    }
}

/// `command_rules[].action`, from the mildest to the most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CommandAction {
    /// Runs; audited like any line.
    Allow,
    /// Runs; audited with the rule's name.
    #[default]
    Log,
    /// The user is asked to confirm (y/N) first.
    Warn,
    /// Held until an approver approves it.
    Review,
    /// Not run; the user is told why and the session goes on.
    Deny,
    /// Not run, and the session ends.
    Terminate,
}

impl CommandAction {
    /// The config word.
    pub fn as_str(&self) -> &'static str {
        match self {
            CommandAction::Allow => "allow",
            CommandAction::Log => "log",
            CommandAction::Warn => "warn",
            CommandAction::Review => "review",
            CommandAction::Deny => "deny",
            CommandAction::Terminate => "terminate",
        }
    }
}

/// `roles[].access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Members may connect whenever they like.
    #[default]
    Standing,
    /// Members must activate access for a bounded time first (justified, maybe approved).
    Eligible,
}

impl TargetConfig {
    /// `address` with the default port filled in.
    pub fn address_with_port(&self) -> String {
        let has_port = match self.address.strip_prefix('[') {
            Some(bracketed) => bracketed.contains("]:"),
            None => self.address.contains(':'),
        };
        if has_port {
            self.address.clone()
        } else {
            format!("{}:22", self.address)
        }
    }
}

impl UserConfig {
    /// The decoded TOTP key, if one is configured and is valid base32.
    pub fn totp_key(&self) -> Option<Secret<Vec<u8>>> {
        let text = self.totp_secret.as_ref()?;
        crate::base32::decode(text.expose()).map(Secret::new)
    }
}
