//! Command-rule matching: any line (and any reading of a terminal's line) against 200 rules.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis_config::RuleKind;
use portcullis_policy::CommandRules;

fn rules() -> &'static CommandRules {
    static RULES: OnceLock<CommandRules> = OnceLock::new();
    RULES.get_or_init(|| {
        let config = portcullis_config::from_toml_str(&portcullis_policy::sample_rules_toml(200))
            .expect("the sample rules load");
        CommandRules::new(&config).expect("the sample rules compile")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let rules = rules();
    let _ = rules.evaluate("ops", "web01", &text);
    let readings: Vec<&str> = text.split('\n').collect();
    let _ = rules.evaluate_readings(RuleKind::Command, "ops", "web01", readings.iter().copied());
});
