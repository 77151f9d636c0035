//! `onerec generate`.

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Arguments are added when this stage lands.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: GenerateArgs) -> Result<()> {
    Err(super::not_implemented("generate"))
}
