//! How long one command line takes to check against 200 rules.
//!
//! `cargo bench -p portcullis-policy --bench command_rules`: prints the median time per line
//! for lines that match no rule, the last rule, and the first rule, and for non-ASCII lines
//! (where a rule's `\b` keeps the regex crate off its fast engines).
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
    // Batches of about a millisecond or more, however slow a line is.
    let once = {
        let started = Instant::now();
        black_box(rules.evaluate("ops", "web01", black_box(line)));
        started.elapsed().max(Duration::from_nanos(100))
    };
    let batch = (Duration::from_millis(1).as_nanos() / once.as_nanos()).clamp(1, 2_000);
    let batch = u32::try_from(batch).unwrap_or(1);
    let mut samples: Vec<Duration> = (0..31)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..batch {
                black_box(rules.evaluate("ops", "web01", black_box(line)));
            }
            started.elapsed() / batch
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let rules = CommandRules::new(&config(200)).unwrap();
    // A hostile line: 4 KiB of non-ASCII text, where `\b` cannot be decided on the fast
    // engines (see portcullis_policy's prefilter).
    let hostile = "é→ secret ".repeat(4096 / "é→ secret ".len());
    for (what, line, expected) in [
        (
            "4 KiB of non-ASCII text, no rule matches",
            hostile.as_str(),
            None,
        ),
        (
            "non-ASCII text, a \\b rule matches",
            "café → secret-1 ←",
            Some("rule-1"),
        ),
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
