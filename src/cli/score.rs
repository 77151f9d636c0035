//! `onerec score`.

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// Arguments are added when this stage lands.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: ScoreArgs) -> Result<()> {
    Err(super::not_implemented("score"))
}
