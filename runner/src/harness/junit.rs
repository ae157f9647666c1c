//! JUnit XML for CI dashboards: one `testsuite` per kind, one `testcase` per trial.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::record::{Record, Status};

/// The JUnit XML document of `records`.
pub fn render(records: &[Record], total_seconds: f64) -> String {
    let mut suites: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for record in records {
        suites.entry(&record.kind).or_default().push(record);
    }
    let count = |list: &[&Record], pick: fn(&Status) -> bool| {
        list.iter().filter(|r| pick(&r.status)).count()
    };
    let failed = |s: &Status| matches!(s, Status::Failed(_));
    let skipped = |s: &Status| matches!(s, Status::Ignored(_));
    let all: Vec<&Record> = records.iter().collect();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{total_seconds:.3}\">",
        all.len(),
        count(&all, failed),
        count(&all, skipped)
    );
    for (kind, list) in &suites {
        let time: f64 = list.iter().map(|r| r.seconds).sum();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{time:.3}\">",
            escape(kind),
            list.len(),
            count(list, failed),
            count(list, skipped)
        );
        for record in list {
            let _ = write!(
                xml,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
                escape(&record.name),
                escape(kind),
                record.seconds
            );
            match &record.status {
                Status::Passed => xml.push_str("/>\n"),
                Status::ExpectedFailure(reason) => {
                    let _ = write!(
                        xml,
                        ">\n      <system-out>expected failure: {}</system-out>\n    </testcase>\n",
                        escape(reason)
                    );
                }
                Status::Failed(message) => {
                    let first = message.lines().next().unwrap_or("failed");
                    let _ = write!(
                        xml,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                        escape(first),
                        escape(message)
                    );
                }
                Status::Ignored(reason) => {
                    let _ = write!(
                        xml,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                        escape(reason)
                    );
                }
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {
                let _ = write!(out, "&#xFFFD;");
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_skips_are_escaped_and_counted() {
        let records = [
            Record {
                name: "token_match/a::cpp~expected".into(),
                kind: "token_match".into(),
                pair: "cpp~expected".into(),
                status: Status::Failed("ids <differ> & \"more\"".into()),
                verdict: None,
                seconds: 0.5,
            },
            Record {
                name: "token_match/a::engine-cpu~cpp".into(),
                kind: "token_match".into(),
                pair: "engine-cpu~cpp".into(),
                status: Status::Ignored("no tokenizer".into()),
                verdict: None,
                seconds: 0.0,
            },
        ];
        let xml = render(&records, 1.0);
        assert!(
            xml.contains("tests=\"2\" failures=\"1\" skipped=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("ids &lt;differ&gt; &amp; &quot;more&quot;"),
            "{xml}"
        );
        assert!(xml.contains("<skipped message=\"no tokenizer\"/>"), "{xml}");
    }
}
