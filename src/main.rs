//! portcullis command line: the only place that turns errors into exit codes
//! (0 success, 1 invalid input or policy, 2 runtime failure).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::json;

use portcullis::config::{self, Loaded};
use portcullis::events;
use portcullis::policy::{Admission, Request};
use portcullis::sniff::{self, Protocol, Verdict};

#[derive(Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Egress gateway that checks the protocol on every port (MITRE ATT&CK T1571)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (without --config: ./portcullis.toml if present, else the embedded default).
    Run(ConfigArg),
    /// Validate the configuration and every policy file; print each problem as FILE:LINE:COL.
    Check(ConfigArg),
    /// Print the decision for one connection, as JSON.
    Explain(ExplainArgs),
    /// Print what the sniffers see in a connection's first bytes, as JSON.
    Sniff(SniffArgs),
    /// One decision event per TCP flow in pcap/pcapng captures, as if the gateway had seen
    /// them; a summary on stderr.
    Replay(ReplayArgs),
}

#[derive(Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct ExplainArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The client's address.
    #[arg(long, value_name = "IP")]
    source: IpAddr,
    /// The original destination.
    #[arg(long, value_name = "IP:PORT")]
    destination: SocketAddr,
    /// The detected protocol (a name from the catalogue, or "unknown").
    #[arg(long, value_name = "NAME", value_parser = parse_protocol)]
    protocol: Protocol,
    /// TLS SNI or HTTP Host the client asked for.
    #[arg(long, value_name = "NAME")]
    server_name: Option<String>,
}

#[derive(Args)]
struct SniffArgs {
    /// The destination port (reported, never used as evidence).
    #[arg(long, value_name = "N")]
    port: u16,
    /// The client's first turn, in hex.
    #[arg(long, value_name = "HEX", group = "client")]
    client_hex: Option<String>,
    /// The client's first turn, from a file.
    #[arg(long, value_name = "F", group = "client")]
    client_file: Option<PathBuf>,
    /// The server's first turn, in hex.
    #[arg(long, value_name = "HEX", group = "server")]
    server_hex: Option<String>,
    /// The server's first turn, from a file.
    #[arg(long, value_name = "F", group = "server")]
    server_file: Option<PathBuf>,
}

#[derive(Args)]
struct ReplayArgs {
    /// pcap or pcapng files.
    #[arg(value_name = "CAPTURE", required = true)]
    captures: Vec<PathBuf>,
    #[command(flatten)]
    config: ConfigArg,
}

fn parse_protocol(name: &str) -> Result<Protocol, String> {
    Protocol::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Protocol::ALL.iter().map(|p| p.name()).collect();
        format!(
            "unknown protocol {name:?}; expected one of {}",
            names.join(", ")
        )
    })
}

/// Failures and the exit code each one gets.
enum Failure {
    Invalid(anyhow::Error),
    Runtime(anyhow::Error),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { 1 } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Run(args) => run(args.config.as_deref()),
        Command::Check(args) => check(args.config.as_deref()),
        Command::Explain(args) => explain(&args),
        Command::Sniff(args) => sniff_cmd(&args),
        Command::Replay(args) => replay(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Invalid(err)) => {
            eprintln!("{err:#}");
            ExitCode::from(1)
        }
        Err(Failure::Runtime(err)) => {
            eprintln!("portcullis: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// Loads the configuration; every problem is printed as `FILE:LINE:COL: message`.
fn load(path: Option<&Path>) -> Result<Loaded, Failure> {
    config::load(path).map_err(|problems| Failure::Invalid(anyhow::anyhow!("{problems}")))
}

fn run(path: Option<&Path>) -> Result<(), Failure> {
    let loaded = load(path)?;
    // Signals, reloads and the admin endpoint; connections run on the data path's own
    // per-CPU threads (`proxy::serve`).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::Runtime)?;
    runtime
        .block_on(portcullis::proxy::serve(loaded))
        .map_err(|err| Failure::Runtime(err.into()))
}

fn check(path: Option<&Path>) -> Result<(), Failure> {
    let loaded = load(path)?;
    println!(
        "{}: ok: {} listener(s), {} segment(s), policy version {}",
        loaded.config.path.display(),
        loaded.config.listeners.len(),
        loaded.policy.segments.len(),
        loaded.policy.version
    );
    Ok(())
}

fn explain(args: &ExplainArgs) -> Result<(), Failure> {
    let Loaded { policy, .. } = load(args.config.config.as_deref())?;
    let decision = policy.decide(&Request {
        source: args.source,
        destination: args.destination,
        protocol: args.protocol,
        server_name: args.server_name.as_deref(),
        admission: Admission::Admitted,
    });
    let segment = policy.segment(&decision);
    let rule = policy.rule(&decision);
    let expected: Vec<&str> = decision
        .expected_protocols
        .iter()
        .map(|p| p.name())
        .collect();
    let out = json!({
        "action": decision.action.name(),
        "reason": decision.reason.name(),
        "would_block": decision.would_block(),
        "segment": segment.map(|s| s.name.as_str()),
        "mode": segment.map(|s| events::mode_name(s.mode)),
        "rule": {
            "id": rule.map(|r| r.id.as_str()),
            "ruleset": segment.map(|s| s.name.as_str()),
            "version": policy.version,
        },
        "expected_protocols": expected,
        "source": { "ip": args.source.to_string() },
        "destination": { "ip": args.destination.ip().to_string(), "port": args.destination.port() },
        "network": { "protocol": args.protocol.name() },
    });
    println!("{out}");
    Ok(())
}

fn bytes_arg(hex: Option<&str>, file: Option<&Path>) -> Result<Option<Vec<u8>>, Failure> {
    match (hex, file) {
        (Some(hex), _) => decode_hex(hex).map(Some).map_err(Failure::Invalid),
        (None, Some(path)) => std::fs::read(path)
            .with_context(|| format!("cannot read {}", path.display()))
            .map(Some)
            .map_err(Failure::Invalid),
        (None, None) => Ok(None),
    }
}

fn decode_hex(hex: &str) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if digits.len() % 2 != 0 {
        anyhow::bail!("hex input has an odd number of digits ({})", digits.len());
    }
    digits
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .with_context(|| format!("hex input: not a hex digit pair at offset {}", i * 2))
        })
        .collect()
}

fn sniff_cmd(args: &SniffArgs) -> Result<(), Failure> {
    let client = bytes_arg(args.client_hex.as_deref(), args.client_file.as_deref())?;
    let server = bytes_arg(args.server_hex.as_deref(), args.server_file.as_deref())?;
    if client.is_none() && server.is_none() {
        return Err(Failure::Invalid(anyhow::anyhow!(
            "give the client's bytes (--client-hex or --client-file), the server's, or both"
        )));
    }
    let mut verdict = client
        .as_deref()
        .map_or(Verdict::NoMatch, sniff::sniff_client);
    if !matches!(verdict, Verdict::Match(_)) {
        if let Some(server) = server.as_deref() {
            let server_verdict = sniff::sniff_server(server);
            if matches!(server_verdict, Verdict::Match(_)) || client.is_none() {
                verdict = server_verdict;
            }
        }
    }
    let (sniffed, detection) = match &verdict {
        Verdict::Match(sniffed) => (Some(sniffed), "matched"),
        Verdict::NoMatch => (None, "no_match"),
        Verdict::NeedMore => (None, "need_more"),
    };
    println!("{}", events::sniff_report(sniffed, detection, args.port));
    Ok(())
}

/// Replays every capture; a file that cannot be read is reported and skipped. Exit 1 only
/// when no file could be read at all.
fn replay(args: &ReplayArgs) -> Result<(), Failure> {
    use portcullis::replay::{replay_file, ReplayError, Summary};
    use std::io::Write;

    let Loaded { config, policy } = load(args.config.config.as_deref())?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut summary = Summary::default();
    let mut read = 0usize;
    for path in &args.captures {
        match replay_file(path, &policy, config.detect, &mut out, &mut summary) {
            Ok(stats) => {
                read += 1;
                eprintln!(
                    "{}: {} frame(s), {} TCP segment(s), {} flow(s)",
                    path.display(),
                    stats.frames,
                    stats.tcp,
                    stats.flows
                );
            }
            Err(err @ ReplayError::Write(_)) => {
                return Err(Failure::Runtime(err.into()));
            }
            Err(err @ ReplayError::Capture { frames, .. }) => {
                // The flows before the damage were judged: the file was partly read.
                read += usize::from(frames > 0);
                eprintln!("portcullis: error: {err}");
            }
            Err(err) => eprintln!("portcullis: error: {err}"),
        }
    }
    out.flush()
        .context("cannot write events")
        .map_err(Failure::Runtime)?;
    eprint!("{summary}");
    if read == 0 {
        return Err(Failure::Invalid(anyhow::anyhow!(
            "no capture could be read ({} given)",
            args.captures.len()
        )));
    }
    Ok(())
}
