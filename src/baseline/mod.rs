//! ID-only baselines scored in the same harness as the generative model (issue 16).
//!
//! Every baseline produces ranked item lists per user and is scored by
//! [`crate::eval::ranking_metrics`], the same code `evaluate` uses.

pub mod popularity;
pub mod sasrec;
