//! What the store keeps, where the policy crate has no word for it.

use std::time::{Duration, SystemTime};

use portcullis_policy::Grant;

/// A grant with what the rules do not need but people do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    /// The grant.
    pub grant: Grant,
    /// The justification it was activated with.
    pub reason: String,
    /// The request it came from, if approved.
    pub request: Option<u64>,
    /// Activated as break-glass.
    pub break_glass: bool,
    /// Who revoked it, and why.
    pub revoked: Option<(String, String)>,
    /// Who acknowledged a break-glass grant, and when.
    pub acknowledged: Option<(String, SystemTime)>,
}

/// A grant about to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGrant {
    /// Whose.
    pub user: String,
    /// For which target.
    pub target: String,
    /// Through which role.
    pub role: String,
    /// The justification.
    pub reason: String,
    /// When it starts.
    pub starts_at: SystemTime,
    /// For how long.
    pub duration: Duration,
    /// The request it came from, if approved.
    pub request: Option<u64>,
    /// Break-glass.
    pub break_glass: bool,
}

/// How an eligibility has been used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The user.
    pub user: String,
    /// The role.
    pub role: String,
    /// The target.
    pub target: String,
    /// Activations so far.
    pub activations: u64,
    /// The latest.
    pub last: SystemTime,
}

/// A sealed credential as stored: the secret only in `sealed` (the vault's ciphertext).
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialRow {
    /// Its name (`credential = "…"` in targets).
    pub name: String,
    /// `private-key` or `password`.
    pub kind: String,
    /// A key's SHA-256 fingerprint.
    pub fingerprint: Option<String>,
    /// A key's public half.
    pub public_key: Option<String>,
    /// When it was stored.
    pub created_at: SystemTime,
    /// The sealed secret.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for CredentialRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialRow")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// What an evidence file looked like when the bastion last wrote it (see the broker's
/// `anchors`): the audit log's line count and last tag, or a recording's seal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    /// Lines written (for a recording being written: 0).
    pub count: u64,
    /// The chain tag of the last line, or a recording's seal; hex.
    pub tag: String,
    /// A recording that was sealed.
    pub sealed: bool,
}

/// A session in the index: who, where to, from where, since when, and — once it has
/// ended — when, why and how many bytes went each way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session id.
    pub id: String,
    /// The authenticated user.
    pub user: String,
    /// The target in the login, if any (the bastion's own menu has none).
    pub target: Option<String>,
    /// The client's address.
    pub client: String,
    /// When the user authenticated.
    pub started_at: SystemTime,
    /// How it ended, once it has.
    pub ended: Option<SessionEnd>,
    /// The node running it, on a store nodes share (ignored when opening: the store
    /// records its own node).
    pub node: Option<String>,
    /// While it runs on a store nodes share: bytes (from, to the client) as of its node's
    /// latest heartbeat.
    pub progress: Option<(u64, u64)>,
    /// On a store nodes share: the grant it rests on, as of its node's latest heartbeat.
    pub grant: Option<u64>,
}

/// The end of an indexed session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// When.
    pub at: SystemTime,
    /// The reason's code (`client_closed`, `killed`, `bastion_crashed`, …).
    pub reason: String,
    /// Bytes from the client.
    pub bytes_from_client: u64,
    /// Bytes to the client.
    pub bytes_to_client: u64,
}

/// What a node tells the others, every heartbeat: it is alive, where its admin API is, and
/// how far its live sessions have got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBeat {
    /// The admin API, if it has one: `host:port` and its certificate's fingerprint,
    /// separated by a space (other nodes connect there and pin that certificate).
    pub admin: Option<String>,
    /// How far each live session has got.
    pub sessions: Vec<SessionProgress>,
}

/// A live session as its node's heartbeat reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionProgress {
    /// Its id.
    pub id: String,
    /// Bytes from the client so far.
    pub bytes_from_client: u64,
    /// Bytes to the client so far.
    pub bytes_to_client: u64,
    /// The grant it rests on, once its target is authorized through one.
    pub grant: Option<u64>,
}

/// A node as the others see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Its name.
    pub name: String,
    /// Its first heartbeat.
    pub started_at: SystemTime,
    /// Its latest heartbeat (the database's clock).
    pub seen_at: SystemTime,
    /// Its admin API: `host:port fingerprint`.
    pub admin: Option<String>,
    /// When another node found it gone (no heartbeat within the lease), until it beats again.
    pub lost_at: Option<SystemTime>,
}

/// A node found gone, with the sessions its loss ended (as the index now records them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostNode {
    /// Its name.
    pub node: String,
    /// Its last heartbeat.
    pub seen_at: SystemTime,
    /// The sessions it was running, ended as `node_lost`.
    pub sessions: Vec<SessionRecord>,
}

/// One line of a node's audit log, as copied into a store nodes share (for searches that
/// see the whole cluster; each node's own file, hash-chained and anchored, stays the proof).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLine {
    /// Its line number in its node's log, from 1.
    pub seq: u64,
    /// Its `time` (RFC 3339, as written: such times sort as text).
    pub time: String,
    /// Its `event`.
    pub event: String,
    /// Its `user`, `target` and `session`, where it has them (what searches filter on).
    pub user: Option<String>,
    /// See `user`.
    pub target: Option<String>,
    /// See `user`.
    pub session: Option<String>,
    /// The whole line (JSON, with its mac).
    pub body: String,
}

/// Which audit lines to read back: the newest first, older than `before` (time, node, seq)
/// if given, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditPage {
    /// Only at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only this event, or events starting with this prefix when `event_prefix`.
    pub event: Option<String>,
    /// Whether `event` is a prefix.
    pub event_prefix: bool,
    /// Only about this user.
    pub user: Option<String>,
    /// Only about this target.
    pub target: Option<String>,
    /// Only of this session.
    pub session: Option<String>,
    /// Where the previous page ended.
    pub before: Option<(String, String, u64)>,
    /// At most this many.
    pub limit: usize,
}

/// A line read back: which node wrote it, its number there, and the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedAuditLine {
    /// The node.
    pub node: String,
    /// Its line number there.
    pub seq: u64,
    /// Its time.
    pub time: String,
    /// The line.
    pub body: String,
}

/// A one-time ticket for a live view, as a store nodes share keeps it (the console may ask
/// one node for it and open the view on another, behind a load balancer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTicket {
    /// The SHA-256 of the ticket, hex (the ticket itself is never stored).
    pub hash: String,
    /// The session it is for.
    pub session: String,
    /// Who it was issued to.
    pub holder: String,
    /// Their scopes, `+`-separated.
    pub scopes: String,
    /// Until when it may be used.
    pub expires: SystemTime,
}
