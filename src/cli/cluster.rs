//! `fink cluster install|start|stop|status`: the local Kafka cluster.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;

use super::Ctx;
use crate::local;
use crate::output;

/// What `fink cluster` was asked to do (its subcommands).
#[derive(clap::Subcommand)]
pub enum Action {
    /// Fetch the Kafka jars from Maven Central into the cache (idempotent).
    Install,
    /// Start the nodes and wait until the cluster answers an authenticated request.
    Start {
        /// Seconds to wait for the cluster to become ready.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// Stop the nodes: SIGTERM, then SIGKILL after the grace period.
    Stop {
        /// Seconds to wait for a graceful stop before killing.
        #[arg(long, default_value_t = 30)]
        grace: u64,
    },
    /// Nodes, ports, pids, cluster id, up or down.
    Status,
}

pub fn cluster(ctx: &Ctx, action: &Action) -> Result<ExitCode> {
    let progress = |msg: &str| eprintln!("{} {msg}", output::bold("fink:"));
    // Install needs only the version; a broken config should not block it.
    let lc = match action {
        Action::Install => None,
        _ => {
            let loaded = crate::loaded_or_return!(ctx);
            Some(local::LocalCluster::from_config(&loaded)?)
        }
    };
    match (action, lc) {
        (Action::Install, _) | (_, None) => {
            let version = ctx
                .load()
                .map(|l| l.config.local.kafka_version)
                .unwrap_or_else(|_| local::DEFAULT_KAFKA_VERSION.to_string());
            let home = local::kafka_home(&version, &progress)?;
            local::check_java()?;
            println!("Apache Kafka {version}: {}", home.display());
            Ok(ExitCode::SUCCESS)
        }
        (Action::Start { timeout }, Some(lc)) => {
            match lc.start(Duration::from_secs(*timeout), &progress)? {
                local::StartOutcome::AlreadyRunning => {
                    println!("The local cluster is already running ({} node(s)).", lc.brokers)
                }
                local::StartOutcome::Started { nodes, cluster_id } => println!(
                    "Local cluster up: {nodes} node(s) started, cluster id {cluster_id}, bootstrap {}.",
                    (0..lc.brokers).map(|i| format!("127.0.0.1:{}", lc.port + i as u16)).collect::<Vec<_>>().join(",")
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        (Action::Stop { grace }, Some(lc)) => {
            match lc.stop(Duration::from_secs(*grace), &progress)? {
                local::StopOutcome::NotRunning => println!("The local cluster is not running."),
                local::StopOutcome::Stopped { nodes, forced } => {
                    println!(
                        "Local cluster stopped: {nodes} node(s){}.",
                        if forced > 0 { format!(", {forced} killed after the grace period") } else { String::new() }
                    )
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        (Action::Status, Some(lc)) => {
            let st = lc.status();
            if ctx.json() {
                output::print_json(&st)?;
            } else {
                let mut t = output::table(&["node", "port", "controller port", "pid", "state"]);
                for n in &st.nodes {
                    let state = if n.up { output::green("up") } else { output::red("down") };
                    t.add_row(vec![
                        n.node.to_string(),
                        n.port.to_string(),
                        n.controller_port.to_string(),
                        n.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        state,
                    ]);
                }
                println!("{t}");
                println!("cluster id: {}", st.cluster_id.as_deref().unwrap_or("(not formatted)"));
                println!("data: {}", st.data_dir);
                println!(
                    "answers authenticated requests: {}",
                    if st.reachable { format!("yes ({} broker(s) registered)", st.brokers_seen) } else { "no".into() }
                );
            }
            let all_up = st.nodes.iter().all(|n| n.up) && st.reachable;
            Ok(if all_up { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
