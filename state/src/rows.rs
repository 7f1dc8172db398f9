//! How records become columns and back, the same for every backend: times as Unix
//! milliseconds, ids as signed integers, a request's state and kind as words, its approvers
//! as one comma-separated text.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_policy::{RequestKind, RequestState};

/// A time as the database keeps it: milliseconds since the epoch.
pub(crate) fn to_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// The time of a stored millisecond count.
pub(crate) fn from_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or_default())
}

/// An id as stored.
pub(crate) fn sql_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// A stored id.
pub(crate) fn id_of(value: i64) -> u64 {
    u64::try_from(value).unwrap_or_default()
}

/// A request state's word.
pub(crate) fn state_name(state: &RequestState) -> &'static str {
    match state {
        RequestState::Pending => "pending",
        RequestState::Approved { .. } => "approved",
        RequestState::Denied { .. } => "denied",
        RequestState::Expired => "expired",
        RequestState::Cancelled => "cancelled",
    }
}

/// The state a word names, with what the decision recorded; `None` for a word this build
/// does not know.
pub(crate) fn request_state(
    name: &str,
    grant: Option<u64>,
    decided_by: Option<String>,
    reason: Option<String>,
) -> Option<RequestState> {
    Some(match name {
        "pending" => RequestState::Pending,
        "approved" => RequestState::Approved { grant },
        "denied" => RequestState::Denied {
            by: decided_by.unwrap_or_default(),
            reason: reason.unwrap_or_default(),
        },
        "expired" => RequestState::Expired,
        "cancelled" => RequestState::Cancelled,
        _ => return None,
    })
}

/// What a decision stores beside the state: who denied it and why, or the grant it made.
pub(crate) fn decision_columns(
    state: &RequestState,
) -> (Option<String>, Option<String>, Option<u64>) {
    match state {
        RequestState::Denied { by, reason } => (Some(by.clone()), Some(reason.clone()), None),
        RequestState::Approved { grant } => (None, None, *grant),
        _ => (None, None, None),
    }
}

/// A request kind's columns: its word, and a held command's line, rule and session.
pub(crate) fn kind_columns(
    kind: &RequestKind,
) -> (
    &'static str,
    Option<&String>,
    Option<&String>,
    Option<&String>,
) {
    match kind {
        RequestKind::Access => ("access", None, None, None),
        RequestKind::Command {
            line,
            rule,
            session,
        } => ("command", Some(line), Some(rule), Some(session)),
    }
}

/// The kind its columns name (an unknown word is access).
pub(crate) fn request_kind(
    kind: &str,
    line: Option<String>,
    rule: Option<String>,
    session: Option<String>,
) -> RequestKind {
    match kind {
        "command" => RequestKind::Command {
            line: line.unwrap_or_default(),
            rule: rule.unwrap_or_default(),
            session: session.unwrap_or_default(),
        },
        _ => RequestKind::Access,
    }
}

/// The approvers' names, from their stored text.
pub(crate) fn approvers(text: &str) -> Vec<String> {
    text.split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_and_kind_reads_back_as_written() {
        for state in [
            RequestState::Pending,
            RequestState::Approved { grant: Some(3) },
            RequestState::Denied {
                by: "bob".into(),
                reason: "no".into(),
            },
            RequestState::Expired,
            RequestState::Cancelled,
        ] {
            let (by, reason, grant) = decision_columns(&state);
            assert_eq!(
                request_state(state_name(&state), grant, by, reason),
                Some(state)
            );
        }
        assert_eq!(request_state("later", None, None, None), None);
        let held = RequestKind::Command {
            line: "rm x".into(),
            rule: "r".into(),
            session: "s".into(),
        };
        let (word, line, rule, session) = kind_columns(&held);
        assert_eq!(
            request_kind(word, line.cloned(), rule.cloned(), session.cloned()),
            held
        );
        assert_eq!(approvers(",a,,b"), ["a", "b"]);
    }
}
