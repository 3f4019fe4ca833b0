//! The "Goals not met" summary at the top of BENCHMARKS.md, generated from
//! what the sections recorded: the goals in `bench/results.json` (every
//! `sluice-bench` section) and the budget columns of the sections written
//! by other scripts (`| measure | value | budget |` tables: analyzer,
//! policy scale). Nothing in it is typed by hand; rerun after any section.
//!
//! It cannot pass by accident: a missing or unreadable results file is an
//! error; each goal is recomputed from its recorded figure, bound and scale
//! and the mode of the run that measured it (a stored "met" is never read);
//! a missing or non-finite figure, a section with no results, or a run
//! smaller than the goal's scale makes the goal missed.

use std::{fmt::Write as _, path::Path};

use anyhow::Context as _;
use serde_json::Value;

use crate::report::{Bound, Mode};

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
        "relay" => "Relay at scale",
        other => other,
    }
    .to_owned()
}

/// Sections of the "Goals not met" summary that other scripts write to
/// BENCHMARKS.md (budget tables) and that must be there.
pub const SCRIPT_SECTIONS: [&str; 2] = ["Analyzer", "Policy scale"];

/// A goal that could not be read counts as missed, with why.
fn missed(section: String, goal: String, why: &str, run: String) -> Found {
    Found {
        section,
        goal,
        target: String::new(),
        measured: "n/a".into(),
        met: false,
        limit: why.to_owned(),
        run,
    }
}

/// Goals recorded in `results.json`, each recomputed from its recorded
/// figure and bound and the mode of the run that measured it (a stored
/// `met` is never read): a missing or non-finite figure, an unknown bound,
/// or a run smaller than the goal's scale makes it missed. A section of
/// `expected` with no results at all is one missed goal.
pub fn from_results(results: &Value, expected: &[&str]) -> Vec<Found> {
    let empty = serde_json::Map::new();
    let all = results.as_object().unwrap_or(&empty);
    let mut found = Vec::new();
    for key in expected.iter().filter(|k| !all.contains_key(**k)) {
        found.push(missed(
            title_of(key, &Value::Null),
            "every goal of the section".into(),
            "the section has no results in bench/results.json: run it",
            "none".into(),
        ));
    }
    for (key, entry) in all {
        let mode = entry["mode"].as_str().and_then(Mode::from_name);
        let run = format!(
            "{} mode, {}",
            entry["mode"].as_str().unwrap_or("?"),
            entry["machine"]["date"].as_str().unwrap_or("?")
        );
        let section = title_of(key, entry);
        for g in entry["goals"].as_array().into_iter().flatten() {
            let goal = g["goal"].as_str().unwrap_or("(unnamed goal)").to_owned();
            let bound = g["op"]
                .as_str()
                .zip(g["threshold"].as_f64())
                .and_then(|(op, t)| Bound::from_json(op, t));
            let scale = g["scale"].as_str().and_then(Mode::from_name);
            let (Some(bound), Some(scale), Some(mode)) = (bound, scale, mode) else {
                found.push(Found {
                    target: g["target"].as_str().unwrap_or_default().to_owned(),
                    measured: g["measured"].as_str().unwrap_or("n/a").to_owned(),
                    ..missed(
                        section.clone(),
                        goal,
                        "no figure, bound, scale or run mode recorded (written by an older \
                         sluice-bench): rerun the section",
                        run.clone(),
                    )
                });
                continue;
            };
            let value = g["value"].as_f64().unwrap_or(f64::NAN);
            let met = mode >= scale && bound.holds(value);
            let limit = if met {
                String::new()
            } else if mode < scale {
                format!(
                    "measured by a {} run; the goal counts at {} scale only",
                    mode.name(),
                    scale.name()
                )
            } else if !value.is_finite() {
                match g["limit"].as_str().unwrap_or_default() {
                    "" => "no finite figure was measured".to_owned(),
                    why => format!("no finite figure was measured: {why}"),
                }
            } else {
                g["limit"].as_str().unwrap_or_default().to_owned()
            };
            found.push(Found {
                section: section.clone(),
                goal,
                target: g["target"].as_str().unwrap_or_default().to_owned(),
                measured: g["measured"].as_str().unwrap_or_default().to_owned(),
                met,
                limit,
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
        let Some(l) = first_number(limit) else {
            continue;
        };
        // A budget with no figure next to it is missed, not skipped.
        let v = first_number(value).unwrap_or(f64::NAN);
        found.push(Found {
            section: section.clone(),
            goal: measure.to_owned(),
            target: budget.to_owned(),
            measured: value.to_owned(),
            met: Bound::Below(l).holds(v),
            limit: if Bound::Below(l).holds(v) {
                String::new()
            } else if v.is_nan() {
                "no figure measured".to_owned()
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

/// The whole section, from the repository's results. A missing,
/// unreadable or malformed `bench/results.json` or BENCHMARKS.md is an
/// error, never an empty list of goals.
pub fn section(root: &Path) -> anyhow::Result<String> {
    let results_path = root.join("bench/results.json");
    let text = std::fs::read_to_string(&results_path).with_context(|| {
        format!(
            "cannot read {} (the goals come from it: run `make bench`)",
            results_path.display()
        )
    })?;
    let results: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", results_path.display()))?;
    anyhow::ensure!(
        results.is_object(),
        "{} is not a JSON object",
        results_path.display()
    );
    let markdown_path = root.join("BENCHMARKS.md");
    let markdown = std::fs::read_to_string(&markdown_path)
        .with_context(|| format!("cannot read {}", markdown_path.display()))?;
    let mut goals = from_results(&results, &crate::SECTIONS);
    let covered: Vec<String> = goals.iter().map(|g| g.section.clone()).collect();
    goals.extend(from_budget_tables(&markdown, &covered));
    for script in SCRIPT_SECTIONS {
        if !markdown
            .lines()
            .any(|l| l.trim_end() == format!("## {script}"))
        {
            goals.push(missed(
                script.to_owned(),
                "every budget of the section".into(),
                "the section is not in BENCHMARKS.md: run its script",
                "none".into(),
            ));
        }
    }
    render(&goals)
}

/// The summary's Markdown; an error when there is no goal at all (a
/// summary of nothing must not read as "every goal is met").
pub fn render(goals: &[Found]) -> anyhow::Result<String> {
    anyhow::ensure!(!goals.is_empty(), "no goals found in the results");
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
    Ok(md)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::report::check_may_replace;

    fn goal(value: Value, op: &str, threshold: f64) -> Value {
        json!({"goal": "g", "target": "t", "measured": "m", "value": value, "op": op,
               "threshold": threshold, "scale": "full", "limit": "why"})
    }

    fn entry(mode: &str, goals: Vec<Value>) -> Value {
        json!({"mode": mode, "machine": {"date": "d"}, "goals": goals})
    }

    #[test]
    fn missed_goals_come_from_results_and_budget_tables() {
        let results = json!({"cni": entry("full", vec![
            json!({"goal": "g1", "target": "≤ 0.5×", "measured": "0.64×", "value": 0.64,
                   "op": "<=", "threshold": 0.5, "scale": "full", "limit": "why"}),
            goal(json!(0.3), "<=", 0.5)])});
        let markdown = "# B\n\n## Analyzer\n\n| measure | value | budget |\n| --- | --- | --- |\n\
                        | parse | 140.6 ms | |\n| total | 1,387.8 ms | < 1000 ms |\n\
                        | rss | 73.5 MiB | < 200 MiB |\n\nMeasured on 2 CPU(s), 2026-11-26. x\n";
        let mut goals = from_results(&results, &["cni"]);
        goals.extend(from_budget_tables(markdown, &[]));
        assert_eq!(goals.len(), 4);
        assert_eq!(goals[0].section, "CNI ADD and DEL latency");
        assert!(!goals[0].met && goals[1].met);
        assert!(!goals[2].met, "1,387.8 ms is over 1000 ms");
        assert!(goals[3].met);
        assert_eq!(goals[2].run, "2026-11-26 (its script)");
        let md = render(&goals).unwrap();
        assert!(md.contains("| CNI ADD and DEL latency | g1 | ≤ 0.5× | 0.64× | why |"));
        assert!(md.contains("| Analyzer | total |"));
        assert!(md.contains("2 of 4 goals met"));
    }

    #[test]
    fn met_is_recomputed_from_the_figure_never_read_back() {
        // A stored `met: true` next to a figure over its bound is missed.
        let mut g = goal(json!(7.0), "<=", 4.0);
        g["met"] = json!(true);
        let found = from_results(&json!({"packet": entry("full", vec![g])}), &[]);
        assert!(!found[0].met);
        assert_eq!(found[0].limit, "why");
        // Each bound, at and around its threshold.
        let met = |value: f64, op: &str| {
            from_results(
                &json!({"packet": entry("full", vec![goal(json!(value), op, 1.0)])}),
                &[],
            )[0]
            .met
        };
        assert!(met(1.0, "<=") && !met(1.01, "<="));
        assert!(!met(1.0, "<") && met(0.99, "<"));
        assert!(met(1.0, ">=") && !met(0.99, ">="));
    }

    #[test]
    fn a_missing_or_non_finite_figure_is_missed() {
        for value in [json!(null), json!("1.0"), json!(f64::INFINITY)] {
            let found = from_results(
                &json!({"packet": entry("full", vec![goal(value.clone(), ">=", 0.0)])}),
                &[],
            );
            assert!(!found[0].met, "{value} must not meet a goal");
            assert!(
                found[0].limit.starts_with("no finite figure"),
                "{}",
                found[0].limit
            );
        }
        let mut no_value = goal(json!(1.0), "<=", 4.0);
        no_value.as_object_mut().unwrap().remove("value");
        let mut no_bound = goal(json!(1.0), "<=", 4.0);
        no_bound.as_object_mut().unwrap().remove("op");
        let old_style = json!({"goal": "g", "measured": "1×", "met": true});
        let found = from_results(
            &json!({"packet": entry("full", vec![no_value, no_bound, old_style])}),
            &[],
        );
        assert!(found.iter().all(|g| !g.met), "{found:?}");
        // In a budget table too: a row whose value has no figure is missed.
        let markdown = "## Analyzer\n\n| measure | value | budget |\n| --- | --- | --- |\n\
                        | total | n/a | < 1000 ms |\n";
        let rows = from_budget_tables(markdown, &[]);
        assert_eq!(rows.len(), 1);
        assert!(!rows[0].met);
    }

    #[test]
    fn a_tiny_run_never_meets_a_full_scale_goal_nor_replaces_full_results() {
        let results = json!({"connect": entry("tiny", vec![goal(json!(0.5), "<=", 1.1)])});
        let found = from_results(&results, &[]);
        assert!(!found[0].met);
        assert!(found[0].limit.contains("tiny run"), "{}", found[0].limit);
        let full = json!({"connect": entry("full", vec![goal(json!(0.5), "<=", 1.1)])});
        assert!(from_results(&full, &[])[0].met);
        // Writing: tiny or quick over full fails; full over anything, and
        // any mode over nothing, is fine.
        for mode in [Mode::Tiny, Mode::Quick] {
            let err = check_may_replace(&full, "connect", mode).unwrap_err();
            assert!(
                err.to_string()
                    .contains("would overwrite the full-mode results")
            );
        }
        check_may_replace(&full, "connect", Mode::Full).unwrap();
        check_may_replace(&results, "connect", Mode::Quick).unwrap();
        check_may_replace(&full, "packet", Mode::Tiny).unwrap();
    }

    #[test]
    fn a_missing_section_or_results_file_fails_loudly() {
        // A section with no results is a missed goal, not an absent one.
        let found = from_results(&json!({}), &["connect"]);
        assert_eq!(found.len(), 1);
        assert!(!found[0].met);
        assert!(render(&[]).is_err(), "no goals cannot read as all met");

        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("bench")).unwrap();
        std::fs::write(root.path().join("BENCHMARKS.md"), "# Benchmarks\n").unwrap();
        let err = section(root.path()).unwrap_err();
        assert!(format!("{err:#}").contains("results.json"), "{err:#}");
        std::fs::write(root.path().join("bench/results.json"), "{ not json").unwrap();
        assert!(section(root.path()).is_err());
        std::fs::write(root.path().join("bench/results.json"), "[]").unwrap();
        assert!(section(root.path()).is_err());
        // An empty but valid file: every section and script is missed.
        std::fs::write(root.path().join("bench/results.json"), "{}").unwrap();
        let md = section(root.path()).unwrap();
        let expected = crate::SECTIONS.len() + SCRIPT_SECTIONS.len();
        assert!(md.contains(&format!("0 of {expected} goals met")), "{md}");
        assert!(!md.contains("Every goal is met"));
    }
}
