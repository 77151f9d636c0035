//! All-gathers built from the sum all-reduce: each rank writes its part into a zero-filled
//! buffer at its offset, and the sum is every part in rank order (adding zeros is exact,
//! so the result is bit-identical on every rank). Integers below 2^53 (item ids, counts)
//! and f32 values travel exactly as f64.

use super::GradSync;
use anyhow::{ensure, Context, Result};

/// Every rank's `mine`, concatenated in rank order, on every rank (two all-reduces: the
/// part lengths, then the parts).
pub fn all_gather_f64(sync: &dyn GradSync, mine: &[f64]) -> Result<Vec<f64>> {
    let (rank, world) = (sync.rank(), sync.world_size());
    if world == 1 {
        return Ok(mine.to_vec());
    }
    let mut lens = vec![0.0; world];
    lens[rank] = mine.len() as f64;
    sync.all_reduce_f64(&mut lens)?;
    let offset: f64 = lens[..rank].iter().sum();
    let total: f64 = lens.iter().sum();
    let mut buf = vec![0.0; total as usize];
    buf[offset as usize..offset as usize + mine.len()].copy_from_slice(mine);
    sync.all_reduce_f64(&mut buf)?;
    Ok(buf)
}

/// Every rank's lists of item ids, concatenated in rank order, on every rank.
pub fn all_gather_lists(sync: &dyn GradSync, mine: &[Vec<u32>]) -> Result<Vec<Vec<u32>>> {
    if sync.world_size() == 1 {
        return Ok(mine.to_vec());
    }
    let mut flat = Vec::with_capacity(mine.iter().map(|l| l.len() + 1).sum());
    for l in mine {
        flat.push(l.len() as f64);
        flat.extend(l.iter().map(|&x| x as f64));
    }
    let all = all_gather_f64(sync, &flat)?;
    let mut out = Vec::new();
    let mut it = all.into_iter();
    while let Some(n) = it.next() {
        let list: Vec<u32> = it.by_ref().take(n as usize).map(|x| x as u32).collect();
        ensure!(list.len() == n as usize, "all_gather_lists: a list of {n} items was cut short");
        out.push(list);
    }
    Ok(out)
}

/// Every rank's `mine`, concatenated in rank order (f32 values are exact as f64).
pub fn all_gather_f32(sync: &dyn GradSync, mine: &[f32]) -> Result<Vec<f32>> {
    if sync.world_size() == 1 {
        return Ok(mine.to_vec());
    }
    let flat: Vec<f64> = mine.iter().map(|&x| x as f64).collect();
    Ok(all_gather_f64(sync, &flat).context("all_gather_f32")?.into_iter().map(|x| x as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::Single;

    /// Rank `rank` of a world whose other ranks send nothing: a sum is the identity, as
    /// if every other rank's part were empty.
    struct OthersEmpty {
        rank: usize,
    }

    impl GradSync for OthersEmpty {
        fn rank(&self) -> usize {
            self.rank
        }
        fn world_size(&self) -> usize {
            3
        }
        fn all_reduce_f32(&self, _: &mut [f32]) -> Result<()> {
            Ok(())
        }
        fn all_reduce_f64(&self, _: &mut [f64]) -> Result<()> {
            Ok(())
        }
        fn broadcast_f64(&self, _: &mut [f64]) -> Result<()> {
            Ok(())
        }
        fn barrier(&self) -> Result<()> {
            Ok(())
        }
        fn backend(&self) -> &'static str {
            "test"
        }
    }

    /// The encoding round-trips (lengths, empty lists, ids up to u32::MAX, f32 bits).
    #[test]
    fn gathered_parts_decode_to_what_was_sent() {
        let lists = vec![vec![3, 1], vec![], vec![u32::MAX, 0, 7]];
        let scores = [0.1f32, -3.5e-8, f32::MAX];
        for rank in 0..3 {
            let sync = OthersEmpty { rank };
            assert_eq!(all_gather_lists(&sync, &lists).unwrap(), lists);
            assert_eq!(all_gather_f32(&sync, &scores).unwrap(), scores);
            assert_eq!(all_gather_f64(&sync, &[]).unwrap(), Vec::<f64>::new());
        }
    }

    #[test]
    fn one_rank_gathers_its_own_part() {
        let lists = vec![vec![3, 1], vec![], vec![7]];
        assert_eq!(all_gather_lists(&Single, &lists).unwrap(), lists);
        assert_eq!(all_gather_f32(&Single, &[0.5, -2.0]).unwrap(), vec![0.5, -2.0]);
    }
}
