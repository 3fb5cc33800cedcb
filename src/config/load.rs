//! Reading the files and putting the pieces together: config, then policy files, then
//! the checks across files and the policy version.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::parse::parse_all;
use super::problem::{whole_file, Doc, Problem, Problems};
use super::raw::{RawConfig, RawPolicyDirOnly, RawSegment, RawServices};
use super::values::Check;
use super::{segment, services, settings, Config, Loaded};
use crate::policy::{Catalogue, Policy};

/// The embedded default configuration (no `--config`, no `./portcullis.toml`).
const DEFAULT_CONFIG: &str = include_str!("../default/portcullis.toml");
/// The embedded default policy: one "application-default" segment.
const DEFAULT_SEGMENT: &str = include_str!("../default/default.toml");
/// The path `Config.path` names for the embedded default.
pub const EMBEDDED: &str = "<embedded>";

/// One policy file: its file name (for ordering and the version), how problems name it,
/// and its text.
struct PolicyFile {
    name: String,
    display: String,
    text: String,
}

/// Loads `path`; with `None`, `./portcullis.toml` if it exists, else the embedded default.
pub fn load(path: Option<&Path>) -> Result<Loaded, Problems> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => {
            let local = PathBuf::from("portcullis.toml");
            if !local.is_file() {
                return load_embedded();
            }
            local
        }
    };
    let display = path.display().to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Problems(vec![whole_file(&display, format!("cannot read: {e}"))]))?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut out = Vec::new();
    let doc = Doc {
        file: display.clone(),
        text: &text,
    };
    let (config, dir_name) = parse_config(&doc, path.clone(), &base_dir, &mut out);
    let policy_dir = base_dir.join(dir_name.as_ref().map_or("policy", |d| d.get_ref().as_str()));
    let files = read_policy_dir(&policy_dir, &doc, dir_name.as_ref(), &mut out);
    let policy = parse_policy(&files, &mut out);
    let mut order = vec![display];
    order.extend(files.iter().map(|f| f.display.clone()));
    finish(config, policy, out, &order)
}

/// The embedded default: redirect listeners on 0.0.0.0:15001 and `[::]:15001`, events on
/// stdout, one monitor-mode segment allowing every protocol on its standard ports.
pub fn load_embedded() -> Result<Loaded, Problems> {
    let loaded = from_strs(
        &format!("{EMBEDDED}/portcullis.toml"),
        DEFAULT_CONFIG,
        &[("default.toml", DEFAULT_SEGMENT)],
        &format!("{EMBEDDED}/"),
    )?;
    Ok(Loaded {
        config: Config {
            path: PathBuf::from(EMBEDDED),
            ..loaded.config
        },
        policy: loaded.policy,
    })
}

/// Loads from strings, for tests and tools: the config text (problems name it
/// `config_file`) and each policy file as (file name, text). A file named `services.toml`
/// overrides the catalogue; every other one is a segment.
///
/// ```
/// use portcullis::config::load_from_strs;
/// use portcullis::policy::{Admission, Reason, Request};
/// use portcullis::sniff::Protocol;
///
/// let config = "[[listener]]\nmode = \"redirect\"\nlisten = \"0.0.0.0:15001\"\n";
/// let segment = "segment = \"ws\"\nsources = [\"10.10.0.0/16\"]\nmode = \"block\"\n\n\
///                [[allow]]\nports = [443]\nprotocols = [\"tls\"]\n";
/// let loaded = load_from_strs("portcullis.toml", config, &[("ws.toml", segment)]).unwrap();
/// let decision = loaded.policy.decide(&Request {
///     source: "10.10.1.5".parse().unwrap(),
///     destination: "203.0.113.7:443".parse().unwrap(),
///     protocol: Protocol::Ssh,
///     server_name: None,
///     admission: Admission::Admitted,
/// });
/// assert_eq!(decision.reason, Reason::ProtocolNotAllowed);
/// assert_eq!(loaded.policy.rule(&decision).unwrap().id, "ws/allow[0]");
///
/// let broken = load_from_strs("portcullis.toml", config, &[("ws.toml", "segment = 1\n")]);
/// assert!(broken.unwrap_err().to_string().starts_with("ws.toml:1:"));
/// ```
pub fn load_from_strs(
    config_file: &str,
    config: &str,
    policy_files: &[(&str, &str)],
) -> Result<Loaded, Problems> {
    from_strs(config_file, config, policy_files, "")
}

fn from_strs(
    config_file: &str,
    config: &str,
    policy_files: &[(&str, &str)],
    display_prefix: &str,
) -> Result<Loaded, Problems> {
    let mut out = Vec::new();
    let doc = Doc {
        file: config_file.to_string(),
        text: config,
    };
    let base_dir = Path::new(config_file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let (config, _) = parse_config(&doc, PathBuf::from(config_file), &base_dir, &mut out);
    let mut files: Vec<PolicyFile> = policy_files
        .iter()
        .map(|(name, text)| PolicyFile {
            name: (*name).to_string(),
            display: format!("{display_prefix}{name}"),
            text: (*text).to_string(),
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let policy = parse_policy(&files, &mut out);
    let mut order = vec![config_file.to_string()];
    order.extend(files.iter().map(|f| f.display.clone()));
    let config = config.map(|c| Config {
        policy_dir: None,
        ..c
    });
    finish(config, policy, out, &order)
}

/// The config, if valid, and the `policy_dir` it names (read leniently, so the policy is
/// checked even when the config has problems).
fn parse_config(
    doc: &Doc,
    path: PathBuf,
    base_dir: &Path,
    out: &mut Vec<Problem>,
) -> (Option<Config>, Option<Spanned<String>>) {
    match parse_all::<RawConfig>(doc, out) {
        Some(raw) => {
            let dir = raw.policy_dir.clone();
            let mut c = Check { doc, out };
            (settings::validate(&mut c, &raw, path, base_dir), dir)
        }
        None => {
            let dir = toml::from_str::<RawPolicyDirOnly>(doc.text)
                .ok()
                .and_then(|r| r.policy_dir);
            (None, dir)
        }
    }
}

/// Every `*.toml` file directly in `dir`, sorted by name. Problems with the directory
/// point at `policy_dir` in the config (`named`), or at the config file when it is absent.
fn read_policy_dir(
    dir: &Path,
    config: &Doc,
    named: Option<&Spanned<String>>,
    out: &mut Vec<Problem>,
) -> Vec<PolicyFile> {
    let problem = |message: String| match named {
        Some(v) => config.at(v.span(), message),
        None => config.whole(message),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            out.push(problem(format!(
                "cannot read policy_dir {}: {e}",
                dir.display()
            )));
            return Vec::new();
        }
    };
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let is_toml = path.extension().is_some_and(|x| x == "toml");
        if !is_toml || !path.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let display = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push(PolicyFile {
                name,
                display,
                text,
            }),
            Err(e) => out.push(whole_file(&display, format!("cannot read: {e}"))),
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    if !files.iter().any(|f| f.name != services::FILE_NAME) {
        out.push(problem(format!(
            "no segment files (*.toml) in policy_dir {}",
            dir.display()
        )));
    }
    files
}

/// The policy from its files (sorted by name); `None` when anything was wrong.
fn parse_policy(files: &[PolicyFile], out: &mut Vec<Problem>) -> Option<Policy> {
    let before = out.len();
    let builtin_doc = Doc {
        file: format!("{EMBEDDED}/{}", services::FILE_NAME),
        text: services::BUILTIN,
    };
    let mut catalogue = parse_services(&builtin_doc, out).unwrap_or_default();
    let mut parsed = Vec::new();
    let mut raws = parse_segments(files).into_iter();
    for file in files {
        let doc = Doc {
            file: file.display.clone(),
            text: &file.text,
        };
        if file.name == services::FILE_NAME {
            if let Some(overrides) = parse_services(&doc, out) {
                catalogue.override_with(&overrides);
            }
            continue;
        }
        // One result per segment file, in order (a parser thread's panic is re-raised).
        let (raw, problems) = raws
            .next()
            .unwrap_or_else(|| (None, vec![doc.at(0..0, "internal error: not parsed")]));
        out.extend(problems);
        if let Some(raw) = raw {
            let mut c = Check { doc: &doc, out };
            parsed.extend(segment::validate(&mut c, &raw));
        }
    }
    segment::cross_check(&parsed, out);
    if out.len() != before {
        return None;
    }
    let version = version(files, &catalogue);
    let segments = parsed.into_iter().map(|p| p.segment).collect();
    Some(Policy::new(segments, catalogue, version))
}

/// Stage one of every segment file (all but `services.toml`), in file order, on as many
/// threads as there are cores: parsing is nearly all of a large policy's load time, and a
/// reload of a thousand files should not take long.
fn parse_segments(files: &[PolicyFile]) -> Vec<(Option<RawSegment>, Vec<Problem>)> {
    let segments: Vec<&PolicyFile> = files
        .iter()
        .filter(|f| f.name != services::FILE_NAME)
        .collect();
    let parse = |file: &PolicyFile| {
        let doc = Doc {
            file: file.display.clone(),
            text: &file.text,
        };
        let mut problems = Vec::new();
        (parse_all::<RawSegment>(&doc, &mut problems), problems)
    };
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    if threads < 2 || segments.len() < 64 {
        return segments.into_iter().map(parse).collect();
    }
    let chunk = segments.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = segments
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|f| parse(f)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

fn parse_services(doc: &Doc, out: &mut Vec<Problem>) -> Option<Catalogue> {
    let raw = parse_all::<RawServices>(doc, out)?;
    services::validate(&mut Check { doc, out }, &raw)
}

/// sha256 (hex) over every policy file's name and content (in name order) and the
/// effective catalogue: the same inputs always give the same version.
fn version(files: &[PolicyFile], catalogue: &Catalogue) -> String {
    let mut h = Sha256::new();
    for f in files {
        h.update((f.name.len() as u64).to_le_bytes());
        h.update(f.name.as_bytes());
        h.update((f.text.len() as u64).to_le_bytes());
        h.update(f.text.as_bytes());
    }
    h.update(b"catalogue\0");
    for (protocol, ports) in catalogue.iter() {
        h.update(format!("{protocol}={ports}\n").as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// `Ok` when nothing was wrong; else every problem, by file (in `order`) then position.
fn finish(
    config: Option<Config>,
    policy: Option<Policy>,
    mut out: Vec<Problem>,
    order: &[String],
) -> Result<Loaded, Problems> {
    if out.is_empty() {
        if let (Some(config), Some(policy)) = (config, policy) {
            return Ok(Loaded { config, policy });
        }
        out.push(whole_file(
            order.first().map_or("", String::as_str),
            "invalid configuration",
        ));
    }
    let rank = |file: &str| order.iter().position(|f| f == file).unwrap_or(0);
    out.sort_by_key(|p| (rank(&p.file), p.line, p.col));
    Err(Problems(out))
}
