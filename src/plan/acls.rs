//! ACL bindings: each binding is its own key, so there is nothing to
//! update; a binding is created or deleted.

use super::reconcile::{Draft, Handler};
use super::{managed_acl, Action, Change, Kind, Op};
use crate::cluster::AclBinding;
use crate::config::Config;

pub struct Acls<'a> {
    pub cfg: &'a Config,
}

fn change(action: Action, b: &AclBinding, op: Op) -> Change {
    Change { action, kind: Kind::Acl, name: b.to_string(), fields: vec![], ops: vec![op] }
}

impl Handler for Acls<'_> {
    type Desired = AclBinding;
    type Live = AclBinding;
    const KIND: Kind = Kind::Acl;

    fn create(&self, _: &str, b: &AclBinding, _: &mut Draft) -> Option<Change> {
        Some(change(Action::Create, b, Op::CreateAcl { binding: b.clone() }))
    }

    fn update(&self, _: &str, _: &AclBinding, _: &AclBinding, _: &mut Draft) -> Option<Change> {
        None
    }

    fn delete(&self, _: &str, b: &AclBinding) -> Change {
        change(Action::Delete, b, Op::DeleteAcl { binding: b.clone() })
    }

    fn managed(&self, _: &str, b: &AclBinding) -> bool {
        managed_acl(self.cfg, b) && !b.name.starts_with("__")
    }
}
