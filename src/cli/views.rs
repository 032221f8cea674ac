//! Read-only views of the live cluster: `fink topics`, `fink users`, `fink acls`.

use anyhow::{bail, Result};

use crate::cluster::{Admin, LiveTopic};
use crate::output::{self, Format};

fn join(ids: &[i32]) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

pub fn topics(admin: &Admin, name: Option<&str>, all: bool, format: Format) -> Result<()> {
    let (_, topics) = admin.topics()?;
    let selected: Vec<&LiveTopic> = match name {
        Some(n) => match topics.get(n) {
            Some(t) => vec![t],
            None => bail!("topic {n:?} does not exist on the cluster"),
        },
        None => topics.values().filter(|t| all || !t.internal).collect(),
    };
    if format == Format::Json {
        return output::print_json(&selected);
    }
    if let Some(t) = selected.first().filter(|_| name.is_some()) {
        println!(
            "{}  partitions: {}  replication factor: {}",
            output::bold(&t.name),
            t.partitions.len(),
            t.replication_factor
        );
        let mut tab = output::table(&["partition", "leader", "replicas", "in-sync"]);
        for p in &t.partitions {
            let isr = if p.isr.len() < p.replicas.len() { output::yellow(&join(&p.isr)) } else { join(&p.isr) };
            tab.add_row(vec![p.id.to_string(), p.leader.to_string(), join(&p.replicas), isr]);
        }
        println!("{tab}");
        if t.configs.is_empty() {
            println!("configs: (all defaults)");
        } else {
            let mut c = output::table(&["config", "value"]);
            for (k, v) in &t.configs {
                c.add_row(vec![k.clone(), v.clone()]);
            }
            println!("{c}");
        }
        return Ok(());
    }
    let mut tab = output::table(&["topic", "partitions", "replication", "under-replicated", "non-default configs"]);
    for t in &selected {
        let under = t.partitions.iter().filter(|p| p.isr.len() < p.replicas.len()).count();
        let configs: Vec<String> = t.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        tab.add_row(vec![
            t.name.clone(),
            t.partitions.len().to_string(),
            t.replication_factor.to_string(),
            under.to_string(),
            configs.join(" "),
        ]);
    }
    if selected.is_empty() {
        println!("No topics.");
    } else {
        println!("{tab}");
    }
    Ok(())
}

pub fn users(admin: &Admin, format: Format) -> Result<()> {
    let users = admin.users()?;
    if format == Format::Json {
        let list: Vec<_> = users.values().collect();
        return output::print_json(&list);
    }
    if users.is_empty() {
        println!("No SCRAM users.");
        return Ok(());
    }
    let mut tab = output::table(&["user", "mechanism", "iterations"]);
    for u in users.values() {
        for c in &u.credentials {
            tab.add_row(vec![u.name.clone(), c.mechanism.as_str().to_string(), c.iterations.to_string()]);
        }
    }
    println!("{tab}");
    Ok(())
}

pub fn acls(admin: &Admin, format: Format) -> Result<()> {
    let acls = admin.acls()?;
    if format == Format::Json {
        return output::print_json(&acls);
    }
    if acls.is_empty() {
        println!("No ACLs.");
        return Ok(());
    }
    let mut tab = output::table(&["principal", "permission", "operation", "resource", "name", "pattern", "host"]);
    for a in &acls {
        tab.add_row(vec![
            a.principal.clone(),
            format!("{:?}", a.permission).to_lowercase(),
            a.operation.to_string(),
            a.resource.as_str().to_string(),
            a.name.clone(),
            format!("{:?}", a.pattern).to_lowercase(),
            a.host.clone(),
        ]);
    }
    println!("{tab}");
    Ok(())
}

/// A duration in seconds as `3d 4h`, `5h 20m`, `42s`; negative: `aged out`.
fn ages(secs: i64) -> String {
    if secs < 0 {
        return "aged out".into();
    }
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// Unread alerts that age out within this long are flagged.
const AGES_OUT_SOON_SECS: i64 = 24 * 3600;

pub fn groups(admin: &Admin, only: Option<&str>, format: Format) -> Result<()> {
    let groups = crate::cluster::groups::describe(admin, only)?;
    if format == Format::Json {
        return output::print_json(&groups);
    }
    if groups.is_empty() {
        println!("No consumer groups.");
        return Ok(());
    }
    let mut tab = output::table(&["group", "state", "members", "lag", "oldest unread ages out in"]);
    for g in &groups {
        let soon = g.ages_out_in_secs.map(|s| {
            let text = ages(s);
            if s < AGES_OUT_SOON_SECS {
                output::red(&format!("{text} (!)"))
            } else {
                text
            }
        });
        tab.add_row(vec![
            g.group.clone(),
            g.state.clone(),
            g.members.len().to_string(),
            g.lag.to_string(),
            soon.unwrap_or_else(|| "-".into()),
        ]);
    }
    println!("{tab}");
    for g in groups.iter().filter(|g| only.is_some() || g.lag > 0) {
        let mut t = output::table(&["topic", "partition", "committed", "end", "lag", "ages out in"]);
        for p in &g.partitions {
            t.add_row(vec![
                p.topic.clone(),
                p.partition.to_string(),
                p.committed.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                p.end.to_string(),
                p.lag.to_string(),
                p.ages_out_in_secs.map(ages).unwrap_or_else(|| "-".into()),
            ]);
        }
        println!("\n{}:\n{t}", g.group);
        for m in &g.members {
            println!("  member {} on {}: {}", m.client_id, m.host, m.assigned.join(", "));
        }
    }
    if let Some(g) = groups.iter().find(|g| g.ages_out_in_secs.is_some_and(|s| s < AGES_OUT_SOON_SECS)) {
        eprintln!(
            "{} group {:?} has unread alerts that age out of their topic within a day: it loses them unless it catches up",
            output::yellow("warning:"),
            g.group
        );
    }
    Ok(())
}

/// `fink import`: the live cluster as a fink.toml.
pub fn import(ctx: &super::Ctx, admin: &Admin, out: Option<&std::path::Path>) -> Result<()> {
    let loaded = ctx.load().map_err(|e| anyhow::anyhow!("{e}"))?;
    let live = admin.live_state()?;
    // The [cluster] section as written (its secrets stay references).
    let text = std::fs::read_to_string(&loaded.config_path)?;
    let doc: toml_edit::DocumentMut = text.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut cluster = toml_edit::DocumentMut::new();
    if let Some(t) = doc.get("cluster") {
        cluster.insert("cluster", t.clone());
    }
    let (toml, envs) = crate::plan::import::render(&loaded.config, &live, &cluster.to_string());
    match out {
        Some(path) => {
            if path.exists() {
                anyhow::bail!("{} exists: fink import never overwrites a file", path.display());
            }
            std::fs::write(path, &toml)?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{toml}"),
    }
    if !envs.is_empty() {
        eprintln!("passwords are read from: {}", envs.join(", "));
    }
    Ok(())
}

/// Run a read-only view with the admin connection.
pub fn with_admin(ctx: &super::Ctx, f: impl FnOnce(&Admin) -> Result<()>) -> Result<std::process::ExitCode> {
    let loaded = crate::loaded_or_return!(ctx);
    let admin = crate::cluster::connect_admin(&loaded.config, &loaded.base_dir)?;
    f(&admin)?;
    Ok(std::process::ExitCode::SUCCESS)
}
