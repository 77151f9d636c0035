//! `onerec embed`.

use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct EmbedArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

pub fn run(_args: EmbedArgs) -> Result<()> {
    Err(super::not_implemented("embed"))
}
