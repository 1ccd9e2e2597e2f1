//! Medians over repeated runs: reads the JSON lines of `--json` runs and
//! prints one Markdown table row per scenario and parameter set.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::error::{Error, Result};

/// The figures a row shows, in order: (JSON field, column title, decimals).
const COLUMNS: &[(&str, &str, usize)] = &[
    ("delivered_per_sec", "delivered/s", 0),
    ("sent_per_sec", "sent/s", 0),
    ("p50_ms", "p50 ms", 2),
    ("p90_ms", "p90 ms", 2),
    ("p99_ms", "p99 ms", 2),
    ("p999_ms", "p99.9 ms", 2),
    ("max_ms", "max ms", 1),
    ("baseline_delivered_per_sec", "relay delivered/s", 0),
    ("baseline_p50_ms", "relay p50 ms", 2),
    ("baseline_p99_ms", "relay p99 ms", 2),
    ("baseline_fraction", "of relay", 3),
    ("server_cpu_us_per_delivery", "server CPU µs/msg", 1),
    ("rss_per_connection_bytes", "RSS/conn B", 0),
];

/// Parameters that differ between repetitions of one configuration and so
/// must not split the rows.
const NOT_KEYS: &[&str] = &["loadavg_1m"];

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

/// Groups the runs in `text` (one JSON report per line; other lines are
/// skipped) and returns a Markdown table of medians, with the sums of lost,
/// duplicated and out-of-order messages and the range of load averages.
///
/// # Errors
/// [`Error::Options`] when no line is a report.
pub fn summarize(text: &str) -> Result<String> {
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(scenario) = value.get("scenario").and_then(Value::as_str) else {
            continue;
        };
        let mut key = scenario.to_owned();
        if let Some(params) = value.get("params").and_then(Value::as_object) {
            for (name, param) in params {
                if !NOT_KEYS.contains(&name.as_str()) {
                    let _ = write!(key, " {name}={param}");
                }
            }
        }
        groups.entry(key).or_default().push(value);
    }
    if groups.is_empty() {
        return Err(Error::Options("no JSON report lines found".into()));
    }
    let shown: Vec<&(&str, &str, usize)> = COLUMNS
        .iter()
        .filter(|(field, _, _)| {
            groups.values().flatten().any(|run| {
                run.get(*field)
                    .is_some_and(|v| v.as_f64().unwrap_or(0.0) != 0.0)
            })
        })
        .collect();
    let mut out = String::from("| configuration | runs |");
    for (_, title, _) in &shown {
        let _ = write!(out, " {title} |");
    }
    out.push_str(" lost/dup/ooo | load avg |\n|---|---|");
    for _ in &shown {
        out.push_str("---|");
    }
    out.push_str("---|---|\n");
    for (key, runs) in &groups {
        let _ = write!(out, "| {key} | {} |", runs.len());
        for (field, _, decimals) in &shown {
            let mut values: Vec<f64> = runs
                .iter()
                .filter_map(|run| run.get(*field).and_then(Value::as_f64))
                .collect();
            match median(&mut values) {
                Some(value) => {
                    let _ = write!(out, " {value:.decimals$} |");
                }
                None => out.push_str(" – |"),
            }
        }
        let sum = |field: &str| -> u64 {
            runs.iter()
                .filter_map(|run| run.get(field).and_then(Value::as_u64))
                .sum()
        };
        let loads: Vec<f64> = runs
            .iter()
            .filter_map(|run| run["params"].get("loadavg_1m").and_then(Value::as_f64))
            .collect();
        let load = match (
            loads.iter().copied().reduce(f64::min),
            loads.iter().copied().reduce(f64::max),
        ) {
            (Some(low), Some(high)) => format!("{low:.1}–{high:.1}"),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            out,
            " {}/{}/{} | {load} |",
            sum("lost"),
            sum("duplicated"),
            sum("out_of_order")
        );
    }
    Ok(out)
}

/// The 1-minute load average, to record how busy the machine was.
#[must_use]
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_group_by_scenario_and_parameters() {
        let text = r#"
not json
{"scenario":"pairs","params":{"pairs":10,"window":1,"loadavg_1m":1.5},"delivered_per_sec":100.0,"p99_ms":1.0,"lost":0,"duplicated":0,"out_of_order":0}
{"scenario":"pairs","params":{"pairs":10,"window":1,"loadavg_1m":2.5},"delivered_per_sec":300.0,"p99_ms":3.0,"lost":0,"duplicated":1,"out_of_order":0}
{"scenario":"pairs","params":{"pairs":10,"window":1,"loadavg_1m":0.5},"delivered_per_sec":200.0,"p99_ms":2.0,"lost":0,"duplicated":0,"out_of_order":0}
{"scenario":"pairs","params":{"pairs":10,"window":8},"delivered_per_sec":50.0,"p99_ms":9.0,"lost":2,"duplicated":0,"out_of_order":0}
"#;
        let table = summarize(text).unwrap();
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 4, "{table}");
        assert!(
            rows[2].starts_with("| pairs pairs=10 window=1 | 3 | 200 |"),
            "{table}"
        );
        assert!(rows[2].contains("| 2.00 |"), "{table}");
        assert!(rows[2].contains("| 0/1/0 | 0.5–2.5 |"), "{table}");
        assert!(
            rows[3].contains("| 1 | 50 |") && rows[3].contains("2/0/0"),
            "{table}"
        );
        assert!(summarize("nothing here").is_err());
    }

    #[test]
    fn median_of_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
