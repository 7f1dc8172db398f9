//! `portcullis ca …`: the bastion's SSH user CA, which targets with `auth = "certificate"`
//! trust instead of holding a key per target (see `vault::ca`).

use std::process::ExitCode;

use clap::Subcommand;

use super::admin::open;
use super::{ConfigArg, fail};
use crate::audit::AuditEvent;
use crate::vault::ca::PublishedCa;

/// `portcullis ca …`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print the CA lines targets put in their TrustedUserCAKeys file (the active CA, and
    /// during a rotation the previous one too). Creates the CA on first use.
    Show(ConfigArg),
    /// Make a new CA that signs from now on; the old one stays published until `ca retire`.
    Rotate(ConfigArg),
    /// Stop publishing the previous CA (once every target trusts the active one).
    Retire(ConfigArg),
}

/// `portcullis ca …`
pub fn ca(command: CaCommand) -> ExitCode {
    let (CaCommand::Show(config) | CaCommand::Rotate(config) | CaCommand::Retire(config)) =
        &command;
    let opened = match open(config) {
        Ok(opened) => opened,
        Err(code) => return code,
    };
    let vault = &opened.vault;
    let result = match command {
        CaCommand::Show(_) => opened.wait(vault.published_user_cas()).map(|published| {
            for ca in &published {
                print_line(ca);
            }
            None
        }),
        CaCommand::Rotate(_) => opened.wait(vault.rotate_user_ca()).and_then(|change| {
            eprintln!(
                "new CA {} signs from now on; {} stays published until `portcullis ca retire`.\n\
                 Put both lines in every target's TrustedUserCAKeys now:",
                change.active,
                change.previous.as_deref().unwrap_or("the old CA"),
            );
            for ca in &opened.wait(vault.published_user_cas())? {
                print_line(ca);
            }
            Ok(Some(
                AuditEvent::new("ca.rotated")
                    .with("active", &change.active)
                    .with("previous", &change.previous),
            ))
        }),
        CaCommand::Retire(_) => opened.wait(vault.retire_user_ca()).map(|change| {
            eprintln!(
                "retired the previous CA{}; only {} is published now. \
                 Remove the old line from the targets' TrustedUserCAKeys:",
                change
                    .previous
                    .as_ref()
                    .map(|p| format!(" {p}"))
                    .unwrap_or_default(),
                change.active
            );
            if let Ok(published) = opened.wait(vault.published_user_cas()) {
                for ca in &published {
                    print_line(ca);
                }
            }
            Some(
                AuditEvent::new("ca.retired")
                    .with("active", &change.active)
                    .with("retired", &change.previous),
            )
        }),
    };
    match result {
        Ok(Some(event)) => opened.leave_event(event),
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => fail(error),
    }
}

/// One `TrustedUserCAKeys` line: the key, with a comment saying which CA it is.
fn print_line(ca: &PublishedCa) {
    let line = ca.line();
    // `to_openssh` ends with the key's comment; ours is replaced by the role.
    let key: Vec<&str> = line.split_whitespace().take(2).collect();
    println!("{} portcullis-user-ca-{}", key.join(" "), ca.role);
}
