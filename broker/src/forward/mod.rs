//! Audit forwarding: every `[[audit.forward]]` follows this node's audit log on its own and
//! delivers the events its filter takes to a syslog receiver or a webhook.
//!
//! * **Nothing lost.** The audit log is the backlog: a forwarder reads it from its own
//!   position (`position`), a batch at a time, so a receiver that is down for a day costs
//!   disk the log uses anyway, not memory. The position moves only past events the
//!   receiver confirmed, and is kept on disk, so an outage or a restart resumes where
//!   delivery stopped. Events are delivered at least once, each with a stable `id`.
//! * **Never in the way.** Sessions only append to the log; forwarders read it on their
//!   own tasks. A slow or dead receiver makes a forwarder fall behind, which the metric
//!   `portcullis_audit_forward_lag_events` shows and an `alert` reports past `max_lag`.

pub mod connect;
pub mod outgoing;
pub mod position;
mod setup;
pub mod syslog;
pub mod webhook;

pub use setup::{node_name, prepare};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::alerts::Alert;
use crate::metrics::ForwarderMetrics;
use crate::services::Services;
use outgoing::{EventFilter, Outgoing};
use position::Position;

/// Lines read from the log at a time.
const READ_BATCH: usize = 500;
/// How long a syslog forwarder waits for more events before it confirms what it sent by
/// closing the connection in order. Long against a network's round trip, so a receiver's
/// own close can never be taken for the confirming one.
const CONFIRM_WHEN_IDLE: Duration = Duration::from_secs(1);
/// Unconfirmed events past which a syslog forwarder confirms at once (bounds what an outage
/// sends again).
const CONFIRM_EVERY: u64 = 1000;
/// The first wait after a failed delivery; it doubles up to [`MOST_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(250);
/// The longest wait between attempts.
const MOST_RETRY_WAIT: Duration = Duration::from_secs(30);

/// A forwarder ready to run: its settings read, its files loaded.
pub struct Forwarder {
    name: String,
    filter: EventFilter,
    sink: Sink,
    batch: usize,
    max_lag: u64,
    position_file: PathBuf,
    metrics: Arc<ForwarderMetrics>,
}

enum Sink {
    Syslog(syslog::Syslog),
    Webhook(webhook::Webhook),
}

/// Runs `forwarders` until `finish` is cancelled (after the sessions have drained, so
/// their last events go too), then delivers what it can and keeps each position.
pub async fn run(services: Arc<Services>, forwarders: Vec<Forwarder>, finish: CancellationToken) {
    let tasks: Vec<_> = forwarders
        .into_iter()
        .map(|forwarder| tokio::spawn(forwarder.run(services.clone(), finish.clone())))
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

/// What one pass of the loop is to do next.
enum Step {
    Wait,
    Again,
}

impl Forwarder {
    async fn run(mut self, services: Arc<Services>, finish: CancellationToken) {
        let log = services.audit.path().to_owned();
        let node = node_name(&services.config);
        let mut lines = services.audit.lines();
        let mut confirmed = self.resume(&log).await;
        let mut state = Progress {
            sent: confirmed.clone(),
            unconfirmed: 0,
            retry_wait: None,
            failing: false,
            behind: false,
        };
        tracing::info!(forwarder = %self.name, from_line = confirmed.lines + 1, "audit forwarding started");
        loop {
            let total = *lines.borrow_and_update();
            self.watch_lag(&services, total, &confirmed, &mut state.behind);
            let finishing = finish.is_cancelled();
            if let Some(wait) = state.retry_wait {
                if finishing {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = finish.cancelled() => {}
                }
            }
            let step = if state.sent.lines < total {
                self.deliver_batch(&services, &log, &node, &mut state, &mut confirmed)
                    .await
            } else if state.unconfirmed > 0 {
                // Caught up, with events sent but unconfirmed: confirm them once no more
                // come for a moment (or at the end).
                if !finishing && more_within(CONFIRM_WHEN_IDLE, &mut lines, &finish).await {
                    Step::Again
                } else {
                    self.confirm(&mut state, &mut confirmed).await
                }
            } else {
                Step::Wait
            };
            match step {
                Step::Again => {}
                Step::Wait if finishing => break,
                Step::Wait => {
                    tokio::select! {
                        _ = lines.changed() => {}
                        () = finish.cancelled() => {}
                    }
                }
            }
            if finishing && state.retry_wait.is_some() {
                break;
            }
        }
        self.keep(&confirmed).await;
        tracing::info!(forwarder = %self.name, delivered_through_line = confirmed.lines, "audit forwarding stopped");
    }

    /// The stored position, if the log still holds it; else the log's start.
    async fn resume(&self, log: &Path) -> Position {
        let file = self.position_file.clone();
        let log = log.to_owned();
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || match position::load(&file) {
            Ok(None) => Position::default(),
            Ok(Some(at)) => match position::still_holds(&log, &at) {
                Ok(true) => at,
                Ok(false) => {
                    tracing::warn!(forwarder = %name, line = at.lines, "the audit log no longer holds the line this forwarder stopped at (replaced or cut; see portcullis audit verify); sending it again from its start");
                    Position::default()
                }
                Err(error) => {
                    tracing::warn!(forwarder = %name, %error, "cannot read the audit log to resume; sending it again from its start");
                    Position::default()
                }
            },
            Err(error) => {
                tracing::warn!(forwarder = %name, file = %file.display(), %error, "unreadable position; sending the audit log again from its start");
                Position::default()
            }
        })
        .await
        .unwrap_or_default()
    }

    /// Reads the next lines after what was sent and delivers those the filter takes.
    async fn deliver_batch(
        &mut self,
        services: &Services,
        log: &Path,
        node: &str,
        state: &mut Progress,
        confirmed: &mut Position,
    ) -> Step {
        let from = state.sent.clone();
        let path = log.to_owned();
        let read = tokio::task::spawn_blocking(move || {
            crate::audit_tail::read_lines_with_ends(&path, from.offset, READ_BATCH)
        })
        .await;
        let lines = match read {
            Ok(Ok(lines)) => lines,
            Ok(Err(error)) => {
                return self.failed(
                    state,
                    confirmed,
                    format!("cannot read the audit log: {error}"),
                );
            }
            Err(error) => return self.failed(state, confirmed, error.to_string()),
        };
        if lines.is_empty() {
            // Counted lines are written whole before they are counted: the file changed
            // under us. Try again later rather than spin.
            return self.failed(
                state,
                confirmed,
                "the audit log holds fewer complete lines than were written".into(),
            );
        }
        // Each event taken, with the position just after it; and the position after all.
        let mut after = from.clone();
        let mut events: Vec<Outgoing> = Vec::new();
        let mut through: Vec<Position> = Vec::new();
        for (text, end) in &lines {
            let seq = after.lines + 1;
            after.lines = seq;
            after.offset = *end;
            match Outgoing::from_line(text, seq, node) {
                Some(event) => {
                    after.last_mac = event.fields["mac"].as_str().unwrap_or_default().to_owned();
                    if self.filter.takes(&event.event) {
                        events.push(event);
                        through.push(after.clone());
                    }
                }
                None => {
                    tracing::warn!(forwarder = %self.name, line = seq, "line {seq} of the audit log is not an event (damaged?); not forwarded");
                    after.last_mac.clear();
                }
            }
        }
        for (chunk, ends) in events.chunks(self.batch).zip(through.chunks(self.batch)) {
            let result = match &mut self.sink {
                Sink::Syslog(syslog) => syslog.send(chunk).await,
                Sink::Webhook(webhook) => webhook
                    .send(chunk, unix_seconds(services))
                    .await
                    .map(|()| syslog::Sent::Confirmed),
            };
            match result {
                Ok(sent) => {
                    self.metrics
                        .delivered
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if sent == syslog::Sent::Unconfirmed {
                        state.unconfirmed += chunk.len() as u64;
                    } else if state.unconfirmed == 0 {
                        // Confirmed batch by batch: a failure later in this read sends
                        // none of these again.
                        if let Some(end) = ends.last() {
                            *confirmed = end.clone();
                            state.sent = end.clone();
                            self.keep(confirmed).await;
                        }
                    }
                }
                Err(why) => return self.failed(state, confirmed, why),
            }
        }
        state.sent = after;
        self.recovered(state);
        if state.unconfirmed == 0 {
            // (Already kept when the last line read was the last event delivered.)
            if *confirmed != state.sent {
                *confirmed = state.sent.clone();
                self.keep(confirmed).await;
            }
        } else if state.unconfirmed >= CONFIRM_EVERY {
            return self.confirm(state, confirmed).await;
        }
        Step::Again
    }

    /// Closes a syslog connection in order, which confirms what was sent on it.
    async fn confirm(&mut self, state: &mut Progress, confirmed: &mut Position) -> Step {
        let result = match &mut self.sink {
            Sink::Syslog(syslog) => syslog.confirm().await,
            Sink::Webhook(_) => Ok(()),
        };
        match result {
            Ok(()) => {
                state.unconfirmed = 0;
                *confirmed = state.sent.clone();
                self.keep(confirmed).await;
                Step::Again
            }
            Err(why) => self.failed(state, confirmed, why),
        }
    }

    /// A delivery failed: what was not confirmed is sent again, after a wait that grows.
    fn failed(&mut self, state: &mut Progress, confirmed: &Position, why: String) -> Step {
        self.metrics.failures.fetch_add(1, Ordering::Relaxed);
        match &mut self.sink {
            Sink::Syslog(syslog) => syslog.reset(),
            Sink::Webhook(webhook) => webhook.reset(),
        }
        let wait = state
            .retry_wait
            .map_or(FIRST_RETRY_WAIT, |wait| (wait * 2).min(MOST_RETRY_WAIT));
        if state.failing {
            tracing::debug!(forwarder = %self.name, %why, "audit forwarding still failing");
        } else {
            tracing::warn!(forwarder = %self.name, %why, from_line = confirmed.lines + 1, "cannot deliver audit events; retrying, nothing is lost");
            state.failing = true;
        }
        state.sent = confirmed.clone();
        state.unconfirmed = 0;
        state.retry_wait = Some(wait);
        Step::Again
    }

    fn recovered(&self, state: &mut Progress) {
        state.retry_wait = None;
        if state.failing {
            tracing::info!(forwarder = %self.name, "audit events are delivered again");
            state.failing = false;
        }
    }

    /// Keeps `at` on disk (off the async workers: it waits for the disk). A failure is
    /// logged: the next save, or a resend from the older position, makes up for it.
    async fn keep(&self, at: &Position) {
        let file = self.position_file.clone();
        let at = at.clone();
        let saved = tokio::task::spawn_blocking(move || position::save(&file, &at)).await;
        let error = match saved {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        tracing::error!(forwarder = %self.name, file = %self.position_file.display(), %error, "cannot keep the forwarder's position; a restart sends events again");
    }

    /// Publishes the confirmed position (the lag metric is worked out from it) and raises an
    /// alert once the lag passes `max_lag` (again only after it has caught up).
    fn watch_lag(&self, services: &Services, total: u64, confirmed: &Position, behind: &mut bool) {
        self.metrics
            .confirmed_lines
            .store(confirmed.lines, Ordering::Relaxed);
        let lag = self.metrics.lag(total);
        if lag > self.max_lag && !*behind {
            *behind = true;
            let message = format!(
                "audit forwarder {} is {lag} events behind (max_lag {}); its receiver is down or slow, and events wait in the audit log",
                self.name, self.max_lag
            );
            tracing::warn!("ALERT: {message}");
            services.audit.record(
                Alert::ForwarderBehind
                    .event(message)
                    .with("forwarder", &self.name)
                    .with("lag", lag),
            );
        } else if lag == 0 && *behind {
            *behind = false;
            tracing::info!(forwarder = %self.name, "audit forwarder caught up");
        }
    }
}

/// Whether the log grows within `wait` (false at once when `finish` is cancelled).
async fn more_within(
    wait: Duration,
    lines: &mut tokio::sync::watch::Receiver<u64>,
    finish: &CancellationToken,
) -> bool {
    tokio::select! {
        changed = tokio::time::timeout(wait, lines.changed()) => changed.is_ok(),
        () = finish.cancelled() => false,
    }
}

/// A forwarder's run-time state.
struct Progress {
    /// After the last line sent (or skipped by the filter).
    sent: Position,
    /// Events sent but not yet confirmed (syslog streams).
    unconfirmed: u64,
    /// After a failure: how long to wait before the next attempt.
    retry_wait: Option<Duration>,
    /// Whether the last attempt failed (to log an outage once, not every retry).
    failing: bool,
    /// Whether the lag alert was raised and the forwarder has not caught up since.
    behind: bool,
}

fn unix_seconds(services: &Services) -> u64 {
    services
        .clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
