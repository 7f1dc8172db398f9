//! Conditions on activation: an eligible role may say when (`activation_hours` in a
//! `timezone`, on the bastion's manual clock here) and from where (`activation_networks`: the
//! ssh client's address; two loopback addresses stand for two networks). Outside them the
//! activation is refused with a sentence naming the condition; a break-glass role overrides,
//! alerted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use portcullis_policy::ManualClock;
use portcullis_tests::{Ran, World};

/// Saturday 2026-12-12 12:00 UTC.
fn saturday_noon() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_601_600 + 5 * 86_400 + 12 * 3600)
}

fn world(clock: &Arc<ManualClock>, role_settings: &'static str) -> World {
    World::start_on(clock.clone(), move |config, sshd, _| {
        config.target("db01", sshd, "root", "web01").eligible(
            "db-oncall",
            &["alice"],
            &["db01"],
            role_settings,
        );
    })
}

/// `request db01` over ssh from `source` (a loopback address).
fn request_from(world: &World, source: &str) -> Ran {
    world
        .alice("alice")
        .option(&format!("BindAddress={source}"))
        .exec("request db01 --for 30m --reason INC-1")
}

#[test]
fn an_activation_from_outside_the_roles_networks_is_refused_and_from_inside_granted() {
    let clock = ManualClock::starting_now();
    let world = world(
        &clock,
        "max_duration = \"1h\"\napprovals = 0\nactivation_networks = [\"127.0.0.2/32\"]",
    );
    let refused = request_from(&world, "127.0.0.1");
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains(
            "you cannot activate db01 now: activation is allowed only from 127.0.0.2/32, \
             and this request comes from 127.0.0.1"
        ),
        "{refused:?}"
    );
    let audited = world
        .bastion
        .wait_for_audit("activation.refused", |e| e["source"] == "127.0.0.1");
    assert_eq!(audited["condition"], "activation_networks", "{audited}");
    assert!(world.bastion.audit_events("grant.activated").is_empty());
    // Nothing was granted: the target is still closed.
    let closed = world.alice("alice+db01").exec("echo in");
    assert_ne!(closed.code, Some(0), "{closed:?}");

    let granted = request_from(&world, "127.0.0.2");
    assert_eq!(granted.code, Some(0), "{granted:?}");
    assert!(
        granted.stdout.contains("access to db01 granted"),
        "{granted:?}"
    );
    let inside = world.alice("alice+db01").exec("echo in");
    assert_eq!(inside.code, Some(0), "{inside:?}");
}

#[test]
fn an_activation_outside_the_roles_hours_is_refused_until_they_come() {
    let clock = ManualClock::new(saturday_noon());
    let world = world(
        &clock,
        "max_duration = \"1h\"\napprovals = 0\nactivation_hours = \"Mon-Fri 08:00-18:00\"\n\
         timezone = \"Europe/Berlin\"",
    );
    let refused = request_from(&world, "127.0.0.1");
    assert_eq!(refused.code, Some(1), "{refused:?}");
    assert!(
        refused.stderr.contains(
            "activation is allowed only Mon-Fri 08:00-18:00 (Europe/Berlin), and it is \
             Sat 13:00 there now"
        ),
        "{refused:?}"
    );
    world.bastion.wait_for_audit("activation.refused", |e| {
        e["condition"] == "activation_hours"
    });

    // Monday 08:00 in Berlin is 07:00 UTC: 43 hours on.
    clock.advance(Duration::from_secs(43 * 3600));
    let granted = request_from(&world, "127.0.0.1");
    assert_eq!(granted.code, Some(0), "{granted:?}");
    assert!(
        granted.stdout.contains("access to db01 granted"),
        "{granted:?}"
    );
}

#[test]
fn the_activation_dialog_says_which_condition_failed_before_asking_anything() {
    let clock = ManualClock::new(saturday_noon());
    let world = world(
        &clock,
        "max_duration = \"1h\"\napprovals = 0\nactivation_hours = \"Mon-Fri 08:00-18:00\"",
    );
    let tmux =
        portcullis_tests::Tmux::start(&world.alice("alice+db01").shell_line(&["-tt"]), 120, 30);
    let screen = tmux.wait_for_text(
        "activation is allowed only Mon-Fri 08:00-18:00 (UTC), and it is Sat 12:00 there now",
        Duration::from_secs(20),
    );
    assert!(!screen.contains("Reason"), "{screen}");
    assert!(tmux.wait_exit(Duration::from_secs(10)).is_some());
}

#[test]
fn break_glass_overrides_the_conditions_and_security_is_alerted() {
    let clock = ManualClock::new(saturday_noon());
    let world = world(
        &clock,
        "max_duration = \"1h\"\nbreak_glass = true\nactivation_hours = \"Mon-Fri 08:00-18:00\"\n\
         activation_networks = [\"10.0.0.0/8\"]",
    );
    let granted = request_from(&world, "127.0.0.1");
    assert_eq!(granted.code, Some(0), "{granted:?}");
    assert!(granted.stdout.contains("break-glass"), "{granted:?}");
    let overridden = world
        .bastion
        .wait_for_audit("activation.condition_overridden", |_| true);
    // The first condition that failed is named.
    assert_eq!(
        overridden["condition"], "activation_networks",
        "{overridden}"
    );
    assert_eq!(overridden["source"], "127.0.0.1", "{overridden}");
    world.bastion.wait_for_audit("breakglass.used", |_| true);
    let alert = world
        .bastion
        .wait_for_alert("break_glass_outside_conditions");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(
        world.bastion.wait_for_alert("break_glass")["severity"],
        "error"
    );
    let log = portcullis_tests::util::wait_for(Duration::from_secs(10), || {
        let log = world.bastion.log();
        log.contains("ALERT: break-glass activation outside its conditions")
            .then_some(log)
    });
    assert!(log.is_some(), "{}", world.bastion.log());
}
