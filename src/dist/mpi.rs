//! The MPI backend (feature `mpi`): the world communicator of rsmpi over the system's MPI
//! (Open MPI from Debian's `libopenmpi-dev`). Sums are `MPI_Allreduce(MPI_SUM)`, so every
//! rank gets the same bits; MPI's default error handler aborts the job on a failed
//! collective, so the calls below cannot return errors.

use super::GradSync;
use ::mpi::collective::SystemOperation;
use ::mpi::environment::Universe;
use ::mpi::topology::SimpleCommunicator;
use ::mpi::traits::{Communicator, CommunicatorCollectives, Root};
use anyhow::{Context, Result};

/// `MPI_COMM_WORLD`; `MPI_Finalize` when dropped.
pub struct Mpi {
    // Field order = drop order: the communicator before the universe that finalises MPI.
    world: SimpleCommunicator,
    _universe: Universe,
}

impl Mpi {
    /// `MPI_Init`; call once, from `main`.
    pub fn init() -> Result<Mpi> {
        let universe = ::mpi::initialize().context("MPI_Init: MPI is already initialised")?;
        let world = universe.world();
        tracing::debug!(rank = world.rank(), size = world.size(), "MPI initialised");
        Ok(Mpi { world, _universe: universe })
    }
}

/// `MPI_Abort` on the world: ends every rank (the others may be waiting in a collective).
pub fn abort(code: i32) -> ! {
    SimpleCommunicator::world().abort(code)
}

impl GradSync for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn world_size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<()> {
        let send = buf.to_vec();
        self.world.all_reduce_into(&send[..], buf, SystemOperation::sum());
        Ok(())
    }
    fn all_reduce_f64(&self, buf: &mut [f64]) -> Result<()> {
        let send = buf.to_vec();
        self.world.all_reduce_into(&send[..], buf, SystemOperation::sum());
        Ok(())
    }
    fn broadcast_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.world.process_at_rank(0).broadcast_into(buf);
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.world.barrier();
        Ok(())
    }
    fn backend(&self) -> &'static str {
        "mpi"
    }
}
