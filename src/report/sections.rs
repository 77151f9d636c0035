//! The report's sections, each read from the files one stage writes.

use super::plot::{bar_chart, line_chart, Series};
use super::{Figure, RunLayout, Section};
use anyhow::{Context, Result};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::path::Path;

pub const LOSS: &str = "Pretraining loss";
pub const RANKING: &str = "Ranking metrics over steps";
pub const LR: &str = "Learning rate";
const MOE: &str = "MoE expert load and router entropy";
const ALIGN: &str = "Alignment: reward and preference accuracy per iteration";
const TOK: &str = "Tokenizer code utilisation";

/// Validation examples the MoE section routes through the best checkpoint.
const MOE_EXAMPLES: usize = 256;

/// The rows of a pretrain `metrics.jsonl` (one object per eval).
pub fn read_metrics(dir: &Path) -> Result<Vec<Map<String, Value>>> {
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}: invalid JSON", path.display(), i + 1))?;
        match v {
            Value::Object(o) => rows.push(o),
            _ => anyhow::bail!("{}:{}: expected a JSON object", path.display(), i + 1),
        }
    }
    Ok(rows)
}

/// (step, row[key]) for the rows where both are numbers.
fn column(rows: &[Map<String, Value>], key: &str) -> Vec<(f64, f64)> {
    rows.iter().filter_map(|r| Some((r.get("step")?.as_f64()?, r.get(key)?.as_f64()?))).collect()
}

/// Charts of a section, or the error as a note (one bad chart does not lose the page).
fn push(s: &mut Section, caption: impl Into<String>, svg: Result<String>) {
    match svg {
        Ok(svg) => s.figures.push(Figure { svg, caption: caption.into() }),
        Err(e) => s.notes.push(format!("chart not drawn: {e:#}")),
    }
}

fn no_pretrain(id: &'static str, title: &'static str, rows: &[Map<String, Value>], l: &RunLayout) -> Option<Section> {
    if l.pretrain.is_none() {
        return Some(Section::skipped(id, title, "skipped: no pretrain output (metrics.jsonl) in this run directory"));
    }
    rows.is_empty().then(|| Section::skipped(id, title, "skipped: metrics.jsonl has no rows yet"))
}

pub fn loss(l: &RunLayout, rows: &[Map<String, Value>]) -> Section {
    if let Some(s) = no_pretrain("loss", LOSS, rows, l) {
        return s;
    }
    let mut s = Section::new("loss", LOSS);
    let series = vec![
        Series::new("train_loss", column(rows, "train_loss")),
        Series::new("valid_loss", column(rows, "valid_loss")),
    ];
    push(
        &mut s,
        "Mean next-token NLL per code token: train (mean since the previous eval) and validation, at each eval row of metrics.jsonl.",
        line_chart("train / valid loss", "step", "NLL per token", &series, None),
    );
    s
}

/// Ranking keys of the eval rows: numeric keys other than the loss/lr bookkeeping.
fn ranking_keys(rows: &[Map<String, Value>]) -> Vec<String> {
    let skip = ["step", "train_loss", "valid_loss", "lr"];
    let keys: BTreeSet<String> = rows
        .iter()
        .flat_map(|r| r.iter().filter(|(k, v)| v.is_number() && !skip.contains(&k.as_str())).map(|(k, _)| k.clone()))
        .collect();
    keys.into_iter().collect()
}

pub fn ranking(l: &RunLayout, rows: &[Map<String, Value>]) -> Section {
    if let Some(s) = no_pretrain("ranking", RANKING, rows, l) {
        return s;
    }
    let keys = ranking_keys(rows);
    if keys.is_empty() {
        return Section::skipped(
            "ranking",
            RANKING,
            "skipped: the eval rows have no ranking metrics (train.rank_users = 0 turns them off)",
        );
    }
    let mut s = Section::new("ranking", RANKING);
    let series: Vec<Series> = keys.iter().map(|k| Series::new(k.as_str(), column(rows, k))).collect();
    push(
        &mut s,
        format!("Validation ranking metrics at each eval row ({}).", keys.join(", ")),
        line_chart("validation ranking metrics", "step", "value", &series, None),
    );
    s
}

pub fn learning_rate(l: &RunLayout, rows: &[Map<String, Value>]) -> Section {
    if let Some(s) = no_pretrain("lr", LR, rows, l) {
        return s;
    }
    let mut s = Section::new("lr", LR);
    push(
        &mut s,
        "Learning rate of the optimizer step before each eval row (warmup then cosine decay).",
        line_chart("learning rate", "step", "lr", &[Series::new("lr", column(rows, "lr"))], None),
    );
    s
}

/// Expert load and router entropy per MoE layer of the pretrain `best/` checkpoint,
/// measured here by routing validation examples through it (training prints these
/// statistics to its log only). Inference only: nothing is trained or written.
pub fn moe(l: &RunLayout) -> Section {
    let Some(pre) = &l.pretrain else {
        return Section::skipped("moe", MOE, "skipped: no pretrain checkpoint in this run directory");
    };
    match moe_stats(pre, l.data.as_deref()) {
        Ok(s) => s,
        Err(e) => Section::skipped("moe", MOE, format!("skipped: {e:#}")),
    }
}

fn moe_stats(pre: &Path, run_data: Option<&Path>) -> Result<Section> {
    use crate::generate::users::align_dataset;
    let ckpt = crate::model::checkpoint::load(pre)?;
    let moes = ckpt.model.moe_layers();
    if moes.is_empty() {
        return Ok(Section::skipped("moe", MOE, "skipped: the model has no MoE layers (dense feed-forward)"));
    }
    // The dataset the checkpoint records, else the run directory's `data/` (the
    // quickstart trains on an in-memory copy of it, so its checkpoint records none).
    let data = match crate::model::checkpoint::dataset_dir(None, &ckpt.dir, &ckpt.meta) {
        Ok(d) => d,
        Err(e) => run_data.map(Path::to_path_buf).ok_or(e)?,
    };
    let ds = crate::data::Dataset::load(&data).with_context(|| format!("loading dataset {}", data.display()))?;
    let ds = align_dataset(&ds, &ckpt.semantic_ids)?;
    let ex = crate::train::data::valid_examples(&ds, MOE_EXAMPLES);
    anyhow::ensure!(!ex.is_empty(), "the dataset {} has no validation examples to route", data.display());
    let stats = crate::train::data::valid_routing(&ckpt.model, &ds, &ex, 64)?;
    let experts = stats[0].load.len();
    let mut s = Section::new("moe", MOE);
    s.notes.push(format!(
        "Measured by the report: {} validation examples routed through {} (step {}); training prints these \
         statistics to its log every train.log_every steps but does not store them, so they are not shown over steps.",
        ex.len(),
        ckpt.dir.display(),
        ckpt.meta.step
    ));
    let series: Vec<Series> = stats
        .iter()
        .enumerate()
        .map(|(li, st)| {
            let total = st.load.iter().sum::<u64>().max(1) as f64;
            Series::new(
                format!("layer {li}"),
                st.load.iter().enumerate().map(|(e, &c)| (e as f64, c as f64 / total)).collect(),
            )
        })
        .collect();
    push(
        &mut s,
        format!(
            "Share of routed token slots each expert received, per MoE layer ({experts} experts; dashed: uniform)."
        ),
        line_chart(
            "expert load per layer",
            "expert",
            "share of token slots",
            &series,
            Some(("uniform", 1.0 / experts as f64)),
        ),
    );
    let labels: Vec<String> = (0..stats.len()).map(|i| format!("layer {i}")).collect();
    let ent: Vec<f64> = stats.iter().map(|st| st.entropy_sum / st.tokens.max(1) as f64).collect();
    push(
        &mut s,
        "Mean entropy (nats) of the router's softmax per token, per MoE layer (dashed: ln(experts), a uniform router).",
        bar_chart("router entropy per layer", "nats", &labels, &ent, Some(("ln(experts)", (experts as f64).ln()))),
    );
    for (li, (st, e)) in stats.iter().zip(&ent).enumerate() {
        let total = st.load.iter().sum::<u64>().max(1) as f64;
        let max = st.load.iter().copied().max().unwrap_or(0) as f64 / total;
        s.table
            .push((format!("layer {li}"), format!("entropy {e:.3} nats, busiest expert {:.1}% of slots", max * 100.0)));
    }
    Ok(s)
}

pub fn alignment(l: &RunLayout) -> Section {
    let Some(dir) = &l.aligned else {
        return Section::skipped("alignment", ALIGN, "skipped: no align output (state.json) in this run directory");
    };
    match align_figures(dir) {
        Ok(s) => s,
        Err(e) => Section::skipped("alignment", ALIGN, format!("skipped: {e:#}")),
    }
}

fn align_figures(dir: &Path) -> Result<Section> {
    let path = dir.join("state.json");
    let st: crate::align::iterate::AlignState = crate::util::io::read_json(&path)?;
    if st.iterations.is_empty() {
        return Ok(Section::skipped(
            "alignment",
            ALIGN,
            format!("skipped: {} has no finished iteration", path.display()),
        ));
    }
    let mut s = Section::new("alignment", ALIGN);
    let it = |f: &dyn Fn(&crate::align::iterate::IterationLog) -> f64| -> Vec<(f64, f64)> {
        st.iterations.iter().map(|l| (l.iteration as f64, f(l))).collect()
    };
    push(
        &mut s,
        "Reward-model score of the candidate sessions generated at the start of each iteration: mean over all \
         candidates, and mean over users of the best candidate.",
        line_chart(
            "reward model score of generated candidates",
            "iteration",
            "reward",
            &[
                Series::new("mean_reward", it(&|l| l.mean_reward)),
                Series::new("mean_best_reward", it(&|l| l.mean_best_reward)),
            ],
            None,
        ),
    );
    push(
        &mut s,
        "Preference accuracy (share of pairs where the policy's implicit reward ranks the chosen session first), \
         mean over each iteration's steps.",
        line_chart(
            "preference accuracy",
            "iteration",
            "accuracy",
            &[Series::new("accuracy", it(&|l| l.train.accuracy))],
            Some(("chance", 0.5)),
        ),
    );
    // Hook metrics (true reward on the world, validation ranking) from iteration 0.
    let keys: BTreeSet<&String> =
        st.initial_eval.keys().chain(st.iterations.iter().flat_map(|l| l.eval.keys())).collect();
    if !keys.is_empty() {
        let series: Vec<Series> = keys
            .iter()
            .map(|k| {
                let mut pts: Vec<(f64, f64)> = st.initial_eval.get(*k).map(|v| (0.0, *v)).into_iter().collect();
                pts.extend(st.iterations.iter().filter_map(|l| l.eval.get(*k).map(|v| (l.iteration as f64, *v))));
                Series::new(k.as_str(), pts)
            })
            .collect();
        for ser in series {
            let name = ser.name.clone();
            push(
                &mut s,
                format!("`{name}` of the policy after each iteration (0 = the pretrained start), from state.json's eval hook."),
                line_chart(&name, "iteration", &name, &[ser], None),
            );
        }
    }
    for l in &st.iterations {
        s.table.push((
            format!("iteration {}", l.iteration),
            format!(
                "pairs {}, ties {}, pref_loss {:.4}, accuracy {:.3}, margin {:.3}, {:.0}s",
                l.pairs, l.ties, l.train.pref_loss, l.train.accuracy, l.train.margin, l.seconds
            ),
        ));
    }
    Ok(s)
}

pub fn tokenizer(l: &RunLayout) -> Section {
    use crate::tokenizer::SemanticIds;
    // The artifact, else the copy of its codes inside the pretrain checkpoint.
    let ids = match (&l.tokenizer, &l.pretrain) {
        (Some(t), _) => SemanticIds::load(t).map(|ids| (ids, t.join("codes.tsv"), Some(t.join("manifest.json")))),
        (None, Some(p)) => crate::model::checkpoint::read_meta(p).and_then(|(d, meta)| {
            let codes = d.join("codes.tsv");
            SemanticIds::read_codes(&codes, Some(&meta.vocab.codebook_sizes)).map(|ids| (ids, codes, None))
        }),
        _ => {
            let why = "skipped: no tokenizer artifact or checkpoint in this run directory";
            return Section::skipped("tokenizer", TOK, why);
        }
    };
    match ids.and_then(|(ids, codes, manifest)| token_figures(&ids, &codes, manifest.as_deref())) {
        Ok(s) => s,
        Err(e) => Section::skipped("tokenizer", TOK, format!("skipped: {e:#}")),
    }
}

fn token_figures(ids: &crate::tokenizer::SemanticIds, codes: &Path, manifest: Option<&Path>) -> Result<Section> {
    let levels = ids.levels();
    let mut s = Section::new("tokenizer", TOK);
    let mut used = Vec::new();
    let mut series = Vec::new();
    for (lv, &k) in ids.codebook_sizes.iter().enumerate() {
        let mut count = vec![0usize; k];
        for i in 0..ids.n_items() {
            count[ids.codes(i as u32)[lv] as usize] += 1;
        }
        used.push(count.iter().filter(|&&c| c > 0).count() as f64 / k.max(1) as f64);
        let mut sorted = count.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        series.push(Series::new(
            format!("level {lv} ({k} codes)"),
            sorted.iter().enumerate().map(|(r, &c)| (r as f64 + 1.0, c as f64)).collect(),
        ));
    }
    let labels: Vec<String> = (0..levels).map(|l| format!("level {l}")).collect();
    push(
        &mut s,
        format!("Share of each level's codebook used by at least one of the {} items.", ids.n_items()),
        bar_chart("code utilisation per level", "share of codes used", &labels, &used, Some(("all used", 1.0))),
    );
    push(
        &mut s,
        "Items per code, codes sorted from most to least used, per level (flat = balanced codebook).",
        line_chart("items per code (sorted)", "code rank", "items", &series, None),
    );
    s.notes.push(format!("Codes read from {}.", codes.display()));
    if let Some(m) = manifest {
        let v: Value = crate::util::io::read_json(m)?;
        let mt = &v["metrics"];
        for key in ["utilization", "entropy_bits", "collision_rate", "relative_reconstruction_error", "reassigned"] {
            if !mt[key].is_null() {
                s.table.push((key.to_string(), mt[key].to_string()));
            }
        }
        if let Some(method) = v["method"].as_str() {
            s.table.push(("method".into(), method.into()));
        }
    }
    Ok(s)
}
