//! A forwarder's settings made ready to run: the receiver's address, TLS (CA and client
//! certificate), the token or secret, all read once at start so a mistake stops the start
//! with the forwarder's name and the file's instead of failing every delivery later.

use std::path::Path;
use std::sync::Arc;

use portcullis_config::{Config, ForwardConfig, ForwardKind, SYSLOG_FACILITIES, SyslogTransport};
use zeroize::Zeroizing;

use super::connect::{self, Endpoint};
use super::outgoing::EventFilter;
use super::{Forwarder, Sink, position, syslog, webhook};
use crate::metrics::ForwarderMetrics;

/// The shortest HMAC secret accepted, in bytes.
const MIN_HMAC_SECRET: usize = 32;

/// Reads every forwarder's settings (CA, client certificate, token or secret files); the
/// first problem stops the start (or fails `check-config`) with the forwarder's name and
/// the file's. `metrics` are the forwarders' counters, in config order (none to check).
pub fn prepare(
    config: &Config,
    metrics: &[Arc<ForwarderMetrics>],
) -> Result<Vec<Forwarder>, String> {
    let data = crate::datadir::DataDir::from_config(config);
    config
        .audit
        .forward
        .iter()
        .enumerate()
        .map(|(i, forward)| {
            let metrics = metrics.get(i).cloned().unwrap_or_default();
            prepare_one(config, forward, metrics, data.root())
                .map_err(|why| format!("audit forwarder {:?}: {why}", forward.name))
        })
        .collect()
}

fn prepare_one(
    config: &Config,
    forward: &ForwardConfig,
    metrics: Arc<ForwarderMetrics>,
    data_dir: &Path,
) -> Result<Forwarder, String> {
    let tls = |wanted: bool| wanted.then(|| connect::tls_connector(forward)).transpose();
    let sink = match forward.kind {
        Some(ForwardKind::Syslog) => {
            let address = forward.address.as_deref().unwrap_or_default();
            let (host, port) = portcullis_config::validate::split_host_port(address)
                .ok_or_else(|| format!("{address:?} is not HOST:PORT"))?;
            let transport = match forward.transport {
                SyslogTransport::Udp => syslog::Transport::Udp(address.to_owned()),
                SyslogTransport::Tcp | SyslogTransport::Tls => {
                    syslog::Transport::Stream(Endpoint {
                        host: host.to_owned(),
                        port,
                        tls: tls(forward.transport == SyslogTransport::Tls)?,
                    })
                }
            };
            let facility = SYSLOG_FACILITIES
                .iter()
                .find(|(name, _)| *name == forward.facility)
                .map_or(10, |(_, code)| *code);
            Sink::Syslog(syslog::Syslog::new(
                transport,
                syslog::Stamp {
                    facility,
                    hostname: node_name(config),
                    pid: std::process::id(),
                },
                forward.timeout,
            ))
        }
        Some(ForwardKind::Webhook) => {
            let url = portcullis_config::validate::WebhookUrl::parse(
                forward.url.as_deref().unwrap_or_default(),
            )?;
            let proof = match (&forward.bearer_token_file, &forward.hmac_secret_file) {
                (Some(file), _) => webhook::Proof::Bearer(read_secret(file, 1)?),
                (None, Some(file)) => {
                    let secret = read_secret(file, MIN_HMAC_SECRET)?;
                    webhook::Proof::Hmac(ring::hmac::Key::new(
                        ring::hmac::HMAC_SHA256,
                        secret.as_bytes(),
                    ))
                }
                (None, None) => webhook::Proof::None,
            };
            Sink::Webhook(webhook::Webhook::new(
                Endpoint {
                    host: url.host,
                    port: url.port,
                    tls: tls(url.tls)?,
                },
                url.path,
                proof,
                forward.timeout,
            ))
        }
        None => return Err("has no kind".into()),
    };
    Ok(Forwarder {
        name: forward.name.clone(),
        filter: EventFilter::new(&forward.events),
        sink,
        batch: forward.batch.max(1),
        max_lag: forward.max_lag,
        position_file: position::file(data_dir, &forward.name),
        metrics,
    })
}

/// The first line of `file`, trimmed: a token or a secret, at least `min` bytes long.
fn read_secret(file: &Path, min: usize) -> Result<Zeroizing<String>, String> {
    let text = Zeroizing::new(
        std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?,
    );
    let secret = Zeroizing::new(text.lines().next().unwrap_or_default().trim().to_owned());
    if secret.len() < min {
        return Err(format!(
            "{}: must hold at least {min} characters on its first line",
            file.display()
        ));
    }
    Ok(secret)
}

/// This node's name in forwarded events: `cluster.node`, else the host's name.
pub fn node_name(config: &Config) -> String {
    if let Some(node) = &config.cluster.node {
        return node.clone();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "portcullis".into())
}
