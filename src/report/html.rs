//! The report page: a single HTML file with the charts inlined as SVG, a little CSS,
//! no scripts and no external resources (so it opens anywhere, offline).

use super::{RunLayout, Section};
use std::fmt::Write;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1340px;margin:1.5em auto;padding:0 1em;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}\
nav a{margin-right:1em}figure{display:inline-block;margin:.5em;vertical-align:top}\
figcaption{font-size:.85em;color:#555;max-width:640px}p.note{color:#666;font-style:italic}\
table{border-collapse:collapse;font-size:.9em}td{padding:.15em .8em;border-bottom:1px solid #eee}\
code{background:#f4f4f4;padding:0 .2em}";

/// The whole page.
pub fn render(layout: &RunLayout, sections: &[Section]) -> String {
    let mut h = String::new();
    let title = format!("onerec run report: {}", layout.root.display());
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<link rel=\"icon\" href=\"data:,\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title)
    );
    let _ = writeln!(h, "<p>Written by onerec {}. Inputs:", env!("CARGO_PKG_VERSION"));
    for (name, p) in [
        ("pretrain", &layout.pretrain),
        ("aligned", &layout.aligned),
        ("tokenizer", &layout.tokenizer),
        ("summary", &layout.summary),
    ] {
        let shown = p.as_ref().map_or("(absent)".to_string(), |p| p.display().to_string());
        let _ = write!(h, " {name} <code>{}</code>;", escape(&shown));
    }
    h.push_str("</p>\n<nav>");
    for s in sections {
        let _ = write!(h, "<a href=\"#{}\">{}</a>", s.id, escape(s.title));
    }
    h.push_str("</nav>\n");
    for s in sections {
        let _ = writeln!(h, "<section id=\"{}\">\n<h2>{}</h2>", s.id, escape(s.title));
        for n in &s.notes {
            let _ = writeln!(h, "<p class=\"note\">{}</p>", escape(n));
        }
        if !s.table.is_empty() {
            h.push_str("<table>\n");
            for (k, v) in &s.table {
                let _ = writeln!(h, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(v));
            }
            h.push_str("</table>\n");
        }
        for f in &s.figures {
            let _ =
                writeln!(h, "<figure>\n{}\n<figcaption>{}</figcaption>\n</figure>", f.svg.trim(), escape(&f.caption));
        }
        h.push_str("</section>\n");
    }
    h.push_str("</body>\n</html>\n");
    h
}
