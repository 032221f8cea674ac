//! Which Parquet columns a source is read for: those its streams keep
//! (select/drop) plus those their filters read. The union over the streams
//! of a source is read once and shared; each stream then projects its own.

use std::collections::BTreeSet;

use parquet::arrow::ProjectionMask;
use parquet::schema::types::SchemaDescriptor;

/// Column paths (`candidate`, `candidate.magpsf`, `prv_candidates.magpsf`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Columns {
    #[default]
    All,
    /// Only these paths (and what is below them).
    Only(BTreeSet<String>),
    /// Everything but these paths.
    AllBut(BTreeSet<String>),
}

/// Parquet's wrapper groups of lists and maps: a user path goes through
/// them (`prv_candidates.magpsf` is `prv_candidates.list.element.magpsf`).
const WRAPPERS: &[&str] = &["list", "element", "item", "array", "bag", "key_value"];

/// How a user path meets a leaf's path: `Prefix` if the path covers the
/// leaf (the leaf is below it), `Above` if the leaf is above the path (a
/// filter reads inside it), `None` otherwise.
#[derive(PartialEq, Debug)]
enum Meet {
    Prefix,
    Above,
    None,
}

fn meet(user: &[&str], leaf: &[String]) -> Meet {
    let (mut i, mut j) = (0, 0);
    while i < user.len() && j < leaf.len() {
        if user[i] == leaf[j] {
            i += 1;
            j += 1;
        } else if j > 0 && WRAPPERS.contains(&leaf[j].as_str()) {
            j += 1;
        } else {
            return Meet::None;
        }
    }
    if i == user.len() {
        Meet::Prefix
    } else {
        Meet::Above
    }
}

fn related(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}.")) || b.starts_with(&format!("{a}."))
}

impl Columns {
    /// What one stream needs: its kept columns and its filters' variables.
    pub fn of_stream(select: &[String], drop: &[String], filter_reads: &BTreeSet<String>) -> Columns {
        if !select.is_empty() {
            return Columns::Only(select.iter().cloned().chain(filter_reads.iter().cloned()).collect());
        }
        let dropped: BTreeSet<String> =
            drop.iter().filter(|d| !filter_reads.iter().any(|v| related(v, d))).cloned().collect();
        if dropped.is_empty() {
            Columns::All
        } else {
            Columns::AllBut(dropped)
        }
    }

    /// Columns that serve both.
    pub fn union(&self, other: &Columns) -> Columns {
        use Columns::*;
        match (self, other) {
            (All, _) | (_, All) => All,
            (Only(a), Only(b)) => Only(a.union(b).cloned().collect()),
            (AllBut(d), Only(a)) | (Only(a), AllBut(d)) => {
                let d: BTreeSet<String> = d.iter().filter(|x| !a.iter().any(|y| related(x, y))).cloned().collect();
                if d.is_empty() {
                    All
                } else {
                    AllBut(d)
                }
            }
            (AllBut(a), AllBut(b)) => {
                let d: BTreeSet<String> = a.intersection(b).cloned().collect();
                if d.is_empty() {
                    All
                } else {
                    AllBut(d)
                }
            }
        }
    }

    /// The Parquet projection for a file's schema.
    pub fn mask(&self, schema: &SchemaDescriptor) -> ProjectionMask {
        let leaves = schema.columns().iter().map(|c| c.path().parts().to_vec());
        let keep: Vec<bool> = match self {
            Columns::All => return ProjectionMask::all(),
            Columns::Only(paths) => {
                let paths: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
                leaves.map(|l| paths.iter().any(|p| meet(p, &l) != Meet::None)).collect()
            }
            Columns::AllBut(paths) => {
                let paths: Vec<Vec<&str>> = paths.iter().map(|p| p.split('.').collect()).collect();
                leaves.map(|l| !paths.iter().any(|p| meet(p, &l) == Meet::Prefix)).collect()
            }
        };
        if keep.iter().all(|k| *k) {
            return ProjectionMask::all();
        }
        ProjectionMask::leaves(schema, keep.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paths_go_through_list_wrappers_and_filters_keep_what_they_read() {
        let leaf = |s: &str| s.split('.').map(String::from).collect::<Vec<_>>();
        assert_eq!(meet(&["prv_candidates", "magpsf"], &leaf("prv_candidates.list.element.magpsf")), Meet::Prefix);
        assert_eq!(meet(&["candidate"], &leaf("candidate.magpsf")), Meet::Prefix);
        assert_eq!(meet(&["candidate", "magpsf"], &leaf("candidate.jd")), Meet::None);
        assert_eq!(meet(&["cutoutScience", "stampData"], &leaf("cutoutScience")), Meet::Above);
        assert_eq!(meet(&["list"], &leaf("candidate.list")), Meet::None);

        let cutouts = ["cutoutScience", "cutoutTemplate", "cutoutDifference"].map(String::from);
        let s = Columns::of_stream(&[], &cutouts, &set(&["candidate"]));
        assert_eq!(s, Columns::AllBut(set(&["cutoutDifference", "cutoutScience", "cutoutTemplate"])));
        // A filter reading a dropped column keeps it read.
        let t = Columns::of_stream(&[], &cutouts, &set(&["cutoutScience"]));
        assert_eq!(t, Columns::AllBut(set(&["cutoutDifference", "cutoutTemplate"])));
        assert_eq!(s.union(&t), t);
        assert_eq!(s.union(&Columns::All), Columns::All);
        let sel = Columns::of_stream(&["objectId".into(), "candidate.magpsf".into()], &[], &set(&["rb"]));
        assert_eq!(sel, Columns::Only(set(&["objectId", "candidate.magpsf", "rb"])));
        assert_eq!(sel.union(&s), s);
        assert_eq!(
            sel.union(&Columns::AllBut(set(&["objectId", "cutoutScience"]))),
            Columns::AllBut(set(&["cutoutScience"]))
        );
    }
}
