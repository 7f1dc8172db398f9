//! SSH keys and certificates, made with the real `ssh-keygen`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A key pair on disk.
#[derive(Debug, Clone)]
pub struct Keypair {
    /// The private key file (mode 0600).
    pub private: PathBuf,
    /// The public key line.
    pub public: String,
}

impl Keypair {
    /// A new ed25519 key in `dir` named `name`.
    pub fn generate(dir: &Path, name: &str) -> Self {
        let private = dir.join(name);
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C"])
            .arg(format!("{name}@test"))
            .arg("-f")
            .arg(&private)
            .status()
            .expect("run ssh-keygen");
        assert!(status.success(), "ssh-keygen failed for {name}");
        let public = std::fs::read_to_string(private.with_extension("pub"))
            .expect("public key")
            .trim()
            .to_owned();
        Self { private, public }
    }

    /// The `-cert.pub` file next to the key, where ssh looks for a certificate.
    pub fn certificate_path(&self) -> PathBuf {
        let mut name = self.private.as_os_str().to_owned();
        name.push("-cert.pub");
        PathBuf::from(name)
    }
}

/// Signs `key`'s public key with `ca` as a user certificate for `principals`, valid for
/// `validity` (ssh-keygen's -V syntax, e.g. "+1h" or "20200101:20200102").
pub fn sign_user_certificate(
    ca: &Keypair,
    key: &Keypair,
    principals: &str,
    validity: &str,
) -> PathBuf {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-s"])
        .arg(&ca.private)
        .args(["-I", "test-certificate", "-n", principals, "-V", validity])
        .arg(key.private.with_extension("pub"))
        .status()
        .expect("run ssh-keygen -s");
    assert!(status.success(), "ssh-keygen -s failed");
    let produced = key.private.with_extension("pub").with_file_name(format!(
        "{}-cert.pub",
        key.private.file_name().expect("name").to_string_lossy()
    ));
    assert!(
        produced.exists(),
        "no certificate at {}",
        produced.display()
    );
    produced
}
