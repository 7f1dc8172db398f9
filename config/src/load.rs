//! Reading a config: TOML syntax, then the schema (collecting every unknown key), then
//! [`Config::validate`]. Each problem is located to a line of the file.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use crate::problem::{KeyPath, Problem, Segment};
use crate::schema::Config;

/// The text a config came from, kept so problems found later (by the broker's own checks)
/// can still be pointed at a line.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file name as given, or `<string>`.
    pub origin: String,
    text: String,
}

/// A config that parsed and validated, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The configuration, with relative paths resolved against the file's directory.
    pub config: Config,
    /// The text, for locating problems the broker finds.
    pub source: Source,
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file was read but has problems.
    #[error("{}", render_problems(origin, problems))]
    Invalid {
        /// The file name, or `<string>`.
        origin: String,
        /// Every problem found, located.
        problems: Vec<Problem>,
    },
}

fn render_problems(origin: &str, problems: &[Problem]) -> String {
    let count = problems.len();
    let noun = if count == 1 { "problem" } else { "problems" };
    let mut out = format!("{origin}: {count} {noun}");
    for problem in problems {
        out.push_str(&format!("\n  {origin}:{problem}"));
    }
    out
}

impl Source {
    /// Wraps config text with a name for messages.
    pub fn new(origin: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            text: text.into(),
        }
    }

    /// Fills in each problem's line from the document, where the key can be found.
    pub fn locate(&self, problems: &mut [Problem]) {
        let Ok(document) = DeTable::parse(&self.text) else {
            return;
        };
        for problem in problems.iter_mut().filter(|p| p.line.is_none()) {
            problem.line = find_span(document.get_ref(), problem.path.segments())
                .map(|offset| line_of(&self.text, offset));
        }
    }

    /// An error for these problems, located in this source.
    pub fn invalid(&self, mut problems: Vec<Problem>) -> ConfigError {
        self.locate(&mut problems);
        ConfigError::Invalid {
            origin: self.origin.clone(),
            problems,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)
    }
}

/// Reads, parses and validates a config file. Relative paths in it are resolved against the
/// file's directory, so a config means the same thing whatever the working directory.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let source = Source::new(path.display().to_string(), text);
    let mut config = parse(&source)?;
    let base = path.parent().unwrap_or(Path::new("."));
    config.resolve_relative_paths(base);
    Ok(LoadedConfig { config, source })
}

/// Parses and validates config text; relative paths stay relative to the working directory.
pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
    parse(&Source::new("<string>", text))
}

fn parse(source: &Source) -> Result<Config, ConfigError> {
    let text = &source.text;
    let (_, syntax_errors) = DeTable::parse_recoverable(text);
    if !syntax_errors.is_empty() {
        let problems = syntax_errors
            .iter()
            .map(|e| toml_problem(text, e, "TOML syntax error"))
            .collect();
        return Err(ConfigError::Invalid {
            origin: source.origin.clone(),
            problems,
        });
    }

    let mut unknown = Vec::new();
    let deserializer = toml::Deserializer::parse(text)
        .map_err(|e| source.invalid(vec![toml_problem(text, &e, "TOML syntax error")]))?;
    let result = serde_ignored::deserialize(deserializer, |path| {
        unknown.push(Problem::new(
            ignored_path(&path),
            "unknown key (check the spelling against the README's config reference)",
        ));
    });
    let config: Config = match result {
        Ok(config) => config,
        Err(e) => {
            unknown.push(toml_problem(text, &e, "wrong type"));
            return Err(source.invalid(unknown));
        }
    };
    let mut problems = unknown;
    problems.extend(config.validate());
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(source.invalid(problems))
    }
}

/// A toml error as a problem: the line from its span, its own message without the snippet.
fn toml_problem(text: &str, error: &toml::de::Error, fallback: &str) -> Problem {
    let message = error.message().trim();
    let message = if message.is_empty() {
        fallback
    } else {
        message
    };
    let mut problem = Problem::new(KeyPath::root(), message);
    problem.line = error.span().map(|span| line_of(text, span.start));
    problem
}

fn ignored_path(path: &serde_ignored::Path<'_>) -> KeyPath {
    match path {
        serde_ignored::Path::Root => KeyPath::root(),
        serde_ignored::Path::Seq { parent, index } => ignored_path(parent).index(*index),
        serde_ignored::Path::Map { parent, key } => ignored_path(parent).key(key),
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => ignored_path(parent),
    }
}

fn find_span(table: &DeTable<'_>, segments: &[Segment]) -> Option<usize> {
    let (first, rest) = segments.split_first()?;
    let Segment::Key(name) = first else {
        return None;
    };
    let (key, value) = table.iter().find(|(k, _)| k.get_ref() == name)?;
    if rest.is_empty() {
        return Some(key.span().start);
    }
    find_in_value(value.get_ref(), rest).or(Some(key.span().start))
}

fn find_in_value(value: &DeValue<'_>, segments: &[Segment]) -> Option<usize> {
    match (value, segments.first()?) {
        (DeValue::Table(table), Segment::Key(_)) => find_span(table, segments),
        (DeValue::Array(items), Segment::Index(index)) => {
            let item = items.get(*index)?;
            let rest = &segments[1..];
            if rest.is_empty() {
                Some(item.span().start)
            } else {
                find_in_value(item.get_ref(), rest).or(Some(item.span().start))
            }
        }
        _ => None,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

impl Config {
    /// Makes relative paths absolute against `base` (the config file's directory).
    pub fn resolve_relative_paths(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        resolve(&mut self.server.data_dir);
        if let Some(dir) = self.recording.dir.as_mut() {
            resolve(dir);
        }
        if let Some(file) = self.vault.master_key_file.as_mut() {
            resolve(file);
        }
        for file in [self.admin.tls_cert.as_mut(), self.admin.tls_key.as_mut()]
            .into_iter()
            .flatten()
        {
            resolve(file);
        }
        for forward in &mut self.audit.forward {
            for file in [
                forward.bearer_token_file.as_mut(),
                forward.hmac_secret_file.as_mut(),
                forward.ca_file.as_mut(),
                forward.client_cert_file.as_mut(),
                forward.client_key_file.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                resolve(file);
            }
        }
    }

    /// Where recordings are written.
    pub fn recordings_dir(&self) -> PathBuf {
        self.recording
            .dir
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("recordings"))
    }

    /// Where the master key file is (whether or not the environment overrides it).
    pub fn master_key_file(&self) -> PathBuf {
        self.vault
            .master_key_file
            .clone()
            .unwrap_or_else(|| self.server.data_dir.join("master.key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Access, TargetAuth};

    fn problems_of(text: &str) -> Vec<Problem> {
        match from_toml_str(text) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Err(other) => panic!("unexpected error {other}"),
        }
    }

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:2222"
data_dir = "data"

[[users]]
name = "alice"
public_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGQ4gk0b4t0GmT4FzW2b1d0pU3n3h9ZcA3bOjw0u7c3s alice@laptop"]

[[targets]]
name = "web01"
address = "10.0.0.5:22"
login = "deploy"
credential = "web01"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGQ4gk0b4t0GmT4FzW2b1d0pU3n3h9ZcA3bOjw0u7c3s"

[[roles]]
name = "web-admins"
members = ["alice"]
targets = ["web*"]
access = "standing"
"#;

    #[test]
    fn a_good_config_loads_with_defaults_filled_in() {
        let config = from_toml_str(GOOD).expect("valid");
        assert_eq!(config.users[0].name, "alice");
        assert!(config.recording.input);
        assert_eq!(config.server.auth_max_failures, 5);
        assert_eq!(config.targets[0].address_with_port(), "10.0.0.5:22");
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_line() {
        let text = GOOD
            .replace("listen =", "lisen =")
            .replace("login =", "logni =");
        let problems = problems_of(&text);
        let rendered: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            rendered.iter().any(|p| p == "line 3: server.lisen: unknown key (check the spelling against the README's config reference)"),
            "{rendered:#?}"
        );
        assert!(
            rendered
                .iter()
                .any(|p| p.starts_with("line 13: targets[0].logni: unknown key")),
            "{rendered:#?}"
        );
        // The missing `login` is reported as well, in the same run.
        assert!(
            rendered
                .iter()
                .any(|p| p.contains("targets[0].login: is missing")),
            "{rendered:#?}"
        );
    }

    #[test]
    fn a_target_logs_in_with_either_a_credential_or_a_certificate_never_both_or_neither() {
        let certificate =
            from_toml_str(&GOOD.replace("credential = \"web01\"", "auth = \"certificate\""))
                .expect("a certificate target needs no credential");
        assert_eq!(certificate.targets[0].auth, TargetAuth::Certificate);
        assert_eq!(
            from_toml_str(GOOD).unwrap().targets[0].auth,
            TargetAuth::Credential
        );

        let rendered = |text: &str| -> Vec<String> {
            problems_of(text).iter().map(ToString::to_string).collect()
        };
        let both = rendered(&GOOD.replace(
            "credential = \"web01\"",
            "credential = \"web01\"\nauth = \"certificate\"",
        ));
        assert!(
            both.iter()
                .any(|p| p
                    .contains("targets[0].credential: is not used with auth = \"certificate\"")),
            "{both:#?}"
        );
        let neither = rendered(&GOOD.replace("credential = \"web01\"\n", ""));
        assert!(
            neither.iter().any(|p| p.contains(
                "targets[0].credential: is missing (the vault entry to log in with; or set auth = \"certificate\""
            )),
            "{neither:#?}"
        );
        let unknown = rendered(&GOOD.replace("credential = \"web01\"", "auth = \"certificates\""));
        assert!(
            unknown.iter().any(|p| p.starts_with("line 14: ")
                && p.contains("expected `credential` or `certificate`")),
            "{unknown:#?}"
        );
    }

    #[test]
    fn activation_conditions_are_checked_with_their_keys() {
        let eligible = |extra: &str| {
            format!(
                "{GOOD}\n[[roles]]\nname = \"oncall\"\nmembers = [\"alice\"]\ntargets = [\"web01\"]\n\
                 access = \"eligible\"\nmax_duration = \"1h\"\n{extra}\n"
            )
        };
        let config = from_toml_str(&eligible(
            "activation_hours = \"Mon-Fri 08:00-18:00\"\ntimezone = \"Europe/Berlin\"\n\
             activation_networks = [\"10.0.0.0/8\", \"::1\"]",
        ))
        .expect("valid conditions");
        assert_eq!(config.roles[1].activation_networks.len(), 2);

        let rendered = |text: &str| -> Vec<String> {
            problems_of(text).iter().map(ToString::to_string).collect()
        };
        let bad = rendered(&eligible(
            "activation_hours = \"weekdays\"\nactivation_networks = [\"10.0.0.0/8\", \"10.0.0.0/40\"]",
        ));
        assert!(
            bad.iter()
                .any(|p| p
                    .contains("roles[1].activation_hours: \"weekdays\" is not a weekly window")),
            "{bad:#?}"
        );
        assert!(
            bad.iter().any(|p| p.contains(
                "roles[1].activation_networks[1]: \"10.0.0.0/40\" is not an address block"
            )),
            "{bad:#?}"
        );
        let zone = rendered(&eligible(
            "activation_hours = \"Mon-Fri 08:00-18:00\"\ntimezone = \"Europe/Nowhere\"",
        ));
        assert!(
            zone.iter()
                .any(|p| p.contains("roles[1].timezone: unknown time zone")),
            "{zone:#?}"
        );
        let lone_zone = rendered(&eligible("timezone = \"UTC\""));
        assert!(
            lone_zone.iter().any(
                |p| p.contains("roles[1].timezone: only means something with activation_hours")
            ),
            "{lone_zone:#?}"
        );
        let standing = rendered(&GOOD.replace(
            "access = \"standing\"",
            "access = \"standing\"\nactivation_networks = [\"10.0.0.0/8\"]",
        ));
        assert!(
            standing.iter().any(|p| p.contains(
                "roles[0].activation_networks: only means something with access = \"eligible\""
            )),
            "{standing:#?}"
        );
    }

    #[test]
    fn forwarders_are_checked_for_what_their_kind_needs() {
        let with = |extra: &str| format!("{GOOD}\n{extra}\n");
        let config = from_toml_str(&with(
            "[[audit.forward]]\nname = \"siem\"\nkind = \"syslog\"\naddress = \"siem.example.com:6514\"\n\
             ca_file = \"ca.pem\"\n\
             [[audit.forward]]\nname = \"oncall\"\nkind = \"webhook\"\n\
             url = \"https://hooks.example.com/portcullis\"\nevents = [\"alert\"]\n\
             hmac_secret_file = \"hmac\"\n",
        ))
        .expect("a syslog and a webhook forwarder");
        let forward = &config.audit.forward;
        assert_eq!(forward[0].transport, crate::schema::SyslogTransport::Tls);
        assert_eq!(forward[0].facility, "authpriv");
        assert_eq!(forward[1].events, ["alert"]);

        let rendered = |text: &str| -> Vec<String> {
            problems_of(&with(text))
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let cases = [
            (
                "[[audit.forward]]\nname = \"a\"\n",
                "audit.forward[0].kind: is required",
            ),
            (
                "[[audit.forward]]\nname = \"a\"\nkind = \"syslog\"\n",
                "audit.forward[0].address: is required for syslog",
            ),
            (
                "[[audit.forward]]\nname = \"a\"\nkind = \"syslog\"\naddress = \"siem\"\n",
                "audit.forward[0].address: \"siem\" is not HOST:PORT",
            ),
            (
                "[[audit.forward]]\nname = \"a\"\nkind = \"syslog\"\naddress = \"h:514\"\nfacility = \"nope\"\n",
                "audit.forward[0].facility: \"nope\" is not a syslog facility",
            ),
            (
                "[[audit.forward]]\nname = \"a\"\nkind = \"syslog\"\naddress = \"h:514\"\ntransport = \"tcp\"\nca_file = \"x\"\n",
                "audit.forward[0].ca_file: is only used with transport = \"tls\"",
            ),
            (
                "[[audit.forward]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://hooks.example.com/x\"\n",
                "use https (http only to a loopback address)",
            ),
            (
                "[[audit.forward]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://user:pw@h/x\"\n",
                "carries credentials",
            ),
            (
                "[[audit.forward]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://h/x\"\naddress = \"h:1\"\n",
                "audit.forward[0].address: is only used with kind = \"syslog\"",
            ),
            (
                "[[audit.forward]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://h/x\"\n\
                 bearer_token_file = \"t\"\nhmac_secret_file = \"s\"\n",
                "exclude each other",
            ),
            (
                "[[audit.forward]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://h/x\"\nevents = []\n",
                "audit.forward[0].events: needs event names",
            ),
            (
                "[[audit.forward]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://h/x\"\n\
                 [[audit.forward]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"https://h/y\"\n",
                "audit.forward[1].name: \"a\" names two forwarders",
            ),
        ];
        for (text, expected) in cases {
            let problems = rendered(text);
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{text}: {problems:#?}"
            );
        }
        // Loopback may be plain http; relative files follow the config file.
        let mut config = from_toml_str(&with(
            "[[audit.forward]]\nname = \"a\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:8080/x\"\n\
             bearer_token_file = \"token\"\n",
        ))
        .expect("http to loopback")
        ;
        config.resolve_relative_paths(Path::new("/etc/portcullis"));
        assert_eq!(
            config.audit.forward[0].bearer_token_file.as_deref(),
            Some(Path::new("/etc/portcullis/token"))
        );
    }

    #[test]
    fn services_have_no_password_and_request_tokens_act_as_a_service() {
        let with = |extra: &str| format!("{GOOD}\n{extra}\n");
        let service = "[[users]]\nname = \"ci\"\nkind = \"service\"\n";
        let token = |scopes: &str, user: &str| {
            format!(
                "[admin]\nlisten = \"127.0.0.1:9443\"\n[[admin.tokens]]\nname = \"t\"\n\
                 hash = \"$argon2id$x\"\nscopes = [{scopes}]\n{user}"
            )
        };
        from_toml_str(&with(&format!(
            "{service}{}",
            token("\"request\"", "user = \"ci\"")
        )))
        .expect("a service and its request token");

        let rendered = |text: &str| -> Vec<String> {
            problems_of(text).iter().map(ToString::to_string).collect()
        };
        let has = |problems: &[String], text: &str| problems.iter().any(|p| p.contains(text));
        let password = rendered(&with(&format!("{service}password_hash = \"$argon2id$x\"")));
        assert!(
            has(
                &password,
                "users[1].password_hash: a service has no password"
            ),
            "{password:#?}"
        );
        let no_user = rendered(&with(&format!("{service}{}", token("\"request\"", ""))));
        assert!(
            has(&no_user, "admin.tokens[0].user: is missing"),
            "{no_user:#?}"
        );
        let person = rendered(&with(&token("\"request\"", "user = \"alice\"")));
        assert!(
            has(
                &person,
                "admin.tokens[0].user: no user named \"alice\" with kind = \"service\""
            ),
            "{person:#?}"
        );
        let stray = rendered(&with(&format!(
            "{service}{}",
            token("\"read\"", "user = \"ci\"")
        )));
        assert!(
            has(
                &stray,
                "admin.tokens[0].user: only means something with scope \"request\""
            ),
            "{stray:#?}"
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let problems = problems_of("[server]\nlisten = \"127.0.0.1:2222\nfoo = 1\n");
        assert!(!problems.is_empty());
        assert_eq!(problems[0].line, Some(2), "{problems:?}");
    }

    #[test]
    fn type_errors_name_the_line() {
        let problems = problems_of("[server]\n\nlisten = 22\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, Some(3), "{problems:?}");
    }

    #[test]
    fn references_between_sections_are_checked() {
        let text = GOOD
            .replace(
                "members = [\"alice\"]",
                "members = [\"alice\", \"mallory\"]",
            )
            .replace("targets = [\"web*\"]", "targets = [\"web*\", \"db01\"]");
        let rendered: Vec<String> = problems_of(&text).iter().map(ToString::to_string).collect();
        assert!(
            rendered
                .contains(&"line 19: roles[0].members[1]: no user named \"mallory\"".to_owned()),
            "{rendered:#?}"
        );
        assert!(
            rendered.contains(&"line 20: roles[0].targets[1]: no target named \"db01\"".to_owned()),
            "{rendered:#?}"
        );
    }

    #[test]
    fn duplicate_names_and_bad_names() {
        let text = format!("{GOOD}\n[[users]]\nname = \"alice\"\n[[users]]\nname = \"bob+x\"\n");
        let rendered: Vec<String> = problems_of(&text).iter().map(ToString::to_string).collect();
        assert!(
            rendered
                .iter()
                .any(|p| p.contains("users[1].name: another user is already named \"alice\"")),
            "{rendered:#?}"
        );
        assert!(
            rendered
                .iter()
                .any(|p| p.contains("users[2].name: \"bob+x\" is not a valid user name")),
            "{rendered:#?}"
        );
    }

    #[test]
    fn totp_needs_a_password_and_valid_base32() {
        let text = GOOD.replace(
            "name = \"alice\"\n",
            "name = \"alice\"\ntotp_secret = \"not*base32\"\n",
        );
        let rendered: Vec<String> = problems_of(&text).iter().map(ToString::to_string).collect();
        assert!(
            rendered
                .iter()
                .any(|p| p.contains("users[0].totp_secret: is not base32")),
            "{rendered:#?}"
        );
        assert!(
            rendered
                .iter()
                .any(|p| p.contains("users[0].totp_secret: needs password_hash too")),
            "{rendered:#?}"
        );
    }

    const ELIGIBLE: &str = r#"
[[users]]
name = "carol"
public_keys = []

[[roles]]
name = "db-admins"
members = ["carol"]
targets = ["web01"]
access = "eligible"
max_duration = "4h"
default_duration = "1h"
require_reason = true
reason_pattern = "^(INC|CHG)-[0-9]+"
approvals = 1
approvers = ["web-admins"]
"#;

    #[test]
    fn an_eligible_role_loads() {
        let config = from_toml_str(&format!("{GOOD}{ELIGIBLE}")).expect("valid");
        let role = &config.roles[1];
        assert_eq!(role.access, Access::Eligible);
        assert_eq!(
            role.max_duration,
            Some(std::time::Duration::from_secs(4 * 3600))
        );
        assert_eq!(
            config.access.approval_wait,
            std::time::Duration::from_secs(600)
        );
        assert_eq!(
            config.access.warnings(),
            vec![
                std::time::Duration::from_secs(300),
                std::time::Duration::from_secs(60)
            ]
        );
    }

    #[test]
    fn eligible_settings_are_checked() {
        let text = format!("{GOOD}{ELIGIBLE}")
            .replace("max_duration = \"4h\"\n", "")
            .replace("^(INC|CHG)-[0-9]+", "^(INC")
            .replace(
                "approvers = [\"web-admins\"]",
                "approvers = [\"nobody\"]\nrequire_mfa = true",
            );
        let rendered: Vec<String> = problems_of(&text).iter().map(ToString::to_string).collect();
        for expected in [
            "roles[1].max_duration: is missing",
            "roles[1].reason_pattern: is not a valid regular expression",
            "roles[1].approvers[0]: no role named \"nobody\"",
            "roles[1].members[0]: \"carol\" has no totp_secret",
        ] {
            assert!(
                rendered.iter().any(|p| p.contains(expected)),
                "{expected}: {rendered:#?}"
            );
        }
        let standing = GOOD.replace(
            "access = \"standing\"",
            "access = \"standing\"\napprovals = 2",
        );
        let rendered: Vec<String> = problems_of(&standing)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            rendered.iter().any(|p| p
                .contains("roles[0].approvals: only means something with access = \"eligible\"")),
            "{rendered:#?}"
        );
    }

    #[test]
    fn ciphers_must_be_known() {
        let text = GOOD.replace(
            "data_dir = \"data\"",
            "data_dir = \"data\"\nciphers = [\"aes128-gcm@openssh.com\", \"rc4\"]",
        );
        let rendered: Vec<String> = problems_of(&text).iter().map(ToString::to_string).collect();
        assert!(
            rendered
                .iter()
                .any(|p| p.starts_with("line 5: server.ciphers[1]: unknown cipher \"rc4\"")),
            "{rendered:#?}"
        );
    }

    #[test]
    fn durations_are_humane_strings() {
        let text = GOOD.replace(
            "data_dir = \"data\"",
            "data_dir = \"data\"\nupstream_connect_timeout = \"3s\"",
        );
        let config = from_toml_str(&text).expect("valid");
        assert_eq!(
            config.server.upstream_connect_timeout,
            std::time::Duration::from_secs(3)
        );
        let bad = GOOD.replace(
            "data_dir = \"data\"",
            "data_dir = \"data\"\nupstream_connect_timeout = \"soon\"",
        );
        assert_eq!(problems_of(&bad)[0].line, Some(5));
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let mut config = from_toml_str(GOOD).expect("valid");
        config.resolve_relative_paths(Path::new("/etc/portcullis"));
        assert_eq!(config.server.data_dir, Path::new("/etc/portcullis/data"));
        assert_eq!(
            config.recordings_dir(),
            Path::new("/etc/portcullis/data/recordings")
        );
        assert_eq!(
            config.master_key_file(),
            Path::new("/etc/portcullis/data/master.key")
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug_output() {
        let text = GOOD.replace(
            "name = \"alice\"\n",
            "name = \"alice\"\npassword_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\"\ntotp_secret = \"JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\"\n",
        );
        let config = from_toml_str(&text).expect("valid");
        let debug = format!("{config:?}");
        assert!(!debug.contains("JBSWY3DP"), "{debug}");
        assert!(!debug.contains("aGFzaGhh"), "{debug}");
    }

    #[test]
    fn command_rules_are_checked() {
        let bad = r#"
[[command_rules]]
name = "broken"
pattern = "("
action = "deny"
[[command_rules]]
name = "nobody-approves"
pattern = "x"
action = "review"
[[command_rules]]
name = "broken"
roles = ["web admins"]
pattern = ""
approvers = ["ghosts"]
[[command_rules]]
name = "ask-before-writing"
kind = "sftp"
pattern = "^write "
action = "warn"
"#;
        let rendered = match from_toml_str(&format!("{GOOD}{bad}")) {
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(|p| p.to_string()).collect::<Vec<_>>()
            }
            other => panic!("expected problems, got {other:?}"),
        };
        let has = |needle: &str| rendered.iter().any(|p| p.contains(needle));
        assert!(
            has("command_rules[0].pattern: is not a valid regular expression"),
            "{rendered:#?}"
        );
        assert!(
            has("command_rules[1].approvers: is empty and roles web-admins have no approvers"),
            "{rendered:#?}"
        );
        assert!(
            has("command_rules[2].name"),
            "duplicate name: {rendered:#?}"
        );
        assert!(has("command_rules[2].roles[0]"), "{rendered:#?}");
        assert!(has("command_rules[2].pattern: is missing"), "{rendered:#?}");
        assert!(
            has("command_rules[2].approvers[0]: no role named \"ghosts\""),
            "{rendered:#?}"
        );
        assert!(
            has("command_rules[3].action: \"warn\" cannot apply to file operations"),
            "{rendered:#?}"
        );
        let good = r#"
[[command_rules]]
name = "no-wipe"
pattern = '^\s*rm\s+-rf\s+/'
action = "deny"
message = "never"
"#;
        let config = from_toml_str(&format!("{GOOD}{good}")).expect("valid");
        assert_eq!(config.command_rules[0].action, crate::CommandAction::Deny);
        assert!(config.recording.commands);
    }

    #[test]
    fn the_postgres_backend_needs_a_url_without_a_password_and_a_node_name() {
        let rendered = |extra: &str| -> Vec<String> {
            problems_of(&format!("{GOOD}{extra}"))
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let bare = rendered("[state]\nbackend = \"postgres\"\n");
        assert!(
            bare.iter().any(|p| p.contains("state.url: is required")),
            "{bare:#?}"
        );
        assert!(
            bare.iter().any(|p| p.contains("cluster.node: is required")),
            "{bare:#?}"
        );
        let bad = rendered(
            "[state]\nbackend = \"postgres\"\nurl = \"postgres://p:hunter2@db/s\"\nsslmode = \"allow\"\n\
             client_cert_file = \"c.pem\"\n[cluster]\nnode = \"a b\"\n",
        );
        for expected in [
            "state.url: holds a password",
            "state.sslmode: \"allow\" is not one of",
            "state.client_cert_file: client_cert_file and client_key_file go together",
            "cluster.node: \"a b\" is not a valid name",
        ] {
            assert!(
                bad.iter().any(|p| p.contains(expected)),
                "{expected}: {bad:#?}"
            );
        }
        let query = rendered(
            "[state]\nbackend = \"postgres\"\nurl = \"postgres://p@db/s?password=x\"\n[cluster]\nnode = \"a\"\n",
        );
        assert!(
            query
                .iter()
                .any(|p| p.contains("state.url: holds a password")),
            "{query:#?}"
        );
        let lease = rendered("[cluster]\nheartbeat = \"10s\"\nlease = \"15s\"\n");
        assert!(
            lease
                .iter()
                .any(|p| p.contains("cluster.lease: must be at least two heartbeats (20s)")),
            "{lease:#?}"
        );
        let sqlite_url = rendered("[state]\nurl = \"postgres://p@db/s\"\n");
        assert!(
            sqlite_url
                .iter()
                .any(|p| p.contains("state.url: is only used")),
            "{sqlite_url:#?}"
        );
        let config = from_toml_str(&format!(
            "{GOOD}[state]\nbackend = \"postgres\"\nurl = \"postgres://portcullis@db:5432/state?sslmode=verify-full\"\n\
             root_cert_file = \"/etc/portcullis/db-ca.pem\"\n[cluster]\nnode = \"bastion-a\"\n"
        ))
        .expect("valid");
        assert_eq!(config.state.backend, crate::StateBackend::Postgres);
        assert_eq!(config.cluster.node.as_deref(), Some("bastion-a"));
        assert_eq!(config.state.pool_size, 16);
    }
}
