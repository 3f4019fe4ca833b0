//! The "Goals not met" summary at the top of BENCHMARKS.md, generated from
//! what the sections recorded: the goals in `bench/results.json` (every
//! `sluice-bench` section) and the budget columns of the sections written
//! by other scripts (`| measure | value | budget |` tables: analyzer,
//! policy scale). Nothing in it is typed by hand; rerun after any section.

use std::{fmt::Write as _, path::Path};

use serde_json::Value;

pub const TITLE: &str = "Goals not met";

/// One goal as found in the results.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub section: String,
    pub goal: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
    pub limit: String,
    /// Mode and date of the run that measured it.
    pub run: String,
}

/// Section titles of the `sluice-bench` keys, for results written before
/// the title was stored.
fn title_of(key: &str, entry: &Value) -> String {
    if let Some(t) = entry["title"].as_str() {
        return t.to_owned();
    }
    match key {
        "packet" => "Per-packet cost (BPF_PROG_TEST_RUN)",
        "traffic" => "Pod-to-pod throughput and latency",
        "connect" => "Service connection setup",
        "cni" => "CNI ADD and DEL latency",
        "agent" => "Agent at scale",
        "callgrind" => "Userspace hot paths (callgrind)",
        other => other,
    }
    .to_owned()
}

/// Goals recorded in `results.json`.
pub fn from_results(results: &Value) -> Vec<Found> {
    let Some(all) = results.as_object() else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (key, entry) in all {
        let run = format!(
            "{} mode, {}",
            entry["mode"].as_str().unwrap_or("?"),
            entry["machine"]["date"].as_str().unwrap_or("?")
        );
        for g in entry["goals"].as_array().into_iter().flatten() {
            found.push(Found {
                section: title_of(key, entry),
                goal: g["goal"].as_str().unwrap_or_default().to_owned(),
                target: g["target"].as_str().unwrap_or_default().to_owned(),
                measured: g["measured"].as_str().unwrap_or_default().to_owned(),
                met: g["met"].as_bool().unwrap_or(false),
                limit: g["limit"].as_str().unwrap_or_default().to_owned(),
                run: run.clone(),
            });
        }
    }
    found
}

fn first_number(text: &str) -> Option<f64> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let digits: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ',')
        .filter(|c| *c != ',')
        .collect();
    digits.parse().ok()
}

/// Budget rows (`| measure | value | budget |` tables whose budget reads
/// `< N unit`) of the sections `skip` does not name.
pub fn from_budget_tables(markdown: &str, skip: &[String]) -> Vec<Found> {
    let mut found = Vec::new();
    let mut section = String::new();
    let mut in_budget_table = false;
    let mut run = String::new();
    for line in markdown.lines() {
        if let Some(title) = line.strip_prefix("## ") {
            section = title.trim().to_owned();
            in_budget_table = false;
            run = markdown
                .split(&format!("## {section}\n"))
                .nth(1)
                .and_then(|rest| rest.split("\n## ").next())
                .and_then(|body| body.lines().find(|l| l.starts_with("Measured on")))
                .and_then(|l| l.split(", ").nth(1))
                .map(|d| {
                    d.trim_end_matches('.')
                        .split('.')
                        .next()
                        .unwrap_or(d)
                        .to_owned()
                })
                .unwrap_or_default();
            continue;
        }
        if skip.contains(&section) || section == TITLE {
            continue;
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if !line.trim_start().starts_with('|') {
            in_budget_table = false;
            continue;
        }
        if cells == ["measure", "value", "budget"] {
            in_budget_table = true;
            continue;
        }
        if !in_budget_table || cells.len() != 3 {
            continue;
        }
        let (measure, value, budget) = (cells[0], cells[1], cells[2]);
        let Some(limit) = budget.strip_prefix('<').map(str::trim) else {
            continue;
        };
        let (Some(v), Some(l)) = (first_number(value), first_number(limit)) else {
            continue;
        };
        found.push(Found {
            section: section.clone(),
            goal: measure.to_owned(),
            target: budget.to_owned(),
            measured: value.to_owned(),
            met: v < l,
            limit: if v < l {
                String::new()
            } else {
                "not analysed in its section".to_owned()
            },
            run: if run.is_empty() {
                "see its section".to_owned()
            } else {
                format!("{run} (its script)")
            },
        });
    }
    found
}

/// The whole section, from the repository's results.
pub fn section(root: &Path) -> anyhow::Result<String> {
    let results: Value = std::fs::read_to_string(root.join("bench/results.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let markdown = std::fs::read_to_string(root.join("BENCHMARKS.md")).unwrap_or_default();
    let mut goals = from_results(&results);
    let covered: Vec<String> = goals.iter().map(|g| g.section.clone()).collect();
    goals.extend(from_budget_tables(&markdown, &covered));
    Ok(render(&goals))
}

pub fn render(goals: &[Found]) -> String {
    let missed: Vec<&Found> = goals.iter().filter(|g| !g.met).collect();
    let mut md = format!(
        "## {TITLE}\n\nGenerated by `sluice-bench goals` (after every section `make bench` writes) \
         from the goals in `bench/results.json` and the budget columns of the sections below; \
         each goal's section has its measurement and method. {} of {} goals met.\n\n",
        goals.len() - missed.len(),
        goals.len()
    );
    if missed.is_empty() {
        md.push_str("Every goal is met.\n");
    } else {
        md.push_str(
            "| section | goal | target | measured | what limits it | run |\n\
             | --- | --- | --- | --- | --- | --- |\n",
        );
        for g in &missed {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                g.section, g.goal, g.target, g.measured, g.limit, g.run
            );
        }
    }
    let met: Vec<String> = goals
        .iter()
        .filter(|g| g.met)
        .map(|g| format!("{} ({}: {})", g.goal, g.section, g.measured))
        .collect();
    if !met.is_empty() {
        let _ = writeln!(md, "\nMet: {}.", met.join("; "));
    }
    md
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn missed_goals_come_from_results_and_budget_tables() {
        let results = json!({"cni": {"mode": "full", "machine": {"date": "d"}, "goals": [
            {"goal": "g1", "target": "≤ 0.5×", "measured": "0.64×", "met": false, "limit": "why"},
            {"goal": "g2", "target": "t", "measured": "m", "met": true, "limit": ""}]}});
        let markdown = "# B\n\n## Analyzer\n\n| measure | value | budget |\n| --- | --- | --- |\n\
                        | parse | 140.6 ms | |\n| total | 1,387.8 ms | < 1000 ms |\n\
                        | rss | 73.5 MiB | < 200 MiB |\n\nMeasured on 2 CPU(s), 2026-11-26. x\n";
        let mut goals = from_results(&results);
        goals.extend(from_budget_tables(markdown, &[]));
        assert_eq!(goals.len(), 4);
        assert_eq!(goals[0].section, "CNI ADD and DEL latency");
        assert!(!goals[2].met, "1,387.8 ms is over 1000 ms");
        assert!(goals[3].met);
        assert_eq!(goals[2].run, "2026-11-26 (its script)");
        let md = render(&goals);
        assert!(md.contains("| CNI ADD and DEL latency | g1 | ≤ 0.5× | 0.64× | why |"));
        assert!(md.contains("| Analyzer | total |"));
        assert!(md.contains("2 of 4 goals met"));
    }
}
