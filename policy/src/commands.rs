//! Command control: which rule a command line meets in a role's session on a target.
//!
//! Rules are evaluated in config order and the first that matches decides. A line is first
//! scanned once against all patterns' supersets together (one [`RegexSet`] on the fast
//! engines, see [`crate::prefilter`]); only the rules whose superset matched are then checked
//! exactly, and the role and target globs only for the patterns that matched.

use portcullis_config::{CommandAction, Config, RuleKind};
use regex::{Regex, RegexSet};

use crate::access::PolicyError;
use crate::glob;

/// One rule, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRule {
    /// Its name, shown to the user and audited.
    pub name: String,
    /// What happens to a matching line.
    pub action: CommandAction,
    /// What the user is told.
    pub message: Option<String>,
    /// For `review`: who approves (empty: the session role's approvers).
    pub approvers: Vec<String>,
    /// What it looks at: command lines or file operations.
    pub kind: RuleKind,
    roles: Vec<String>,
    targets: Vec<String>,
}

impl CommandRule {
    fn applies(&self, kind: RuleKind, role: &str, target: &str) -> bool {
        let covers = |patterns: &[String], name: &str| {
            patterns.is_empty() || patterns.iter().any(|p| glob::matches(p, name))
        };
        self.kind == kind && covers(&self.roles, role) && covers(&self.targets, target)
    }

    /// `blocked by rule NAME: MESSAGE` (or without the message).
    pub fn describe(&self) -> String {
        match &self.message {
            Some(message) => format!("rule {}: {message}", self.name),
            None => format!("rule {}", self.name),
        }
    }
}

/// Every command rule of a configuration.
#[derive(Debug, Clone)]
pub struct CommandRules {
    rules: Vec<CommandRule>,
    /// Every pattern's superset, in rule order: a line none of them matches meets no rule.
    supersets: RegexSet,
    /// Every pattern exactly, in rule order.
    patterns: Vec<Regex>,
}

impl Default for CommandRules {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            supersets: RegexSet::empty(),
            patterns: Vec::new(),
        }
    }
}

impl CommandRules {
    /// Compiles the rules of a validated config (an invalid pattern is reported, not trusted).
    pub fn new(config: &Config) -> Result<Self, PolicyError> {
        let patterns = config
            .command_rules
            .iter()
            .map(|rule| {
                Regex::new(&rule.pattern).map_err(|e| PolicyError {
                    what: "command rule",
                    name: rule.name.clone(),
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let supersets = RegexSet::new(config.command_rules.iter().map(|rule| {
            crate::prefilter::superset(&rule.pattern).unwrap_or_else(|| rule.pattern.clone())
        }))
        .map_err(|e| PolicyError {
            what: "command rules",
            name: String::new(),
            message: e.to_string(),
        })?;
        let rules = config
            .command_rules
            .iter()
            .map(|rule| CommandRule {
                name: rule.name.clone(),
                action: rule.action,
                message: rule.message.clone(),
                approvers: rule.approvers.clone(),
                kind: rule.kind,
                roles: rule.roles.clone(),
                targets: rule.targets.clone(),
            })
            .collect();
        Ok(Self {
            rules,
            supersets,
            patterns,
        })
    }

    /// Whether any command-line rule applies to sessions of `role` on `target` (if none,
    /// lines need not be watched for rules, only audited).
    pub fn any_for(&self, role: &str, target: &str) -> bool {
        self.any_of_kind_for(RuleKind::Command, role, target)
    }

    /// Whether any rule of `kind` applies to sessions of `role` on `target`.
    pub fn any_of_kind_for(&self, kind: RuleKind, role: &str, target: &str) -> bool {
        self.rules.iter().any(|r| r.applies(kind, role, target))
    }

    /// The rule a command `line` meets in a `role` session on `target`: the first in config
    /// order whose pattern matches and which applies there. `None`: no rule, the line runs.
    pub fn evaluate(&self, role: &str, target: &str, line: &str) -> Option<&CommandRule> {
        self.evaluate_kind(RuleKind::Command, role, target, line)
    }

    /// The rule a line of `kind` meets (for file operations: `"<op> <path>"`).
    pub fn evaluate_kind(
        &self,
        kind: RuleKind,
        role: &str,
        target: &str,
        line: &str,
    ) -> Option<&CommandRule> {
        if self.rules.is_empty() {
            return None;
        }
        self.supersets
            .matches(line)
            .into_iter()
            .filter(|index| self.patterns[*index].is_match(line))
            .map(|index| &self.rules[index])
            .find(|rule| rule.applies(kind, role, target))
    }

    /// For several readings of one line (what the screen shows, what was typed): the most
    /// severe rule any of them meets, with the (first) reading that met it.
    pub fn evaluate_readings<'a, 'l>(
        &'a self,
        kind: RuleKind,
        role: &str,
        target: &str,
        readings: impl IntoIterator<Item = &'l str>,
    ) -> Option<(&'a CommandRule, &'l str)> {
        readings
            .into_iter()
            .filter_map(|line| {
                self.evaluate_kind(kind, role, target, line)
                    .map(|rule| (rule, line))
            })
            .fold(None, |best, (rule, line)| match best {
                Some((kept, _)) if kept.action >= rule.action => best,
                _ => Some((rule, line)),
            })
    }
}

/// `count` deny rules of the shapes operators write — anchored commands with options, words
/// anywhere, alternations — as `[[command_rules]]` TOML, none of which matches an ordinary
/// `cat FILE`: what the matcher and relay benchmarks measure against.
pub fn sample_rules_toml(count: usize) -> String {
    let mut toml = String::new();
    for i in 0..count {
        let pattern = match i % 4 {
            0 => format!(r"^\s*(sudo\s+)?tool{i}\s+-[a-zA-Z]*f"),
            1 => format!(r"\bsecret-{i}\b"),
            2 => format!(r"^\s*(systemctl|service)\s+(stop|restart)\s+unit{i}"),
            _ => format!(r"(curl|wget)\s+\S*host{i}\.example"),
        };
        toml.push_str(&format!(
            "[[command_rules]]\nname = \"rule-{i}\"\npattern = '{pattern}'\naction = \"deny\"\n"
        ));
    }
    toml
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml: &str) -> CommandRules {
        let config = portcullis_config::from_toml_str(&format!(
            r#"
[[roles]]
name = "ops"
members = []
targets = ["*"]
approvers = ["ops"]
[[roles]]
name = "dba"
members = []
targets = ["*"]
{toml}"#
        ))
        .unwrap();
        CommandRules::new(&config).unwrap()
    }

    const RULES: &str = r#"
[[command_rules]]
name = "shutdown-ok-for-ops"
roles = ["ops"]
pattern = '^\s*shutdown\b'
action = "warn"
[[command_rules]]
name = "no-shutdown"
pattern = '^\s*(sudo\s+)?shutdown\b'
action = "deny"
message = "not here"
[[command_rules]]
name = "prod-only-review"
targets = ["*-prod"]
pattern = 'systemctl\s+restart'
action = "review"
approvers = ["ops"]
[[command_rules]]
name = "bye"
pattern = 'forbidden-terminate'
action = "terminate"
"#;

    /// What checking every rule exactly, in order, would answer.
    fn reference<'a>(
        rules: &'a CommandRules,
        role: &str,
        target: &str,
        line: &str,
    ) -> Option<&'a str> {
        rules
            .rules
            .iter()
            .zip(&rules.patterns)
            .find(|(rule, pattern)| {
                pattern.is_match(line) && rule.applies(RuleKind::Command, role, target)
            })
            .map(|(rule, _)| rule.name.as_str())
    }

    #[test]
    fn the_fast_first_look_never_changes_an_answer() {
        let config = portcullis_config::from_toml_str(&format!(
            "{}\n[[command_rules]]\nname = \"word\"\npattern = '\\brm\\b'\naction = \"deny\"\n\
             [[command_rules]]\nname = \"not-word\"\npattern = 'x\\By'\naction = \"deny\"\n\
             [[command_rules]]\nname = \"start\"\npattern = '\\b{{start}}kill'\naction = \"deny\"\n",
            sample_rules_toml(40)
        ))
        .unwrap();
        let rules = CommandRules::new(&config).unwrap();
        let lines = [
            "rm -rf /tmp/x",
            "érm -rf",
            "rmé",
            "→rm←",
            "farm tools",
            "x y",
            "xy",
            "éxyé",
            "secret-1",
            "ésecret-1é",
            "→secret-1→",
            "naïve secret-5 café",
            "pkill -9 x",
            "ékill",
            "→kill",
            "tool0 -rf",
            "sudo tool4 -xf",
            "curl https://host3.example",
            "systemctl restart unit2",
            "",
            "\u{fffd}\u{fffd} rm",
        ];
        for line in lines {
            assert_eq!(
                rules
                    .evaluate("ops", "web01", line)
                    .map(|r| r.name.as_str()),
                reference(&rules, "ops", "web01", line),
                "{line:?}"
            );
        }
        // And the cases above did exercise both answers.
        assert_eq!(
            rules
                .evaluate("ops", "web01", "érm -rf")
                .map(|r| r.name.as_str()),
            None
        );
        assert_eq!(
            rules
                .evaluate("ops", "web01", "→rm←")
                .map(|r| r.name.as_str()),
            Some("word")
        );
        assert_eq!(
            rules
                .evaluate("ops", "web01", "ésecret-1é")
                .map(|r| r.name.as_str()),
            None
        );
    }

    #[test]
    fn the_first_applicable_rule_in_order_decides() {
        let r = rules(RULES);
        let name = |role, target, line| r.evaluate(role, target, line).map(|x| x.name.as_str());
        assert_eq!(
            name("ops", "web01", "shutdown -h now"),
            Some("shutdown-ok-for-ops")
        );
        assert_eq!(name("dba", "web01", "shutdown -h now"), Some("no-shutdown"));
        assert_eq!(
            name("ops", "web01", "sudo shutdown -h now"),
            Some("no-shutdown")
        );
        assert_eq!(name("dba", "web01", "echo shutdown"), None);
        assert_eq!(
            name("dba", "db-prod", "systemctl restart pg"),
            Some("prod-only-review")
        );
        assert_eq!(name("dba", "db-test", "systemctl restart pg"), None);
        let deny = r.evaluate("dba", "x", "shutdown").unwrap();
        assert_eq!(deny.describe(), "rule no-shutdown: not here");
        assert_eq!(deny.action, CommandAction::Deny);
    }

    #[test]
    fn the_most_severe_reading_wins() {
        let r = rules(RULES);
        let (rule, line) = r
            .evaluate_readings(
                RuleKind::Command,
                "ops",
                "db-prod",
                ["systemctl restart x", "ls", "forbidden-terminate"],
            )
            .unwrap();
        assert_eq!(rule.name, "bye");
        assert_eq!(line, "forbidden-terminate");
        assert!(
            r.evaluate_readings(RuleKind::Command, "ops", "db-prod", ["ls", "pwd"])
                .is_none()
        );
    }

    #[test]
    fn file_rules_see_only_file_operations_and_command_rules_only_commands() {
        let r = rules(
            r#"
[[command_rules]]
name = "sudoers"
kind = "sftp"
pattern = '^write /etc/sudoers$'
action = "deny"
[[command_rules]]
name = "no-write-word"
pattern = '^write '
action = "deny"
"#,
        );
        let file = |line| {
            r.evaluate_kind(RuleKind::Sftp, "ops", "web01", line)
                .map(|x| x.name.as_str())
        };
        assert_eq!(file("write /etc/sudoers"), Some("sudoers"));
        assert_eq!(file("read /etc/sudoers"), None);
        // The command rule `^write ` does not look at file operations, and vice versa.
        assert_eq!(file("write /tmp/x"), None);
        assert_eq!(
            r.evaluate("ops", "web01", "write /etc/sudoers")
                .map(|x| x.name.as_str()),
            Some("no-write-word")
        );
        assert!(r.any_of_kind_for(RuleKind::Sftp, "ops", "web01"));
        assert!(!rules("").any_of_kind_for(RuleKind::Sftp, "ops", "web01"));
    }

    #[test]
    fn no_rules_means_everything_runs() {
        let r = rules("");
        assert!(r.evaluate("ops", "web01", "touch forbidden").is_none());
        assert!(!r.any_for("ops", "web01"));
        assert!(rules(RULES).any_for("dba", "web01"));
    }

    #[test]
    fn actions_order_by_severity() {
        use CommandAction::*;
        let mut actions = vec![Terminate, Allow, Review, Deny, Log, Warn];
        actions.sort();
        assert_eq!(actions, vec![Allow, Log, Warn, Review, Deny, Terminate]);
    }
}
