//! Small file systems a test can fill or make read-only, so a disk really fails under the
//! bastion (mounting needs root, as CI has): a tmpfs of a given size, and a file of one bound
//! over a path in the bastion's data directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A tiny tmpfs; unmounted on drop.
pub struct SmallDisk {
    /// Where it is mounted.
    pub path: PathBuf,
    /// Files of it bound over other paths (see [`SmallDisk::bind_file`]), unmounted first.
    bound: Vec<PathBuf>,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`512k`, …) at `path`, creating the directory.
    pub fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).expect("mount point");
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            path.to_str().expect("utf-8 path"),
        ]);
        Self {
            path: path.to_owned(),
            bound: Vec::new(),
        }
    }

    /// Makes `outside` (a file that exists or is created empty) live on this disk: a file
    /// named `name` here, bound over it.
    pub fn bind_file(&mut self, name: &str, outside: &Path) {
        let inside = self.path.join(name);
        if !inside.exists() {
            std::fs::write(&inside, b"").expect("file on the small disk");
        }
        if !outside.exists() {
            std::fs::write(outside, b"").expect("file to bind over");
        }
        mount(&[
            "--bind",
            inside.to_str().expect("utf-8 path"),
            outside.to_str().expect("utf-8 path"),
        ]);
        self.bound.push(outside.to_owned());
    }

    /// Fills it up: every later write that needs room fails with ENOSPC.
    pub fn fill(&self) {
        // dd stops at ENOSPC and exits non-zero: that is the point.
        let _ = Command::new("dd")
            .args(["if=/dev/zero", "bs=64k"])
            .arg(format!("of={}", self.path.join("filler").display()))
            .stderr(Stdio::null())
            .status();
    }

    /// Gives the room [`SmallDisk::fill`] took back.
    pub fn free(&self) {
        let _ = std::fs::remove_file(self.path.join("filler"));
    }

    /// Remounts it read-only (`true`) or writable again. Read-only fails while a file on it
    /// is open for writing.
    pub fn set_read_only(&self, read_only: bool) {
        let options = if read_only {
            "remount,ro"
        } else {
            "remount,rw"
        };
        mount(&["-o", options, self.path.to_str().expect("utf-8 path")]);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        for path in self.bound.iter().chain(std::iter::once(&self.path)) {
            let _ = Command::new("umount").arg("-l").arg(path).status();
        }
    }
}

fn mount(args: &[&str]) {
    let status = Command::new("mount")
        .args(args)
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "mount {args:?} failed (it needs root; CI runs the tests as root)"
    );
}
