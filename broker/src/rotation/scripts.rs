//! The shell commands rotation runs on a target (POSIX sh, as sshd runs them). Everything
//! put into them is quoted; the key bodies are base64 and the names are checked names.

/// The comment on every key rotation installs, naming the vault entry (always followed by a
/// space and the date): keys a cut-off rotation left behind are recognised by it and removed
/// by the next one.
pub fn marker(credential: &str) -> String {
    format!("portcullis:{credential}")
}

/// `'text'` for sh.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The authorized keys file, as sh should read it.
fn file(authorized_keys: Option<&str>) -> String {
    match authorized_keys {
        Some(path) => quote(path),
        None => "\"$HOME/.ssh/authorized_keys\"".to_owned(),
    }
}

/// Appends `line` (a public key with the marker) unless a line already holds `body`.
pub fn install(authorized_keys: Option<&str>, body: &str, line: &str) -> String {
    format!(
        "umask 077; f={file}; mkdir -p \"$(dirname \"$f\")\" && touch \"$f\" && \
         {{ grep -qF -e {body} \"$f\" || printf '%s\\n' {line} >> \"$f\"; }}",
        file = file(authorized_keys),
        body = quote(body),
        line = quote(line),
    )
}

/// Removes every line holding `old` (the key being retired), and every line carrying the
/// marker that does not hold `keep` (keys an earlier cut-off rotation left). The file is
/// rewritten in place (same inode, owner and mode).
pub fn remove(authorized_keys: Option<&str>, old: &str, keep: &str, marker: &str) -> String {
    format!(
        "f={file}; t=\"$f.portcullis.$$\"; \
         awk -v old={old} -v keep={keep} -v mark={mark} \
         'index($0, old) || (index($0, mark) && !index($0, keep)) {{ next }} {{ print }}' \
         \"$f\" > \"$t\" && cat \"$t\" > \"$f\"; s=$?; rm -f \"$t\"; exit $s",
        file = file(authorized_keys),
        old = quote(old),
        keep = quote(keep),
        // Spaces around it: `portcullis:web01` must not match `portcullis:web012`.
        mark = quote(&format!(" {marker} ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> std::process::Output {
        std::process::Command::new("sh")
            .args(["-c", script])
            .output()
            .unwrap()
    }

    #[test]
    fn quoting_survives_any_text() {
        let hostile = "a'b\"c$(touch x)`d`\\e";
        let out = sh(&format!("printf %s {}", quote(hostile)));
        assert_eq!(String::from_utf8_lossy(&out.stdout), hostile);
    }

    #[test]
    fn install_once_and_remove_the_old_and_stale_keys_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/authorized_keys");
        let path = path.to_str().unwrap();
        let mark = marker("web01");
        let run = |script: String| {
            let out = sh(&script);
            assert!(out.status.success(), "{out:?}");
        };
        run(install(
            Some(path),
            "OLD",
            "ssh-ed25519 OLD operator@laptop",
        ));
        std::fs::write(
            path,
            "ssh-ed25519 OTHER someone-else\nssh-ed25519 OLD operator@laptop\n\
             ssh-ed25519 STALE portcullis:web01 2026-01-01\nssh-ed25519 NEAR portcullis:web012\n",
        )
        .unwrap();
        let line = format!("ssh-ed25519 NEW {mark} 2026-12-07");
        run(install(Some(path), "NEW", &line));
        run(install(Some(path), "NEW", &line));
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(text.matches("NEW").count(), 1, "{text}");
        run(remove(Some(path), "OLD", "NEW", &mark));
        let text = std::fs::read_to_string(path).unwrap();
        assert_eq!(
            text,
            "ssh-ed25519 OTHER someone-else\nssh-ed25519 NEAR portcullis:web012\n\
             ssh-ed25519 NEW portcullis:web01 2026-12-07\n"
        );
    }
}
