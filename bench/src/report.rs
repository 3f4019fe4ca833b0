//! Where results go: one `## <title>` section of BENCHMARKS.md (replaced,
//! other sections kept) and one key of `bench/results.json` (merged).

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context as _;
use serde_json::{Value, json};

/// How big a run is (ordered: a larger mode measures at a larger scale).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Mode {
    /// Minimal sizes: the smoke test (proves every section still runs).
    Tiny,
    /// `SLUICE_BENCH_QUICK=1`: the whole `make bench` in a few minutes.
    Quick,
    /// Every size and repetition the issue asks for.
    Full,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Tiny => "tiny",
            Mode::Quick => "quick",
            Mode::Full => "full",
        }
    }

    /// The mode named `name` (as [`Mode::name`] writes it).
    pub fn from_name(name: &str) -> Option<Self> {
        [Mode::Tiny, Mode::Quick, Mode::Full]
            .into_iter()
            .find(|m| m.name() == name)
    }

    /// Picks the size for this mode.
    pub fn pick<T>(self, tiny: T, quick: T, full: T) -> T {
        match self {
            Mode::Tiny => tiny,
            Mode::Quick => quick,
            Mode::Full => full,
        }
    }
}

/// How a goal's figure must compare with its threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    AtMost(f64),
    Below(f64),
    AtLeast(f64),
}

impl Bound {
    /// Whether `value` meets the bound; never for NaN or ±∞.
    pub fn holds(self, value: f64) -> bool {
        value.is_finite()
            && match self {
                Bound::AtMost(t) => value <= t,
                Bound::Below(t) => value < t,
                Bound::AtLeast(t) => value >= t,
            }
    }

    fn op(self) -> (&'static str, f64) {
        match self {
            Bound::AtMost(t) => ("<=", t),
            Bound::Below(t) => ("<", t),
            Bound::AtLeast(t) => (">=", t),
        }
    }

    /// The bound as stored in `results.json` (`op`, `threshold`).
    pub fn from_json(op: &str, threshold: f64) -> Option<Self> {
        match op {
            "<=" => Some(Bound::AtMost(threshold)),
            "<" => Some(Bound::Below(threshold)),
            ">=" => Some(Bound::AtLeast(threshold)),
            _ => None,
        }
    }
}

/// A goal and the figure this run measured for it. Whether it is met is
/// always computed from the figure ([`Goal::met`]), never stored.
pub struct Goal {
    pub what: String,
    pub target: String,
    pub measured: String,
    /// The figure compared with the bound (NaN when it could not be
    /// measured: the goal is then missed).
    pub value: f64,
    pub bound: Bound,
    /// The smallest mode whose sizes the goal names: a smaller run never
    /// meets it, whatever it measured.
    pub scale: Mode,
    /// What limits it, shown when it is missed.
    pub limit: String,
}

impl Goal {
    /// Met by a run of `mode`: the figure is finite, meets the bound, and
    /// was measured at the scale the goal names.
    pub fn met(&self, mode: Mode) -> bool {
        mode >= self.scale && self.bound.holds(self.value)
    }
}

/// One section's results.
pub struct Section {
    /// The `## ` heading (without the hashes).
    pub title: &'static str,
    /// Markdown body: tables and notes, written by the section.
    pub body: String,
    pub goals: Vec<Goal>,
    pub json: Value,
    /// How to reproduce it, when not `scripts/bench-datapath.sh <name>`
    /// (which needs root and builds `bench/src/main.rs`).
    pub command: Option<String>,
}

impl Section {
    pub fn new(title: &'static str) -> Self {
        Self {
            title,
            body: String::new(),
            goals: Vec::new(),
            json: json!({}),
            command: None,
        }
    }

    /// Adds a goal met when `value` meets `bound` in a full-mode run.
    pub fn goal(
        &mut self,
        what: &str,
        target: &str,
        measured: String,
        value: f64,
        bound: Bound,
        limit: &str,
    ) {
        self.goals.push(Goal {
            what: what.to_owned(),
            target: target.to_owned(),
            measured,
            value,
            bound,
            scale: Mode::Full,
            limit: limit.to_owned(),
        });
    }

    /// The whole section as Markdown: body, goals, how to reproduce, machine.
    pub fn markdown(
        &self,
        mode: Mode,
        subcommand: &str,
        elapsed: Duration,
        machine: &Machine,
    ) -> String {
        let mut md = format!("## {}\n\n{}", self.title, self.body.trim_end());
        if !self.goals.is_empty() {
            md.push_str("\n\n| goal | target | measured | met | what limits it |\n| --- | --- | --- | --- | --- |\n");
            for g in &self.goals {
                let met = g.met(mode);
                let limit = match (met, mode >= g.scale) {
                    (true, _) => String::new(),
                    (false, false) => format!(
                        "a {} run cannot meet a goal of {} scale",
                        mode.name(),
                        g.scale.name()
                    ),
                    (false, true) => g.limit.clone(),
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} |",
                    g.what,
                    g.target,
                    g.measured,
                    if met { "yes" } else { "**no**" },
                    limit
                );
            }
        }
        let quick = if mode == Mode::Quick {
            "SLUICE_BENCH_QUICK=1 "
        } else {
            ""
        };
        let how = match &self.command {
            Some(command) => format!("`{command}` (release build"),
            None => format!(
                "`{quick}scripts/bench-datapath.sh {subcommand}` (root; release build of \
                 `bench/src/main.rs`"
            ),
        };
        let _ = write!(
            md,
            "\n\nReproduce: {how}, mode {mode}, took {secs:.0} s). Machine: {cpus} CPU(s), {model}, \
             kernel {kernel}; load average {load_before} before, {load_after} after (a shared, \
             busy machine: compare figures within a section, not across runs). {date}.\n",
            mode = mode.name(),
            secs = elapsed.as_secs_f64(),
            cpus = machine.cpus,
            model = machine.cpu_model,
            kernel = machine.kernel,
            load_before = machine.load_before,
            load_after = load_average(),
            date = machine.date,
        );
        md
    }

    pub fn json_with_meta(&self, mode: Mode, elapsed: Duration, machine: &Machine) -> Value {
        let goals: Vec<Value> = self
            .goals
            .iter()
            .map(|g| {
                let (op, threshold) = g.bound.op();
                // serde_json writes NaN and ±∞ as null: a missing figure.
                json!({"goal": g.what, "target": g.target, "measured": g.measured,
                       "value": g.value, "op": op, "threshold": threshold,
                       "scale": g.scale.name(), "limit": g.limit})
            })
            .collect();
        json!({
            "title": self.title,
            "mode": mode.name(),
            "elapsed_s": elapsed.as_secs_f64(),
            "machine": {
                "cpus": machine.cpus,
                "cpu_model": machine.cpu_model,
                "kernel": machine.kernel,
                "load_before": machine.load_before,
                "load_after": load_average(),
                "date": machine.date,
            },
            "results": self.json,
            "goals": goals,
        })
    }
}

/// The machine a run happened on.
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub load_before: String,
    pub date: String,
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
            .map_or_else(|| "unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
        let cpus = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Self {
            cpus,
            cpu_model,
            kernel,
            load_before: load_average(),
            date,
        }
    }
}

/// The 1-minute load average.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// The text of `markdown_file`, or a fresh heading when it does not exist
/// yet (any other error is one: a section is never written over an
/// unread file).
fn read_markdown(markdown_file: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(markdown_file) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok("# Benchmarks\n".into()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", markdown_file.display())),
    }
}

/// Replaces the `## <title>` section of `markdown_file` (up to the next
/// `## `), or appends it; every other section is kept as it is.
pub fn write_section(markdown_file: &Path, title: &str, section: &str) -> anyhow::Result<()> {
    let text = read_markdown(markdown_file)?;
    let heading = format!("## {title}\n");
    let mut out = String::new();
    let mut replaced = false;
    let mut skipping = false;
    for line in text.split_inclusive('\n') {
        if line == heading || line.trim_end() == heading.trim_end() {
            skipping = true;
            replaced = true;
            out.push_str(section.trim_end());
            out.push_str("\n\n");
            continue;
        }
        if skipping && line.starts_with("## ") {
            skipping = false;
        }
        if !skipping {
            out.push_str(line);
        }
    }
    if !replaced {
        out = format!("{}\n\n{}\n", out.trim_end(), section.trim_end());
    }
    std::fs::write(markdown_file, format!("{}\n", out.trim_end()))?;
    Ok(())
}

/// Like [`write_section`], but a section that is not there yet goes
/// before the first `## ` section instead of last.
pub fn write_section_first(markdown_file: &Path, title: &str, section: &str) -> anyhow::Result<()> {
    let text = read_markdown(markdown_file)?;
    if text.lines().any(|l| l.trim_end() == format!("## {title}")) {
        return write_section(markdown_file, title, section);
    }
    let out = match text.find("\n## ") {
        Some(at) => format!(
            "{}\n\n{}\n\n{}",
            text[..at].trim_end(),
            section.trim_end(),
            &text[at + 1..]
        ),
        None => format!("{}\n\n{}\n", text.trim_end(), section.trim_end()),
    };
    std::fs::write(markdown_file, format!("{}\n", out.trim_end()))?;
    Ok(())
}

/// Reads the JSON object file `path`: `{}` when there is none yet, an
/// error when it cannot be read or is not a JSON object (nothing in it is
/// thrown away).
pub fn read_results(path: &Path) -> anyhow::Result<Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(json!({})),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let all: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", path.display()))?;
    anyhow::ensure!(all.is_object(), "{} is not a JSON object", path.display());
    Ok(all)
}

/// Fails when a run of `mode` would replace `key`'s results from a larger
/// mode: a smaller run measures less and must not overwrite them.
pub fn check_may_replace(results: &Value, key: &str, mode: Mode) -> anyhow::Result<()> {
    let Some(recorded) = results[key]["mode"].as_str() else {
        return Ok(());
    };
    let recorded_mode = Mode::from_name(recorded)
        .with_context(|| format!("results of {key} have an unknown mode {recorded:?}"))?;
    anyhow::ensure!(
        mode >= recorded_mode,
        "a {} run would overwrite the {recorded}-mode results of {key} in bench/results.json \
         and BENCHMARKS.md; run it without --write, or in {recorded} mode",
        mode.name()
    );
    Ok(())
}

/// Sets `key` in the JSON object file `path` (other keys kept).
pub fn merge_json(path: &Path, key: &str, value: Value) -> anyhow::Result<()> {
    let mut all = read_results(path)?;
    all[key] = value;
    std::fs::write(path, serde_json::to_string_pretty(&all)? + "\n")?;
    Ok(())
}

/// `1234.5` → "1,234" style for tables; small values keep decimals.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v.abs() >= 1000.0 {
        let s = format!("{:.0}", v);
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{sign}{grouped}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A count with thousands separators: `10000` → "10,000".
pub fn fmt_count(n: usize) -> String {
    if n >= 1000 {
        fmt_num(n as f64)
    } else {
        n.to_string()
    }
}

pub fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "n/a".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_is_replaced_and_the_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("B.md");
        std::fs::write(&file, "# Benchmarks\n\n## A\n\nold a\n\n## B\n\nb\n").unwrap();
        write_section(&file, "A", "## A\n\nnew a\n").unwrap();
        write_section(&file, "C", "## C\n\nc\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "# Benchmarks\n\n## A\n\nnew a\n\n## B\n\nb\n\n## C\n\nc\n"
        );
        write_section_first(&file, "S", "## S\n\ns\n").unwrap();
        write_section_first(&file, "S", "## S\n\ns2\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "# Benchmarks\n\n## S\n\ns2\n\n## A\n\nnew a\n\n## B\n\nb\n\n## C\n\nc\n"
        );
    }

    #[test]
    fn a_goal_is_met_only_at_its_scale_with_a_finite_figure() {
        let mut section = Section::new("S");
        section.goal("g", "≤ 1.1×", "0.9×".into(), 0.9, Bound::AtMost(1.1), "why");
        section.goal(
            "nan",
            "≤ 1.1×",
            "n/a".into(),
            f64::NAN,
            Bound::AtMost(1.1),
            "why",
        );
        let [g, nan] = &section.goals[..] else {
            unreachable!()
        };
        assert!(g.met(Mode::Full));
        assert!(!g.met(Mode::Quick) && !g.met(Mode::Tiny));
        assert!(!nan.met(Mode::Full));
        let md = section.markdown(Mode::Tiny, "s", Duration::ZERO, &Machine::describe());
        assert!(md.contains(
            "| g | ≤ 1.1× | 0.9× | **no** | a tiny run cannot meet a goal of full scale |"
        ));
        let json = section.json_with_meta(Mode::Full, Duration::ZERO, &Machine::describe());
        assert!(json["goals"][0].get("met").is_none(), "met is never stored");
        assert_eq!(json["goals"][0]["value"], 0.9);
        assert!(json["goals"][1]["value"].is_null());
    }

    #[test]
    fn results_that_cannot_be_read_are_kept_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("results.json");
        merge_json(&file, "a", json!({"mode": "full"})).unwrap();
        merge_json(&file, "b", json!(1)).unwrap();
        assert_eq!(
            read_results(&file).unwrap(),
            json!({"a": {"mode": "full"}, "b": 1})
        );
        std::fs::write(&file, "{ truncated").unwrap();
        assert!(merge_json(&file, "a", json!(2)).is_err());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "{ truncated");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(1234567.0), "1,234,567");
        assert_eq!(fmt_num(123.4), "123");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(1.234), "1.23");
    }
}
