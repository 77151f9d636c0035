//! `onerec data synth`.

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct SynthArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: SynthArgs) -> Result<()> {
    Err(super::not_implemented("data synth"))
}
