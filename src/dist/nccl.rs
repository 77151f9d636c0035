//! The NCCL backend (feature `nccl`): sums on the GPUs with NCCL, one GPU per rank,
//! bootstrapped by another backend (MPI: rank 0's NCCL id travels by broadcast).
//!
//! STATUS: written against cudarc 0.19.10's API (`cudarc::nccl::safe`) and type-checked
//! against it (`scripts/check-nccl.sh`), but never built with the CUDA toolkit nor run:
//! this project's machines have no GPU. It moves host buffers through the device (copy in,
//! all-reduce, copy out), because pretraining's gradients live on the CPU today; a GPU
//! training loop would all-reduce its device gradients in place instead.

use super::GradSync;
use anyhow::{anyhow, Result};
use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::safe::{Comm, Id, ReduceOp};
use std::sync::Arc;

/// An NCCL communicator over the ranks of `boot`, which keeps rank 0's broadcasts and the
/// barrier (NCCL has neither for host data).
pub struct Nccl {
    comm: Comm,
    stream: Arc<CudaStream>,
    boot: Box<dyn GradSync>,
}

impl Nccl {
    /// Opens GPU `device` (usually the rank's index on its node) and joins the ranks of
    /// `boot` in one NCCL communicator.
    pub fn init(boot: Box<dyn GradSync>, device: usize) -> Result<Nccl> {
        let ctx = CudaContext::new(device).map_err(|e| anyhow!("CUDA device {device}: {e:?}"))?;
        let stream = ctx.default_stream();
        // The 128-byte NCCL id as 16 f64 bit patterns (a broadcast copies bytes).
        let mut words = [0f64; 16];
        if boot.is_leader() {
            let id = Id::new().map_err(|e| anyhow!("ncclGetUniqueId: {e:?}"))?;
            for (w, c) in words.iter_mut().zip(id.internal().chunks(8)) {
                let b: Vec<u8> = c.iter().map(|&x| x as u8).collect();
                *w = f64::from_bits(u64::from_le_bytes(b.try_into().map_err(|_| anyhow!("NCCL id chunk"))?));
            }
        }
        boot.broadcast_f64(&mut words)?;
        let mut internal = [0 as ::core::ffi::c_char; 128];
        for (c, w) in internal.chunks_mut(8).zip(words) {
            for (x, b) in c.iter_mut().zip(w.to_bits().to_le_bytes()) {
                *x = b as ::core::ffi::c_char;
            }
        }
        let comm = Comm::from_rank(stream.clone(), boot.rank(), boot.world_size(), Id::uninit(internal))
            .map_err(|e| anyhow!("ncclCommInitRank: {e:?}"))?;
        Ok(Nccl { comm, stream, boot })
    }

    fn sum<T: cudarc::driver::DeviceRepr + cudarc::nccl::safe::NcclType>(&self, buf: &mut [T]) -> Result<()> {
        let mut d = self.stream.clone_htod(buf).map_err(|e| anyhow!("copy to GPU: {e:?}"))?;
        self.comm.all_reduce_in_place(&mut d, &ReduceOp::Sum).map_err(|e| anyhow!("ncclAllReduce: {e:?}"))?;
        self.stream.memcpy_dtoh(&d, buf).map_err(|e| anyhow!("copy from GPU: {e:?}"))?;
        self.stream.synchronize().map_err(|e| anyhow!("CUDA stream: {e:?}"))
    }
}

impl GradSync for Nccl {
    fn rank(&self) -> usize {
        self.boot.rank()
    }
    fn world_size(&self) -> usize {
        self.boot.world_size()
    }
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.sum(buf)
    }
    fn all_reduce_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.sum(buf)
    }
    fn broadcast_f64(&self, buf: &mut [f64]) -> Result<()> {
        self.boot.broadcast_f64(buf)
    }
    fn barrier(&self) -> Result<()> {
        self.boot.barrier()
    }
    fn backend(&self) -> &'static str {
        "nccl"
    }
}
