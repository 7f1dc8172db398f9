//! How long one command line takes to check against 200 rules.
//!
//! `cargo bench -p portcullis-policy --bench command_rules`: prints the median time per line
//! for lines that match no rule, the last rule, and the first rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use portcullis_policy::CommandRules;

fn config(rules: usize) -> portcullis_config::Config {
    let toml = format!(
        "[[roles]]\nname = \"ops\"\nmembers = []\ntargets = [\"*\"]\napprovers = [\"ops\"]\n{}",
        portcullis_policy::sample_rules_toml(rules)
    );
    portcullis_config::from_toml_str(&toml).unwrap()
}

fn median_per_line(rules: &CommandRules, line: &str) -> Duration {
    const BATCH: u32 = 2_000;
    let mut samples: Vec<Duration> = (0..31)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..BATCH {
                black_box(rules.evaluate("ops", "web01", black_box(line)));
            }
            started.elapsed() / BATCH
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let rules = CommandRules::new(&config(200)).unwrap();
    for (what, line, expected) in [
        (
            "no rule matches",
            "ls -la /var/log/nginx | grep error | tail -n 50",
            None,
        ),
        (
            "the last rule matches",
            "wget https://files.host199.example/x",
            Some("rule-199"),
        ),
        (
            "the first rule matches",
            "sudo tool0 -rf /tmp/x",
            Some("rule-0"),
        ),
    ] {
        assert_eq!(
            rules
                .evaluate("ops", "web01", line)
                .map(|r| r.name.as_str()),
            expected,
            "{line}"
        );
        let took = median_per_line(&rules, line);
        println!(
            "200 rules, {what:<24} {:>8.2} µs per line",
            took.as_secs_f64() * 1e6
        );
    }
}
