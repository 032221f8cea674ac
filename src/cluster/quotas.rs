//! Client quotas (DescribeClientQuotas / AlterClientQuotas, KIP-546) over
//! fink's protocol client: librdkafka has no API for them.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use kafka_protocol::messages::{alter_client_quotas_request as alter, describe_client_quotas_request as describe};
use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};
use kafka_protocol::protocol::StrBytes;
use serde::{Deserialize, Serialize};

use super::protocol::Client;
use super::Connection;
use crate::config::SecurityProtocol;

/// How Kafka names a default entity (`kafka-configs.sh` shows it so).
pub const DEFAULT: &str = "<default>";

/// Who a quota applies to: a user, a client id, or both; either may be
/// [`DEFAULT`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entity {
    pub user: Option<String>,
    pub client_id: Option<String>,
}

impl Entity {
    /// `user=alice`, `client-id=app`, `user=alice,client-id=app`.
    pub fn key(&self) -> String {
        let mut parts = Vec::new();
        if let Some(u) = &self.user {
            parts.push(format!("user={u}"));
        }
        if let Some(c) = &self.client_id {
            parts.push(format!("client-id={c}"));
        }
        parts.join(",")
    }

    fn components(&self) -> Vec<(&'static str, Option<StrBytes>)> {
        let name = |n: &String| (n != DEFAULT).then(|| StrBytes::from_string(n.clone()));
        let mut out = Vec::new();
        if let Some(u) = &self.user {
            out.push(("user", name(u)));
        }
        if let Some(c) = &self.client_id {
            out.push(("client-id", name(c)));
        }
        out
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

/// Quota values by key (`producer_byte_rate`, ...).
pub type Values = BTreeMap<String, f64>;

/// The protocol client logged in as the connection's user (over TLS with
/// SASL_SSL, trusting `ssl_ca_location`).
pub fn client(conn: &Connection) -> Result<Client> {
    let tls = match conn.protocol {
        SecurityProtocol::SaslSsl => {
            Some(super::protocol::tls_config(conn.ssl_ca_location.as_deref().map(std::path::Path::new))?)
        }
        _ => None,
    };
    match (&conn.user, &conn.password) {
        (Some(u), Some(p)) if conn.protocol != SecurityProtocol::Plaintext => {
            Client::login(&conn.bootstrap, conn.timeout, tls, conn.mechanism, u, p.expose()).map_err(|e| anyhow!("{e}"))
        }
        _ => Client::connect_with(&conn.bootstrap, conn.timeout, tls).map_err(|e| anyhow!("{e}")),
    }
}

/// Every quota entity with its values.
pub fn describe(c: &mut Client) -> Result<BTreeMap<Entity, Values>> {
    // No component and not strict: every entity.
    let req = DescribeClientQuotasRequest::default().with_components(Vec::<describe::ComponentData>::new());
    let resp = c.send(&req).map_err(|e| anyhow!("{e}"))?;
    if resp.error_code != 0 {
        return Err(anyhow!(
            "DescribeClientQuotas: {} (Kafka error code {})",
            resp.error_message.map(|m| m.to_string()).unwrap_or_default(),
            resp.error_code
        ));
    }
    let mut out = BTreeMap::new();
    for e in resp.entries.unwrap_or_default() {
        let mut entity = Entity { user: None, client_id: None };
        for part in &e.entity {
            let name = part.entity_name.as_ref().map(|n| n.to_string()).unwrap_or_else(|| DEFAULT.to_string());
            match part.entity_type.as_str() {
                "user" => entity.user = Some(name),
                "client-id" => entity.client_id = Some(name),
                // IP quotas are not fink's.
                _ => {}
            }
        }
        if entity.user.is_none() && entity.client_id.is_none() {
            continue;
        }
        let values: Values = e.values.iter().map(|v| (v.key.to_string(), v.value)).collect();
        out.insert(entity, values);
    }
    Ok(out)
}

/// One entity's change: values to set, keys to remove.
pub type QuotaEdit<'a> = (&'a Entity, &'a Values, &'a [String]);

/// Set and remove values of many entities in one request; one result per
/// edit, in order.
pub fn alter(c: &mut Client, edits: &[QuotaEdit<'_>]) -> Result<Vec<std::result::Result<(), String>>> {
    let entries = edits
        .iter()
        .map(|(entity, set, remove)| {
            alter::EntryData::default()
                .with_entity(
                    entity
                        .components()
                        .into_iter()
                        .map(|(t, n)| {
                            alter::EntityData::default()
                                .with_entity_type(StrBytes::from_static_str(t))
                                .with_entity_name(n)
                        })
                        .collect(),
                )
                .with_ops(
                    set.iter()
                        .map(|(k, v)| {
                            alter::OpData::default().with_key(StrBytes::from_string(k.clone())).with_value(*v)
                        })
                        .chain(remove.iter().map(|k| {
                            alter::OpData::default().with_key(StrBytes::from_string(k.clone())).with_remove(true)
                        }))
                        .collect(),
                )
        })
        .collect();
    let resp = c.send(&AlterClientQuotasRequest::default().with_entries(entries)).map_err(|e| anyhow!("{e}"))?;
    // Answers name their entity: match them back.
    let mut by_key: std::collections::HashMap<String, std::result::Result<(), String>> = Default::default();
    for e in resp.entries {
        let mut entity = Entity { user: None, client_id: None };
        for part in &e.entity {
            let name = part.entity_name.as_ref().map(|n| n.to_string()).unwrap_or_else(|| DEFAULT.to_string());
            match part.entity_type.as_str() {
                "user" => entity.user = Some(name),
                "client-id" => entity.client_id = Some(name),
                _ => {}
            }
        }
        let r = if e.error_code == 0 {
            Ok(())
        } else {
            Err(format!(
                "{} (Kafka error code {})",
                e.error_message.map(|m| m.to_string()).unwrap_or_default(),
                e.error_code
            ))
        };
        by_key.insert(entity.key(), r);
    }
    Ok(edits
        .iter()
        .map(|(entity, _, _)| by_key.remove(&entity.key()).unwrap_or_else(|| Err("no answer from the cluster".into())))
        .collect())
}
