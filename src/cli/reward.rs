//! `onerec reward`.

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct RewardArgs {
    /// Arguments are added when this stage lands.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: RewardArgs) -> Result<()> {
    Err(super::not_implemented("reward"))
}
