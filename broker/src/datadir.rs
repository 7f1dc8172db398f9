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

    /// Creates the directories that do not exist yet, private to the owner.
    pub fn create(&self) -> io::Result<()> {
        for dir in [&self.root, &self.recordings] {
            if !dir.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
        }
        Ok(())
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
