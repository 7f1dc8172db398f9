//! When the serving bastion rotates by itself: a credential whose targets say
//! `rotate_every` once it is that old (on the bastion's clock), and after what `rotate_after`
//! names has ended (sessions ask through [`Rotations::request`]). One rotation of an entry at
//! a time; a failed one is retried after [`RETRY_AFTER`], not at every tick. Every outcome is
//! audited (`credential.rotated`, `credential.rotation_failed` with an `ALERT`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use super::{Rotated, RotationFailed};
use crate::alerts::Alert;
use crate::audit::AuditEvent;
use crate::directory::UpstreamAuth;
use crate::services::Services;

/// How often due rotations are looked for.
const EVERY: Duration = Duration::from_secs(2);
/// How long after a failed scheduled rotation it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(600);

/// Rotation requests, and what the scheduler remembers.
#[derive(Debug)]
pub struct Rotations {
    requests: mpsc::UnboundedSender<(String, &'static str)>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<(String, &'static str)>>>,
    failed_at: Mutex<HashMap<String, SystemTime>>,
    /// When this node last rotated each entry, on the bastion's clock (the vault stamps
    /// entries with the system's time; a test's manual clock may be far ahead of it).
    rotated_at: Mutex<HashMap<String, SystemTime>>,
}

impl Default for Rotations {
    fn default() -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        Self {
            requests,
            receiver: Mutex::new(Some(receiver)),
            failed_at: Mutex::new(HashMap::new()),
            rotated_at: Mutex::new(HashMap::new()),
        }
    }
}

impl Rotations {
    /// Asks for vault entry `credential` to be rotated soon, because of `why`.
    pub fn request(&self, credential: &str, why: &'static str) {
        let _ = self.requests.send((credential.to_owned(), why));
    }
}

/// The audit events of a rotation's outcome: `credential.rotated` or
/// `credential.rotation_failed`, and the alert it calls for, if any.
pub fn outcome_events(outcome: &Result<Rotated, RotationFailed>, why: &str) -> Vec<AuditEvent> {
    let mut events = vec![audit_event(outcome, why)];
    events.extend(alert_event(outcome));
    events
}

/// The audit event of a rotation's outcome.
fn audit_event(outcome: &Result<Rotated, RotationFailed>, why: &str) -> AuditEvent {
    match outcome {
        Ok(done) => AuditEvent::new("credential.rotated")
            .with("credential", &done.credential)
            .with("targets", &done.targets)
            .with("old_fingerprint", &done.old_fingerprint)
            .with("new_fingerprint", &done.new_fingerprint)
            .with("resumed", done.resumed)
            .with(
                "old_still_accepted",
                (!done.old_still_accepted.is_empty()).then_some(&done.old_still_accepted),
            )
            .with("why", why),
        Err(failed) => AuditEvent::new("credential.rotation_failed")
            .with("credential", &failed.credential)
            .with("step", failed.step)
            .with("target", &failed.target)
            .with("reason", &failed.reason)
            .with("why", why),
    }
}

/// The `alert` a rotation's outcome calls for: it failed, or the old key still gets in
/// somewhere after it.
fn alert_event(outcome: &Result<Rotated, RotationFailed>) -> Option<AuditEvent> {
    match outcome {
        Ok(done) if !done.old_still_accepted.is_empty() => {
            let message = format!(
                "the old key of {} still gets in to {} after its rotation; remove it there by hand",
                done.credential,
                done.old_still_accepted.join(", ")
            );
            Some(
                Alert::OldCredentialStillAccepted
                    .event(message)
                    .with("credential", &done.credential)
                    .with("targets", &done.old_still_accepted),
            )
        }
        Ok(_) => None,
        Err(failed) => {
            let message =
                format!("{failed}; the old secret still works and the vault is unchanged");
            Some(
                Alert::RotationFailed
                    .event(message)
                    .with("credential", &failed.credential)
                    .with("target", &failed.target),
            )
        }
    }
}

/// Rotates `credential` now on every target that uses it, and audits the outcome.
pub async fn rotate_now(
    services: &Services,
    credential: &str,
    why: &'static str,
) -> Result<Rotated, RotationFailed> {
    let targets = services.directory.targets_using(credential);
    let outcome = super::rotate(&services.vault, &targets, credential).await;
    for event in outcome_events(&outcome, why) {
        services.audit.record(event);
    }
    match &outcome {
        Ok(done) => {
            tracing::info!(
                credential,
                why,
                resumed = done.resumed,
                "credential rotated"
            );
            if let Ok(mut failed) = services.rotations.failed_at.lock() {
                failed.remove(credential);
            }
            if let Ok(mut rotated) = services.rotations.rotated_at.lock() {
                rotated.insert(credential.to_owned(), services.clock.now());
            }
        }
        Err(failed) => {
            tracing::error!(
                why,
                "ALERT: {failed}; the old secret still works and the vault is unchanged"
            );
            if let Ok(mut failed_at) = services.rotations.failed_at.lock() {
                failed_at.insert(credential.to_owned(), services.clock.now());
            }
        }
    }
    outcome
}

/// Every vaulted credential some target wants rotated this often (the shortest, when several
/// targets share it).
fn schedule(services: &Services) -> HashMap<String, Duration> {
    let mut every: HashMap<String, Duration> = HashMap::new();
    for target in services.directory.targets() {
        if let (UpstreamAuth::Vaulted(name), Some(period)) = (&target.auth, target.rotation.every) {
            every
                .entry(name.clone())
                .and_modify(|p| *p = (*p).min(period))
                .or_insert(period);
        }
    }
    every
}

/// The entries due now: older than their period, and not failed within [`RETRY_AFTER`].
async fn due(services: &Services) -> Vec<String> {
    let schedule = schedule(services);
    if schedule.is_empty() {
        return Vec::new();
    }
    let Ok(entries) = services.vault.list().await else {
        return Vec::new();
    };
    let now = services.clock.now();
    let remembered = |map: &Mutex<HashMap<String, SystemTime>>| {
        map.lock().map(|m| m.clone()).unwrap_or_default()
    };
    let failed = remembered(&services.rotations.failed_at);
    let rotated = remembered(&services.rotations.rotated_at);
    entries
        .into_iter()
        .filter(|entry| {
            let last = rotated
                .get(&entry.name)
                .map_or(entry.created_at, |at| (*at).max(entry.created_at));
            schedule
                .get(&entry.name)
                .is_some_and(|period| last + *period <= now)
                && failed
                    .get(&entry.name)
                    .is_none_or(|at| *at + RETRY_AFTER <= now)
        })
        .map(|entry| entry.name)
        .collect()
}

/// Runs rotations as they fall due or are asked for, until shutdown.
pub async fn run(services: Arc<Services>) {
    let receiver = services
        .rotations
        .receiver
        .lock()
        .ok()
        .and_then(|mut slot| slot.take());
    let Some(mut requests) = receiver else {
        return;
    };
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let work: Vec<(String, &'static str)> = tokio::select! {
            _ = tick.tick() => due(&services).await.into_iter().map(|name| (name, "schedule")).collect(),
            request = requests.recv() => match request {
                Some(request) => vec![request],
                None => return,
            },
            () = services.shutdown.cancelled() => return,
        };
        for (credential, why) in work {
            // One at a time, in this task: two rotations of one entry never overlap.
            let _ = rotate_now(&services, &credential, why).await;
        }
    }
}
