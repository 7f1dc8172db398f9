//! `portcullis checkout TARGET`: what a CI job runs to reach a target through the bastion
//! without a standing key. With a token of scope `request` (its service user), it asks for
//! access, waits for the approval if the role wants one, checks out a certificate for the
//! job's public key and writes it beside the key, then prints the ssh line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use hyper::Method;
use serde_json::{Value, json};

use super::api::{ApiArgs, ApiClient};
use super::ops::block_on;

/// `portcullis checkout`
#[derive(Debug, Args)]
pub struct CheckoutArgs {
    /// The target.
    target: String,
    /// How long (e.g. 15m); the role's default when absent.
    #[arg(long = "for")]
    duration: Option<String>,
    /// Why (e.g. the ticket or pipeline run).
    #[arg(long, default_value = "")]
    reason: String,
    /// The public key to certify (the certificate is written beside it, as KEY-cert.pub).
    #[arg(long)]
    key: PathBuf,
    /// How long to wait for an approval.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    wait: Duration,
    #[command(flatten)]
    api: ApiArgs,
}

/// Where OpenSSH looks for the certificate of `key` (`id_ed25519.pub` → `id_ed25519-cert.pub`).
fn certificate_path(key: &Path) -> PathBuf {
    let text = key.to_string_lossy();
    PathBuf::from(format!(
        "{}-cert.pub",
        text.strip_suffix(".pub").unwrap_or(&text)
    ))
}

/// `portcullis checkout …`
pub fn checkout(args: CheckoutArgs) -> std::process::ExitCode {
    block_on(async move {
        // Bad input is found before anything is asked for.
        let public_key = std::fs::read_to_string(&args.key)
            .map_err(|e| format!("cannot read {}: {e}", args.key.display()))?;
        if !public_key.trim_start().starts_with("ssh-")
            && !public_key.trim_start().starts_with("ecdsa-")
        {
            return Err(format!(
                "{} is not an OpenSSH public key (give the .pub file)",
                args.key.display()
            ));
        }
        let client = ApiClient::new(&args.api)?;
        let asked = client
            .json(
                Method::POST,
                "/api/v1/requests",
                Some(json!({
                    "target": args.target,
                    "reason": args.reason,
                    "duration": args.duration,
                })),
            )
            .await?;
        let grant = match asked["grant"]["id"].as_u64() {
            Some(grant) => grant,
            None => {
                let id = asked["request"]["id"]
                    .as_u64()
                    .ok_or("the API answered neither a grant nor a request")?;
                eprintln!(
                    "request #{id} for {} waits for approval by {}",
                    args.target, asked["request"]["approvers"]
                );
                wait_for_grant(&client, id, args.wait).await?
            }
        };
        let checked_out = client
            .json(
                Method::POST,
                &format!("/api/v1/grants/{grant}/certificate"),
                Some(json!({ "public_key": public_key.trim() })),
            )
            .await?;
        let certificate = checked_out["certificate"]
            .as_str()
            .ok_or("the API answered no certificate")?;
        let path = certificate_path(&args.key);
        std::fs::write(&path, format!("{certificate}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let private = args.key.with_extension("");
        let connect = checked_out["connect"].as_str().unwrap_or_default();
        let options = format!(
            "-i {} -o CertificateFile={}",
            private.display(),
            path.display()
        );
        println!(
            "grant #{grant} for {} until {}",
            args.target, checked_out["grant"]["expires_at"]
        );
        println!("certificate: {}", path.display());
        match connect.strip_prefix("ssh ") {
            Some(rest) => println!("ssh {options} {rest}"),
            None => println!("{connect} (with {options})"),
        }
        Ok(())
    })
}

/// Follows request `id` until it is decided (or `wait` passes): its grant, or why not.
async fn wait_for_grant(client: &ApiClient, id: u64, wait: Duration) -> Result<u64, String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let answer: Value = client
            .json(Method::GET, &format!("/api/v1/requests/{id}"), None)
            .await?;
        let request = &answer["request"];
        match request["state"].as_str() {
            Some("approved") => {
                return request["grant"]
                    .as_u64()
                    .ok_or_else(|| format!("request #{id} was approved without a grant"));
            }
            Some("pending") => {}
            Some(other) => {
                let why = request["decision_reason"].as_str().unwrap_or_default();
                return Err(format!(
                    "request #{id} was {other}{}",
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(": {why}")
                    }
                ));
            }
            None => return Err("the API answered a request without a state".into()),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "request #{id} was not decided within {}; it stays open — run checkout again once it is approved",
                humantime::format_duration(wait)
            ));
        }
        // A person decides: a second between looks is plenty.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
