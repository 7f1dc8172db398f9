//! Several bastion nodes sharing one real PostgreSQL: each node is the real `portcullis`
//! binary with a data directory of its own and `[state] backend = "postgres"`, all in front
//! of one sshd, with the same master key (the vault's data key is shared, wrapped by it).

use std::sync::Arc;

use portcullis_policy::Clock;
use tempfile::TempDir;

use crate::bastion::{Bastion, ConfigText};
use crate::keys::Keypair;
use crate::postgres::Postgres;
use crate::sshd::Sshd;

/// The database the nodes share.
const DATABASE: &str = "portcullis";

/// A PostgreSQL, an sshd, and nodes in front of it; alice (key `alice`) may reach `web01`
/// as root through role `web-admins`.
pub struct Cluster {
    /// Scratch directory for keys and files.
    pub scratch: TempDir,
    /// The upstream.
    pub sshd: Sshd,
    /// alice's key.
    pub alice: Keypair,
    /// The nodes, in the order named.
    pub nodes: Vec<Bastion>,
    /// The shared database (dropped last: nodes stop before it does).
    pub postgres: Postgres,
}

impl Cluster {
    /// Starts PostgreSQL, then nodes called `names` with the same config plus what `extra`
    /// adds; the vault credential for web01 is put through the first node.
    pub fn start(names: &[&str], extra: impl FnOnce(&mut ConfigText, &Sshd, &TempDir)) -> Self {
        Self::start_with(names, "", extra)
    }

    /// [`Cluster::start`] with `[cluster]` settings for every node: its `lease` and
    /// `database_grace` (default: [`DEFAULT_TIMING`]) and more.
    pub fn start_with(
        names: &[&str],
        cluster_settings: &str,
        extra: impl FnOnce(&mut ConfigText, &Sshd, &TempDir),
    ) -> Self {
        Self::start_maybe_on(names, cluster_settings, None, extra)
    }

    /// [`Cluster::start_with`], every node in this process on `clock` (see
    /// [`Bastion::start_on`]): time-driven behaviour follows the clock the test holds, on
    /// every node at once.
    pub fn start_on(
        names: &[&str],
        cluster_settings: &str,
        clock: Arc<dyn Clock>,
        extra: impl FnOnce(&mut ConfigText, &Sshd, &TempDir),
    ) -> Self {
        Self::start_maybe_on(names, cluster_settings, Some(clock), extra)
    }

    fn start_maybe_on(
        names: &[&str],
        cluster_settings: &str,
        clock: Option<Arc<dyn Clock>>,
        extra: impl FnOnce(&mut ConfigText, &Sshd, &TempDir),
    ) -> Self {
        let postgres = Postgres::start();
        let created = postgres.psql("postgres", &format!("CREATE DATABASE {DATABASE}"));
        assert_eq!(created.code, Some(0), "{created:?}");
        let scratch = tempfile::Builder::new()
            .prefix("cluster-")
            .tempdir()
            .expect("temp dir");
        let sshd = Sshd::start();
        let alice = Keypair::generate(scratch.path(), "alice");
        let mut config = ConfigText::default();
        config
            .user("alice", &[&alice.public])
            .target("web01", &sshd, "root", "web01")
            .role("web-admins", &["alice"], &["web*"]);
        extra(&mut config, &sshd, &scratch);
        let master_key = hex::encode(crate::random_bytes::<32>());
        // The secret node-to-node calls are signed with, the same on every node.
        let secret = scratch.path().join("cluster.secret");
        std::fs::write(&secret, hex::encode(crate::random_bytes::<32>())).expect("secret");
        // In-process nodes do not see the environment the harness gives processes.
        let password = scratch.path().join("db-password");
        std::fs::write(&password, postgres.password()).expect("password file");
        let nodes: Vec<Bastion> = names
            .iter()
            .map(|name| {
                let mut node_config = config.clone();
                node_config.raw(&node_section(&postgres, name).replace(
                    "sslmode = \"disable\"\n",
                    &format!(
                        "sslmode = \"disable\"\npassword_file = {:?}\n",
                        password.display().to_string()
                    ),
                ));
                node_config.raw(&format!("secret_file = {:?}", secret.display().to_string()));
                node_config.raw(if cluster_settings.is_empty() {
                    DEFAULT_TIMING
                } else {
                    cluster_settings
                });
                let mut node = Bastion::new(&node_config);
                node.env("PORTCULLIS_STATE_PASSWORD", postgres.password())
                    .env("PORTCULLIS_MASTER_KEY", &master_key);
                node
            })
            .collect();
        nodes[0].vault_key_for("web01", &sshd);
        let mut cluster = Self {
            scratch,
            sshd,
            alice,
            nodes,
            postgres,
        };
        for node in &mut cluster.nodes {
            match &clock {
                Some(clock) => node.start_on(clock.clone()),
                None => node.start(),
            };
        }
        cluster
    }

    /// The node at `index`.
    pub fn node(&self, index: usize) -> &Bastion {
        &self.nodes[index]
    }
}

/// A lost node is found within seconds; a database outage of as long is ridden out.
pub const DEFAULT_TIMING: &str = "lease = \"10s\"\ndatabase_grace = \"10s\"";

/// What makes a node one of the cluster: the shared store and its name, and a heartbeat
/// every second (the `[cluster]` section stays open for more settings).
pub fn node_section(postgres: &Postgres, name: &str) -> String {
    format!(
        "[state]\nbackend = \"postgres\"\nurl = \"{}\"\nsslmode = \"disable\"\n\n\
         [cluster]\nnode = \"{name}\"\nheartbeat = \"1s\"\n",
        postgres.url(DATABASE)
    )
}
