//! One keyed reconciler for every kind of resource (as Jikkou's
//! `ChangeComputer` with per-kind handlers): desired and live resources are
//! matched by key; a kind's [`Handler`] says how to create, update and
//! delete one, and which live resources are fink's to manage.

use std::collections::BTreeMap;

use super::{Change, Kind};
use crate::config::span::KeyPath;

/// What one kind of resource needs from the reconciler.
pub trait Handler {
    type Desired;
    type Live;
    const KIND: Kind;
    /// The change that creates `d`.
    fn create(&self, key: &str, d: &Self::Desired, draft: &mut Draft) -> Option<Change>;
    /// The change that makes `l` into `d`, if they differ.
    fn update(&self, key: &str, d: &Self::Desired, l: &Self::Live, draft: &mut Draft) -> Option<Change>;
    /// The change that deletes `l` (with prune).
    fn delete(&self, key: &str, l: &Self::Live) -> Change;
    /// Whether a live resource no one declares is fink's to delete or report.
    fn managed(&self, key: &str, l: &Self::Live) -> bool;
}

/// The plan being computed.
#[derive(Default)]
pub struct Draft {
    pub changes: Vec<Change>,
    /// Desired states Kafka cannot reach.
    pub blockers: Vec<String>,
    pub notes: Vec<String>,
    /// Managed live resources that are not declared, kept because prune is off.
    pub unmanaged: BTreeMap<Kind, Vec<String>>,
    /// Where in fink.toml a blocker comes from, by its index in `blockers`.
    pub blocker_at: Vec<(usize, KeyPath)>,
}

impl Draft {
    /// A blocker that fink.toml's `at` causes: shown at its file:line.
    pub fn block_at(&mut self, at: Option<KeyPath>, message: String) {
        if let Some(at) = at {
            self.blocker_at.push((self.blockers.len(), at));
        }
        self.blockers.push(message);
    }
}

/// Match `desired` and `live` by key and record the changes: create what
/// is missing, update what differs, delete (with `prune`) or report what
/// is managed but not declared.
pub fn reconcile<H: Handler>(
    h: &H,
    desired: &BTreeMap<String, &H::Desired>,
    live: &BTreeMap<String, &H::Live>,
    prune: bool,
    draft: &mut Draft,
) {
    for (key, d) in desired {
        let change = match live.get(key) {
            None => h.create(key, d, draft),
            Some(l) => h.update(key, d, l, draft),
        };
        draft.changes.extend(change);
    }
    for (key, l) in live {
        if desired.contains_key(key) || !h.managed(key, l) {
            continue;
        }
        if prune {
            draft.changes.push(h.delete(key, l));
        } else {
            draft.unmanaged.entry(H::KIND).or_default().push(key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Action;

    /// Integers by name; values under 0 are not managed.
    struct Ints;

    fn change(action: Action, key: &str) -> Change {
        Change { action, kind: Kind::Topic, name: key.into(), fields: vec![], ops: vec![] }
    }

    impl Handler for Ints {
        type Desired = i32;
        type Live = i32;
        const KIND: Kind = Kind::Topic;
        fn create(&self, key: &str, _: &i32, _: &mut Draft) -> Option<Change> {
            Some(change(Action::Create, key))
        }
        fn update(&self, key: &str, d: &i32, l: &i32, _: &mut Draft) -> Option<Change> {
            (d != l).then(|| change(Action::Update, key))
        }
        fn delete(&self, key: &str, _: &i32) -> Change {
            change(Action::Delete, key)
        }
        fn managed(&self, _: &str, l: &i32) -> bool {
            *l >= 0
        }
    }

    #[test]
    fn creates_updates_deletes_and_reports_by_key() {
        let (one, two, three, minus) = (1, 2, 3, -1);
        let desired: BTreeMap<String, &i32> = [("a".into(), &one), ("b".into(), &two), ("c".into(), &three)].into();
        let live: BTreeMap<String, &i32> =
            [("b".into(), &two), ("c".into(), &one), ("d".into(), &one), ("e".into(), &minus)].into();
        let mut draft = Draft::default();
        reconcile(&Ints, &desired, &live, false, &mut draft);
        let got: Vec<(Action, String)> = draft.changes.iter().map(|c| (c.action, c.name.clone())).collect();
        assert_eq!(got, vec![(Action::Create, "a".into()), (Action::Update, "c".into())]);
        assert_eq!(draft.unmanaged[&Kind::Topic], vec!["d".to_string()], "e is not managed");
        let mut draft = Draft::default();
        reconcile(&Ints, &desired, &live, true, &mut draft);
        assert_eq!(draft.changes.last().map(|c| (c.action, c.name.as_str())), Some((Action::Delete, "d")));
        assert!(draft.unmanaged.is_empty());
    }
}
