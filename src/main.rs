//! The `fink` command line: parse arguments, call one module per command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use fink::cli::{self, Ctx};
use fink::output::{self, Format};

// Opening a small Parquet file builds and drops a column reader per leaf
// (~180 for Fink's alerts), thousands of allocations per file, made on the
// read-ahead threads and freed on the stream's. Measured on 20,000 alerts,
// one stream: 5,000 files of 4 alerts took 17.5 s with glibc's allocator
// and 12.4 s with jemalloc; 20 files of 1,000 about 10 s with either.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// jemalloc's defaults (an arena per thread group, freed pages kept 10 s)
// held ten streams at 456 MB peak RSS, against 309 MB with glibc. One arena
// and freed pages returned after a second: 237 MB, and no slower.
// `_RJEM_MALLOC_CONF` in the environment overrides it.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 47] = b"narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// Exit codes: 0 success; 1 error (bad config, unreachable or refusing
/// cluster, failed change, a failed stream, alerts left unconfirmed at a
/// stop); 2 `plan --detailed-exitcode` found changes.
#[derive(Parser)]
#[command(
    name = "fink",
    version,
    about = "Redistribute astronomical alert streams over Apache Kafka, driven by fink.toml",
    after_help = "Exit codes: 0 success, 1 error (for run: a failed stream or alerts unconfirmed at the stop), 2 changes pending (plan --detailed-exitcode).\nEnvironment: FINK_CONFIG, FINK_PROFILE, FINK_<SECTION>__<KEY> overrides (cluster, local, defaults, run), FINK_LOG (log filter), NO_COLOR.\nSignals (run): SIGTERM/SIGINT stop within [run] shutdown_timeout_s (a second one exits at once), SIGHUP reloads."
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
    /// The night (YYYYMMDD) that `{night}`, `{year}`, `{month}`, `{day}` in source
    /// paths and topic names stand for. Default: the current UTC night.
    #[arg(long, global = true, env = "FINK_NIGHT", value_parser = parse_night)]
    night: Option<fink::stream::night::Night>,
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
        action: cli::cluster::Action,
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
    /// Write a fink.toml from the live cluster: topics, users (passwords as
    /// env placeholders), ACLs (folded into roles where exact), quotas.
    Import {
        /// Write here instead of stdout (refuses to overwrite).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Consumer groups: members, lag per partition, and when the oldest
    /// unread alert ages out of its topic (retention.ms).
    Groups {
        /// Only this group.
        group: Option<String>,
    },
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
        /// End the run cleanly after this long (90s, 30m, 8h, 1h30m), delivering what is in flight.
        #[arg(long, value_parser = fink::stream::night::parse_duration)]
        exit_after: Option<std::time::Duration>,
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
        /// Survey whose alerts to simulate.
        #[arg(long, value_enum, default_value_t = fink::simulate::Survey::Ztf)]
        survey: fink::simulate::Survey,
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
    /// Print the JSON Schema of fink.toml (editors complete and check with it), or with
    /// --stream the Avro schema a stream publishes.
    Schema {
        /// A stream whose distribution Avro schema to print (from a sample of its source).
        #[arg(long)]
        stream: Option<String>,
        /// The sample for --stream (file, directory or URL); default: the stream's source.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Print a shell completion script: `fink completions bash > /etc/bash_completion.d/fink`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `fink man > fink.1`.
    Man,
    /// Print a generated page of the handbook (docs/src/reference/).
    #[command(hide = true)]
    Docs {
        #[arg(value_enum)]
        page: DocsPage,
    },
    /// Scaffold a deployment in DIR (default: here): fink.toml, profiles/, .gitignore,
    /// README.fink.md. Never overwrites a file.
    Init { dir: Option<PathBuf> },
    /// Each stream's committed progress: show it, or reset it.
    State {
        #[command(subcommand)]
        action: StateCmd,
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
        /// Start replica moves and return; a later apply removes their throttle.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum DocsPage {
    /// The fink.toml reference, from the JSON Schema.
    Config,
    /// The command-line reference, from these definitions.
    Cli,
}

#[derive(Subcommand)]
enum StateCmd {
    /// Files done (sealed folders, files recorded one by one), files in
    /// progress, files changed after publishing, the last commit and the
    /// instance running each stream.
    Show {
        /// Only this stream.
        stream: Option<String>,
    },
    /// Move a stream's progress to the start or the end of its source.
    /// Refused while the stream runs anywhere.
    Reset {
        stream: String,
        /// Publish everything again.
        #[arg(long)]
        to_start: bool,
        /// Skip every file there now.
        #[arg(long)]
        to_end: bool,
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

fn main() -> ExitCode {
    fink::sys::default_sigpipe();
    let args = Cli::parse();
    init_logging(args.verbose);
    let night = args.night.unwrap_or_else(fink::stream::night::Night::today);
    let ctx = Ctx { config: args.config, profile: args.profile, output: args.output, night };
    match dispatch(&ctx, args.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{} {e:#}", output::red("error:"));
            ExitCode::from(1)
        }
    }
}

fn dispatch(ctx: &Ctx, command: Cmd) -> Result<ExitCode> {
    match command {
        Cmd::Validate { data } => cli::validate::validate(ctx, data.as_deref()),
        Cmd::Schema { stream: None, .. } => cli::tools::config_schema(),
        Cmd::Schema { stream: Some(s), data } => cli::tools::stream_schema(ctx, &s, data.as_deref()),
        Cmd::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "fink",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Man => {
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Docs { page } => {
            print!(
                "{}",
                match page {
                    DocsPage::Config =>
                        cli::docs::config_reference(&serde_json::from_str(&cli::tools::config_schema_json())?),
                    DocsPage::Cli => cli::docs::cli_reference(&<Cli as clap::CommandFactory>::command()),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Init { dir } => cli::tools::init(dir.as_deref().unwrap_or(std::path::Path::new("."))),
        Cmd::Cluster { action } => cli::cluster::cluster(ctx, &action),
        Cmd::Topics { name, all } => {
            cli::views::with_admin(ctx, |a| cli::views::topics(a, name.as_deref(), all, ctx.output))
        }
        Cmd::Users => cli::views::with_admin(ctx, |a| cli::views::users(a, ctx.output)),
        Cmd::Acls => cli::views::with_admin(ctx, |a| cli::views::acls(a, ctx.output)),
        Cmd::Import { out } => cli::views::with_admin(ctx, |a| cli::views::import(ctx, a, out.as_deref())),
        Cmd::Groups { group } => cli::views::with_admin(ctx, |a| cli::views::groups(a, group.as_deref(), ctx.output)),
        Cmd::Plan { prune, detailed_exitcode, out } => cli::plan::plan(ctx, prune, detailed_exitcode, out.as_deref()),
        Cmd::Apply { plan, auto_approve, prune, no_wait } => {
            cli::plan::apply(ctx, plan.as_deref(), auto_approve, prune, no_wait)
        }
        Cmd::ImportRules { file, name, topic, source } => cli::tools::import_rules(&file, name, &topic, &source),
        Cmd::Filter { action: FilterCmd::Test { data, stream, expr } } => {
            cli::filter_test::filter_test(ctx, &data, stream.as_deref(), expr.as_deref())
        }
        Cmd::Run { stream, until_idle, apply, no_progress, exit_after } => {
            cli::run::run(ctx, stream, until_idle, apply, no_progress, exit_after)
        }
        Cmd::Status { addr } => cli::run::status(ctx, addr),
        Cmd::State { action: StateCmd::Show { stream } } => cli::state::show(ctx, stream),
        Cmd::State { action: StateCmd::Reset { stream, to_start, to_end } } => {
            cli::state::reset(ctx, stream, to_start, to_end)
        }
        Cmd::Consume { topic, max, from_beginning, group, user, schema, columns, follow } => {
            let opts = fink::stream::consume::ConsumeOptions { topic, max, from_beginning, group, schema, follow };
            cli::consume::consume(ctx, user.as_deref(), &opts, &columns)
        }
        Cmd::Simulate { out, alerts, seed, per_file, nights, survey } => {
            cli::tools::simulate(fink::simulate::SimulateOptions { out, alerts, seed, per_file, nights, survey })
        }
    }
}

fn parse_night(s: &str) -> Result<fink::stream::night::Night, String> {
    fink::stream::night::Night::parse(s)
}
