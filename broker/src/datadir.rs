//! The data directory: every file portcullis keeps, in one place.
//!
//! ```text
//! <data_dir>/state.db        SQLite: the vault (keyring + sealed credentials)
//! <data_dir>/master.key      the vault's master key (unless PORTCULLIS_MASTER_KEY is set)
//! <data_dir>/audit.jsonl     append-only, HMAC-chained audit log
//! <data_dir>/host_ed25519    the bastion's SSH host key
//! <data_dir>/recordings/     <id>.cast + <id>.cast.hmac per recorded channel
//! ```

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use portcullis_config::Config;

/// Paths of everything portcullis stores.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
    recordings: PathBuf,
    master_key_file: PathBuf,
}

impl DataDir {
    /// The layout a config describes (nothing is created yet).
    pub fn from_config(config: &Config) -> Self {
        Self {
            root: config.server.data_dir.clone(),
            recordings: config.recordings_dir(),
            master_key_file: config.master_key_file(),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite state database.
    pub fn state_db(&self) -> PathBuf {
        self.root.join("state.db")
    }

    /// The audit log.
    pub fn audit_log(&self) -> PathBuf {
        self.root.join("audit.jsonl")
    }

    /// The bastion's host key.
    pub fn host_key(&self) -> PathBuf {
        self.root.join("host_ed25519")
    }

    /// Where recordings go.
    pub fn recordings(&self) -> &Path {
        &self.recordings
    }

    /// The master key file.
    pub fn master_key_file(&self) -> &Path {
        &self.master_key_file
    }

    /// Creates the directories that do not exist yet, private to the owner, and makes
    /// existing ones private if others could read them (their contents are the vault, the
    /// evidence and the host key). Returns what it had to fix, for the log; fails if a
    /// directory cannot be made private.
    pub fn create(&self) -> io::Result<Vec<String>> {
        let mut fixed = Vec::new();
        for dir in [&self.root, &self.recordings] {
            if !dir.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            } else if is_shared(dir)? {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "{} can be read by other accounts and cannot be made private ({e}); chmod 700 it",
                            dir.display()
                        ),
                    )
                })?;
                fixed.push(format!(
                    "{} could be read by other accounts; it is now private (mode 0700)",
                    dir.display()
                ));
            }
        }
        Ok(fixed)
    }

    /// Warnings about how this data directory is kept, for `check-config` and the log.
    /// The vault's master key next to the data it protects means a copy of the directory
    /// (a backup) is enough to read the vault and forge the evidence.
    pub fn warnings(&self, master_key_from_env: bool) -> Vec<String> {
        let mut warnings = Vec::new();
        if !master_key_from_env && self.master_key_file.starts_with(&self.root) {
            warnings.push(format!(
                "the vault's master key ({}) is kept inside data_dir: anyone with a copy of data_dir (a backup, a snapshot) can read the vault's credentials and forge recordings and the audit log. Keep it elsewhere: [vault] master_key_file outside data_dir, or PORTCULLIS_MASTER_KEY",
                self.master_key_file.display()
            ));
        }
        warnings
    }
}

/// Writes a new file readable only by its owner; fails if it exists.
pub fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Whether a file can be read by anyone but its owner.
pub fn is_shared(path: &Path) -> io::Result<bool> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o077 != 0)
}
