//! The one place with `unsafe`: librdkafka admin calls that rdkafka's safe
//! API lacks (ACLs, SCRAM credentials, incremental config changes).
//!
//! Each call runs on a private queue and blocks the calling thread until the
//! result event arrives or the timeout passes; callers in async code use
//! `spawn_blocking`. Every pointer created here is destroyed here.

use std::ffi::{CStr, CString};
use std::marker::PhantomData;
use std::os::raw::c_char;
use std::ptr;
use std::time::Duration;

use rdkafka_sys as rd;
use rdkafka_sys::types::RDKafka;

use super::{AclBinding, ScramCredential};
use crate::config::{AclOperation, PatternType, Permission, ResourceKind, ScramMechanism};

/// A failed admin request, with librdkafka's or the broker's message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct FfiError(pub String);

type Result<T> = std::result::Result<T, FfiError>;

/// A live librdkafka client, borrowed from the rdkafka client that owns
/// it: the borrow keeps that client alive for every call, and the pointer
/// is private, so safe code can neither forge a handle nor keep one past
/// its client.
#[derive(Clone, Copy)]
pub struct Handle<'a> {
    ptr: *mut RDKafka,
    _client: PhantomData<&'a ()>,
}

impl<'a> Handle<'a> {
    pub fn of<C: rdkafka::ClientContext>(client: &'a rdkafka::client::Client<C>) -> Handle<'a> {
        Handle { ptr: client.native_ptr(), _client: PhantomData }
    }
}

// SAFETY: librdkafka client handles are thread-safe (its documented
// contract); the calls here only pass the pointer to librdkafka.
unsafe impl Send for Handle<'_> {}
// SAFETY: as for Send: shared use from several threads is allowed.
unsafe impl Sync for Handle<'_> {}

fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| FfiError(format!("{s:?} contains a NUL byte")))
}

/// # Safety
/// `p` is null or a NUL-terminated string that lives for the call.
unsafe fn from_c(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// # Safety
/// `err` is null or a live librdkafka error object.
unsafe fn error_text(err: *const rd::rd_kafka_error_t) -> Option<String> {
    if err.is_null() {
        None
    } else {
        Some(from_c(rd::rd_kafka_error_string(err)))
    }
}

/// A result event together with the queue it arrived on; both freed on drop.
struct Event {
    ev: *mut rd::rd_kafka_event_t,
    queue: *mut rd::rd_kafka_queue_t,
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: both pointers were created by `request` for this Event
        // alone, and are destroyed exactly once, here.
        unsafe {
            if !self.ev.is_null() {
                rd::rd_kafka_event_destroy(self.ev);
            }
            rd::rd_kafka_queue_destroy(self.queue);
        }
    }
}

/// Run one admin request: `call` receives options and the private queue.
///
/// # Safety
/// `call` must start exactly one admin operation of kind `op` on the queue
/// with the options, passing only pointers valid for the call.
unsafe fn request(
    h: Handle<'_>,
    op: rd::rd_kafka_admin_op_t,
    timeout: Duration,
    call: impl FnOnce(*mut rd::rd_kafka_AdminOptions_t, *mut rd::rd_kafka_queue_t),
) -> Result<Event> {
    let queue = rd::rd_kafka_queue_new(h.ptr);
    let opts = rd::rd_kafka_AdminOptions_new(h.ptr, op);
    let mut errstr = [0 as c_char; 512];
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    rd::rd_kafka_AdminOptions_set_request_timeout(opts, ms, errstr.as_mut_ptr(), errstr.len());
    call(opts, queue);
    rd::rd_kafka_AdminOptions_destroy(opts);
    // The request times out on its own; the extra margin only guards a hang.
    let ev = rd::rd_kafka_queue_poll(queue, ms.saturating_add(5000));
    let event = Event { ev, queue };
    if ev.is_null() {
        return Err(FfiError(format!("no answer from the cluster within {}s", timeout.as_secs())));
    }
    let code = rd::rd_kafka_event_error(ev);
    if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Err(FfiError(from_c(rd::rd_kafka_event_error_string(ev))));
    }
    Ok(event)
}

fn restype(kind: ResourceKind) -> rd::rd_kafka_ResourceType_t {
    use rd::rd_kafka_ResourceType_t::*;
    match kind {
        ResourceKind::Topic => RD_KAFKA_RESOURCE_TOPIC,
        ResourceKind::Group => RD_KAFKA_RESOURCE_GROUP,
        // Kafka's CLUSTER resource type has the wire value librdkafka calls BROKER.
        ResourceKind::Cluster => RD_KAFKA_RESOURCE_BROKER,
        ResourceKind::TransactionalId => RD_KAFKA_RESOURCE_TRANSACTIONAL_ID,
    }
}

fn restype_back(t: rd::rd_kafka_ResourceType_t) -> Option<ResourceKind> {
    use rd::rd_kafka_ResourceType_t::*;
    match t {
        RD_KAFKA_RESOURCE_TOPIC => Some(ResourceKind::Topic),
        RD_KAFKA_RESOURCE_GROUP => Some(ResourceKind::Group),
        RD_KAFKA_RESOURCE_BROKER => Some(ResourceKind::Cluster),
        RD_KAFKA_RESOURCE_TRANSACTIONAL_ID => Some(ResourceKind::TransactionalId),
        _ => None,
    }
}

fn operation(op: AclOperation) -> rd::rd_kafka_AclOperation_t {
    use rd::rd_kafka_AclOperation_t::*;
    match op {
        AclOperation::All => RD_KAFKA_ACL_OPERATION_ALL,
        AclOperation::Read => RD_KAFKA_ACL_OPERATION_READ,
        AclOperation::Write => RD_KAFKA_ACL_OPERATION_WRITE,
        AclOperation::Create => RD_KAFKA_ACL_OPERATION_CREATE,
        AclOperation::Delete => RD_KAFKA_ACL_OPERATION_DELETE,
        AclOperation::Alter => RD_KAFKA_ACL_OPERATION_ALTER,
        AclOperation::Describe => RD_KAFKA_ACL_OPERATION_DESCRIBE,
        AclOperation::ClusterAction => RD_KAFKA_ACL_OPERATION_CLUSTER_ACTION,
        AclOperation::DescribeConfigs => RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS,
        AclOperation::AlterConfigs => RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS,
        AclOperation::IdempotentWrite => RD_KAFKA_ACL_OPERATION_IDEMPOTENT_WRITE,
    }
}

/// `None` for the filter-only values (Unknown, Any), never stored on a binding.
fn operation_back(op: rd::rd_kafka_AclOperation_t) -> Option<AclOperation> {
    AclOperation::EVERY.into_iter().find(|o| operation(*o) == op)
}

fn pattern(p: PatternType) -> rd::rd_kafka_ResourcePatternType_t {
    match p {
        PatternType::Literal => rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL,
        PatternType::Prefixed => rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_PREFIXED,
    }
}

fn permission(p: Permission) -> rd::rd_kafka_AclPermissionType_t {
    match p {
        Permission::Allow => rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW,
        Permission::Deny => rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_DENY,
    }
}

fn mechanism(m: ScramMechanism) -> rd::rd_kafka_ScramMechanism_t {
    match m {
        ScramMechanism::Sha256 => rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_256,
        ScramMechanism::Sha512 => rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_512,
    }
}

/// Build an exact binding (also usable as an exact-match filter).
///
/// # Safety
/// The caller owns the returned binding and destroys it once.
unsafe fn new_binding(b: &AclBinding) -> Result<*mut rd::rd_kafka_AclBinding_t> {
    let name = cstring(&b.name)?;
    let principal = cstring(&b.principal)?;
    let host = cstring(&b.host)?;
    let mut errstr = [0 as c_char; 512];
    let p = rd::rd_kafka_AclBinding_new(
        restype(b.resource),
        name.as_ptr(),
        pattern(b.pattern),
        principal.as_ptr(),
        host.as_ptr(),
        operation(b.operation),
        permission(b.permission),
        errstr.as_mut_ptr(),
        errstr.len(),
    );
    if p.is_null() {
        return Err(FfiError(from_c(errstr.as_ptr())));
    }
    Ok(p)
}

/// All-or-nothing: on an error the bindings built so far are freed.
///
/// # Safety
/// As for [`new_binding`], for each binding returned.
unsafe fn new_bindings(bindings: &[AclBinding]) -> Result<Vec<*mut rd::rd_kafka_AclBinding_t>> {
    let mut ptrs = Vec::with_capacity(bindings.len());
    for b in bindings {
        match new_binding(b) {
            Ok(p) => ptrs.push(p),
            Err(e) => {
                for p in ptrs {
                    rd::rd_kafka_AclBinding_destroy(p);
                }
                return Err(e);
            }
        }
    }
    Ok(ptrs)
}

/// # Safety
/// `p` is a binding owned by a live result event.
unsafe fn read_binding(p: *const rd::rd_kafka_AclBinding_t) -> Option<AclBinding> {
    let resource = restype_back(rd::rd_kafka_AclBinding_restype(p))?;
    let pattern = match rd::rd_kafka_AclBinding_resource_pattern_type(p) {
        rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_LITERAL => PatternType::Literal,
        rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_PREFIXED => PatternType::Prefixed,
        _ => return None,
    };
    let permission = match rd::rd_kafka_AclBinding_permission_type(p) {
        rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW => Permission::Allow,
        rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_DENY => Permission::Deny,
        _ => return None,
    };
    Some(AclBinding {
        principal: from_c(rd::rd_kafka_AclBinding_principal(p)),
        host: from_c(rd::rd_kafka_AclBinding_host(p)),
        resource,
        name: from_c(rd::rd_kafka_AclBinding_name(p)),
        pattern,
        operation: operation_back(rd::rd_kafka_AclBinding_operation(p))?,
        permission,
    })
}

/// Every ACL binding on the cluster, in one request.
pub fn describe_acls(h: Handle<'_>, timeout: Duration) -> Result<Vec<AclBinding>> {
    // SAFETY: the handle borrows a live client; every pointer below is
    // created, read and destroyed within this block, in librdkafka's order.
    unsafe {
        let mut errstr = [0 as c_char; 512];
        let filter = rd::rd_kafka_AclBindingFilter_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_ANY,
            ptr::null(),
            rd::rd_kafka_ResourcePatternType_t::RD_KAFKA_RESOURCE_PATTERN_ANY,
            ptr::null(),
            ptr::null(),
            rd::rd_kafka_AclOperation_t::RD_KAFKA_ACL_OPERATION_ANY,
            rd::rd_kafka_AclPermissionType_t::RD_KAFKA_ACL_PERMISSION_TYPE_ANY,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        if filter.is_null() {
            return Err(FfiError(from_c(errstr.as_ptr())));
        }
        let ev = request(h, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBEACLS, timeout, |o, q| {
            rd::rd_kafka_DescribeAcls(h.ptr, filter, o, q)
        });
        rd::rd_kafka_AclBinding_destroy(filter);
        let ev = ev?;
        let res = rd::rd_kafka_event_DescribeAcls_result(ev.ev);
        let mut n = 0usize;
        let arr = rd::rd_kafka_DescribeAcls_result_acls(res, &mut n);
        Ok((0..n).filter_map(|i| read_binding(*arr.add(i))).collect())
    }
}

/// Create bindings in one request; one result per binding, in order.
pub fn create_acls(
    h: Handle<'_>,
    bindings: &[AclBinding],
    timeout: Duration,
) -> Result<Vec<std::result::Result<(), String>>> {
    if bindings.is_empty() {
        return Ok(Vec::new());
    }
    // SAFETY: the handle borrows a live client; every pointer below is
    // created, read and destroyed within this block, in librdkafka's order.
    unsafe {
        let mut ptrs = new_bindings(bindings)?;
        let ev = request(h, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATEACLS, timeout, |o, q| {
            rd::rd_kafka_CreateAcls(h.ptr, ptrs.as_mut_ptr(), ptrs.len(), o, q)
        });
        for p in ptrs {
            rd::rd_kafka_AclBinding_destroy(p);
        }
        let ev = ev?;
        let res = rd::rd_kafka_event_CreateAcls_result(ev.ev);
        let mut n = 0usize;
        let arr = rd::rd_kafka_CreateAcls_result_acls(res, &mut n);
        Ok((0..n)
            .map(|i| match error_text(rd::rd_kafka_acl_result_error(*arr.add(i))) {
                None => Ok(()),
                Some(e) => Err(e),
            })
            .collect())
    }
}

/// Delete exactly these bindings (each is an exact-match filter); one result
/// per binding with the number of bindings removed.
pub fn delete_acls(
    h: Handle<'_>,
    bindings: &[AclBinding],
    timeout: Duration,
) -> Result<Vec<std::result::Result<usize, String>>> {
    if bindings.is_empty() {
        return Ok(Vec::new());
    }
    // SAFETY: the handle borrows a live client; every pointer below is
    // created, read and destroyed within this block, in librdkafka's order.
    unsafe {
        let mut ptrs = new_bindings(bindings)?;
        let ev = request(h, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETEACLS, timeout, |o, q| {
            rd::rd_kafka_DeleteAcls(h.ptr, ptrs.as_mut_ptr(), ptrs.len(), o, q)
        });
        for p in ptrs {
            rd::rd_kafka_AclBinding_destroy(p);
        }
        let ev = ev?;
        let res = rd::rd_kafka_event_DeleteAcls_result(ev.ev);
        let mut n = 0usize;
        let arr = rd::rd_kafka_DeleteAcls_result_responses(res, &mut n);
        Ok((0..n)
            .map(|i| {
                let r = *arr.add(i);
                match error_text(rd::rd_kafka_DeleteAcls_result_response_error(r)) {
                    Some(e) => Err(e),
                    None => {
                        let mut m = 0usize;
                        rd::rd_kafka_DeleteAcls_result_response_matching_acls(r, &mut m);
                        Ok(m)
                    }
                }
            })
            .collect())
    }
}

/// SCRAM credentials of every user, in one request (never the secrets:
/// Kafka only returns mechanism and iterations).
pub fn describe_scram(h: Handle<'_>, timeout: Duration) -> Result<Vec<(String, Vec<ScramCredential>)>> {
    // SAFETY: the handle borrows a live client; every pointer below is
    // created, read and destroyed within this block, in librdkafka's order.
    unsafe {
        let ev =
            request(h, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBEUSERSCRAMCREDENTIALS, timeout, |o, q| {
                rd::rd_kafka_DescribeUserScramCredentials(h.ptr, ptr::null_mut(), 0, o, q)
            })?;
        let res = rd::rd_kafka_event_DescribeUserScramCredentials_result(ev.ev);
        let mut n = 0usize;
        let arr = rd::rd_kafka_DescribeUserScramCredentials_result_descriptions(res, &mut n);
        let mut out = Vec::new();
        for i in 0..n {
            let d = *arr.add(i);
            let user = from_c(rd::rd_kafka_UserScramCredentialsDescription_user(d));
            let err = rd::rd_kafka_UserScramCredentialsDescription_error(d);
            if !err.is_null() && rd::rd_kafka_error_code(err) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                // Kafka reports a user without credentials as an error: it has none.
                tracing::debug!(user = %user, error = %from_c(rd::rd_kafka_error_string(err)), "no SCRAM credentials");
                continue;
            }
            let m = rd::rd_kafka_UserScramCredentialsDescription_scramcredentialinfo_count(d);
            let creds = (0..m)
                .filter_map(|j| {
                    let info = rd::rd_kafka_UserScramCredentialsDescription_scramcredentialinfo(d, j);
                    let mech = match rd::rd_kafka_ScramCredentialInfo_mechanism(info) {
                        rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_256 => ScramMechanism::Sha256,
                        rd::rd_kafka_ScramMechanism_t::RD_KAFKA_SCRAM_MECHANISM_SHA_512 => ScramMechanism::Sha512,
                        _ => return None,
                    };
                    Some(ScramCredential {
                        mechanism: mech,
                        iterations: rd::rd_kafka_ScramCredentialInfo_iterations(info),
                    })
                })
                .collect();
            out.push((user, creds));
        }
        Ok(out)
    }
}

/// One SCRAM credential change.
pub enum ScramChange<'a> {
    Upsert { user: &'a str, mechanism: ScramMechanism, iterations: i32, password: &'a str },
    Delete { user: &'a str, mechanism: ScramMechanism },
}

/// Apply SCRAM changes in one request; one `(user, result)` per user.
pub fn alter_scram(
    h: Handle<'_>,
    changes: &[ScramChange<'_>],
    timeout: Duration,
) -> Result<Vec<(String, std::result::Result<(), String>)>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    // SAFETY: the handle borrows a live client; every pointer below is
    // created, read and destroyed within this block, in librdkafka's order.
    unsafe {
        let mut ptrs = Vec::with_capacity(changes.len());
        let mut fail = None;
        for c in changes {
            let p = match c {
                ScramChange::Upsert { user, mechanism: m, iterations, password } => match cstring(user) {
                    // A null salt makes librdkafka draw a random one.
                    Ok(u) => rd::rd_kafka_UserScramCredentialUpsertion_new(
                        u.as_ptr(),
                        mechanism(*m),
                        *iterations,
                        password.as_ptr(),
                        password.len(),
                        ptr::null(),
                        0,
                    ),
                    Err(e) => {
                        fail = Some(e);
                        break;
                    }
                },
                ScramChange::Delete { user, mechanism: m } => match cstring(user) {
                    Ok(u) => rd::rd_kafka_UserScramCredentialDeletion_new(u.as_ptr(), mechanism(*m)),
                    Err(e) => {
                        fail = Some(e);
                        break;
                    }
                },
            };
            ptrs.push(p);
        }
        if let Some(e) = fail {
            for p in ptrs {
                rd::rd_kafka_UserScramCredentialAlteration_destroy(p);
            }
            return Err(e);
        }
        let ev = request(h, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ALTERUSERSCRAMCREDENTIALS, timeout, |o, q| {
            rd::rd_kafka_AlterUserScramCredentials(h.ptr, ptrs.as_mut_ptr(), ptrs.len(), o, q)
        });
        for p in ptrs {
            rd::rd_kafka_UserScramCredentialAlteration_destroy(p);
        }
        let ev = ev?;
        let res = rd::rd_kafka_event_AlterUserScramCredentials_result(ev.ev);
        let mut n = 0usize;
        let arr = rd::rd_kafka_AlterUserScramCredentials_result_responses(res, &mut n);
        Ok((0..n)
            .map(|i| {
                let r = *arr.add(i);
                let user = from_c(rd::rd_kafka_AlterUserScramCredentials_result_response_user(r));
                let err = rd::rd_kafka_AlterUserScramCredentials_result_response_error(r);
                let ok = if err.is_null()
                    || rd::rd_kafka_error_code(err) == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                {
                    Ok(())
                } else {
                    Err(from_c(rd::rd_kafka_error_string(err)))
                };
                (user, ok)
            })
            .collect())
    }
}

/// One topic config edit: a value to set, or `None` to return to the default.
pub type ConfigEdit = (String, Option<String>);

/// Incrementally set (`Some`) or delete back to default (`None`) topic
/// configs; untouched keys keep their values. One result per topic.
pub fn incremental_alter_topic_configs(
    h: Handle<'_>,
    changes: &[(String, Vec<ConfigEdit>)],
    timeout: Duration,
) -> Result<Vec<(String, std::result::Result<(), String>)>> {
    incremental_alter_configs(h, rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC, changes, timeout)
}

/// The same for brokers' dynamic configs, by broker id.
pub fn incremental_alter_broker_configs(
    h: Handle<'_>,
    changes: &[(String, Vec<ConfigEdit>)],
    timeout: Duration,
) -> Result<Vec<(String, std::result::Result<(), String>)>> {
    incremental_alter_configs(h, rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_BROKER, changes, timeout)
}

fn incremental_alter_configs(
    h: Handle<'_>,
    restype: rd::rd_kafka_ResourceType_t,
    changes: &[(String, Vec<ConfigEdit>)],
    timeout: Duration,
) -> Result<Vec<(String, std::result::Result<(), String>)>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    // SAFETY: the handle borrows a live client; every pointer below is
    // created, read and destroyed within this block, in librdkafka's order.
    unsafe {
        let mut ptrs = Vec::with_capacity(changes.len());
        let mut fail = None;
        'outer: for (topic, entries) in changes {
            let name = match cstring(topic) {
                Ok(n) => n,
                Err(e) => {
                    fail = Some(e);
                    break;
                }
            };
            let res = rd::rd_kafka_ConfigResource_new(restype, name.as_ptr());
            ptrs.push(res);
            for (k, v) in entries {
                let key = match cstring(k) {
                    Ok(k) => k,
                    Err(e) => {
                        fail = Some(e);
                        break 'outer;
                    }
                };
                let (op, val) = match v {
                    Some(v) => match cstring(v) {
                        Ok(v) => (rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET, Some(v)),
                        Err(e) => {
                            fail = Some(e);
                            break 'outer;
                        }
                    },
                    None => (rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_DELETE, None),
                };
                let err = rd::rd_kafka_ConfigResource_add_incremental_config(
                    res,
                    key.as_ptr(),
                    op,
                    val.as_ref().map(|v| v.as_ptr()).unwrap_or(ptr::null()),
                );
                if !err.is_null() {
                    fail = Some(FfiError(from_c(rd::rd_kafka_error_string(err))));
                    rd::rd_kafka_error_destroy(err);
                    break 'outer;
                }
            }
        }
        if let Some(e) = fail {
            for p in ptrs {
                rd::rd_kafka_ConfigResource_destroy(p);
            }
            return Err(e);
        }
        let ev = request(h, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS, timeout, |o, q| {
            rd::rd_kafka_IncrementalAlterConfigs(h.ptr, ptrs.as_mut_ptr(), ptrs.len(), o, q)
        });
        for p in ptrs {
            rd::rd_kafka_ConfigResource_destroy(p);
        }
        let ev = ev?;
        let res = rd::rd_kafka_event_IncrementalAlterConfigs_result(ev.ev);
        let mut n = 0usize;
        let arr = rd::rd_kafka_IncrementalAlterConfigs_result_resources(res, &mut n);
        Ok((0..n)
            .map(|i| {
                let r = *arr.add(i);
                let name = from_c(rd::rd_kafka_ConfigResource_name(r));
                let ok = if rd::rd_kafka_ConfigResource_error(r) == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                {
                    Ok(())
                } else {
                    Err(from_c(rd::rd_kafka_ConfigResource_error_string(r)))
                };
                (name, ok)
            })
            .collect())
    }
}

/// Whether librdkafka knows `name` and accepts `value` for a producer,
/// checked on a configuration object of its own (no client, no connection).
/// `Err` carries librdkafka's reason.
pub fn check_producer_property(name: &str, value: &str) -> std::result::Result<(), String> {
    let (Ok(n), Ok(v)) = (CString::new(name), CString::new(value)) else {
        return Err("contains a NUL byte".into());
    };
    let mut err = [0 as c_char; 512];
    // SAFETY: a fresh conf is created, used once and destroyed here; the
    // strings and the error buffer outlive the call.
    unsafe {
        let conf = rd::rd_kafka_conf_new();
        let res = rd::rd_kafka_conf_set(conf, n.as_ptr(), v.as_ptr(), err.as_mut_ptr(), err.len());
        rd::rd_kafka_conf_destroy(conf);
        if res == rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
            Ok(())
        } else {
            Err(CStr::from_ptr(err.as_ptr()).to_string_lossy().into_owned())
        }
    }
}

#[cfg(test)]
mod property_tests {
    #[test]
    fn librdkafka_judges_producer_properties_without_a_client() {
        assert_eq!(super::check_producer_property("linger.ms", "5"), Ok(()));
        let e = super::check_producer_property("no.such.property", "1").unwrap_err();
        assert!(e.contains("No such configuration property"), "{e}");
        assert!(super::check_producer_property("linger.ms", "soon").is_err());
    }
}
