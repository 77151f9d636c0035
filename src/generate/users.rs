//! Which users to decode for and with what history: a dataset split, or a file of
//! histories in original ids; plus deterministic contiguous sharding.

use crate::data::Dataset;
use crate::tokenizer::SemanticIds;
use anyhow::{bail, Context, Result};
use std::io::BufRead;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

/// Which point of each user's leave-one-out split the history ends at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitSel {
    /// History before the validation target; target = the validation item.
    Valid,
    /// History before the test target; target = the test item.
    Test,
    /// The whole history, no target (serving).
    All,
}

/// The CLI spelling (`valid`, `test`, `all`), used in messages and run records.
impl std::fmt::Display for SplitSel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SplitSel::Valid => "valid",
            SplitSel::Test => "test",
            SplitSel::All => "all",
        })
    }
}

impl serde::Serialize for SplitSel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for SplitSel {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<SplitSel> {
        match s {
            "valid" | "validation" => Ok(SplitSel::Valid),
            "test" => Ok(SplitSel::Test),
            "all" => Ok(SplitSel::All),
            _ => bail!("unknown split `{s}`: use valid, test or all"),
        }
    }
}

/// One user to decode for.
#[derive(Clone, Debug, PartialEq)]
pub struct UserQuery {
    /// Original user id.
    pub user_id: String,
    /// Dense dataset user id, when the user comes from a dataset.
    pub user: Option<usize>,
    /// Dense item ids, oldest first.
    pub history: Vec<u32>,
    /// The held-out item, for evaluation.
    pub target: Option<u32>,
}

/// Where user `u`'s history ends for `split`, and the target; None if the user has
/// no such target (too short a history).
pub fn split_point(ds: &Dataset, u: usize, split: SplitSel) -> Option<(usize, Option<u32>)> {
    let s = ds.split(u);
    let h = ds.history(u);
    match split {
        SplitSel::Valid => s.valid.map(|i| (i, Some(h[i]))),
        SplitSel::Test => s.test.map(|i| (i, Some(h[i]))),
        SplitSel::All => Some((h.len(), None)),
    }
}

/// Users of a dataset split, in dense user order (users without that target skipped).
pub fn users_from_split(ds: &Dataset, split: SplitSel) -> Vec<UserQuery> {
    (0..ds.n_users())
        .filter_map(|u| {
            let (end, target) = split_point(ds, u, split)?;
            Some(UserQuery {
                user_id: ds.user_ids[u].clone(),
                user: Some(u),
                history: ds.history(u)[..end].to_vec(),
                target,
            })
        })
        .collect()
}

/// Reads `user_id item_id ...` lines (whitespace separated, original ids, oldest first;
/// `#` comments and blank lines skipped; `.gz` ok). A line with an unknown item or no
/// history (nothing to condition on) is an error naming the line, or, with `skip_bad`,
/// skipped (logged at warn) and counted: returns the users and the skipped count.
pub fn users_from_histories_file(path: &Path, ids: &SemanticIds, skip_bad: bool) -> Result<(Vec<UserQuery>, usize)> {
    let (mut out, mut skipped) = (Vec::new(), 0);
    for (ln, line) in crate::util::io::open_text(path)?.lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: cannot read line", path.display(), ln + 1))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut f = line.split_whitespace();
        let user_id = f.next().unwrap_or_default().to_string();
        let parsed = (|| -> Result<Vec<u32>> {
            let history = f
                .map(|it| ids.row_of(it).with_context(|| format!("item `{it}` is not in the checkpoint's catalogue")))
                .collect::<Result<Vec<u32>>>()?;
            if history.is_empty() {
                bail!("user `{user_id}` has an empty history");
            }
            Ok(history)
        })();
        match parsed {
            Ok(history) => out.push(UserQuery { user_id, user: None, history, target: None }),
            Err(e) if skip_bad => {
                tracing::warn!("{}:{}: skipped: {e:#}", path.display(), ln + 1);
                skipped += 1;
            }
            Err(e) => bail!("{}:{}: {e:#} (expected `user_id item_id ...` with original ids; use --skip-bad-lines to skip such lines)", path.display(), ln + 1),
        }
    }
    Ok((out, skipped))
}

/// Shard `index` of `count` (`--shard i/n`): a contiguous block, so concatenating the
/// shards' outputs in order equals the unsharded output. Batch jobs use
/// [`Shard::range_in_blocks`] so a shard holds whole batches of the unsharded run:
/// then every batch is computed exactly as unsharded, bit for bit (a matmul's last
/// bits can depend on how many rows share it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };
    /// The block of `0..n` this shard owns.
    /// Computed in u128 so `n * index` cannot overflow for any `--shard` the parser accepts.
    pub fn range(&self, n: usize) -> Range<usize> {
        let at = |i: usize| (n as u128 * i as u128 / self.count.max(1) as u128) as usize;
        at(self.index.min(self.count))..at((self.index + 1).min(self.count))
    }

    /// The block of `0..n` this shard owns when `0..n` is cut into batches of `block`:
    /// whole batches only, as evenly as possible.
    pub fn range_in_blocks(&self, n: usize, block: usize) -> Range<usize> {
        let block = block.max(1);
        let r = self.range(n.div_ceil(block));
        r.start.saturating_mul(block).min(n)..r.end.saturating_mul(block).min(n)
    }
}

impl FromStr for Shard {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || anyhow::anyhow!("bad shard `{s}`: expected i/n with 0 <= i < n, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) =
            (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// The dataset with item ids renumbered to the checkpoint's rows (`ids`), so that
/// histories use the ids the model was trained with. Identity (a clone) when the
/// dataset is the training dataset; an error naming unknown items otherwise.
pub fn align_dataset(ds: &Dataset, ids: &SemanticIds) -> Result<Dataset> {
    if ds.item_ids == ids.item_ids {
        return Ok(ds.clone());
    }
    let rows = ids
        .rows_for(&ds.item_ids)
        .context("the dataset has items the checkpoint's catalogue lacks: use the dataset the model was trained on")?;
    let mut out = ds.clone();
    for it in &mut out.items {
        *it = rows[*it as usize];
    }
    out.item_ids = ids.item_ids.clone();
    out.manifest.items = ids.n_items();
    Ok(out)
}
