//! `--shard auto` under a Slurm job array and a Kubernetes Indexed Job (the variables
//! each sets), shard file naming, and `onerec merge` back to the unsharded output.

use onerec::shard::{parse_shard_path, shard_from_env, shard_path, Scheduler, Shard};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The scheduler variables a child must not inherit from whatever runs the tests.
const SCHEDULER_VARS: &[&str] = &[
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
    "JOB_COMPLETION_INDEX",
];

fn command(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_onerec"));
    c.args(args).env("RAYON_NUM_THREADS", "1");
    for v in SCHEDULER_VARS {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn onerec(args: &[&str], env: &[(&str, String)]) -> Output {
    command(args, env).output().unwrap()
}

fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    o
}

fn err(o: Output) -> String {
    assert!(!o.status.success(), "expected a failure");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs one process per env in parallel (as the scheduler would) and waits for all.
fn run_shards(args: &[&str], envs: Vec<Vec<(&str, String)>>) {
    let children: Vec<_> = envs.iter().map(|e| command(args, e).spawn().unwrap()).collect();
    for c in children {
        ok(c.wait_with_output().unwrap());
    }
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k: &str| m.get(k).cloned()
}

#[test]
fn shard_from_scheduler_environment() {
    // A Slurm array 1-4 (ids need not start at 0).
    let slurm = |id: &str| {
        env_of(&[
            ("SLURM_ARRAY_TASK_ID", id),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_MAX", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_STEP", "1"),
        ])
    };
    for id in 1..=4 {
        let got = shard_from_env(None, &slurm(&id.to_string())).unwrap();
        assert_eq!(got, (Shard { index: id - 1, count: 4 }, Scheduler::Slurm));
    }
    let e = shard_from_env(None, &slurm("5")).unwrap_err().to_string();
    assert!(e.contains("SLURM_ARRAY_TASK_ID=5"), "{e}");
    let e = shard_from_env(Some(3), &slurm("2")).unwrap_err().to_string();
    assert!(e.contains("--shard-count 3") && e.contains("SLURM_ARRAY_TASK_COUNT=4"), "{e}");
    let e = shard_from_env(None, &env_of(&[("SLURM_ARRAY_TASK_ID", "0")])).unwrap_err().to_string();
    assert!(e.contains("SLURM_ARRAY_TASK_COUNT is not"), "{e}");
    let e = shard_from_env(None, &env_of(&[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_COUNT", "2")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("SLURM_ARRAY_TASK_ID=\"x\""), "{e}");
    // --array=0-6:2 (4 tasks, step 2) and --array=0,1,5 (a gap) would leave shards unrun.
    let stepped = env_of(&[
        ("SLURM_ARRAY_TASK_ID", "2"),
        ("SLURM_ARRAY_TASK_MIN", "0"),
        ("SLURM_ARRAY_TASK_MAX", "6"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
        ("SLURM_ARRAY_TASK_STEP", "2"),
    ]);
    assert!(shard_from_env(None, &stepped).unwrap_err().to_string().contains("SLURM_ARRAY_TASK_STEP=2"));
    let gap = env_of(&[
        ("SLURM_ARRAY_TASK_ID", "5"),
        ("SLURM_ARRAY_TASK_MIN", "0"),
        ("SLURM_ARRAY_TASK_MAX", "5"),
        ("SLURM_ARRAY_TASK_COUNT", "3"),
    ]);
    assert!(shard_from_env(None, &gap).unwrap_err().to_string().contains("not one contiguous range"));

    // Kubernetes: the index from the pod, the count from the flag.
    let k8s = env_of(&[("JOB_COMPLETION_INDEX", "2")]);
    assert_eq!(shard_from_env(Some(3), &k8s).unwrap(), (Shard { index: 2, count: 3 }, Scheduler::Kubernetes));
    let e = shard_from_env(None, &k8s).unwrap_err().to_string();
    assert!(e.contains("JOB_COMPLETION_INDEX") && e.contains("--shard-count"), "{e}");
    assert!(shard_from_env(Some(2), &k8s).unwrap_err().to_string().contains("not below --shard-count 2"));
    let e = shard_from_env(Some(2), &env_of(&[])).unwrap_err().to_string();
    assert!(
        e.contains("SLURM_ARRAY_TASK_ID") && e.contains("JOB_COMPLETION_INDEX") && e.contains("--shard i/n"),
        "{e}"
    );

    // Names: the extension stays last, and the name parses back.
    let s = Shard { index: 3, count: 8 };
    let out = Path::new("out/recs.jsonl");
    assert_eq!(shard_path(out, s), PathBuf::from("out/recs.shard-0003-of-0008.jsonl"));
    assert_eq!(shard_path(Path::new("scores"), s), PathBuf::from("scores.shard-0003-of-0008"));
    assert_eq!(parse_shard_path(out, &shard_path(out, s)), Some(s));
    assert_eq!(parse_shard_path(out, Path::new("recs.shard-0003-of-0008.tsv")), None);
    assert_eq!(parse_shard_path(out, Path::new("recs.shard-0009-of-0008.jsonl")), None);
}

fn record(path: &Path) -> serde_json::Value {
    let p = format!("{}.run.json", path.display());
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))).unwrap()
}

/// 4 Slurm array tasks (`--array=1-4`) of `generate --shard auto`, and 4 pods of a
/// Kubernetes Indexed Job of `score --shard auto --shard-count 4`, each a process of the
/// built binary; `onerec merge` equals the unsharded output byte for byte. Then a
/// missing, a foreign and a truncated shard are refused.
#[test]
fn scheduler_shards_merge_to_the_unsharded_output() {
    let (dir, ckpt, data) = crate::common::tiny_checkpoint(11);
    let root = dir.path();
    let gen = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["generate", "--checkpoint", &ckpt, "--data", &data, "--beam", "4", "--top", "3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(["--batch-users".into(), "7".into(), "--out".into(), out.to_str().unwrap().into()]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let full = root.join("full.jsonl");
    let args = gen(&full, &[]);
    ok(onerec(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]));

    // Slurm: ids 1..=4 (SLURM_ARRAY_TASK_MIN=1), in a directory of their own.
    let recs = root.join("slurm/recs.jsonl");
    let args = gen(&recs, &["--shard", "auto"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let slurm = |id: usize| {
        vec![
            ("SLURM_ARRAY_TASK_ID", id.to_string()),
            ("SLURM_ARRAY_TASK_MIN", "1".to_string()),
            ("SLURM_ARRAY_TASK_MAX", "4".to_string()),
            ("SLURM_ARRAY_TASK_COUNT", "4".to_string()),
        ]
    };
    run_shards(&args, (1..=4).map(slurm).collect());
    for i in 0..4 {
        let p = shard_path(&recs, Shard { index: i, count: 4 });
        let rec = record(&p);
        assert_eq!((rec["shard"]["index"].as_u64(), rec["scheduler"].as_str()), (Some(i as u64), Some("slurm")));
    }
    assert!(!recs.exists(), "shards write their own files");
    ok(onerec(&["merge", "--out", recs.to_str().unwrap()], &[]));
    let want = std::fs::read(&full).unwrap();
    assert_eq!(String::from_utf8(std::fs::read(&recs).unwrap()).unwrap(), String::from_utf8(want.clone()).unwrap());
    assert_eq!(std::str::from_utf8(&want).unwrap().lines().count(), 60, "one line per test user");
    let merged = record(&recs);
    assert_eq!((merged["users"].as_u64(), merged["merged_from"].as_array().map(|a| a.len())), (Some(60), Some(4)));

    // Kubernetes: JOB_COMPLETION_INDEX 0..3 with --shard-count 4, scoring pairs (TSV).
    let ds = onerec::data::Dataset::load(Path::new(&data)).unwrap();
    let mut pairs = String::new();
    for u in (0..ds.n_users()).filter(|&u| ds.split(u).test.is_some()).take(15) {
        for k in 0..3 {
            pairs.push_str(&format!("{}\t{}\n", ds.user_ids[u], ds.item_ids[(u * 5 + k * 11) % ds.n_items()]));
        }
    }
    let pairs_path = root.join("pairs.tsv");
    std::fs::write(&pairs_path, &pairs).unwrap();
    let score = |out: &Path, extra: &[&str]| {
        let mut v: Vec<String> = ["score", "--checkpoint", &ckpt, "--pairs", pairs_path.to_str().unwrap()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(["--batch".into(), "4".into(), "--out".into(), out.to_str().unwrap().into()]);
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let full_scores = root.join("scores.tsv");
    ok(onerec(&score(&full_scores, &[]).iter().map(String::as_str).collect::<Vec<_>>(), &[]));
    let k8s_out = root.join("k8s/scores.tsv");
    let no_count = score(&k8s_out, &["--shard", "auto"]);
    let e = err(onerec(
        &no_count.iter().map(String::as_str).collect::<Vec<_>>(),
        &[("JOB_COMPLETION_INDEX", "0".to_string())],
    ));
    assert!(e.contains("JOB_COMPLETION_INDEX") && e.contains("--shard-count"), "{e}");
    let args = score(&k8s_out, &["--shard", "auto", "--shard-count", "4"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_shards(&args, (0..4).map(|i| vec![("JOB_COMPLETION_INDEX", i.to_string())]).collect());
    assert!(shard_path(&k8s_out, Shard { index: 3, count: 4 }).exists());
    ok(onerec(&["merge", "--out", k8s_out.to_str().unwrap()], &[]));
    let want = std::fs::read_to_string(&full_scores).unwrap();
    assert_eq!(want.lines().count(), 45);
    assert_eq!(std::fs::read_to_string(&k8s_out).unwrap(), want);
    assert_eq!(record(&k8s_out)["pairs_scored"].as_u64(), Some(45));

    // A missing shard, then a shard from another run, then a truncated one: refused,
    // and the merged file is left as it was.
    let s2 = shard_path(&recs, Shard { index: 2, count: 4 });
    let s2_rec = PathBuf::from(format!("{}.run.json", s2.display()));
    let (s2_bytes, s2_rec_bytes) = (std::fs::read(&s2).unwrap(), std::fs::read(&s2_rec).unwrap());
    std::fs::remove_file(&s2).unwrap();
    let before = std::fs::read(&recs).unwrap();
    let e = err(onerec(&["merge", "--out", recs.to_str().unwrap()], &[]));
    assert!(e.contains("missing shard(s) 2 of 4") && e.contains("recs.shard-0002-of-0004.jsonl"), "{e}");
    let other = gen(&recs, &["--shard", "auto", "--exclude-history"]);
    ok(onerec(&other.iter().map(String::as_str).collect::<Vec<_>>(), &slurm(3)));
    let e = err(onerec(&["merge", "--out", recs.to_str().unwrap()], &[]));
    assert!(e.contains("different runs") && e.contains("args.exclude_history"), "{e}");
    std::fs::write(&s2, &s2_bytes[..s2_bytes.len() / 2]).unwrap();
    std::fs::write(&s2_rec, &s2_rec_bytes).unwrap();
    let e = err(onerec(&["merge", "--out", recs.to_str().unwrap()], &[]));
    assert!(e.contains("recs.shard-0002-of-0004.jsonl") && e.contains("truncated"), "{e}");
    assert_eq!(std::fs::read(&recs).unwrap(), before, "a failed merge leaves the output alone");
    // Restored, the explicit-list form merges again; a duplicate is refused.
    std::fs::write(&s2, &s2_bytes).unwrap();
    let files: Vec<String> =
        (0..4).rev().map(|i| shard_path(&recs, Shard { index: i, count: 4 }).to_str().unwrap().to_string()).collect();
    let mut args = vec!["merge", "--out", recs.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    ok(onerec(&args, &[]));
    assert_eq!(std::fs::read(&recs).unwrap(), std::fs::read(&full).unwrap());
    args.push(&files[0]);
    assert!(err(onerec(&args, &[])).contains("given twice"));
}
