//! `onerec eval`.

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Arguments are added when this stage lands.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: EvalArgs) -> Result<()> {
    Err(super::not_implemented("eval"))
}
