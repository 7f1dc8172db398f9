//! The command prompt of an interactive login without a target (`ssh alice@bastion`): the
//! listing, then `portcullis>` until `exit` or Ctrl-D.

use std::sync::Arc;
use std::time::Duration;

use super::console::{Abort, Console};
use super::menu::{self, Command, Origin};
use crate::services::Services;

/// How long the prompt waits for a command before it logs the user out.
const PROMPT_IDLE: Duration = Duration::from_secs(15 * 60);

/// Runs the prompt until the user leaves.
pub async fn run(services: Arc<Services>, user: String, origin: Origin, mut console: Console) {
    let listing = menu::run(&services, &user, &origin, &Command::Targets).await;
    console.write(&listing.text).await;
    console
        .write("Type help for the commands, exit to leave.\n")
        .await;
    loop {
        let line = match console.ask("portcullis> ", PROMPT_IDLE).await {
            Ok(line) => line,
            // Ctrl-C drops the line, as in a shell.
            Err(Abort::Interrupted) => continue,
            Err(Abort::TimedOut) => {
                console
                    .say("logged out after 15 minutes without a command")
                    .await;
                break;
            }
            Err(Abort::EndOfInput | Abort::Gone | Abort::Ending) => break,
        };
        if line.is_empty() {
            continue;
        }
        let command = match menu::parse(&line) {
            Ok(command) => command,
            Err(message) => {
                console.say(&message).await;
                continue;
            }
        };
        match command {
            Command::Exit => break,
            Command::Watch(id) => {
                let text = format!(
                    "watch runs as a command of its own: {} watch {id}",
                    origin.ssh(&user)
                );
                console.say(&text).await;
            }
            command => {
                let reply = menu::run(&services, &user, &origin, &command).await;
                if reply.is_error() {
                    console.say(&reply.text).await;
                } else {
                    console.write(&reply.text).await;
                }
            }
        }
    }
    console.close(0).await;
}
