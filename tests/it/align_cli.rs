//! `onerec reward` / `onerec align` argument contracts.

use clap::Parser;
use onerec::cli::{Cli, Command};

#[test]
fn reward_and_align_flags_parse() {
    let cli =
        Cli::try_parse_from(["onerec", "reward", "--config", "tiny", "--data", "d", "--tokenizer", "t", "--out", "o"])
            .unwrap();
    match cli.command {
        Command::Reward(a) => assert_eq!((a.config.as_str(), a.tokenizer.to_str()), ("tiny", Some("t"))),
        _ => panic!("wrong subcommand"),
    }
    let cli = Cli::try_parse_from([
        "onerec",
        "align",
        "--config",
        "tiny",
        "--checkpoint",
        "c",
        "--reward",
        "r",
        "--data",
        "d",
        "--out",
        "o",
        "--set",
        "align.iterations=3",
    ])
    .unwrap();
    match cli.command {
        Command::Align(a) => assert_eq!(a.set, vec!["align.iterations=3".to_string()]),
        _ => panic!("wrong subcommand"),
    }
    assert!(
        Cli::try_parse_from(["onerec", "reward", "--config", "tiny", "--data", "d", "--out", "o"]).is_err(),
        "--tokenizer is required"
    );
    let base =
        ["onerec", "align", "--config", "tiny", "--checkpoint", "c", "--reward", "r", "--data", "d", "--out", "o"];
    let with = |o: &str| Cli::try_parse_from(base.iter().copied().chain(["--objective", o]));
    match with("grpo").unwrap().command {
        Command::Align(a) => assert_eq!(a.objective.as_deref(), Some("grpo")),
        _ => panic!("wrong subcommand"),
    }
    assert!(with("ppo").is_err(), "only dpo and grpo");
}

#[test]
fn align_cli_reports_a_missing_reward_model() {
    let tmp = tempfile::tempdir().unwrap();
    let cli = Cli::try_parse_from([
        "onerec",
        "align",
        "--config",
        "tiny",
        "--checkpoint",
        "c",
        "--data",
        "d",
        "--reward",
        tmp.path().to_str().unwrap(),
        "--out",
        tmp.path().join("o").to_str().unwrap(),
    ])
    .unwrap();
    let err = onerec::cli::run(cli).unwrap_err();
    assert!(format!("{err:#}").contains("not a reward model directory"), "{err:#}");
}
