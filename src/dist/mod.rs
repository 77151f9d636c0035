//! Data-parallel training across processes: the gradient-sync trait the training loop
//! talks to, and its backends.
//!
//! - [`Single`]: one process, every collective a no-op (the default; what a build without
//!   features, or a run not started by an MPI launcher, gets);
//! - `mpi::Mpi` (feature `mpi`): OpenMPI/MPICH through rsmpi, for `mpirun -np N onerec
//!   pretrain ...` or `srun --mpi=pmix`;
//! - `nccl::Nccl` (feature `nccl`): NCCL through candle's cudarc, for one GPU per rank.
//!   Written against cudarc's API but never compiled or run on this project's CPU-only
//!   machines; see its module doc.
//!
//! [`init`] picks the backend at start (`src/main.rs`). docs/distributed.md has the recipe.

mod gather;
mod grads;
mod launch;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;

pub use gather::{all_gather_f32, all_gather_f64, all_gather_lists};
pub use grads::{all_reduce_grads, check_in_sync, params_checksum};
pub use launch::{launcher, Launched};

use anyhow::Result;

/// The collectives data-parallel training needs. Every rank calls the same collectives
/// in the same order (MPI's rule); rank 0 is the leader that logs and writes files.
pub trait GradSync {
    /// This process's rank, `0..world_size()`.
    fn rank(&self) -> usize;
    /// Number of processes training together.
    fn world_size(&self) -> usize;
    /// Element-wise sum over ranks, in place (gradients).
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Element-wise sum over ranks, in place (token counts, losses, routing statistics).
    fn all_reduce_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// Overwrites `buf` on every rank with rank 0's.
    fn broadcast_f64(&self, buf: &mut [f64]) -> Result<()>;
    /// Waits until every rank got here.
    fn barrier(&self) -> Result<()>;
    /// The backend's name, for logs.
    fn backend(&self) -> &'static str;

    /// Whether this rank logs and writes checkpoints, metrics and run records.
    fn is_leader(&self) -> bool {
        self.rank() == 0
    }
}

/// One process: collectives are no-ops.
#[derive(Clone, Copy, Debug, Default)]
pub struct Single;

impl GradSync for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
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
        "single"
    }
}

/// This rank's contiguous part of a global batch of `n` examples: rank r of W gets
/// `[r*n/W, (r+1)*n/W)`, so the parts tile the batch in order (a batch shorter than the
/// world leaves some ranks empty; they still join every collective).
pub fn shard_range(n: usize, rank: usize, world: usize) -> std::ops::Range<usize> {
    let world = world.max(1);
    (rank * n / world)..((rank + 1) * n / world)
}

/// The process's communicator for its whole life: MPI's is finalised when this drops, so
/// `main` holds it until the command returned.
pub struct World {
    sync: Box<dyn GradSync>,
}

impl World {
    pub fn sync(&self) -> &dyn GradSync {
        self.sync.as_ref()
    }

    /// Ends the process after an error: with several ranks, `MPI_Abort` (the others are
    /// waiting in a collective and would hang), else exit status `code`.
    pub fn fail(self, code: i32) -> ! {
        #[cfg(feature = "mpi")]
        if self.sync.world_size() > 1 {
            mpi::abort(code);
        }
        std::process::exit(code)
    }
}

/// Picks the backend: MPI when an MPI launcher (`mpirun`, `srun --mpi=pmix`) started this
/// process and the `mpi` feature is on; [`Single`] otherwise. A launcher asking for more
/// than one rank from a build without the feature is an error: N copies would each train
/// alone and overwrite one another's files.
pub fn init() -> Result<World> {
    let launched = launcher();
    #[cfg(all(feature = "mpi", not(feature = "nccl")))]
    if launched.is_some() {
        return Ok(World { sync: Box::new(mpi::Mpi::init()?) });
    }
    // A GPU build: NCCL sums, MPI bootstraps; one GPU per rank on each node.
    #[cfg(feature = "nccl")]
    if launched.is_some() {
        let local = ["OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"]
            .iter()
            .find_map(|k| std::env::var(k).ok()?.parse::<usize>().ok())
            .unwrap_or(0);
        return Ok(World { sync: Box::new(nccl::Nccl::init(Box::new(mpi::Mpi::init()?), local)?) });
    }
    if let Some(Launched { by, size }) = launched {
        anyhow::ensure!(
            size.is_some_and(|n| n <= 1),
            "started by {by} ({} ranks), but this onerec was built without the `mpi` feature \
             (cargo build --release --features mpi); see docs/distributed.md",
            size.map_or("an unknown number of".to_string(), |n| n.to_string())
        );
    }
    Ok(World { sync: Box::new(Single) })
}

/// Refuses to run a command that is not data-parallel on more than one rank (every rank
/// would do the whole job and write the same files).
pub fn require_single(sync: &dyn GradSync, what: &str) -> Result<()> {
    anyhow::ensure!(
        sync.world_size() == 1,
        "{what} does not run data-parallel; started on {} ranks: run it without mpirun (or -np 1). \
         Data-parallel: `onerec pretrain`, `align`, `baseline sasrec` and `recipe` (docs/distributed.md)",
        sync.world_size()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_tile_the_batch_in_order() {
        for n in [0, 1, 2, 5, 128, 129] {
            for w in 1..5 {
                let parts: Vec<_> = (0..w).map(|r| shard_range(n, r, w)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[w - 1].end, n);
                assert!(parts.windows(2).all(|p| p[0].end == p[1].start));
                let (lo, hi) = (n / w, n.div_ceil(w));
                assert!(parts.iter().all(|p| (lo..=hi).contains(&p.len())), "n={n} w={w} {parts:?}");
            }
        }
    }
}
