//! Instruction counts of the userspace hot paths under
//! `valgrind --tool=callgrind`: each path of [`crate::hotpath`] runs in its
//! own process (`sluice-bench-hotpath`), once at a baseline size and once
//! at scale; only [`crate::hotpath::measured`] is counted
//! (`--collect-atstart=no --toggle-collect=...`). Instruction counts do not
//! depend on the machine's load, so these figures compare across runs.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

use anyhow::Context;
use serde_json::json;

use crate::{
    hotpath::PATHS,
    report::{Mode, Section, fmt_count, fmt_num, fmt_ratio},
};

/// The callgrind function filter: the measured region, by symbol name.
pub const TOGGLE: &str = "*hotpath*measured*";

/// The workload binary: `SLUICE_HOTPATH_BIN`, else next to this executable
/// (or one directory up, for test binaries in `deps/`).
pub fn workload_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SLUICE_HOTPATH_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("executable directory")?;
    [dir, dir.parent().unwrap_or(dir)]
        .iter()
        .map(|d| d.join("sluice-bench-hotpath"))
        .find(|p| p.is_file())
        .context(
            "no sluice-bench-hotpath next to this binary: build it \
             (cargo build --release -p sluice-bench) or set SLUICE_HOTPATH_BIN",
        )
}

/// One path at one size: instructions and what the workload printed.
#[derive(Clone, Debug)]
pub struct Count {
    pub path: &'static str,
    pub scale: usize,
    pub ir: u64,
    /// `key: value` lines of the workload.
    pub fields: Vec<(String, String)>,
    /// Inclusive share of the top `sluice_agent` functions (name, Ir).
    pub top: Vec<(String, u64)>,
}

impl Count {
    fn field(&self, key: &str) -> String {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map_or_else(String::new, |(_, v)| v.clone())
    }
}

/// The workload's `key: value` lines as a JSON object (numbers as numbers).
fn fields_json(count: &Count) -> serde_json::Value {
    count
        .fields
        .iter()
        .map(|(k, v)| {
            let value = v.parse::<f64>().map_or_else(|_| json!(v), |n| json!(n));
            (k.clone(), value)
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Runs `path` at `scale` under callgrind in `dir`.
fn count(bin: &Path, dir: &Path, path: &'static str, scale: usize) -> anyhow::Result<Count> {
    let out_file = dir.join(format!("callgrind.{path}.{scale}.out"));
    let output = Command::new("valgrind")
        .args([
            "-q",
            "--tool=callgrind",
            "--collect-atstart=no",
            &format!("--toggle-collect={TOGGLE}"),
            &format!("--callgrind-out-file={}", out_file.display()),
        ])
        .arg(bin)
        .args([path, "--scale", &scale.to_string()])
        .output()
        .context("run valgrind (scripts/setup.sh installs it)")?;
    anyhow::ensure!(
        output.status.success(),
        "{path} at {scale} under callgrind failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let fields: Vec<(String, String)> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect();
    let profile = std::fs::read_to_string(&out_file)
        .with_context(|| format!("read {}", out_file.display()))?;
    let ir = profile
        .lines()
        .find_map(|l| l.strip_prefix("summary: "))
        .and_then(|v| v.trim().parse().ok())
        .context("no `summary:` line in the callgrind output")?;
    anyhow::ensure!(
        ir > 0,
        "nothing collected: is `{TOGGLE}` still the measured function?"
    );
    Ok(Count {
        path,
        scale,
        ir,
        fields,
        top: top_agent_functions(&out_file, 4),
    })
}

/// The `n` `sluice_agent` functions with the most inclusive instructions
/// that are not just the path's entry point (`callgrind_annotate`).
fn top_agent_functions(profile: &Path, n: usize) -> Vec<(String, u64)> {
    let Ok(out) = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(profile)
        .output()
    else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut top = Vec::new();
    for line in text.lines() {
        // "111,593,903 (74.64%)  ???:sluice_agent::services::model::desired [/path]"
        let Some((ir, rest)) = line.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(ir) = ir.replace(',', "").parse::<u64>() else {
            continue;
        };
        let Some((_, function)) = rest.split_once(":sluice_agent::") else {
            continue;
        };
        let function = function
            .rsplit_once(" [")
            .map_or(function, |(f, _)| f)
            .trim();
        let name = format!("sluice_agent::{function}");
        // Skip wrappers: a function within 3 % of one already listed is
        // most likely the same work one call deeper.
        if !top
            .iter()
            .any(|(f, i): &(String, u64)| *f == name || ir as f64 >= 0.97 * *i as f64)
        {
            top.push((name, ir));
        }
        if top.len() == n {
            break;
        }
    }
    top
}

/// A ratio for the table: thousands grouped when it is large.
fn big_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{}×", fmt_num(r))
    } else {
        fmt_ratio(r)
    }
}

/// Wall time of `path` at `scale` run natively once (ms; noisy, for scale).
fn native_wall_ms(bin: &Path, path: &str, scale: usize) -> f64 {
    Command::new(bin)
        .args([path, "--scale", &scale.to_string()])
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find_map(|l| l.strip_prefix("wall_ms: ").map(str::to_owned))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Baseline and scale sizes of a path in a mode.
fn sizes(path: &str, mode: Mode) -> (usize, usize) {
    if path.starts_with("policy") {
        // Pods: one node's 100 pods alone vs the same node in a 10,000-pod cluster.
        mode.pick((50, 200), (100, 10_000), (100, 10_000))
    } else {
        mode.pick((1, 100), (1, 10_000), (1, 10_000))
    }
}

fn describe(path: &str) -> &'static str {
    match path {
        "policy-compile-cold" => {
            "a fresh `Engine` compiles node-0 (its pods local, every other pod in the ipcache), \
             then `diff` against empty maps"
        }
        "policy-edit" => {
            "after one compile, one policy in a namespace with local pods changes a port in the \
             store; `PolicyInputs::from_store` + `Engine::compile` + `diff`"
        }
        "service-sync-cold" => {
            "a fresh `ServiceModel::desired` over the store + a fresh `LbState::sync` (3 backends \
             per service)"
        }
        _ => {
            "after one sync, one EndpointSlice replaces one of its 3 backends; the same \
             `ServiceModel::desired` (unchanged Services come from its cache) + `LbState::sync`"
        }
    }
}

pub fn run(mode: Mode) -> anyhow::Result<Section> {
    let bin = workload_binary()?;
    let dir = tempfile::tempdir()?;
    let mut jobs: Vec<(&'static str, usize)> = Vec::new();
    for path in PATHS {
        let (base, scale) = sizes(path, mode);
        jobs.push((path, base));
        jobs.push((path, scale));
    }
    // Full mode runs everything twice to show the counts repeat.
    let reps = mode.pick(1, 1, 2);
    let queue: Mutex<Vec<(usize, &'static str, usize)>> = Mutex::new(
        (0..reps)
            .flat_map(|r| jobs.iter().map(move |&(p, s)| (r, p, s)))
            .rev()
            .collect(),
    );
    let results: Mutex<Vec<(usize, Count)>> = Mutex::new(Vec::new());
    // Two at a time: instruction counts do not care about contention.
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(2));
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (queue, results, bin, dir) = (&queue, &results, &bin, dir.path());
                scope.spawn(move || -> anyhow::Result<()> {
                    loop {
                        let Some((rep, path, scale)) = queue.lock().expect("queue").pop() else {
                            return Ok(());
                        };
                        let sub = dir.join(format!("w{w}r{rep}"));
                        std::fs::create_dir_all(&sub)?;
                        let c = count(bin, &sub, path, scale)?;
                        results.lock().expect("results").push((rep, c));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("callgrind worker")?;
        }
        Ok(())
    })?;
    let results = results.into_inner().expect("results");
    let get = |rep: usize, path: &str, scale: usize| {
        results
            .iter()
            .find(|(r, c)| *r == rep && c.path == path && c.scale == scale)
            .map(|(_, c)| c.clone())
            .expect("every job ran")
    };

    let mut s = Section::new("Userspace hot paths (callgrind)");
    s.command = Some(format!(
        "{}scripts/bench-callgrind.sh",
        if mode == Mode::Quick {
            "SLUICE_BENCH_QUICK=1 "
        } else {
            ""
        }
    ));
    let _ = write!(
        s.body,
        "Instructions executed (callgrind's `Ir`) by the agent's own library code on one hot path, \
         one path per process (`bench/src/bin/sluice-bench-hotpath.rs`, release build) under \
         `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='{TOGGLE}'`: only \
         `sluice_bench::hotpath::measured` (a non-inlined function that runs the path once) is \
         counted, so generating and parsing the manifests into the store and building the warm \
         state are not. Inputs are generated manifests parsed into a real `Store`. Policy: the \
         mix of `bench-policy.sh` (default deny, tier to tier, cross-namespace by team, CIDR \
         egress with except and a port range, named ports; 5 policies per namespace of 50 pods, \
         100 pods per node), compiled for node-0. Services: selector-less Services with one \
         EndpointSlice of 3 backends each. Map writes go to an in-memory recorder (a syscall's \
         kernel side is not a userspace instruction either way); their number is given. \
         Instruction counts do not depend on the machine's load; the ratio is Ir at scale / Ir \
         at the baseline size, and dividing it by the ratio of the sizes tells how the path \
         grows (about 1: linearly with the size; well below 1: less than linearly; near 0: \
         independent of it).\n\n\
         | path | what runs | baseline size | Ir | at scale | Ir | ratio | ratio ÷ size ratio | map writes at scale | native wall at scale, one run |\n\
         | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n"
    );
    let mut json_paths = Vec::new();
    for path in PATHS {
        let (base, scale) = sizes(path, mode);
        let (b, c) = (get(0, path, base), get(0, path, scale));
        let unit = if path.starts_with("policy") {
            "pods"
        } else {
            "services"
        };
        let label = |n: usize, count: &Count| {
            let unit = if n == 1 {
                unit.trim_end_matches('s')
            } else {
                unit
            };
            if path.starts_with("policy") {
                let policies: usize = count.field("policies").parse().unwrap_or(0);
                format!("{} {unit}, {} policies", fmt_count(n), fmt_count(policies))
            } else {
                format!("{} {unit}", fmt_count(n))
            }
        };
        let ratio = c.ir as f64 / b.ir as f64;
        let wall = native_wall_ms(&bin, path, scale);
        let writes: usize = c.field("map_writes").parse().unwrap_or(0);
        let _ = writeln!(
            s.body,
            "| `{path}` | {} | {} | {} | {} | {} | {} | {:.2} | {} | {} ms |",
            describe(path),
            label(base, &b),
            fmt_num(b.ir as f64),
            label(scale, &c),
            fmt_num(c.ir as f64),
            big_ratio(ratio),
            ratio / (scale as f64 / base as f64),
            fmt_count(writes),
            fmt_num(wall),
        );
        let repeat = (reps > 1).then(|| {
            let again = get(1, path, scale);
            (again.ir as f64 - c.ir as f64).abs() / c.ir as f64
        });
        json_paths.push(json!({
            "path": path,
            "baseline": {"size": base, "ir": b.ir, "fields": fields_json(&b)},
            "scale": {"size": scale, "ir": c.ir, "fields": fields_json(&c)},
            "ratio": ratio,
            "ratio_per_size_ratio": ratio / (scale as f64 / base as f64),
            "native_wall_ms": wall,
            "repeat_rel_diff": repeat,
            "top_agent_functions": c.top.iter().map(|(f, ir)| json!({"function": f, "ir": ir})).collect::<Vec<_>>(),
        }));
    }
    s.body.push_str(
        "\nWhere the instructions go at scale (inclusive Ir of the biggest `sluice_agent` \
         functions under the path's entry, from `callgrind_annotate --inclusive=yes`; a \
         function within 3 % of one listed before it is taken for a wrapper and left out):\n\n",
    );
    for path in PATHS {
        let (_, scale) = sizes(path, mode);
        let c = get(0, path, scale);
        let parts: Vec<String> = c
            .top
            .iter()
            .map(|(f, ir)| {
                format!(
                    "`{f}` {} ({:.0} %)",
                    fmt_num(*ir as f64),
                    100.0 * *ir as f64 / c.ir as f64
                )
            })
            .collect();
        let _ = writeln!(
            s.body,
            "- `{path}`: {}",
            if parts.is_empty() {
                "callgrind_annotate gave nothing".to_owned()
            } else {
                parts.join("; ")
            }
        );
    }
    // Derived observations, from the figures above.
    let ir_of = |path: &str| get(0, path, sizes(path, mode).1).ir as f64;
    let change_share = ir_of("service-backend-change") / ir_of("service-sync-cold");
    let edit_share = ir_of("policy-edit") / ir_of("policy-compile-cold");
    let _ = write!(
        s.body,
        "\nAt scale, one backend change costs {} of a cold sync of every service, and one policy \
         edit {} of a cold compile. What the code does on those paths: the service path \
         recomputes the frontends of the Services whose objects or slices changed, takes every \
         other Service's from its cache (`ServiceModel`), rebuilds the full desired map and \
         compares each frontend with what is programmed before it writes the few entries that \
         changed; \
         the policy path converts every NetworkPolicy again and diffs the whole desired state, \
         but reuses the universe and the resolved rules of unchanged policies.",
        fmt_ratio(change_share),
        fmt_ratio(edit_share),
    );
    if reps > 1 {
        let worst = json_paths
            .iter()
            .filter_map(|p| p["repeat_rel_diff"].as_f64())
            .fold(0.0, f64::max);
        let _ = write!(
            s.body,
            " Every scale run was made twice: the counts differ by at most {:.4} %.",
            worst * 100.0
        );
    }
    s.body.push('\n');
    s.json = json!({"toggle_collect": TOGGLE, "paths": json_paths});
    Ok(s)
}
