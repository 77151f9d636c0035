//! Whether an MPI launcher started this process, from the environment it sets: checked
//! before `MPI_Init`, so a plain `onerec pretrain` never initialises MPI (a singleton
//! `MPI_Init` is slow and, in some containers, fails).

/// An MPI launcher's mark on the environment: who set it and, when it says, how many
/// ranks it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launched {
    pub by: &'static str,
    pub size: Option<usize>,
}

/// Open MPI's `mpirun` (`OMPI_COMM_WORLD_SIZE`), MPICH/Hydra or Slurm PMI-2 (`PMI_SIZE`),
/// or a PMIx launcher such as `srun --mpi=pmix` (`PMIX_RANK`, with Slurm's task count).
pub fn launcher() -> Option<Launched> {
    launched_by(|k| std::env::var(k).ok())
}

fn launched_by(var: impl Fn(&str) -> Option<String>) -> Option<Launched> {
    let size = |k: &str| var(k).and_then(|v| v.trim().parse::<usize>().ok());
    if var("OMPI_COMM_WORLD_SIZE").is_some() {
        return Some(Launched { by: "mpirun (Open MPI)", size: size("OMPI_COMM_WORLD_SIZE") });
    }
    if var("PMI_SIZE").is_some() {
        return Some(Launched { by: "a PMI launcher", size: size("PMI_SIZE") });
    }
    if var("PMIX_RANK").is_some() {
        let n = size("SLURM_STEP_NUM_TASKS").or_else(|| size("SLURM_NTASKS"));
        return Some(Launched { by: "a PMIx launcher", size: n });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn reads_each_launchers_variables() {
        assert_eq!(launched_by(env(&[("HOME", "/root")])), None);
        assert_eq!(launched_by(env(&[("OMPI_COMM_WORLD_SIZE", "2")])).unwrap().size, Some(2));
        assert_eq!(launched_by(env(&[("PMI_SIZE", "4")])).unwrap().size, Some(4));
        assert_eq!(launched_by(env(&[("PMIX_RANK", "0"), ("SLURM_NTASKS", "8")])).unwrap().size, Some(8));
        assert_eq!(launched_by(env(&[("PMIX_RANK", "0")])).unwrap().size, None);
    }
}
