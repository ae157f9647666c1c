//! The end-of-run table: kind × pair with passed / failed / xfail / ignored counts and the
//! worst metric against its bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::record::{show_value, Record, Status};

#[derive(Default)]
struct Row<'a> {
    passed: usize,
    failed: usize,
    xfail: usize,
    ignored: usize,
    worst: Option<(f64, &'a Record)>,
}

/// Renders the summary table of `records`, followed by the reasons of ignored trials.
pub fn render(records: &[Record]) -> String {
    let mut rows: BTreeMap<(&str, &str), Row> = BTreeMap::new();
    for record in records {
        let row = rows.entry((&record.kind, &record.pair)).or_default();
        match record.status {
            Status::Passed => row.passed += 1,
            Status::Failed(_) => row.failed += 1,
            Status::ExpectedFailure(_) => row.xfail += 1,
            Status::Ignored(_) => row.ignored += 1,
        }
        if let Some((score, _)) = record.worst() {
            if row.worst.is_none_or(|(best, _)| score > best) {
                row.worst = Some((score, record));
            }
        }
    }
    let header = [
        "kind",
        "pair",
        "passed",
        "failed",
        "xfail",
        "ignored",
        "worst metric vs bound",
    ];
    let mut table: Vec<[String; 7]> = vec![header.map(String::from)];
    for ((kind, pair), row) in &rows {
        let worst = row
            .worst
            .and_then(|(_, record)| record.worst())
            .map(|(_, m)| {
                format!(
                    "{} = {} (bound {}) in {}",
                    m.check,
                    show_value(m.value),
                    m.bound,
                    row.worst.map_or("", |(_, r)| r.name.as_str())
                )
            })
            .unwrap_or_else(|| "-".to_string());
        table.push([
            kind.to_string(),
            pair.to_string(),
            row.passed.to_string(),
            row.failed.to_string(),
            row.xfail.to_string(),
            row.ignored.to_string(),
            worst,
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|col| {
            table
                .iter()
                .map(|r| r[col].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::from("\nconformance summary\n");
    for (index, row) in table.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
        if index == 0 {
            let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
            let _ = writeln!(out, "  {}", rule.join("  "));
        }
    }
    let ignored: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r.status, Status::Ignored(_)))
        .collect();
    if !ignored.is_empty() {
        let _ = writeln!(out, "\nignored trials (not run, so not passed):");
        for record in ignored {
            if let Status::Ignored(reason) = &record.status {
                let _ = writeln!(out, "  {}: {reason}", record.name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, status: Status) -> Record {
        Record {
            name: name.to_string(),
            kind: "quantization".to_string(),
            pair: "engine-cpu~cpp".to_string(),
            status,
            verdict: None,
            seconds: 0.0,
        }
    }

    #[test]
    fn counts_by_kind_and_pair_and_lists_ignore_reasons() {
        let text = render(&[
            record("quantization/a::engine-cpu~cpp", Status::Passed),
            record(
                "quantization/b::engine-cpu~cpp",
                Status::Ignored("no cpp".into()),
            ),
        ]);
        assert!(
            text.contains("quantization  engine-cpu~cpp  1       0       0      1"),
            "{text}"
        );
        assert!(
            text.contains("quantization/b::engine-cpu~cpp: no cpp"),
            "{text}"
        );
    }
}
