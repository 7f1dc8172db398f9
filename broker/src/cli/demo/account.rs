//! The account the demo's sshd logs in to: never root.
//!
//! Run as root, the demo makes a system account of its own, `portcullis-demo` (no password,
//! no sudo, its home inside the demo directory when other accounts can reach it there), and
//! reuses it on later runs. Run as anyone else, it logs in as that person: their machine,
//! their rights, nothing more.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The system account the demo creates when run as root.
pub const DEMO_ACCOUNT: &str = "portcullis-demo";
/// The account's comment field: how the demo knows the account is its own.
const MARKER: &str = "portcullis demo target account";
/// Its home when the demo directory cannot be reached by other accounts (under /root, say).
const FALLBACK_HOME: &str = "/var/lib/portcullis-demo";

/// Who the demo target logs in as.
#[derive(Debug, Clone)]
pub struct Account {
    /// The login name.
    pub name: String,
    /// How it came to be, for the instructions.
    pub origin: AccountOrigin,
}

/// How the demo came by its target account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountOrigin {
    /// The person running the demo (not root).
    Invoker,
    /// A system account the demo made (now or on an earlier run), with this home.
    Created {
        /// Its home directory.
        home: PathBuf,
        /// Made on this run (false: reused).
        new: bool,
    },
}

/// The account for a demo in `dir`, creating it when run as root.
pub fn prepare(dir: &Path) -> Result<Account, String> {
    if current_uid()? != 0 {
        return Ok(Account {
            name: current_login(),
            origin: AccountOrigin::Invoker,
        });
    }
    let wanted_home = if reachable_by_others(dir) {
        dir.join("home")
    } else {
        PathBuf::from(FALLBACK_HOME)
    };
    let mut new = false;
    if passwd_entry(DEMO_ACCOUNT)?.is_none() {
        let created = run(Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--shell", "/bin/bash", "--comment", MARKER])
            .arg("--home-dir")
            .arg(&wanted_home)
            // "*": no password, yet not "locked" — sshd without PAM refuses locked accounts.
            .args(["--password", "*"])
            .arg(DEMO_ACCOUNT));
        // Another demo starting at the same moment may have made it first.
        new = created.is_ok();
        if let (Err(error), None) = (created, passwd_entry(DEMO_ACCOUNT)?) {
            return Err(error);
        }
    }
    let Some(mut entry) = passwd_entry(DEMO_ACCOUNT)? else {
        return Err(format!("useradd did not create {DEMO_ACCOUNT}"));
    };
    if entry.comment != MARKER {
        return Err(format!(
            "an account named {DEMO_ACCOUNT} exists but the demo did not create it; \
             remove it or run the demo as an ordinary user"
        ));
    }
    if entry.uid == 0 {
        return Err(format!(
            "the account {DEMO_ACCOUNT} has uid 0; the demo will not log in as root"
        ));
    }
    // A reused account keeps its home while that exists (an earlier demo's sessions may
    // still live there); a vanished one moves into this demo's directory.
    if !entry.home.is_dir() && entry.home != wanted_home {
        run(Command::new("usermod")
            .arg("--home")
            .arg(&wanted_home)
            .arg(DEMO_ACCOUNT))?;
        entry.home = wanted_home;
    }
    let home = entry.home.clone();
    make_home(&home, entry.uid, entry.gid)?;
    Ok(Account {
        name: DEMO_ACCOUNT.to_owned(),
        origin: AccountOrigin::Created { home, new },
    })
}

/// Creates the home (0700, owned by the account) if it is missing.
fn make_home(home: &Path, uid: u32, gid: u32) -> Result<(), String> {
    if !home.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(home)
            .map_err(|e| format!("cannot create {}: {e}", home.display()))?;
    }
    std::os::unix::fs::chown(home, Some(uid), Some(gid))
        .map_err(|e| format!("cannot hand {} to {DEMO_ACCOUNT}: {e}", home.display()))?;
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("{}: {e}", home.display()))
}

/// Whether an account that is neither owner nor group of `dir`'s ancestors can reach it.
fn reachable_by_others(dir: &Path) -> bool {
    dir.ancestors().all(|ancestor| {
        std::fs::metadata(ancestor).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
    })
}

fn run(command: &mut Command) -> Result<(), String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The fields of a passwd entry the demo cares about.
struct PasswdEntry {
    uid: u32,
    gid: u32,
    comment: String,
    home: PathBuf,
}

fn passwd_entry(name: &str) -> Result<Option<PasswdEntry>, String> {
    let output = Command::new("getent")
        .args(["passwd", name])
        .output()
        .map_err(|e| format!("cannot run getent: {e}"))?;
    // getent exits 2 for "no such key".
    if !output.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = text.trim_end().split(':').collect();
    let [_, _, uid, gid, comment, home, _] = fields[..] else {
        return Err(format!("getent passwd {name}: unexpected answer {text:?}"));
    };
    let number = |field: &str| {
        field
            .parse::<u32>()
            .map_err(|_| format!("getent passwd {name}: bad id {field:?}"))
    };
    Ok(Some(PasswdEntry {
        uid: number(uid)?,
        gid: number(gid)?,
        comment: comment.to_owned(),
        home: PathBuf::from(home),
    }))
}

fn current_uid() -> Result<u32, String> {
    // The owner of /proc/self is this process's effective uid.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .map_err(|e| format!("cannot tell who runs the demo (/proc/self: {e})"))
}

fn current_login() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "nobody".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_directory_is_reachable_and_a_private_one_is_not() {
        assert!(reachable_by_others(Path::new("/")));
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&private)
            .unwrap();
        let inside = private.join("demo");
        std::fs::create_dir(&inside).unwrap();
        assert!(!reachable_by_others(&inside));
    }
}
