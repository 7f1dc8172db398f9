//! Short-lived check-out for automation: a CI job (a shell script, as a pipeline would run
//! it) with a `request` token asks for access through the admin API, waits for a person's
//! approval, checks out a certificate for its own key, and runs a command through the
//! bastion — brokered and recorded like any session. Revoking the grant locks the same
//! certificate out at the next login; the vaulted credential rotates after the check-out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;
use std::time::Duration;

use portcullis_tests::util::wait_for;
use portcullis_tests::{Keypair, World};

const SECOPS: &str = "secops-token-0123456789";
const CI: &str = "ci-token-0123456789abcdef";

fn world() -> World {
    let world = World::start(|config, sshd, _| {
        config
            .raw("[[users]]\nname = \"ci-deploy\"\nkind = \"service\"")
            .target("app01", sshd, "root", "app01")
            .raw(&format!(
                "authorized_keys = {:?}\nrotate_after = [\"checkout\"]",
                sshd.authorized_keys_file().display().to_string()
            ))
            .eligible(
                "deployers",
                &["ci-deploy"],
                &["app01"],
                "max_duration = \"1h\"\ndefault_duration = \"15m\"\nrequire_reason = true\n\
                 approvals = 1\napprovers = [\"secops\"]",
            )
            .role("secops", &["alice"], &[])
            .admin(&[
                ("secops", SECOPS, &["read", "operate"]),
                ("ci", CI, &["request"]),
            ])
            // The last token's: the service it acts as.
            .raw("user = \"ci-deploy\"");
    });
    world.bastion.vault_key_for("app01", &world.sshd);
    world
}

/// The ssh options a CI job would pass besides the printed line (the bastion's host key
/// known, nothing else tried).
fn ssh_options(world: &World) -> String {
    format!(
        "-o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
        world.bastion.known_hosts().display()
    )
}

#[test]
fn a_ci_job_checks_out_a_certificate_runs_through_the_bastion_and_is_locked_out_on_revoke() {
    let world = world();
    let job_key = Keypair::generate(world.scratch.path(), "ci_job");
    let (url, fingerprint) = world.bastion.api();
    let script = world.path("pipeline.sh");
    std::fs::write(
        &script,
        format!(
            "set -eu\n\
             line=$({portcullis} checkout app01 --for 15m --reason 'pipeline 42' --key {key}.pub \
                --api {url} --token {CI} --fingerprint {fingerprint} | tail -n 1)\n\
             echo \"$line\" > {dir}/ssh_line\n\
             ssh {options} ${{line#ssh }} 'echo deployed-$((6*7)); tty || true'\n",
            portcullis = portcullis_tests::util::portcullis_bin().display(),
            key = job_key.private.display(),
            dir = world.scratch.path().display(),
            options = ssh_options(&world),
        ),
    )
    .unwrap();
    let job = std::process::Command::new("bash")
        .arg(&script)
        .env("PORTCULLIS_CONFIG", world.bastion.config_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The request waits for a person; secops approves it.
    let request = wait_for(Duration::from_secs(20), || {
        let listed = world.bastion.api_cli(SECOPS, &["requests", "list"]);
        listed.stdout.contains("ci-deploy").then_some(listed)
    })
    .expect("the job's request appears");
    assert!(request.stdout.contains("pipeline 42"), "{request:?}");
    // The CI token cannot approve its own request.
    let self_approval = world.bastion.api_cli(CI, &["requests", "approve", "1"]);
    assert_ne!(self_approval.code, Some(0), "{self_approval:?}");
    assert!(
        self_approval.stderr.contains("lacks the operate scope"),
        "{self_approval:?}"
    );
    let approved = world.bastion.api_cli(SECOPS, &["requests", "approve", "1"]);
    assert_eq!(approved.code, Some(0), "{approved:?}");

    let output = job.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("deployed-42"), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("request #1 for app01 waits for approval"),
        "{stderr}"
    );
    let cert_file = world.path("ci_job-cert.pub");
    let cert = std::fs::read_to_string(&cert_file).unwrap();
    assert!(
        cert.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{cert}"
    );
    let shown = std::process::Command::new("ssh-keygen")
        .args(["-L", "-f"])
        .arg(&cert_file)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("Key ID: \"portcullis checkout user=ci-deploy grant=1\"")
            && shown.contains("ci-deploy")
            && !shown.contains("permit-port-forwarding")
            && !shown.contains("permit-agent-forwarding"),
        "{shown}"
    );

    // Brokered and recorded like any session; the check-out is audited.
    let checked_out = world
        .bastion
        .wait_for_audit("checkout.certificate", |_| true);
    assert_eq!(checked_out["grant"], 1, "{checked_out}");
    assert_eq!(checked_out["token"], "ci", "{checked_out}");
    let start = world
        .bastion
        .wait_for_audit("access.granted", |e| e["user"] == "ci-deploy");
    assert_eq!(start["grant"], 1, "{start}");
    // The credential rotates once the checked-out session has ended.
    world.bastion.wait_for_audit("credential.rotated", |e| {
        e["why"] == "checkout" && e["credential"] == "app01"
    });

    // Revoked: the same certificate no longer gets in, though its window is still open.
    let revoked = world.bastion.api_cli(
        SECOPS,
        &["grants", "revoke", "1", "--reason", "pipeline done"],
    );
    assert_eq!(revoked.code, Some(0), "{revoked:?}");
    let line = std::fs::read_to_string(world.path("ssh_line")).unwrap();
    let again = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ssh {} {} 'echo should-not-run'",
            ssh_options(&world),
            line.trim().strip_prefix("ssh ").unwrap()
        ))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(255), "{again:?}");
    assert!(!String::from_utf8_lossy(&again.stdout).contains("should-not-run"));
    let refused = world.bastion.wait_for_audit("auth.failure", |e| {
        e["user"] == "ci-deploy"
            && e["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("grant #1 was revoked")
    });
    assert_eq!(refused["method"], "certificate", "{refused}");
}

#[test]
fn a_services_request_is_checked_like_anyones_and_a_checkout_needs_an_active_grant() {
    let world = world();
    let job_key = Keypair::generate(world.scratch.path(), "job");
    // No reason where the role wants one: refused, nothing created.
    let (status, body) = world.bastion.api_request(
        CI,
        "POST",
        "/api/v1/requests",
        Some(serde_json::json!({ "target": "app01" })),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("reason"), "{body}");
    // A target its roles do not cover.
    let (status, body) = world.bastion.api_request(
        CI,
        "POST",
        "/api/v1/requests",
        Some(serde_json::json!({ "target": "web01", "reason": "x" })),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("you cannot activate web01"),
        "{body}"
    );
    // Someone else's grant, or none: no certificate.
    let public = std::fs::read_to_string(format!("{}.pub", job_key.private.display())).unwrap();
    let (status, body) = world.bastion.api_request(
        CI,
        "POST",
        "/api/v1/grants/7/certificate",
        Some(serde_json::json!({ "public_key": public })),
    );
    assert_eq!(status, 404, "{body}");
    // A token without the request scope cannot ask.
    let (status, body) = world.bastion.api_request(
        SECOPS,
        "POST",
        "/api/v1/requests",
        Some(serde_json::json!({ "target": "app01", "reason": "x" })),
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("request scope"),
        "{body}"
    );
    // A pending request has no certificate to give yet.
    let (status, body) = world.bastion.api_request(
        CI,
        "POST",
        "/api/v1/requests",
        Some(serde_json::json!({ "target": "app01", "reason": "INC-1", "duration": "10m" })),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["request"]["state"], "pending", "{body}");
    let (status, shown) = world
        .bastion
        .api_request(CI, "GET", "/api/v1/requests/1", None);
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["request"]["user"], "ci-deploy", "{shown}");
}

/// `POST /api/v1/requests` with curl from `source` (a loopback address): status and body.
fn request_from(world: &World, source: &str, target: &str) -> (u16, String) {
    let (url, _) = world.bastion.api();
    let output = std::process::Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "--interface",
            source,
            "--cacert",
        ])
        .arg(world.bastion.data_dir().join("admin-cert.pem"))
        .args(["-H", &format!("Authorization: Bearer {CI}")])
        .args(["-H", "Content-Type: application/json"])
        .args([
            "-d",
            &format!("{{\"target\":\"{target}\",\"reason\":\"INC-3\"}}"),
        ])
        .arg(format!("{url}/api/v1/requests"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

#[test]
fn a_services_request_is_held_to_the_roles_networks_by_the_api_callers_address() {
    let world = World::start(|config, sshd, _| {
        config
            .raw("[[users]]\nname = \"ci-deploy\"\nkind = \"service\"")
            .target("app02", sshd, "root", "web01")
            .eligible(
                "deployers",
                &["ci-deploy"],
                &["app02"],
                "max_duration = \"1h\"\napprovals = 0\nactivation_networks = [\"127.0.0.2/32\"]",
            )
            .admin(&[("ci", CI, &["request"])])
            .raw("user = \"ci-deploy\"");
    });
    let (status, body) = request_from(&world, "127.0.0.1", "app02");
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains(
            "activation is allowed only from 127.0.0.2/32, and this request comes from 127.0.0.1"
        ),
        "{body}"
    );
    let refused = world
        .bastion
        .wait_for_audit("activation.refused", |e| e["via"] == "api");
    assert_eq!(refused["source"], "127.0.0.1", "{refused}");
    let (status, body) = request_from(&world, "127.0.0.2", "app02");
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("\"grant\":{"), "{body}");
}
