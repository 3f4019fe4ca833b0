//! Where results go: one `## <title>` section of BENCHMARKS.md (replaced,
//! other sections kept) and one key of `bench/results.json` (merged).

use std::{fmt::Write as _, path::Path, time::Duration};

use serde_json::{Value, json};

/// How big a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
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

    /// Picks the size for this mode.
    pub fn pick<T>(self, tiny: T, quick: T, full: T) -> T {
        match self {
            Mode::Tiny => tiny,
            Mode::Quick => quick,
            Mode::Full => full,
        }
    }
}

/// A goal of issue 11 and whether this run met it.
pub struct Goal {
    pub what: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
    /// Why it is missed (what limits it); empty when met.
    pub limit: String,
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

    pub fn goal(&mut self, what: &str, target: &str, measured: String, met: bool, limit: &str) {
        self.goals.push(Goal {
            what: what.to_owned(),
            target: target.to_owned(),
            measured,
            met,
            limit: if met { String::new() } else { limit.to_owned() },
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
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} |",
                    g.what,
                    g.target,
                    g.measured,
                    if g.met { "yes" } else { "**no**" },
                    g.limit
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
                json!({"goal": g.what, "target": g.target, "measured": g.measured, "met": g.met, "limit": g.limit})
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

/// Replaces the `## <title>` section of `markdown_file` (up to the next
/// `## `), or appends it; every other section is kept as it is.
pub fn write_section(markdown_file: &Path, title: &str, section: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(markdown_file).unwrap_or_else(|_| "# Benchmarks\n".into());
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
    let text = std::fs::read_to_string(markdown_file).unwrap_or_else(|_| "# Benchmarks\n".into());
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

/// Sets `key` in the JSON object file `path` (other keys kept).
pub fn merge_json(path: &Path, key: &str, value: Value) -> anyhow::Result<()> {
    let mut all: Value = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| json!({}));
    if !all.is_object() {
        all = json!({});
    }
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
    fn numbers_read_well() {
        assert_eq!(fmt_num(1234567.0), "1,234,567");
        assert_eq!(fmt_num(123.4), "123");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(1.234), "1.23");
    }
}
