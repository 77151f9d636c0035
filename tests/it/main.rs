//! The integration tests: one crate (one link of candle) with a module per stage, as
//! ripgrep does. Shared fixtures live in [`common`]. Tests that need the real datasets in
//! `../shared` (or `$ONEREC_SHARED`) skip with a printed reason when it is absent.

mod align_cli;
mod align_dpo;
mod align_loop;
mod align_with_reward;
mod baseline;
mod baseline_export;
mod common;
mod data_prepare;
mod data_readers;
mod data_real;
mod dist;
mod embed;
mod eval;
mod eval_real;
mod generate;
mod generate_cli;
mod generate_score;
mod generate_users;
mod model;
mod pipeline;
mod pretrain;
mod pretrain_tiny_world;
mod quickstart_cli;
mod recipe;
mod reliability;
mod report;
mod reward_model;
mod reward_real;
mod serve;
mod shard;
mod tokenizer;
mod world;
