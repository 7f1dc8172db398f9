//! Client → upstream: forwards the client's data and requests in order, records
//! keystrokes, and drains the flow-control count as data leaves.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use portcullis_config::OnRecordingFailure;
use portcullis_recorder::RecordingHandle;
use russh::{ChannelWriteHalf, client};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::flow::Flow;
use super::gate::{Gate, GateIo};
use super::{CONTROL_COST, PendingSize, Replies, Request, Uplink, WindowSize, lock};
use crate::live::SessionShared;

/// Everything the uplink task owns.
pub(super) struct UplinkTask {
    pub(super) upstream: ChannelWriteHalf<client::Msg>,
    pub(super) queue: mpsc::UnboundedReceiver<Uplink>,
    pub(super) flow: Arc<Flow>,
    pub(super) size: PendingSize,
    pub(super) replies: Replies,
    pub(super) closed: CancellationToken,
    pub(super) session: Arc<SessionShared>,
    pub(super) record_input: bool,
    pub(super) on_failure: OnRecordingFailure,
}

/// Forwards the client's messages to the upstream channel, in order.
pub(super) async fn uplink(task: UplinkTask) {
    let UplinkTask {
        upstream,
        mut queue,
        flow,
        size,
        replies,
        closed,
        session,
        record_input,
        on_failure,
    } = task;
    // However the uplink ends, a handler waiting for queue room must be let go.
    let _release = ReleaseOnExit(flow.clone());
    let mut recording: Option<RecordingHandle> = None;
    let mut gate: Option<Box<Gate>> = None;
    let mut watch: Option<Box<dyn super::Watch>> = None;
    let mut insertions: Option<Arc<super::Insertions>> = None;
    // Messages the gate took off the queue while it waited, to handle next.
    let mut deferred: VecDeque<Uplink> = VecDeque::new();
    // What the client sends can no longer be checked: it is dropped, not forwarded.
    let mut cut_off = false;
    loop {
        let message = match deferred.pop_front() {
            Some(message) => Some(message),
            None => tokio::select! {
                message = queue.recv() => message,
                () = session.control.ended() => None,
                () = closed.cancelled() => return,
                () = park_when_idle(gate.as_deref()) => continue,
            },
        };
        let Some(message) = message else {
            // The client's channel is gone or the session is ending.
            let _ = upstream.close().await;
            return;
        };
        let sent = match message {
            Uplink::Data(data) => {
                flow.drained(data.len());
                if cut_off {
                    continue;
                }
                session.touch_input();
                if let Some(active) = &recording
                    && active.has_failed()
                {
                    if on_failure == OnRecordingFailure::Terminate {
                        // The downlink ends the session; nothing more goes upstream.
                        continue;
                    }
                    recording = None;
                }
                session
                    .bytes_from_client
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                if let Some(gate) = gate.as_mut() {
                    let mut io = GateIo {
                        upstream: &upstream,
                        queue: &mut queue,
                        flow: &flow,
                        recording: recording.as_ref(),
                        record_input,
                        deferred: &mut deferred,
                    };
                    if gate.data(data, &mut io).await.is_err() {
                        return;
                    }
                    continue;
                }
                if record_input && let Some(active) = &recording {
                    let _ = active.input(data.clone()).await;
                }
                let Some(watch) = watch.as_mut() else {
                    let sent = tokio::select! {
                        result = upstream.data_bytes(data) => result,
                        () = session.control.ended() => Ok(()),
                        () = closed.cancelled() => return,
                    };
                    if sent.is_err() {
                        // The upstream channel is gone; the downlink sees it close.
                        return;
                    }
                    continue;
                };
                let pieces = match watch.pass(data) {
                    Ok(pieces) => pieces,
                    Err(why) => {
                        // Nothing more goes up: the server sees the end of its input and
                        // ends the channel the usual way (a close sent from here would
                        // leave the upstream's own close and exit status undelivered).
                        tracing::warn!(parent: &session.span, %why, "ALERT: nothing more of this channel goes upstream");
                        cut_off = true;
                        super::write_notes(watch.as_mut(), recording.as_ref(), None).await;
                        let _ = upstream.eof().await;
                        continue;
                    }
                };
                let mut sent = Ok(());
                for piece in pieces {
                    sent = tokio::select! {
                        result = upstream.data_bytes(piece) => result,
                        () = session.control.ended() => Ok(()),
                        () = closed.cancelled() => return,
                    };
                    if sent.is_err() {
                        break;
                    }
                }
                super::write_notes(watch.as_mut(), recording.as_ref(), None).await;
                // Answers the client has not read yet hold its next requests back.
                if let Some(insertions) = &insertions {
                    tokio::select! {
                        () = insertions.room() => {}
                        () = session.control.ended() => {}
                        () = closed.cancelled() => return,
                    }
                }
                sent
            }
            Uplink::Eof => upstream.eof().await,
            Uplink::Close => {
                let _ = upstream.close().await;
                return;
            }
            Uplink::WindowChange => {
                let Some(WindowSize {
                    cols,
                    rows,
                    pix_width,
                    pix_height,
                }) = lock(&size).take()
                else {
                    continue;
                };
                if let Some(active) = &recording {
                    let _ = active.resize(cols, rows).await;
                }
                if let Some(gate) = &gate {
                    gate.resize(rows, cols);
                }
                // The real size goes upstream; only the gate's own screen is clamped.
                upstream
                    .window_change(cols, rows, pix_width, pix_height)
                    .await
            }
            Uplink::Signal(signal) => {
                flow.drained(CONTROL_COST);
                upstream.signal(signal).await
            }
            Uplink::Env { name, value } => {
                flow.drained(CONTROL_COST);
                upstream.set_env(false, name, value).await
            }
            Uplink::Watch(installed) => {
                watch = Some(installed);
                Ok(())
            }
            Uplink::Insertions(installed) => {
                insertions = Some(installed);
                Ok(())
            }
            Uplink::Record(handle) => {
                recording = Some(handle);
                Ok(())
            }
            Uplink::Gate(installed) => {
                gate = Some(installed);
                Ok(())
            }
            Uplink::Request { request, reply } => {
                lock(&replies).push_back(reply);
                let result = match request {
                    Request::Pty {
                        term,
                        cols,
                        rows,
                        pix_width,
                        pix_height,
                        modes,
                    } => {
                        upstream
                            .request_pty(true, &term, cols, rows, pix_width, pix_height, &modes)
                            .await
                    }
                    Request::Shell => upstream.request_shell(true).await,
                    Request::Exec(command) => upstream.exec(true, command).await,
                    Request::Subsystem(name) => upstream.request_subsystem(true, name).await,
                };
                if result.is_err()
                    && let Some(reply) = lock(&replies).pop_back()
                {
                    let _ = reply.send(false);
                }
                result
            }
        };
        if sent.is_err() {
            // The upstream channel is gone; the downlink sees it close and ends the channel.
            return;
        }
    }
}

struct ReleaseOnExit(Arc<Flow>);

impl Drop for ReleaseOnExit {
    fn drop(&mut self) {
        self.0.uplink_gone();
    }
}

/// Resolves once the gate's terminal emulator has been parked for idleness (see
/// [`Gate::park_when_idle`]); never without a gate.
async fn park_when_idle(gate: Option<&Gate>) {
    match gate {
        Some(gate) => gate.park_when_idle().await,
        None => std::future::pending().await,
    }
}
