//! Just-in-time access for security, as clients of the admin API: requests (list, approve,
//! deny), grants (list, revoke) and `review` (eligibilities by use, break-glass to
//! acknowledge).

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use super::api::{ApiArgs, ApiClient};
use super::ops::block_on;

/// `portcullis requests …`
#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// Open requests (with --all, recent ones in any state).
    List {
        /// Include decided, expired and withdrawn requests.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Approve a request (the API token's name is recorded as the approver).
    Approve {
        /// Request number.
        id: u64,
        /// A comment for the audit log.
        #[arg(long)]
        comment: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Deny a request; the requester is told the reason.
    Deny {
        /// Request number.
        id: u64,
        /// Why.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// `portcullis grants …`
#[derive(Debug, Subcommand)]
pub enum GrantsCommand {
    /// Active grants (with --all, recent ones too).
    List {
        /// Include ended grants.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// End a grant now; its live sessions end within a second.
    Revoke {
        /// Grant number.
        id: u64,
        /// Why (shown to the user and audited).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// `portcullis review [ack ID]`
#[derive(Debug, clap::Args)]
pub struct ReviewArgs {
    #[command(subcommand)]
    command: Option<ReviewCommand>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, Subcommand)]
enum ReviewCommand {
    /// Acknowledge a break-glass activation after looking at it.
    Ack {
        /// Grant number.
        id: u64,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// A field for a table: escaped to one line (reasons are typed by other people).
fn text(value: &Value, key: &str) -> String {
    match &value[key] {
        Value::String(s) => crate::text::one_line(s).into_owned(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

fn print_requests(requests: &Value) {
    println!(
        "{:<6} {:<12} {:<12} {:<14} {:<9} {:<10} {:<9} REASON OR COMMAND",
        "ID", "USER", "TARGET", "ROLE", "FOR", "STATE", "APPROVALS"
    );
    for r in requests.as_array().into_iter().flatten() {
        let approvals = format!(
            "{}/{}",
            r["approved_by"].as_array().map_or(0, Vec::len),
            r["approvals_needed"].as_u64().unwrap_or_default()
        );
        let what = match r["command"]["line"].as_str() {
            Some(line) => format!("$ {}", crate::text::Shown(line)),
            None => text(r, "reason"),
        };
        println!(
            "{:<6} {:<12} {:<12} {:<14} {:<9} {:<10} {:<9} {what}",
            text(r, "id"),
            text(r, "user"),
            text(r, "target"),
            text(r, "role"),
            humantime::format_duration(Duration::from_secs(
                r["duration_s"].as_u64().unwrap_or_default()
            ))
            .to_string(),
            text(r, "state"),
            approvals,
        );
    }
}

fn print_grants(grants: &Value) {
    println!(
        "{:<6} {:<12} {:<12} {:<14} {:<21} {:<10} REASON",
        "ID", "USER", "TARGET", "ROLE", "EXPIRES", "LEFT"
    );
    for g in grants.as_array().into_iter().flatten() {
        let left = if g["active"].as_bool() == Some(true) {
            humantime::format_duration(Duration::from_secs(g["left_s"].as_u64().unwrap_or(0)))
                .to_string()
        } else if g["revoked_by"].is_string() {
            "revoked".to_owned()
        } else {
            "ended".to_owned()
        };
        let mut reason = text(g, "reason");
        if g["break_glass"].as_bool() == Some(true) {
            reason = format!("[break-glass] {reason}");
        }
        println!(
            "{:<6} {:<12} {:<12} {:<14} {:<21} {:<10} {reason}",
            text(g, "id"),
            text(g, "user"),
            text(g, "target"),
            text(g, "role"),
            text(g, "expires_at"),
            left,
        );
    }
}

/// `portcullis requests …`
pub fn requests(command: RequestsCommand) -> ExitCode {
    block_on(async move {
        match command {
            RequestsCommand::List { all, api } => {
                let answer = ApiClient::new(&api)?
                    .json(Method::GET, &format!("/api/v1/requests?all={all}"), None)
                    .await?;
                print_requests(&answer["requests"]);
            }
            RequestsCommand::Approve { id, comment, api } => {
                let answer = ApiClient::new(&api)?
                    .json(
                        Method::POST,
                        &format!("/api/v1/requests/{id}/approve"),
                        Some(json!({ "comment": comment })),
                    )
                    .await?;
                match answer["grant"].as_object() {
                    Some(grant) => println!(
                        "approved request #{id}: grant #{} for {} on {} until {}",
                        grant["id"],
                        text(&answer["grant"], "user"),
                        text(&answer["grant"], "target"),
                        text(&answer["grant"], "expires_at")
                    ),
                    None => println!(
                        "approved request #{id}; {} of {} approvals so far",
                        answer["request"]["approved_by"]
                            .as_array()
                            .map_or(0, Vec::len),
                        answer["request"]["approvals_needed"]
                    ),
                }
            }
            RequestsCommand::Deny { id, reason, api } => {
                ApiClient::new(&api)?
                    .json(
                        Method::POST,
                        &format!("/api/v1/requests/{id}/deny"),
                        Some(json!({ "reason": reason })),
                    )
                    .await?;
                println!("denied request #{id}");
            }
        }
        Ok(())
    })
}

/// `portcullis grants …`
pub fn grants(command: GrantsCommand) -> ExitCode {
    block_on(async move {
        match command {
            GrantsCommand::List { all, api } => {
                let answer = ApiClient::new(&api)?
                    .json(Method::GET, &format!("/api/v1/grants?all={all}"), None)
                    .await?;
                print_grants(&answer["grants"]);
            }
            GrantsCommand::Revoke { id, reason, api } => {
                let answer = ApiClient::new(&api)?
                    .json(
                        Method::POST,
                        &format!("/api/v1/grants/{id}/revoke"),
                        Some(json!({ "reason": reason })),
                    )
                    .await?;
                println!(
                    "revoked grant #{id}; {} live session(s) ended",
                    answer["sessions_ended"].as_u64().unwrap_or_default()
                );
            }
        }
        Ok(())
    })
}

/// `portcullis review [ack ID]`
pub fn review(args: ReviewArgs) -> ExitCode {
    block_on(async move {
        match args.command {
            Some(ReviewCommand::Ack { id, api }) => {
                ApiClient::new(&api)?
                    .json(Method::POST, &format!("/api/v1/review/{id}/ack"), None)
                    .await?;
                println!("acknowledged break-glass grant #{id}");
            }
            None => {
                let answer = ApiClient::new(&args.api)?
                    .json(Method::GET, "/api/v1/review", None)
                    .await?;
                println!("Eligibilities (who may activate what, and how they use it):");
                println!(
                    "  {:<12} {:<14} {:<20} {:>11}  LAST ACTIVATION",
                    "USER", "ROLE", "TARGETS", "ACTIVATIONS"
                );
                for e in answer["eligibilities"].as_array().into_iter().flatten() {
                    let targets: Vec<&str> = e["targets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    let last = match e["last_activation"].as_str() {
                        Some(last) => last.to_owned(),
                        None => "never (consider removing this eligibility)".to_owned(),
                    };
                    println!(
                        "  {:<12} {:<14} {:<20} {:>11}  {last}",
                        text(e, "user"),
                        text(e, "role"),
                        targets.join(","),
                        e["activations"].as_u64().unwrap_or_default(),
                    );
                }
                let pending = &answer["break_glass_unacknowledged"];
                if pending.as_array().is_none_or(Vec::is_empty) {
                    println!("No break-glass activations await acknowledgement.");
                } else {
                    println!("Break-glass activations awaiting acknowledgement (review ack ID):");
                    print_grants(pending);
                }
            }
        }
        Ok(())
    })
}
