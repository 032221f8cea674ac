//! The `fink` command line: parse arguments, call one module per command.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

use fink::config::{self, LoadOptions, Loaded};
use fink::output::{self, Format};
use fink::{cluster, local, plan, stream, supervisor};

/// Exit codes: 0 success; 1 error (bad config, unreachable or refusing
/// cluster, failed change); 2 `plan --detailed-exitcode` found changes.
#[derive(Parser)]
#[command(
    name = "fink",
    version,
    about = "Redistribute astronomical alert streams over Apache Kafka, driven by fink.toml",
    after_help = "Exit codes: 0 success, 1 error, 2 changes pending (plan --detailed-exitcode).\nEnvironment: FINK_CONFIG, FINK_PROFILE, FINK_<SECTION>__<KEY> overrides, FINK_LOG (log filter), NO_COLOR."
)]
struct Cli {
    /// The desired-state file.
    #[arg(long, global = true, env = "FINK_CONFIG", default_value = "fink.toml")]
    config: PathBuf,
    /// Merge profiles/NAME.toml over the config.
    #[arg(long, global = true, env = "FINK_PROFILE")]
    profile: Option<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    /// More logging (-v info, -vv debug); FINK_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check fink.toml (and the profile): types, unknown keys, references, secrets, filters.
    Validate {
        /// Also check every field streams select, drop or filter on against this sample (Parquet/Avro file or directory).
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Run the local Kafka cluster declared in [local].
    Cluster {
        #[command(subcommand)]
        action: ClusterCmd,
    },
    /// List topics, or describe one (partitions, leaders, ISR, non-default configs).
    Topics {
        /// A topic to describe.
        name: Option<String>,
        /// Include internal topics (__consumer_offsets, ...).
        #[arg(long)]
        all: bool,
    },
    /// List SCRAM users (mechanisms and iterations; never secrets).
    Users,
    /// List ACL bindings.
    Acls,
    /// Show what apply would change on the live cluster.
    Plan {
        /// Also delete live topics, users and ACLs that fink.toml does not declare.
        #[arg(long)]
        prune: bool,
        /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Save the plan to FILE for `fink apply FILE`.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Run the distribution streams (continuously, or --until-idle).
    Run {
        /// Run only this stream.
        #[arg(long)]
        stream: Option<String>,
        /// Exit once every present alert is published (scripts, benchmarks).
        #[arg(long)]
        until_idle: bool,
        /// On a config edit, plan and apply the cluster changes it implies first (never deletions unless prune).
        #[arg(long)]
        apply: bool,
        /// No progress bar even on a terminal.
        #[arg(long)]
        no_progress: bool,
    },
    /// Status of a running `fink run` (from its /status endpoint). Exits 1
    /// when it does not answer or a stream has failed or is stalled.
    Status {
        /// Address of the `fink run` endpoint (default: [run] metrics_addr).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Read a topic and decode its alerts (schema from the message key).
    Consume {
        topic: String,
        /// Stop after N alerts.
        #[arg(long)]
        max: Option<usize>,
        /// Start at the beginning even when the group has committed offsets.
        #[arg(long)]
        from_beginning: bool,
        /// Consumer group (offsets are committed; resumes where it stopped).
        #[arg(long)]
        group: Option<String>,
        /// Read as this declared user (default: the admin).
        #[arg(long)]
        user: Option<String>,
        /// Decode with this Avro schema instead of the key's.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Table columns (dotted paths), comma-separated.
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// Keep waiting for new alerts instead of exiting at the end.
        #[arg(long)]
        follow: bool,
    },
    /// Write seeded synthetic ZTF-like alerts as Parquet night folders.
    Simulate {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1000)]
        alerts: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Alerts per Parquet file.
        #[arg(long, default_value_t = 1000)]
        per_file: usize,
        /// Number of night folders.
        #[arg(long, default_value_t = 1)]
        nights: usize,
    },
    /// Translate Fink's legacy distribution-rules.xml into a [[stream]] and CEL filter (TOML on stdout).
    ImportRules {
        file: PathBuf,
        /// Name of the stream and filter.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "CHANGE_ME_topic")]
        topic: String,
        #[arg(long, default_value = "CHANGE_ME/science")]
        source: String,
    },
    /// Evaluate filters on alert files (no Kafka needed).
    Filter {
        #[command(subcommand)]
        action: FilterCmd,
    },
    /// Make the live cluster match fink.toml (or execute a saved plan).
    Apply {
        /// A plan saved by `fink plan -o FILE`; refused if the cluster drifted since.
        plan: Option<PathBuf>,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        /// Also delete live topics, users and ACLs that fink.toml does not declare.
        #[arg(long)]
        prune: bool,
    },
}

#[derive(Subcommand)]
enum FilterCmd {
    /// Which alerts each filter keeps, and how the fields it reads look.
    Test {
        /// Parquet or Avro file, or a directory of them.
        #[arg(long)]
        data: PathBuf,
        /// Test this stream's filters (default: every named filter).
        #[arg(long)]
        stream: Option<String>,
        /// Test this expression instead of the config's filters.
        #[arg(long)]
        expr: Option<String>,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
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

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,librdkafka=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FINK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(output::color_enabled())
        .init();
}

fn load(cli: &Cli) -> Result<Loaded, config::ConfigErrors> {
    let mut opts = LoadOptions::new(&cli.config);
    opts.profile = cli.profile.clone();
    config::load(&opts)
}

fn load_or_exit(cli: &Cli) -> Result<Loaded, ExitCode> {
    match load(cli) {
        Ok(l) => {
            for w in &l.warnings {
                tracing::warn!("{w}");
            }
            Ok(l)
        }
        Err(errs) => {
            eprintln!("{errs}");
            Err(ExitCode::from(1))
        }
    }
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`fink topics | head`), like other CLIs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{} {e:#}", output::red("error:"));
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> Result<ExitCode> {
    match &cli.command {
        Cmd::Validate { data } => validate(cli, data.as_deref()),
        Cmd::Cluster { action } => cluster_cmd(cli, action),
        Cmd::Topics { name, all } => with_admin(cli, |a| cluster::views::topics(a, name.as_deref(), *all, cli.output)),
        Cmd::Users => with_admin(cli, |a| cluster::views::users(a, cli.output)),
        Cmd::Acls => with_admin(cli, |a| cluster::views::acls(a, cli.output)),
        Cmd::Plan { prune, detailed_exitcode, out } => plan_cmd(cli, *prune, *detailed_exitcode, out.as_deref()),
        Cmd::Apply { plan, auto_approve, prune } => apply_cmd(cli, plan.as_deref(), *auto_approve, *prune),
        Cmd::ImportRules { file, name, topic, source } => {
            let xml = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            match fink::rules::import(&xml) {
                Ok(imported) => {
                    let default = file
                        .file_stem()
                        .map(|s| s.to_string_lossy().replace(['-', '.'], "_"))
                        .unwrap_or("imported".into());
                    let name = name.clone().unwrap_or(default);
                    print!("{}", fink::rules::to_toml(&imported, &name, topic, source, &file.display().to_string()));
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{} {}: {e}", output::red("error:"), file.display());
                    Ok(ExitCode::from(1))
                }
            }
        }
        Cmd::Filter { action: FilterCmd::Test { data, stream, expr } } => {
            filter_test_cmd(cli, data, stream.as_deref(), expr.as_deref())
        }
        Cmd::Run { stream, until_idle, apply, no_progress } => {
            run_cmd(cli, stream.clone(), *until_idle, *apply, *no_progress)
        }
        Cmd::Status { addr } => status_cmd(cli, addr.clone()),
        Cmd::Consume { topic, max, from_beginning, group, user, schema, columns, follow } => {
            let loaded = match load_or_exit(cli) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            let admin = cluster::Connection::admin(&loaded.config.cluster, &loaded.base_dir)?;
            let conn = match user {
                None => admin,
                Some(u) => {
                    let decl = loaded
                        .config
                        .users
                        .iter()
                        .find(|x| &x.name == u)
                        .ok_or_else(|| anyhow::anyhow!("user {u:?} is not declared in fink.toml"))?;
                    let pw = decl.password.resolve(&loaded.base_dir).map_err(|e| anyhow::anyhow!("user {u:?}: {e}"))?;
                    admin.as_user(u, pw, decl.mechanism)
                }
            };
            let opts = stream::consume::ConsumeOptions {
                topic: topic.clone(),
                max: *max,
                from_beginning: *from_beginning,
                group: group.clone(),
                schema: schema.clone(),
                columns: columns.clone(),
                follow: *follow,
                format: cli.output,
            };
            stream::consume::consume(&conn, &opts)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Simulate { out, alerts, seed, per_file, nights } => {
            let opts = fink::simulate::SimulateOptions {
                out: out.clone(),
                alerts: *alerts,
                seed: *seed,
                per_file: *per_file,
                nights: *nights,
            };
            let bar = progress_bar(*alerts as u64);
            let files = fink::simulate::simulate(&opts, &|n| bar.set_position(n as u64))?;
            bar.finish_and_clear();
            println!("Wrote {alerts} alerts in {} Parquet file(s) under {}.", files.len(), out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn with_admin(cli: &Cli, f: impl FnOnce(&cluster::Admin) -> Result<()>) -> Result<ExitCode> {
    let loaded = match load_or_exit(cli) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let admin = cluster::connect_admin(&loaded.config, &loaded.base_dir)?;
    f(&admin)?;
    Ok(ExitCode::SUCCESS)
}

fn validate(cli: &Cli, data: Option<&std::path::Path>) -> Result<ExitCode> {
    let mut result = load(cli);
    if let (Ok(l), Some(d)) = (&result, data) {
        let format = stream::source::detect_format(d)
            .ok_or_else(|| anyhow::anyhow!("{}: no Parquet or Avro alert files", d.display()))?;
        let file = if d.is_file() { d.to_path_buf() } else { stream::source::list_files(d, format)?.remove(0) };
        let reader = stream::source::open(&file, format, 16).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let errs = fink::config::check_against_schema(l, &reader.schema, &format!("sample {}", file.display()));
        if !errs.is_empty() {
            result = Err(fink::config::ConfigErrors(errs));
        }
    }
    if cli.output == Format::Json {
        let (valid, errors, warnings) = match &result {
            Ok(l) => (true, vec![], l.warnings.clone()),
            Err(e) => (false, e.0.clone(), vec![]),
        };
        output::print_json(&serde_json::json!({ "valid": valid, "errors": errors, "warnings": warnings }))?;
        return Ok(if valid { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    match result {
        Ok(l) => {
            for w in &l.warnings {
                eprintln!("{}", output::yellow(&w.to_string()));
            }
            let c = &l.config;
            let profile = l.profile.as_deref().map(|p| format!(" + profiles/{p}.toml")).unwrap_or_default();
            println!(
                "{}{}: valid ({} topics, {} users, {} ACL entries, {} filters, {} streams)",
                l.config_path.display(),
                profile,
                c.topics.len(),
                c.users.len(),
                c.acls.len(),
                c.filters.len(),
                c.streams.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errs) => {
            for d in &errs.0 {
                eprintln!("{}", output::red(&d.to_string()));
            }
            eprintln!("{} error(s)", errs.0.len());
            Ok(ExitCode::from(1))
        }
    }
}

fn cluster_cmd(cli: &Cli, action: &ClusterCmd) -> Result<ExitCode> {
    let progress = |msg: &str| eprintln!("{} {msg}", output::bold("fink:"));
    if let ClusterCmd::Install = action {
        // Install needs only the version; a broken config should not block it.
        let version = load(cli)
            .map(|l| l.config.local.kafka_version)
            .unwrap_or_else(|_| local::DEFAULT_KAFKA_VERSION.to_string());
        let home = local::kafka_home(&version, &progress)?;
        local::check_java()?;
        println!("Apache Kafka {version}: {}", home.display());
        return Ok(ExitCode::SUCCESS);
    }
    let loaded = match load_or_exit(cli) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let lc = local::LocalCluster::from_config(&loaded)?;
    match action {
        ClusterCmd::Install => unreachable!("handled above"),
        ClusterCmd::Start { timeout } => {
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
        ClusterCmd::Stop { grace } => {
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
        ClusterCmd::Status => {
            let st = lc.status();
            if cli.output == Format::Json {
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

fn plan_cmd(cli: &Cli, prune: bool, detailed: bool, out: Option<&std::path::Path>) -> Result<ExitCode> {
    let loaded = match load_or_exit(cli) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let admin = cluster::connect_admin(&loaded.config, &loaded.base_dir)?;
    let p = plan::make_plan(&loaded, &admin, prune)?;
    match cli.output {
        Format::Json => println!("{}", plan::render::json(&p)?),
        Format::Table => print!("{}", plan::render::human(&p)),
    }
    if let Some(path) = out {
        std::fs::write(path, plan::render::json(&p)?)?;
        eprintln!("Plan saved to {}; run `fink apply {}` to execute exactly it.", path.display(), path.display());
    }
    Ok(if !p.blockers.is_empty() {
        ExitCode::from(1)
    } else if detailed && !p.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn apply_cmd(cli: &Cli, saved: Option<&std::path::Path>, auto_approve: bool, prune: bool) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let loaded = match load_or_exit(cli) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let saved_plan: Option<plan::Plan> = match saved {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read plan {}: {e}", path.display()))?;
            let p: plan::Plan = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{} is not a fink plan: {e}", path.display()))?;
            if p.format != plan::PLAN_FORMAT {
                anyhow::bail!("{} has format {:?}; this fink reads {:?}", path.display(), p.format, plan::PLAN_FORMAT);
            }
            Some(p)
        }
        None => None,
    };
    let admin = cluster::connect_admin(&loaded.config, &loaded.base_dir)?;
    let prune = saved_plan.as_ref().map(|p| p.prune).unwrap_or(prune);
    let fresh = plan::make_plan(&loaded, &admin, prune)?;
    if let Some(saved) = &saved_plan {
        let drift = plan::drift(saved, &fresh);
        if !drift.is_empty() {
            eprintln!("{} the saved plan is stale; nothing was changed. What drifted:", output::red("error:"));
            for d in &drift {
                eprintln!("  - {d}");
            }
            eprintln!("Run `fink plan` again.");
            return Ok(ExitCode::from(1));
        }
    }
    let json = cli.output == Format::Json;
    if !json {
        print!("{}", plan::render::human(&fresh));
    }
    if !fresh.blockers.is_empty() {
        if json {
            println!("{}", plan::render::json(&fresh)?);
        }
        eprintln!("{} nothing was changed: fix the problems above in fink.toml first.", output::red("error:"));
        return Ok(ExitCode::from(1));
    }
    if fresh.is_empty() {
        if json {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "plan": fresh, "outcomes": [] }))?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A saved plan was reviewed when it was made; otherwise ask.
    if saved_plan.is_none() && !auto_approve {
        if !std::io::stdin().is_terminal() {
            eprintln!("{} refusing to apply without confirmation: no terminal to ask on. Review with `fink plan`, then pass --auto-approve.", output::red("error:"));
            return Ok(ExitCode::from(1));
        }
        eprint!("\nApply these changes to {}? Only 'yes' is accepted: ", loaded.config.cluster.bootstrap.join(","));
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            eprintln!("Apply cancelled; nothing was changed.");
            return Ok(ExitCode::from(1));
        }
    }
    let report = plan::apply::execute(&fresh, &loaded, &admin, &|o| {
        if !json {
            let mark = if o.ok { output::green("done") } else { output::red("FAILED") };
            match &o.error {
                None => eprintln!("  {mark} {} {}", plan::symbol(o.action), o.change),
                Some(e) => eprintln!("  {mark} {} {}: {e}", plan::symbol(o.action), o.change),
            }
        }
    })?;
    // The controller has accepted the changes; brokers serve them once their
    // metadata catches up (seconds, for thousands of records). Wait for it,
    // so a plan right after an apply says "No changes."
    let mut pending = None;
    if report.failed() == 0 {
        pending = plan::wait_converged(&loaded, &admin, prune, std::time::Duration::from_secs(120), &|n| {
            if !json {
                eprintln!("  waiting for the brokers to show the last {n} change(s)...");
            }
        })?;
    }
    if json {
        let v = serde_json::json!({ "plan": fresh, "outcomes": report.outcomes, "not_yet_visible": pending });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Some(n) = pending {
        let msg = format!(
            "Apply complete: {} change(s) made; {n} not yet visible on the brokers after 120s (run `fink plan` to check).",
            report.done()
        );
        println!("{}", output::yellow(&msg));
    } else if report.failed() == 0 {
        println!("{}", output::green(&format!("Apply complete: {} change(s) made.", report.done())));
    } else {
        println!(
            "{}",
            output::red(&format!(
                "Apply incomplete: {} change(s) made, {} failed (listed above); run `fink apply` again once fixed.",
                report.done(),
                report.failed()
            ))
        );
    }
    Ok(if report.failed() == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// A progress bar on a terminal, hidden otherwise.
fn progress_bar(len: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len);
    b.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}").unwrap());
    b
}

fn run_cmd(cli: &Cli, only: Option<String>, until_idle: bool, apply: bool, no_progress: bool) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let loaded = match load_or_exit(cli) {
        Ok(l) => l,
        Err(code) => return Ok(code),
    };
    let mut load = LoadOptions::new(&cli.config);
    load.profile = cli.profile.clone();
    let opts = supervisor::RunOptions {
        load,
        only,
        until_idle,
        apply,
        progress: !no_progress && std::io::stderr().is_terminal(),
        watch_config: !until_idle,
    };
    stream::limit_malloc_arenas();
    let started = std::time::Instant::now();
    let summary = supervisor::run(loaded, opts)?;
    let secs = started.elapsed().as_secs_f64();
    let failed: Vec<_> = summary.iter().filter(|s| matches!(s.state, stream::runner::State::Failed(_))).collect();
    if cli.output == Format::Json {
        output::print_json(&serde_json::json!({ "elapsed_secs": secs, "streams": summary }))?;
    } else {
        let mut t = output::table(&[
            "stream",
            "topic",
            "read",
            "published",
            "filtered",
            "errors",
            "quarantined",
            "MB",
            "alerts/s",
            "state",
        ]);
        for s in &summary {
            let st = &s.stats;
            let state = match &s.state {
                stream::runner::State::Failed(e) => output::red(&format!("failed: {e}")),
                other => format!("{other:?}").to_lowercase(),
            };
            t.add_row(vec![
                s.name.clone(),
                s.topic.clone(),
                st.read.to_string(),
                st.published.to_string(),
                st.filtered.to_string(),
                st.errors.to_string(),
                st.quarantined.to_string(),
                format!("{:.1}", st.bytes as f64 / 1e6),
                format!("{:.0}", st.read as f64 / secs.max(1e-3)),
                state,
            ]);
        }
        println!("{t}");
        println!("{:.1}s", secs);
    }
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn status_cmd(cli: &Cli, addr: Option<String>) -> Result<ExitCode> {
    let addr = match addr {
        Some(a) => a,
        None => match load(cli) {
            Ok(l) => l.config.run.metrics_addr,
            Err(_) => fink::config::RunConfig::default().metrics_addr,
        },
    };
    let body = supervisor::fetch_status(&addr)?;
    let st: serde_json::Value = serde_json::from_str(&body)?;
    // Health-check friendly: 1 when a stream has failed or is stalled.
    let unhealthy = st["streams"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s["state"]["state"] == "failed" || s["stalled_secs"].is_u64()));
    let code = if unhealthy { ExitCode::from(1) } else { ExitCode::SUCCESS };
    if cli.output == Format::Json {
        println!("{}", body.trim_end());
        return Ok(code);
    }
    let mut t = output::table(&["stream", "topic", "state", "read", "published", "backlog files", "uptime s"]);
    let mut notes = Vec::new();
    for s in st["streams"].as_array().cloned().unwrap_or_default() {
        let name = s["name"].as_str().unwrap_or("").to_string();
        let state = match s["stalled_secs"].as_u64() {
            Some(secs) => {
                let why = s["client_error"].as_str().unwrap_or("none reported");
                notes.push(format!(
                    "{} {name}: {} alerts in flight, no delivery report for {secs} s; last client error: {why}",
                    output::red("stalled:"),
                    s["stats"]["in_flight"]
                ));
                output::red(&format!("stalled {secs}s"))
            }
            None => s["state"]["state"].as_str().unwrap_or("").to_string(),
        };
        t.add_row(vec![
            name,
            s["topic"].as_str().unwrap_or("").to_string(),
            state,
            s["stats"]["read"].to_string(),
            s["stats"]["published"].to_string(),
            s["stats"]["backlog_files"].to_string(),
            s["uptime_secs"].to_string(),
        ]);
    }
    println!("{t}");
    for n in notes {
        println!("{n}");
    }
    let c = &st["config"];
    println!(
        "config {} loaded at {} ({} reloads)",
        c["config_hash"].as_str().unwrap_or("?"),
        c["loaded_at"],
        c["reloads"]
    );
    if let Some(e) = c["last_reload_error"].as_str() {
        println!("{} {e}", output::red("last reload failed:"));
    }
    Ok(code)
}

fn filter_test_cmd(
    cli: &Cli,
    data: &std::path::Path,
    stream_name: Option<&str>,
    expr: Option<&str>,
) -> Result<ExitCode> {
    use fink::stream::filter::Filter;
    let filters: Vec<Filter> = match expr {
        Some(e) => vec![Filter::compile("expr", e).map_err(|e| anyhow::anyhow!("--expr: {e}"))?],
        None => {
            let loaded = match load_or_exit(cli) {
                Ok(l) => l,
                Err(code) => return Ok(code),
            };
            match stream_name {
                Some(s) => stream::specs(&loaded, Some(s))?.remove(0).compile_filters()?,
                None => loaded
                    .config
                    .filters
                    .iter()
                    .map(|(n, f)| Filter::compile(n, &f.expr).map_err(|e| anyhow::anyhow!("filter {n:?}: {e}")))
                    .collect::<Result<_>>()?,
            }
        }
    };
    if filters.is_empty() {
        anyhow::bail!("no filters to test: declare [filter.NAME] or pass --expr");
    }
    let report = stream::filter_test::run(&filters, data)?;
    if cli.output == Format::Json {
        output::print_json(&report)?;
    } else {
        stream::filter_test::print(&report);
    }
    Ok(if report.iter().any(|r| r.errors > 0) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
