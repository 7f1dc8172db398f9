//! Noticing that a target's connection is gone while a session uses it — its sshd was
//! killed, it sent a disconnect, or it stopped answering keepalives — and saying so in words
//! the user is shown (`portcullis: web01 closed the connection (…)`).
//!
//! russh tells the connection's handler before it drops the channels, so the session is told
//! why before any channel sees its upstream vanish: the user learns the cause, not just that
//! the output stopped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::DisconnectReason;

use crate::text::Shown;

/// What the session does when its target's connection is lost; given what happened, in
/// words (after the target's name).
pub type OnLost = Box<dyn FnOnce(String) + Send>;

/// The callback, armed once the login upstream succeeded (a refused login or a failed
/// handshake is reported by `connect`, not here) and disarmed when the bastion ends the
/// connection itself.
#[derive(Clone, Default)]
pub(super) struct LostAlarm(Arc<Mutex<Option<OnLost>>>);

impl LostAlarm {
    pub(super) fn arm(&self, on_lost: OnLost) {
        *self.slot() = Some(on_lost);
    }

    pub(super) fn disarm(&self) {
        self.slot().take();
    }

    /// Rings once, if armed.
    pub(super) fn ring(&self, why: String) {
        let on_lost = self.slot().take();
        if let Some(on_lost) = on_lost {
            on_lost(why);
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<OnLost>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What happened to the connection, in words after the target's name. The target's own
/// disconnect message is escaped: it is shown to the user and written to the audit log.
pub(super) fn describe(
    reason: &DisconnectReason<russh::Error>,
    keepalive: KeepaliveBound,
) -> String {
    match reason {
        DisconnectReason::ReceivedDisconnect(info) if info.message.trim().is_empty() => {
            "closed the connection".to_owned()
        }
        DisconnectReason::ReceivedDisconnect(info) => {
            format!("closed the connection ({})", Shown(info.message.trim()))
        }
        DisconnectReason::Error(russh::Error::KeepaliveTimeout) => format!(
            "stopped answering (no reply to keepalives for {})",
            humantime::format_duration(keepalive.silence())
        ),
        DisconnectReason::Error(russh::Error::Disconnect) => "closed the connection".to_owned(),
        DisconnectReason::Error(russh::Error::IO(error)) => {
            format!("closed the connection ({})", Shown(&error.to_string()))
        }
        DisconnectReason::Error(error) => {
            format!("closed the connection ({})", Shown(&error.to_string()))
        }
    }
}

/// How long a target may stay silent before keepalives give up on it.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeepaliveBound {
    pub(super) interval: Duration,
    pub(super) max_unanswered: usize,
}

impl KeepaliveBound {
    /// russh sends one every `interval` of silence and gives up when one more than
    /// `max_unanswered` is due.
    pub(super) fn silence(self) -> Duration {
        self.interval * (self.max_unanswered as u32 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound() -> KeepaliveBound {
        KeepaliveBound {
            interval: Duration::from_secs(2),
            max_unanswered: 3,
        }
    }

    #[test]
    fn a_target_message_is_escaped_and_silence_is_named_with_its_bound() {
        let info = russh::client::RemoteDisconnectInfo {
            reason_code: russh::Disconnect::ByApplication,
            message: "bye\x1b[2J\nnow".to_owned(),
            lang_tag: String::new(),
        };
        let said = describe(&DisconnectReason::ReceivedDisconnect(info), bound());
        assert!(!said.contains('\x1b') && !said.contains('\n'), "{said:?}");
        assert!(said.starts_with("closed the connection (bye"), "{said}");
        assert_eq!(
            describe(
                &DisconnectReason::Error(russh::Error::KeepaliveTimeout),
                bound()
            ),
            "stopped answering (no reply to keepalives for 8s)"
        );
        assert_eq!(
            describe(&DisconnectReason::Error(russh::Error::Disconnect), bound()),
            "closed the connection"
        );
    }

    #[test]
    fn the_alarm_rings_once_and_not_after_being_disarmed() {
        let rang = Arc::new(Mutex::new(Vec::new()));
        let alarm = LostAlarm::default();
        let sink = rang.clone();
        alarm.arm(Box::new(move |why| sink.lock().unwrap().push(why)));
        alarm.ring("first".into());
        alarm.ring("second".into());
        assert_eq!(*rang.lock().unwrap(), vec!["first".to_owned()]);

        let sink = rang.clone();
        alarm.arm(Box::new(move |why| sink.lock().unwrap().push(why)));
        alarm.disarm();
        alarm.ring("third".into());
        assert_eq!(rang.lock().unwrap().len(), 1);
    }
}
