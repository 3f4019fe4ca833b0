//! `sluice analyze`: finds configuration problems in manifests before they
//! reach a cluster (Istio's `IST0xxx` analyzers and Sluice's `SLC0xxx` ones).

use std::{
    fs,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use sluice_analyzer::{
    analyzers,
    context::{ClusterSettings, DEFAULT_POD_CIDR, DEFAULT_SERVICE_CIDR},
    engine::{self, DEFAULT_ISTIO_NAMESPACE, Options, Suppression},
    mesh::MeshDoc,
    message::Level,
    output::{self, Format},
    resource::Loaded,
    snapshot::Snapshot,
};

/// Exit status when no message reaches the failure threshold.
const EXIT_OK: u8 = 0;
/// Exit status for bad arguments or unreadable mesh config files.
const EXIT_USAGE: u8 = 2;
/// Exit status when some input could not be read or parsed (and no finding
/// reached the failure threshold).
const EXIT_INPUT_ERROR: u8 = 78;
/// Exit status when at least one message reaches the failure threshold.
const EXIT_FINDINGS: u8 = 79;

#[derive(Args, Debug)]
#[command(after_help = "\
Exit status:
  0   no message at or above --failure-threshold
  2   invalid arguments (unknown analyzer, bad suppression, unreadable mesh config)
  78  some input could not be read or parsed (reported on stderr with file:line); the rest was analyzed
  79  at least one message at or above --failure-threshold (takes precedence over 78)

Suppress findings with --suppress \"CODE=Kind namespace/name\" (`*` wildcards allowed)
or the annotation galley.istio.io/analyze-suppress: \"CODE[,CODE...]\" (or \"*\") on the resource.")]
pub struct AnalyzeArgs {
    /// Manifest files or directories (multi-document YAML; directories are read recursively).
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE|DIR",
        required_unless_present = "list_analyzers"
    )]
    files: Vec<PathBuf>,

    /// Report on all namespaces (the default when analyzing files).
    #[arg(short = 'A', long = "all-namespaces", conflicts_with = "namespace")]
    all_namespaces: bool,

    /// Only report messages about resources in this namespace.
    #[arg(short = 'n', long)]
    namespace: Option<String>,

    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Log)]
    output: OutputFormat,

    /// Exit with status 79 when a message has at least this level.
    #[arg(long, value_enum, default_value_t = Threshold::Error)]
    failure_threshold: Threshold,

    /// Only print messages with at least this level.
    #[arg(long, value_enum, default_value_t = Threshold::Info)]
    output_threshold: Threshold,

    /// Suppress a message: "CODE=Kind namespace/name" (repeatable).
    #[arg(short = 'S', long = "suppress", value_name = "CODE=RESOURCE")]
    suppress: Vec<String>,

    /// Mesh config (bare MeshConfig YAML) merged over Istio's defaults.
    #[arg(long, value_name = "FILE")]
    meshconfig: Option<PathBuf>,

    /// Mesh networks (bare MeshNetworks YAML).
    #[arg(long, value_name = "FILE")]
    meshnetworks: Option<PathBuf>,

    /// Run only these analyzers (Istio names, e.g. annotations.K8sAnalyzer; comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    analyzers: Vec<String>,

    /// List the analyzers and exit.
    #[arg(long)]
    list_analyzers: bool,

    /// Istio's control plane namespace.
    #[arg(long, default_value = DEFAULT_ISTIO_NAMESPACE)]
    istio_namespace: String,

    /// Pod CIDR(s) of the cluster, for Sluice's ipBlock checks.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_POD_CIDR)]
    pod_cidr: Vec<ipnet::IpNet>,

    /// Service CIDR(s) of the cluster, for Sluice's ipBlock checks.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_SERVICE_CIDR)]
    service_cidr: Vec<ipnet::IpNet>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OutputFormat {
    Log,
    Json,
    Yaml,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[value(rename_all = "PascalCase")]
enum Threshold {
    Info,
    Warning,
    Error,
}

impl From<Threshold> for Level {
    fn from(t: Threshold) -> Level {
        match t {
            Threshold::Info => Level::Info,
            Threshold::Warning => Level::Warning,
            Threshold::Error => Level::Error,
        }
    }
}

pub fn run(args: AnalyzeArgs) -> ExitCode {
    match execute(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn execute(args: &AnalyzeArgs) -> Result<u8> {
    if args.list_analyzers {
        for analyzer in analyzers::ALL {
            println!("{:<55} {}", analyzer.name, analyzer.description);
        }
        return Ok(EXIT_OK);
    }
    let options = options(args)?;
    let mut loaded = Loaded::default();
    loaded.read_paths(&args.files);
    for problem in &loaded.problems {
        eprintln!("{problem}");
    }
    let input_errors = loaded.problems.iter().any(|p| p.is_error);
    let snapshot = Snapshot::new(loaded.resources);
    let messages = engine::analyze(&snapshot, &options)?;

    let output_threshold = Level::from(args.output_threshold);
    let shown: Vec<_> = messages
        .iter()
        .filter(|m| m.level() >= output_threshold)
        .cloned()
        .collect();
    let format = match args.output {
        OutputFormat::Log => Format::Log,
        OutputFormat::Json => Format::Json,
        OutputFormat::Yaml => Format::Yaml,
    };
    print!("{}", output::render(&shown, format));

    let failure_threshold = Level::from(args.failure_threshold);
    if messages.iter().any(|m| m.level() >= failure_threshold) {
        Ok(EXIT_FINDINGS)
    } else if input_errors {
        Ok(EXIT_INPUT_ERROR)
    } else {
        Ok(EXIT_OK)
    }
}

fn options(args: &AnalyzeArgs) -> Result<Options> {
    engine::select_analyzers(&args.analyzers)?;
    let suppressions = args
        .suppress
        .iter()
        .map(|s| Suppression::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut options = Options {
        analyzers: args.analyzers.clone(),
        istio_namespace: args.istio_namespace.clone(),
        cluster: ClusterSettings {
            pod_cidrs: args.pod_cidr.clone(),
            service_cidrs: args.service_cidr.clone(),
        },
        suppressions,
        namespace: if args.all_namespaces {
            None
        } else {
            args.namespace.clone()
        },
        ..Options::default()
    };
    if let Some(path) = &args.meshconfig {
        merge_mesh_file(&mut options.mesh_config, path)?;
    }
    if let Some(path) = &args.meshnetworks {
        merge_mesh_file(&mut options.mesh_networks, path)?;
    }
    Ok(options)
}

fn merge_mesh_file(doc: &mut MeshDoc, path: &Path) -> Result<()> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if let Err(e) = doc.merge_yaml(&path.display().to_string(), &text) {
        bail!("{}: invalid YAML: {e}", path.display());
    }
    Ok(())
}
