//! Counters for Prometheus (`GET /metrics`), kept as atomics and rendered as text by hand:
//! a handful of numbers do not need a metrics framework.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::registry::Registry;

/// Counters since the broker started.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sessions that authenticated.
    pub sessions_total: AtomicU64,
    /// Failed authentication attempts.
    pub auth_failures_total: AtomicU64,
    /// Sessions ended by an operator.
    pub sessions_killed_total: AtomicU64,
    /// Recordings that could not be created or written.
    pub recording_errors_total: AtomicU64,
    /// Upstream connections that failed.
    pub upstream_failures_total: AtomicU64,
    /// Access grants started (self-activated, approved or break-glass).
    pub grants_total: AtomicU64,
    /// Break-glass activations.
    pub break_glass_total: AtomicU64,
    /// Command lines stopped by a rule (deny, terminate).
    pub commands_blocked_total: AtomicU64,
    /// Connections closed at accept: their pre-login budget was spent.
    pub connections_refused_total: AtomicU64,
    /// Bytes relayed by finished sessions, client → upstream.
    pub finished_bytes_from_clients: AtomicU64,
    /// Bytes relayed by finished sessions, upstream → client.
    pub finished_bytes_to_clients: AtomicU64,
    /// Each audit forwarder's numbers, in config order.
    pub forwarders: Vec<Arc<ForwarderMetrics>>,
}

impl ForwarderMetrics {
    /// Lines of a log of `log_lines` lines not yet delivered and confirmed.
    pub fn lag(&self, log_lines: u64) -> u64 {
        log_lines.saturating_sub(self.confirmed_lines.load(Ordering::Relaxed))
    }
}

/// `(labels, value)` pairs as `metric` takes them.
fn labelled(values: &[(String, u64)]) -> Vec<(&str, u64)> {
    values
        .iter()
        .map(|(labels, value)| (labels.as_str(), *value))
        .collect()
}

/// One audit forwarder's numbers.
#[derive(Debug, Default)]
pub struct ForwarderMetrics {
    /// Its name.
    pub name: String,
    /// Audit log lines up to its confirmed position (its lag is the log's lines past it,
    /// worked out when asked, so it is current even while the forwarder waits to retry).
    pub confirmed_lines: AtomicU64,
    /// Events it delivered (a repeat after an outage counts again).
    pub delivered: AtomicU64,
    /// Deliveries that failed.
    pub failures: AtomicU64,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition; `audit_lines` is the audit log's length now.
    pub fn render(&self, registry: &Registry, audit_lines: u64) -> String {
        let (active, live_up, live_down) = registry.with_all(|sessions| {
            sessions.fold((0u64, 0u64, 0u64), |(n, up, down), s| {
                (
                    n + 1,
                    up + s.bytes_from_client.load(Ordering::Relaxed),
                    down + s.bytes_to_client.load(Ordering::Relaxed),
                )
            })
        });
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        metric(
            "portcullis_sessions_active",
            "gauge",
            "Sessions live now.",
            &[("", active)],
        );
        metric(
            "portcullis_sessions_total",
            "counter",
            "Sessions that authenticated.",
            &[("", get(&self.sessions_total))],
        );
        metric(
            "portcullis_bytes_relayed_total",
            "counter",
            "Bytes relayed, by direction.",
            &[
                (
                    "{direction=\"from_client\"}",
                    get(&self.finished_bytes_from_clients) + live_up,
                ),
                (
                    "{direction=\"to_client\"}",
                    get(&self.finished_bytes_to_clients) + live_down,
                ),
            ],
        );
        metric(
            "portcullis_connections_refused_total",
            "counter",
            "Connections closed at accept (pre-login limits, per address or in all).",
            &[("", get(&self.connections_refused_total))],
        );
        metric(
            "portcullis_auth_failures_total",
            "counter",
            "Failed authentication attempts.",
            &[("", get(&self.auth_failures_total))],
        );
        metric(
            "portcullis_sessions_killed_total",
            "counter",
            "Sessions ended by an operator (kill or lock).",
            &[("", get(&self.sessions_killed_total))],
        );
        metric(
            "portcullis_recording_errors_total",
            "counter",
            "Recordings that could not be created or written.",
            &[("", get(&self.recording_errors_total))],
        );
        metric(
            "portcullis_upstream_failures_total",
            "counter",
            "Upstream connections that failed.",
            &[("", get(&self.upstream_failures_total))],
        );
        metric(
            "portcullis_grants_total",
            "counter",
            "Just-in-time access grants started.",
            &[("", get(&self.grants_total))],
        );
        metric(
            "portcullis_break_glass_total",
            "counter",
            "Break-glass activations.",
            &[("", get(&self.break_glass_total))],
        );
        metric(
            "portcullis_commands_blocked_total",
            "counter",
            "Command lines stopped by a rule.",
            &[("", get(&self.commands_blocked_total))],
        );
        if !self.forwarders.is_empty() {
            let per_forwarder = |value: &dyn Fn(&ForwarderMetrics) -> u64| {
                self.forwarders
                    .iter()
                    .map(|f| (format!("{{forwarder=\"{}\"}}", f.name), value(f)))
                    .collect::<Vec<_>>()
            };
            metric(
                "portcullis_audit_forward_lag_events",
                "gauge",
                "Audit events a forwarder has not yet delivered.",
                &labelled(&per_forwarder(&|f| f.lag(audit_lines))),
            );
            metric(
                "portcullis_audit_forwarded_total",
                "counter",
                "Audit events a forwarder delivered (repeats after an outage included).",
                &labelled(&per_forwarder(&|f| get(&f.delivered))),
            );
            metric(
                "portcullis_audit_forward_failures_total",
                "counter",
                "Deliveries of audit events that failed (and were retried).",
                &labelled(&per_forwarder(&|f| get(&f.failures))),
            );
        }
        out
    }
}
