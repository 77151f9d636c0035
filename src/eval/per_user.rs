//! Per-user ranks: where each user's held-out item landed, so two models scored on the
//! same users can be compared pair by pair (is a 4% gap more than noise? which users
//! does it come from?) instead of only by their means.
//!
//! The file is a TSV with a header: `user_id  history_len  target  rank`, where `rank`
//! is the 1-based position of the target in the model's top-K list and 0 when the target
//! is not in it. With one held-out item per user, Recall@K and NDCG@K of a user follow
//! from the rank alone (`rank <= K`, `1 / log2(rank + 1)`).

use crate::generate::users::UserQuery;
use anyhow::{bail, ensure, Context, Result};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

const HEADER: &str = "user_id\thistory_len\ttarget\trank";

/// One evaluated user: history length seen, the target's original id, its rank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRank {
    pub user_id: String,
    pub history_len: usize,
    pub target: String,
    /// 1-based position of the target in the top-K list; None when it is not there.
    pub rank: Option<usize>,
}

impl UserRank {
    /// Recall@K of this user (0 or 1).
    pub fn recall(&self, k: usize) -> f64 {
        match self.rank {
            Some(r) if r <= k => 1.0,
            _ => 0.0,
        }
    }

    /// NDCG@K of this user: `1 / log2(rank + 1)` when the target is in the top K.
    pub fn ndcg(&self, k: usize) -> f64 {
        match self.rank {
            Some(r) if r <= k => 1.0 / ((r + 1) as f64).log2(),
            _ => 0.0,
        }
    }
}

/// The rank of every user's target in its list (`lists[i]` belongs to `users[i]`);
/// `item_ids` maps dense item ids to original ids. Users without a target are skipped.
pub fn per_user_ranks(users: &[UserQuery], lists: &[Vec<u32>], item_ids: &[String]) -> Vec<UserRank> {
    users
        .iter()
        .zip(lists)
        .filter_map(|(u, list)| {
            let t = u.target?;
            Some(UserRank {
                user_id: u.user_id.clone(),
                history_len: u.history.len(),
                target: item_ids.get(t as usize).cloned().unwrap_or_else(|| t.to_string()),
                rank: list.iter().position(|&i| i == t).map(|p| p + 1),
            })
        })
        .collect()
}

/// Writes `ranks` to `path` as the TSV described in the module docs (atomically).
pub fn write_tsv(path: &Path, ranks: &[UserRank]) -> Result<()> {
    crate::util::io::atomic_write_with(path, |w| {
        writeln!(w, "{HEADER}")?;
        for r in ranks {
            writeln!(w, "{}\t{}\t{}\t{}", r.user_id, r.history_len, r.target, r.rank.unwrap_or(0))?;
        }
        Ok(())
    })
}

/// Reads a per-user rank file written by [`write_tsv`], naming the file and line of
/// anything malformed.
pub fn read_tsv(path: &Path) -> Result<Vec<UserRank>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim_end() == HEADER => {}
        _ => bail!(
            "{}: line 1 must be the header `{}` (write the file with `onerec eval --per-user FILE`)",
            path.display(),
            HEADER.replace('\t', "<TAB>")
        ),
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let at = || format!("{}: line {}", path.display(), i + 1);
        ensure!(f.len() == 4, "{}: expected 4 tab-separated fields, found {}", at(), f.len());
        let history_len = f[1].parse().with_context(|| format!("{}: history_len `{}` is not a count", at(), f[1]))?;
        let rank: usize = f[3].parse().with_context(|| format!("{}: rank `{}` is not a count", at(), f[3]))?;
        out.push(UserRank {
            user_id: f[0].to_string(),
            history_len,
            target: f[2].to_string(),
            rank: (rank > 0).then_some(rank),
        });
    }
    ensure!(!out.is_empty(), "{}: no users", path.display());
    Ok(out)
}

/// Two models' ranks for the same users, in `a`'s order. Fails, naming the first
/// mismatch, unless both files hold exactly the same users with the same targets.
pub fn pair_up<'a>(a: &'a [UserRank], b: &'a [UserRank]) -> Result<Vec<(&'a UserRank, &'a UserRank)>> {
    let by_user: HashMap<&str, &UserRank> = b.iter().map(|r| (r.user_id.as_str(), r)).collect();
    ensure!(by_user.len() == b.len(), "the second file lists a user twice");
    ensure!(
        a.len() == b.len(),
        "the files hold {} and {} users: score both models on the same split and users",
        a.len(),
        b.len()
    );
    a.iter()
        .map(|ra| {
            let rb = *by_user
                .get(ra.user_id.as_str())
                .with_context(|| format!("user {} is in the first file only", ra.user_id))?;
            ensure!(
                ra.target == rb.target,
                "user {}: targets differ ({} against {}): the files are from different splits or datasets",
                ra.user_id,
                ra.target,
                rb.target
            );
            Ok((ra, rb))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(id: &str, hist: &[u32], target: u32) -> UserQuery {
        UserQuery { user_id: id.into(), user: None, history: hist.to_vec(), target: Some(target) }
    }

    #[test]
    fn ranks_follow_the_lists_and_metrics_match_the_metric_code() {
        let items: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        let users = [q("u1", &[0], 2), q("u2", &[0, 1], 3)];
        let lists = vec![vec![1, 2, 0], vec![0, 1, 2]];
        let r = per_user_ranks(&users, &lists, &items);
        assert_eq!(r[0].rank, Some(2));
        assert_eq!(r[0].target, "c");
        assert_eq!(r[1].rank, None);
        assert_eq!(r[1].history_len, 2);
        for k in 1..=3 {
            assert_eq!(r[0].recall(k), super::super::metrics::recall_at_k(&lists[0], &[2], k));
            let want = super::super::metrics::ndcg_at_k(&lists[0], &[2], k);
            assert!((r[0].ndcg(k) - want).abs() < 1e-12);
        }
    }

    #[test]
    fn tsv_round_trips_and_bad_lines_name_file_and_line() {
        let dir = std::env::temp_dir().join(format!("onerec-per-user-{}", std::process::id()));
        let path = dir.join("ranks.tsv");
        let ranks = vec![
            UserRank { user_id: "u1".into(), history_len: 3, target: "x".into(), rank: Some(4) },
            UserRank { user_id: "u2".into(), history_len: 9, target: "y".into(), rank: None },
        ];
        write_tsv(&path, &ranks).unwrap();
        assert_eq!(read_tsv(&path).unwrap(), ranks);
        std::fs::write(&path, format!("{HEADER}\nu1\t3\tx\t4\nu2\tnine\ty\t0\n")).unwrap();
        let err = format!("{:#}", read_tsv(&path).unwrap_err());
        assert!(err.contains("line 3") && err.contains("nine"), "{err}");
        std::fs::write(&path, "u1\t3\tx\t4\n").unwrap();
        assert!(format!("{:#}", read_tsv(&path).unwrap_err()).contains("header"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pairing_needs_the_same_users_and_targets() {
        let r = |u: &str, t: &str| UserRank { user_id: u.into(), history_len: 1, target: t.into(), rank: None };
        let a = vec![r("1", "x"), r("2", "y")];
        assert_eq!(pair_up(&a, &[r("2", "y"), r("1", "x")]).unwrap().len(), 2);
        assert!(format!("{:#}", pair_up(&a, &[r("1", "x"), r("2", "z")]).unwrap_err()).contains("targets differ"));
        assert!(format!("{:#}", pair_up(&a, &[r("1", "x"), r("3", "y")]).unwrap_err()).contains("first file only"));
        assert!(pair_up(&a, &[r("1", "x")]).is_err());
    }
}
