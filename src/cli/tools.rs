//! `fink simulate` and `fink import-rules`: tools that need no cluster.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Result};

use crate::output;
use crate::simulate::SimulateOptions;

pub fn simulate(opts: SimulateOptions) -> Result<ExitCode> {
    let bar = super::progress_bar(opts.alerts as u64);
    let files = crate::simulate::simulate(&opts, &|n| bar.set_position(n as u64))?;
    bar.finish_and_clear();
    println!("Wrote {} alerts in {} Parquet file(s) under {}.", opts.alerts, files.len(), opts.out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn import_rules(file: &Path, name: Option<String>, topic: &str, source: &str) -> Result<ExitCode> {
    let xml = std::fs::read_to_string(file).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    match crate::rules::import(&xml) {
        Ok(imported) => {
            let default =
                file.file_stem().map(|s| s.to_string_lossy().replace(['-', '.'], "_")).unwrap_or("imported".into());
            let name = name.unwrap_or(default);
            print!("{}", crate::rules::to_toml(&imported, &name, topic, source, &file.display().to_string()));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{} {}: {e}", output::red("error:"), file.display());
            Ok(ExitCode::from(1))
        }
    }
}

/// The JSON Schema of fink.toml, generated from the config model.
pub fn config_schema_json() -> String {
    let mut schema = schemars::schema_for!(crate::config::Config);
    schema.insert("$id".into(), "https://fink-broker.org/schemas/fink.schema.json".into());
    schema.insert("title".into(), "fink.toml".into());
    // Profiles and included files are parts of a config: none needs
    // [cluster] of its own. `fink validate` checks the merged whole.
    schema.remove("required");
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

pub fn config_schema() -> Result<ExitCode> {
    print!("{}", config_schema_json());
    Ok(ExitCode::SUCCESS)
}

/// The Avro schema a stream publishes, from a sample of its source.
pub fn stream_schema(ctx: &super::Ctx, name: &str, data: Option<&Path>) -> Result<ExitCode> {
    let loaded = crate::loaded_or_return!(ctx);
    let spec = crate::stream::specs(&loaded, Some(name), &ctx.night)?.remove(0);
    let (store, format, inputs) = match data {
        Some(d) => crate::stream::data_inputs(Some(&loaded), d)?,
        None => {
            let st = crate::stream::store::Store::open(&spec.source).map_err(|e| anyhow::anyhow!("{e}"))?;
            let inputs = st.list(spec.format).map_err(|e| anyhow::anyhow!("{}: {e}", spec.source.display()))?;
            (st, spec.format, inputs)
        }
    };
    let input = inputs
        .first()
        .ok_or_else(|| anyhow::anyhow!("no alert file to read the schema from: pass --data FILE_OR_DIR"))?;
    let how = crate::stream::source::How::all(format, 16);
    let reader = crate::stream::source::open_file(&store, input, &how)
        .map_err(|e| anyhow::anyhow!("{}: {e}", store.url_of(&input.rel)))?;
    let projection = crate::stream::project::Projection::new(&spec.select, &spec.drop, &reader.schema)
        .map_err(|e| anyhow::anyhow!("stream {name:?}: {e}"))?;
    let out = projection.output_schema(&reader.schema)?;
    let encoder = crate::stream::encode::AvroEncoder::new(&out).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", crate::stream::encode::pretty_schema(&encoder.schema_json));
    Ok(ExitCode::SUCCESS)
}

const INIT_CONFIG: &str = r#"#:schema ./schemas/fink.schema.json
# fink.toml: the cluster, topics, users, ACLs, filters and streams of one
# deployment. `fink validate` checks it; `fink plan` shows what `fink apply`
# would change; `fink run` runs the streams (and reloads on edits).

[cluster]
bootstrap = ["127.0.0.1:9092"]
[cluster.admin]
user = "admin"
password = { file = ".fink/secrets/admin.password", generate = true }

[run]
state_dir = ".fink/state"

[[topic]]
name = "fink_bright_ztf"
partitions = 2

[filter.bright]
expr = "candidate.magpsf < 16.0"

[[stream]]
name = "bright"
source = { format = "parquet", path = "science/{night}" }
filters = ["bright"]
drop = ["cutoutScience", "cutoutTemplate", "cutoutDifference"]
topic = "fink_bright_ztf"
"#;

const INIT_LOCAL: &str = r#"#:schema ../schemas/fink.schema.json
# `fink --profile local ...`: a one-node cluster on this machine
# (`fink cluster start`).
[cluster]
bootstrap = ["127.0.0.1:9092"]

[local]
brokers = 1
port = 9092
"#;

const INIT_PROD: &str = r#"#:schema ../schemas/fink.schema.json
# `fink --profile prod ...`: the production cluster. Secrets come from the
# environment, never from this file.
[cluster]
bootstrap = ["kafka-1.example.org:9093", "kafka-2.example.org:9093", "kafka-3.example.org:9093"]
security_protocol = "SASL_SSL"
[cluster.admin]
user = "admin"
password = { env = "FINK_ADMIN_PASSWORD" }

[defaults]
replication_factor = 3
"#;

const INIT_README: &str = r#"# fink deployment

- `fink validate`: check fink.toml (and `--profile prod`).
- `fink plan` / `fink apply`: converge the cluster.
- `fink run`: run the streams; `fink status` while it runs.
- Editors: `schemas/fink.schema.json` (from `fink schema`) completes and
  checks fink.toml through its `#:schema` line (taplo, Even Better TOML).
"#;

/// `fink init [DIR]`: never overwrites an existing file.
pub fn init(dir: &Path) -> Result<ExitCode> {
    let files: [(&str, String); 6] = [
        ("fink.toml", INIT_CONFIG.to_string()),
        ("profiles/local.toml", INIT_LOCAL.to_string()),
        ("profiles/prod.toml", INIT_PROD.to_string()),
        (".gitignore", ".fink/\n".to_string()),
        ("README.fink.md", INIT_README.to_string()),
        ("schemas/fink.schema.json", config_schema_json()),
    ];
    let mut created = 0;
    for (name, text) in files {
        let path = dir.join(name);
        if path.exists() {
            println!("kept     {} (exists)", path.display());
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        // create_new: a file appearing meanwhile is not overwritten either.
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        println!("created  {}", path.display());
        created += 1;
    }
    println!("{created} file(s) created; next: `fink validate`, then `fink cluster start` and `fink apply`");
    Ok(ExitCode::SUCCESS)
}
