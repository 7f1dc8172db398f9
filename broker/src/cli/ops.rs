//! Commands for security, as clients of the admin API: sessions (list, show, watch, kill),
//! lock and unlock, recordings through the API, the audit log's tail.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use futures::StreamExt;
use hyper::Method;
use serde_json::{Value, json};

use super::api::{ApiArgs, ApiClient};
use super::fail;

/// `portcullis sessions …`
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// Live sessions.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One session, in detail.
    Show {
        /// Session id (or a unique prefix of at least 4 characters).
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Watch a session's terminal live, in this terminal; ends when the session does.
    Watch {
        /// Session id.
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End a session now; the user sees who ended it and why.
    Kill {
        /// Session id.
        id: String,
        /// Why (shown to the user and audited).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Runs an async command on a small runtime.
pub(super) fn block_on(future: impl std::future::Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(error),
    };
    match runtime.block_on(future) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(message),
    }
}

fn path_segment(text: &str) -> Result<&str, String> {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        Ok(text)
    } else {
        Err(format!("{text:?} is not a valid id or name"))
    }
}

/// `portcullis sessions …`
pub fn sessions(command: SessionsCommand) -> ExitCode {
    block_on(async move {
        match command {
            SessionsCommand::List { api } => {
                let sessions = ApiClient::new(&api)?
                    .json(Method::GET, "/api/v1/sessions", None)
                    .await?;
                print_sessions(&sessions["sessions"]);
                Ok(())
            }
            SessionsCommand::Show { id, api } => {
                let session = ApiClient::new(&api)?
                    .json(
                        Method::GET,
                        &format!("/api/v1/sessions/{}", path_segment(&id)?),
                        None,
                    )
                    .await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&session).unwrap_or_default()
                );
                Ok(())
            }
            SessionsCommand::Watch { id, api } => {
                watch(&ApiClient::new(&api)?, path_segment(&id)?).await
            }
            SessionsCommand::Kill { id, reason, api } => {
                let answer = ApiClient::new(&api)?
                    .json(
                        Method::POST,
                        &format!("/api/v1/sessions/{}/kill", path_segment(&id)?),
                        Some(json!({ "reason": reason })),
                    )
                    .await?;
                println!("killed {}", answer["killed"].as_str().unwrap_or(&id));
                Ok(())
            }
        }
    })
}

fn print_sessions(sessions: &Value) {
    println!(
        "{:<24} {:<12} {:<12} {:<10} {:<21} {:>8} {:>10} {:>10}  NODE",
        "ID", "USER", "TARGET", "LOGIN", "CLIENT", "AGE", "IN", "OUT"
    );
    for s in sessions.as_array().into_iter().flatten() {
        let text = |key: &str| crate::text::one_line(s[key].as_str().unwrap_or("-")).into_owned();
        let number = |key: &str| s[key].as_u64().unwrap_or_default();
        println!(
            "{:<24} {:<12} {:<12} {:<10} {:<21} {:>8} {:>10} {:>10}  {}",
            text("id"),
            text("user"),
            text("target"),
            text("login"),
            text("client"),
            humantime::format_duration(Duration::from_secs(number("duration_s"))).to_string(),
            number("bytes_from_client"),
            number("bytes_to_client"),
            text("node"),
        );
    }
}

async fn watch(client: &ApiClient, id: &str) -> Result<(), String> {
    let mut socket = client
        .websocket(&format!("/api/v1/sessions/{id}/live"))
        .await?;
    let mut stdout = std::io::stdout();
    let mut header_seen = false;
    while let Some(message) = socket.next().await {
        let message = match message {
            Ok(message) => message,
            Err(e) => return Err(format!("the live stream broke: {e}")),
        };
        let Ok(text) = message.to_text() else {
            continue;
        };
        if !header_seen {
            header_seen = true;
            if let Ok(header) = serde_json::from_str::<Value>(text)
                && header.get("version").is_some()
            {
                eprintln!(
                    "portcullis: watching {} (read-only; Ctrl-C to stop)",
                    header["title"].as_str().unwrap_or(id)
                );
                continue;
            }
        }
        if let Some(output) = crate::watch::output_of(text) {
            let _ = stdout.write_all(output.as_bytes());
            let _ = stdout.flush();
        }
    }
    eprintln!("\r\nportcullis: the session ended");
    Ok(())
}

/// `portcullis lock USER --reason R [--for 1h]`
pub fn lock(user: String, reason: String, duration: Option<Duration>, api: ApiArgs) -> ExitCode {
    block_on(async move {
        // The bastion counts the duration on its own clock.
        let lasting = duration.map(|d| humantime::format_duration(d).to_string());
        let answer = ApiClient::new(&api)?
            .json(
                Method::POST,
                "/api/v1/locks",
                Some(json!({ "user": user, "reason": reason, "for": lasting })),
            )
            .await?;
        println!(
            "locked {user}{}; {} live session(s) ended",
            answer["until"]
                .as_str()
                .map(|u| format!(" until {u}"))
                .unwrap_or_default(),
            answer["sessions_ended"].as_u64().unwrap_or_default()
        );
        Ok(())
    })
}

/// `portcullis unlock USER`
pub fn unlock(user: String, api: ApiArgs) -> ExitCode {
    block_on(async move {
        ApiClient::new(&api)?
            .json(
                Method::DELETE,
                &format!("/api/v1/locks/{}", path_segment(&user)?),
                None,
            )
            .await?;
        println!("unlocked {user}");
        Ok(())
    })
}

/// `portcullis recordings list` through the API.
pub fn recordings_list(api: ApiArgs) -> ExitCode {
    block_on(async move {
        let answer = ApiClient::new(&api)?
            .json(Method::GET, "/api/v1/recordings", None)
            .await?;
        println!(
            "{:<28} {:<20} {:<12} {:<12} {:<9} WHAT",
            "ID", "STARTED", "USER", "TARGET", "KIND"
        );
        for r in answer["recordings"].as_array().into_iter().flatten() {
            let text =
                |key: &str| crate::text::one_line(r[key].as_str().unwrap_or("-")).into_owned();
            let what = r["command"]
                .as_str()
                .map(|c| crate::text::one_line(c).into_owned())
                .unwrap_or_else(|| text("kind"));
            println!(
                "{:<28} {:<20} {:<12} {:<12} {:<9} {what}",
                text("id"),
                text("started_at"),
                text("user"),
                text("target"),
                text("kind"),
            );
        }
        Ok(())
    })
}

/// `portcullis recordings get ID` through the API: the .cast on stdout.
pub fn recordings_get(id: String, api: ApiArgs) -> ExitCode {
    block_on(async move {
        let body = ApiClient::new(&api)?
            .call(
                Method::GET,
                &format!("/api/v1/recordings/{}", path_segment(&id)?),
                None,
            )
            .await?;
        std::io::stdout()
            .write_all(&body)
            .map_err(|e| e.to_string())
    })
}

/// `portcullis recordings verify ID` through the API; exit 1 if tampered, 2 unfinalized.
pub fn recordings_verify(id: String, api: ApiArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(error),
    };
    let result = runtime.block_on(async {
        ApiClient::new(&api)?
            .json(
                Method::GET,
                &format!("/api/v1/recordings/{}/verify", path_segment(&id)?),
                None,
            )
            .await
    });
    match result {
        Ok(answer) => {
            println!("{id}: {}", answer["detail"].as_str().unwrap_or("?"));
            match answer["status"].as_str() {
                Some("intact") => ExitCode::SUCCESS,
                Some("unfinalized") => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
        Err(message) => fail(message),
    }
}

/// `portcullis audit tail [-f]` through the API: events as JSON lines.
pub fn audit_tail(
    follow: bool,
    event: Option<String>,
    user: Option<String>,
    lines: usize,
    api: ApiArgs,
) -> ExitCode {
    block_on(async move {
        let client = ApiClient::new(&api)?;
        let mut query = format!("/api/v1/audit?limit={lines}");
        for (key, value) in [("event", &event), ("user", &user)] {
            if let Some(value) = value {
                query.push_str(&format!("&{key}={}", path_segment(value)?));
            }
        }
        let mut seen = std::collections::HashSet::new();
        let mut since: Option<String> = None;
        loop {
            // The first request takes the last `lines` events; later ones everything new.
            let url = match &since {
                Some(since) => format!(
                    "{}&since={since}",
                    query.replacen(&format!("limit={lines}"), "limit=10000", 1)
                ),
                None => query.clone(),
            };
            let answer = client.json(Method::GET, &url, None).await?;
            for event in answer["events"].as_array().into_iter().flatten() {
                // Events at the boundary time come again: print each once.
                let mac = event["mac"].as_str().unwrap_or_default().to_owned();
                // A reader that went away (`… | head`) ends the tail quietly.
                if seen.insert(mac) && writeln!(std::io::stdout(), "{event}").is_err() {
                    return Ok(());
                }
                if let Some(time) = event["time"].as_str() {
                    since = Some(time.to_owned());
                }
            }
            let _ = std::io::stdout().flush();
            if !follow {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}
