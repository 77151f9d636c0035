//! The thread count a run computes with. Same seed *and* threads give the same bytes
//! (reductions split by thread), so records keep it and a resumed training says when it
//! changed.

use std::path::Path;

/// Threads of the rayon pool this code runs in (`--threads`, else all cores).
pub fn compute_threads() -> usize {
    rayon::current_num_threads()
}

/// The thread counts a training has used, for its `train_state.json`: `used` from the
/// checkpoint (empty for one written before this was recorded) plus this process's, with
/// a warning when this process's is new.
pub fn on_resume(mut used: Vec<usize>, last_dir: &Path) -> Vec<usize> {
    let now = compute_threads();
    if !used.contains(&now) {
        if !used.is_empty() {
            tracing::warn!(
                "resuming {} at {now} threads; it was trained at {used:?}: the result is valid but not byte-identical to a run at one thread count",
                last_dir.display()
            );
        }
        used.push(now);
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_appends_a_new_thread_count_once() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        pool.install(|| {
            assert_eq!(compute_threads(), 3);
            assert_eq!(on_resume(vec![8], Path::new("x")), vec![8, 3]);
            assert_eq!(on_resume(vec![3], Path::new("x")), vec![3]);
            assert_eq!(on_resume(Vec::new(), Path::new("x")), vec![3]);
        });
    }
}
