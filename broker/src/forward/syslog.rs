//! The syslog forwarder: RFC 5424 messages over TLS (RFC 5425), TCP (octet-counted,
//! RFC 6587) or UDP (RFC 5426).
//!
//! ```text
//! <PRI>1 TIME HOST portcullis PID EVENT [portcullis@32473 id="…" seq="7" user="alice" …] {"id":…}
//! ```
//!
//! The structured data carries the event's fields for receivers that index them; the
//! message is the event's JSON, whole. Alerts take their severity; other events are
//! informational.
//!
//! **What "delivered" means on a stream.** Plain syslog has no acknowledgement: bytes a
//! receiver's kernel took may die with the receiver before it reads them. So events written
//! to a connection stay *unconfirmed* until the connection is closed in order — our side
//! shuts down writing and the receiver, having read everything up to that point, closes its
//! side — which happens once the forwarder is idle for a moment or has many unconfirmed
//! events. A connection that breaks (or that the receiver closed first) confirms nothing,
//! and its events are sent again on the next one: at least once, with ids to drop repeats.
//! UDP confirms nothing ever; it is best effort by nature, and documented so.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use super::connect::{Endpoint, Stream};
use super::outgoing::Outgoing;
use crate::alerts::Severity;

/// The SD-ID of our structured data: an enterprise number reserved for documentation
/// (RFC 5612), as no number is registered for portcullis.
const SD_ID: &str = "portcullis@32473";
/// Most bytes of one UDP datagram's payload we send (the message is cut to fit).
const MAX_DATAGRAM: usize = 65_000;
/// Syslog's informational severity, for events that are not alerts.
const INFORMATIONAL: u8 = 6;

/// How one message is stamped.
#[derive(Debug, Clone)]
pub struct Stamp {
    /// Facility code (RFC 5424, table 1).
    pub facility: u8,
    /// HOSTNAME: this node.
    pub hostname: String,
    /// PROCID.
    pub pid: u32,
}

/// The RFC 5424 message for `event`.
pub fn format(event: &Outgoing, stamp: &Stamp) -> String {
    let severity = event
        .severity()
        .and_then(Severity::parse)
        .map_or(INFORMATIONAL, Severity::syslog_code);
    let mut out = String::with_capacity(event.json.len() * 2 + 128);
    out.push('<');
    out.push_str(&(u16::from(stamp.facility) * 8 + u16::from(severity)).to_string());
    out.push_str(">1 ");
    out.push_str(&timestamp_field(&event.time));
    out.push(' ');
    out.push_str(header_field(&stamp.hostname, 255).as_str());
    out.push_str(" portcullis ");
    out.push_str(&stamp.pid.to_string());
    out.push(' ');
    out.push_str(header_field(&event.event, 32).as_str());
    out.push_str(" [");
    out.push_str(SD_ID);
    param(&mut out, "id", &event.id);
    param(&mut out, "seq", &event.seq.to_string());
    for (key, value) in &event.fields {
        if matches!(key.as_str(), "mac" | "time" | "event") {
            continue;
        }
        let name: String = key
            .chars()
            .filter(|c| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"'))
            .take(32)
            .collect();
        if name.is_empty() || name == "id" || name == "seq" {
            continue;
        }
        match value {
            Value::String(text) => param(&mut out, &name, text),
            other => param(&mut out, &name, &other.to_string()),
        }
    }
    out.push_str("] ");
    out.push_str(&event.json);
    out
}

/// A header field: printable US-ASCII only, at most `max` characters, `-` when empty.
fn header_field(text: &str, max: usize) -> String {
    let field: String = text
        .chars()
        .filter(char::is_ascii_graphic)
        .take(max)
        .collect();
    if field.is_empty() { "-".into() } else { field }
}

/// TIMESTAMP: the event's time if it looks like one (the log's own are RFC 3339), else `-`.
fn timestamp_field(time: &str) -> String {
    let plausible = time.len() <= 64
        && time.get(..5).is_some_and(|year| {
            year.bytes().take(4).all(|b| b.is_ascii_digit()) && year.ends_with('-')
        })
        && time
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | 'T' | 'Z' | '+'));
    if plausible {
        time.to_owned()
    } else {
        "-".into()
    }
}

/// ` NAME="VALUE"` with `"`, `\` and `]` escaped (RFC 5424, 6.3.3) and control characters
/// written as escapes, so a value never breaks a line-based receiver.
fn param(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '"' | '\\' | ']' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&c.escape_default().to_string()),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Where messages go.
pub enum Transport {
    /// TLS or TCP.
    Stream(Endpoint),
    /// UDP to this `HOST:PORT`.
    Udp(String),
}

/// A syslog receiver and the connection to it, if one is open.
pub struct Syslog {
    link: Link,
    stamp: Stamp,
    timeout: Duration,
}

/// A transport with what is open on it.
enum Link {
    Stream {
        endpoint: Endpoint,
        connection: Option<Connection>,
    },
    Udp {
        address: String,
        socket: Option<UdpSocket>,
    },
}

/// An open stream: what we write on, and word from the task reading it of how it ended.
struct Connection {
    writer: WriteHalf<Box<dyn Stream>>,
    /// `Ok` when the receiver closed its side in order, `Err` when the stream broke.
    ended: oneshot::Receiver<Result<(), String>>,
    /// The task reading the stream: ended with the connection, so a receiver that hangs
    /// cannot pile up connections kept open for it.
    reader: tokio::task::AbortHandle,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What a send achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Delivered as far as the transport can ever tell.
    Confirmed,
    /// Written; confirmed only by [`Syslog::confirm`].
    Unconfirmed,
}

impl Syslog {
    /// A forwarder to `transport`, not yet connected.
    pub fn new(transport: Transport, stamp: Stamp, timeout: Duration) -> Self {
        let link = match transport {
            Transport::Stream(endpoint) => Link::Stream {
                endpoint,
                connection: None,
            },
            Transport::Udp(address) => Link::Udp {
                address,
                socket: None,
            },
        };
        Self {
            link,
            stamp,
            timeout,
        }
    }

    /// Sends `events`, connecting first if needed.
    pub async fn send(&mut self, events: &[Outgoing]) -> Result<Sent, String> {
        let messages = events.iter().map(|event| format(event, &self.stamp));
        match &mut self.link {
            Link::Udp { address, socket } => {
                send_datagrams(address, socket, messages).await?;
                Ok(Sent::Confirmed)
            }
            Link::Stream {
                endpoint,
                connection,
            } => {
                let mut frames = Vec::new();
                for message in messages {
                    frames.extend_from_slice(message.len().to_string().as_bytes());
                    frames.push(b' ');
                    frames.extend_from_slice(message.as_bytes());
                }
                let sent = send_frames(endpoint, connection, &frames, self.timeout).await;
                if sent.is_err() {
                    *connection = None;
                }
                sent.map(|()| Sent::Unconfirmed)
            }
        }
    }

    /// Confirms what was sent on the open connection by closing it in order (see the
    /// module's comment). `Ok` means the receiver read everything; with no connection open
    /// there is nothing to confirm.
    pub async fn confirm(&mut self) -> Result<(), String> {
        let Link::Stream { connection, .. } = &mut self.link else {
            return Ok(());
        };
        let Some(mut connection) = connection.take() else {
            return Ok(());
        };
        if !connection.is_open() {
            return Err("the receiver closed the connection before it was confirmed".into());
        }
        let closed = tokio::time::timeout(self.timeout, async {
            connection
                .writer
                .shutdown()
                .await
                .map_err(|e| format!("cannot close the connection: {e}"))?;
            (&mut connection.ended)
                .await
                .map_err(|_| "the connection's reader stopped".to_owned())?
        })
        .await;
        match closed {
            Ok(result) => result,
            Err(_) => Err("the receiver did not close its side in time".into()),
        }
    }

    /// Drops the connection without confirming (after a failure elsewhere).
    pub fn reset(&mut self) {
        match &mut self.link {
            Link::Stream { connection, .. } => *connection = None,
            Link::Udp { socket, .. } => *socket = None,
        }
    }
}

/// Each message as one datagram (cut to fit), opening the socket first if needed.
async fn send_datagrams(
    address: &str,
    socket: &mut Option<UdpSocket>,
    messages: impl Iterator<Item = String>,
) -> Result<(), String> {
    let socket = match socket {
        Some(socket) => socket,
        None => {
            let bound = UdpSocket::bind(if address.starts_with('[') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            })
            .await
            .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
            bound
                .connect(address)
                .await
                .map_err(|e| format!("cannot reach {address}: {e}"))?;
            socket.insert(bound)
        }
    };
    for message in messages {
        let mut end = message.len().min(MAX_DATAGRAM);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        socket
            .send(&message.as_bytes()[..end])
            .await
            .map_err(|e| format!("cannot send to {address}: {e}"))?;
    }
    Ok(())
}

/// Writes `frames` on the open connection, opening one first if needed; a connection the
/// receiver has closed meanwhile is an error (what was sent on it is sent again).
async fn send_frames(
    endpoint: &Endpoint,
    connection: &mut Option<Connection>,
    frames: &[u8],
    timeout: Duration,
) -> Result<(), String> {
    if connection.as_mut().is_some_and(|c| !c.is_open()) {
        return Err("the receiver closed the connection".into());
    }
    let connection = match connection {
        Some(connection) => connection,
        None => connection.insert(Connection::open(endpoint, timeout).await?),
    };
    let written = tokio::time::timeout(timeout, async {
        connection.writer.write_all(frames).await?;
        connection.writer.flush().await
    })
    .await;
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot write to {endpoint:?}: {e}")),
        Err(_) => Err(format!("{endpoint:?} took no data for {timeout:?}")),
    }
}

impl Connection {
    async fn open(endpoint: &Endpoint, timeout: Duration) -> Result<Self, String> {
        let stream = endpoint.connect(timeout).await?;
        let (reader, writer) = tokio::io::split(stream);
        let (tell, ended) = oneshot::channel();
        let reader = tokio::spawn(read_until_closed(reader, tell)).abort_handle();
        Ok(Self {
            writer,
            ended,
            reader,
        })
    }

    /// Whether neither side has closed it or seen it break yet.
    fn is_open(&mut self) -> bool {
        matches!(
            self.ended.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        )
    }
}

/// Reads (and drops) what the receiver sends until it closes its side; syslog receivers
/// send nothing, so this only learns how the connection ended.
async fn read_until_closed(
    mut reader: ReadHalf<Box<dyn Stream>>,
    tell: oneshot::Sender<Result<(), String>>,
) {
    let mut buffer = [0u8; 512];
    let ended = loop {
        match reader.read(&mut buffer).await {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            // A TLS receiver that closes its TCP side without a close_notify of its own
            // (rsyslog does) has still closed in order: it read up to our close_notify.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break Ok(()),
            Err(e) => break Err(format!("the connection broke: {e}")),
        }
    };
    let _ = tell.send(ended);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MAC: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn stamp() -> Stamp {
        Stamp {
            facility: 10,
            hostname: "node-a".into(),
            pid: 42,
        }
    }

    #[test]
    fn an_event_becomes_an_rfc5424_message_with_its_fields_as_structured_data() {
        let line = format!(
            r#"{{"time":"2026-12-07T05:00:00.000Z","event":"command","user":"alice","line":"echo \"a]b\\c\"\nx","ok":true,"mac":"{MAC}"}}"#
        );
        let event = Outgoing::from_line(&line, 3, "node-a").unwrap();
        let message = format(&event, &stamp());
        let expected_start = concat!(
            "<86>1 2026-12-07T05:00:00.000Z node-a portcullis 42 command ",
            r#"[portcullis@32473 id="00112233445566778899aabbccddeeff" seq="3" line="echo \"a\]b\\c\"\nx" ok="true" user="alice"] "#
        );
        assert_eq!(&message[..expected_start.len()], expected_start);
        assert_eq!(&message[expected_start.len()..], event.json);
        assert!(!message.contains('\n'));
    }

    #[test]
    fn an_alert_has_its_severity_in_the_priority() {
        let line = format!(
            r#"{{"time":"t","event":"alert","alert":"host_key_mismatch","severity":"critical","mac":"{MAC}"}}"#
        );
        let event = Outgoing::from_line(&line, 1, "n").unwrap();
        // authpriv (10) * 8 + critical (2); "t" is no timestamp.
        assert!(format(&event, &stamp()).starts_with("<82>1 - node-a portcullis 42 alert "));
    }

    #[tokio::test]
    async fn udp_sends_one_datagram_per_event_cut_to_fit() {
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = receiver.local_addr().unwrap().to_string();
        let mut syslog = Syslog::new(Transport::Udp(address), stamp(), Duration::from_secs(5));
        let small = Outgoing::from_line(
            &format!(r#"{{"time":"t","event":"command","line":"ls","mac":"{MAC}"}}"#),
            1,
            "n",
        )
        .unwrap();
        let huge = Outgoing::from_line(
            &format!(
                r#"{{"time":"t","event":"command","line":"{}","mac":"{MAC}"}}"#,
                "é".repeat(40_000)
            ),
            2,
            "n",
        )
        .unwrap();
        let sent = syslog.send(&[small.clone(), huge]).await.unwrap();
        assert_eq!(sent, Sent::Confirmed);
        let mut buffer = vec![0u8; 70_000];
        let first = receiver.recv(&mut buffer).await.unwrap();
        assert_eq!(&buffer[..first], format(&small, &stamp()).as_bytes());
        let second = receiver.recv(&mut buffer).await.unwrap();
        assert!(second <= MAX_DATAGRAM);
        assert!(std::str::from_utf8(&buffer[..second]).is_ok());
    }

    #[test]
    fn header_fields_are_printable_ascii_and_never_empty() {
        assert_eq!(header_field("", 10), "-");
        assert_eq!(header_field("a b\u{1b}c", 10), "abc");
        assert_eq!(header_field("abcdef", 3), "abc");
    }
}
