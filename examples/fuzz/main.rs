//! Fuzzing that keeps running: every decoder, the pure cores, and the atomic server's and
//! the negotiated relay's message paths, fed raw bytes, mutated encodings and
//! structure-aware inputs (proptest strategies drawn from a runner seeded per case).
//!
//! ```text
//! cargo run --example fuzz -- [--seconds 60] [--seed S] [--only T1,T2] [--out DIR]
//! cargo run --example fuzz -- --replay TARGET:CASE_SEED
//! cargo run --example fuzz -- --list
//! ```
//!
//! Run it in the dev profile (`scripts/fuzz.sh` does): arithmetic overflow panics there,
//! and so do the library's debug assertions. Each case runs under `catch_unwind`; a
//! failing case is reported with its panic, its input and the `--replay` argument that
//! runs it again alone (its input depends only on its seed). The run shares its time
//! among the targets by weight (the in-process server and relay are slow per case and
//! get more), prints a progress line every 10 s on stderr, and ends with one JSON line
//! on stdout:
//!
//! `{"seconds":..,"cases":..,"cases_by_target":{..},"panics":..,"panics_by_target":{..},"seed":..,"accepted_by_decoder":{..}}`
//!
//! It exits 1 if any case panicked, and 3 (naming the case) if one ran over two minutes. Targets: `decode_raw`, `decode_mutated` (module
//! `decode`), `queue`, `commit` (`atomic_cores`), `relay_core`, `machine`
//! (`negotiated_cores`, `negotiated_machine`), `server` (`server`), `relay` (`relay`),
//! `atomic_client` and `negotiated_client` (the client plugins against a hostile server
//! and relay: `atomic_client`, `negotiated_client`).

mod atomic_client;
mod atomic_cores;
mod decode;
mod inputs;
mod negotiated_client;
mod negotiated_cores;
mod negotiated_machine;
mod relay;
mod server;
mod target;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use target::{DynTarget, Failure, target};

/// Every target, with its share of the run's time.
fn targets() -> Vec<(Box<dyn DynTarget>, u32)> {
    vec![
        (target::<decode::RawBytes>(), 1),
        (target::<decode::Mutated>(), 1),
        (target::<atomic_cores::Queue>(), 1),
        (target::<atomic_cores::Commit>(), 1),
        (target::<negotiated_cores::RelayCore>(), 1),
        (target::<negotiated_machine::Machine>(), 1),
        (target::<server::Server>(), 3),
        (target::<relay::Relay>(), 3),
        (target::<atomic_client::AtomicClient>(), 1),
        (target::<negotiated_client::NegotiatedClient>(), 1),
    ]
}

/// The command line, resolved (the seed drawn when not given).
#[derive(Debug)]
struct Args {
    seconds: f64,
    seed: u64,
    only: Option<Vec<String>>,
    replay: Option<(String, u64)>,
    out: Option<String>,
    list: bool,
}

/// Fuzzing that keeps running: every decoder, the pure cores, the server and the relay in
/// process, and the client plugins; prints one JSON line, exits 1 on a panic.
#[derive(Parser, Debug)]
#[command(name = "fuzz", args_override_self = true)]
struct Cli {
    /// How long to run, in seconds, shared among the targets by weight
    #[arg(
        long,
        value_name = "N",
        default_value_t = 60.0,
        allow_negative_numbers = true
    )]
    seconds: f64,
    /// The run's seed: every case's input depends only on it (default: random, printed)
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Run only these targets (comma-separated; see --list)
    #[arg(long, value_name = "T1,T2", value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Save each failing case in this directory
    #[arg(long, value_name = "DIR")]
    out: Option<String>,
    /// Run one case alone: its target and case seed, as a failing case prints them
    #[arg(long, value_name = "TARGET:CASE_SEED", value_parser = parse_replay)]
    replay: Option<(String, u64)>,
    /// List the targets with their weights
    #[arg(long)]
    list: bool,
}

fn parse_replay(v: &str) -> Result<(String, u64), String> {
    let (name, seed) = v.split_once(':').ok_or("expected TARGET:CASE_SEED")?;
    let seed = seed.parse().map_err(|e| format!("the case seed: {e}"))?;
    Ok((name.to_owned(), seed))
}

fn parse_args() -> Args {
    let cli = Cli::parse();
    Args {
        seconds: cli.seconds,
        seed: cli.seed.unwrap_or_else(|| fastrand::u64(..)),
        only: cli.only,
        replay: cli.replay,
        out: cli.out,
        list: cli.list,
    }
}

fn fail(why: &str) -> ! {
    eprintln!("fuzz: {why}");
    eprintln!(
        "usage: fuzz [--seconds N] [--seed S] [--only T1,T2] [--out DIR] | --replay T:SEED | --list"
    );
    std::process::exit(2)
}

/// SplitMix64: the seed of case `n` of a target.
fn case_seed(seed: u64, target: &str, n: u64) -> u64 {
    let name = target.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut z = seed ^ name ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One target's share of the run.
#[derive(Default)]
struct Tally {
    cases: u64,
    panics: u64,
    spent: Duration,
}

fn main() {
    let args = parse_args();
    let mut all = targets();
    if args.list {
        for (t, weight) in &all {
            println!("{} (weight {weight})", t.name());
        }
        return;
    }
    if let Some((name, seed)) = &args.replay {
        let (t, _) = all
            .iter()
            .find(|(t, _)| t.name() == name)
            .unwrap_or_else(|| fail(&format!("no target {name} (see --list)")));
        t.replay(*seed);
        return;
    }
    if let Some(only) = &args.only {
        all.retain(|(t, _)| only.iter().any(|o| o == t.name()));
        if all.is_empty() {
            fail("--only names no target (see --list)");
        }
    }
    eprintln!(
        "fuzz: seed {} for {} s over {} targets (debug assertions {})",
        args.seed,
        args.seconds,
        all.len(),
        if cfg!(debug_assertions) {
            "on"
        } else {
            "OFF: use the dev profile"
        }
    );
    target::quiet_panics();
    let (tallies, elapsed) = run(&all, &args);
    let _ = std::panic::take_hook();
    report(&all, &tallies, elapsed, args.seed);
    if tallies.iter().any(|t| t.panics > 0) {
        std::process::exit(1);
    }
}

/// A case that runs this long is a hang: the run stops with an error naming it.
const HANG: Duration = Duration::from_secs(120);

/// The case under way (its replay argument) and when it started.
static CURRENT: Mutex<Option<(String, Instant)>> = Mutex::new(None);

/// Watches for a case that runs longer than [`HANG`]: prints its replay argument and
/// ends the process (exit status 3).
fn watchdog() {
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let current = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some((replay, started)) = current
                && started.elapsed() > HANG
            {
                eprintln!(
                    "fuzz: HANG: a case ran over {} s (replay: --replay {replay})",
                    HANG.as_secs()
                );
                std::process::exit(3);
            }
        }
    });
}

/// Runs cases until the time is up, always of the target furthest behind its share.
fn run(all: &[(Box<dyn DynTarget>, u32)], args: &Args) -> (Vec<Tally>, Duration) {
    watchdog();
    let start = Instant::now();
    let budget = Duration::from_secs_f64(args.seconds.max(0.0));
    let mut tallies: Vec<Tally> = all.iter().map(|_| Tally::default()).collect();
    let mut failures = 0usize;
    let mut next_progress = Duration::from_secs(10);
    while start.elapsed() < budget {
        let (i, _) = all
            .iter()
            .enumerate()
            .min_by(|(a, (_, wa)), (b, (_, wb))| {
                let share = |i: usize, w: u32| tallies[i].spent.as_secs_f64() / f64::from(w);
                share(*a, *wa).total_cmp(&share(*b, *wb))
            })
            .expect("at least one target");
        let t = &all[i].0;
        let seed = case_seed(args.seed, t.name(), tallies[i].cases);
        let case_start = Instant::now();
        *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((format!("{}:{seed}", t.name()), case_start));
        let result = t.run(seed);
        let tally = &mut tallies[i];
        tally.spent += case_start.elapsed();
        tally.cases += 1;
        if let Err(failure) = result {
            tally.panics += 1;
            failures += 1;
            report_failure(t.name(), seed, &failure, failures, args.out.as_deref());
        }
        if start.elapsed() >= next_progress {
            next_progress += Duration::from_secs(10);
            let cases: u64 = tallies.iter().map(|t| t.cases).sum();
            eprintln!(
                "fuzz: {:>5.0} s  {cases} cases  {failures} panics",
                start.elapsed().as_secs_f64()
            );
        }
    }
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = None;
    (tallies, start.elapsed())
}

/// Prints a failing case (in full for the first few) and saves it under `out`.
fn report_failure(name: &str, seed: u64, failure: &Failure, nth: usize, out: Option<&str>) {
    let first_line = failure.panic.lines().next().unwrap_or("");
    eprintln!("fuzz: PANIC in {name} (replay: --replay {name}:{seed}): {first_line}");
    let full = format!(
        "target {name}\nreplay: cargo run --example fuzz -- --replay {name}:{seed}\n\npanic: {}\n\ninput:\n{}\n",
        failure.panic, failure.input
    );
    if nth <= 3 {
        let shown: String = full.chars().take(12_000).collect();
        eprintln!("{shown}");
    }
    if let Some(dir) = out {
        let _ = std::fs::create_dir_all(dir);
        let path = format!("{dir}/panic-{name}-{seed}.txt");
        if std::fs::write(&path, &full).is_ok() && nth <= 20 {
            eprintln!("fuzz: saved {path}");
        }
    }
}

/// The JSON summary on stdout.
fn report(all: &[(Box<dyn DynTarget>, u32)], tallies: &[Tally], elapsed: Duration, seed: u64) {
    let by_target = |f: fn(&Tally) -> u64| -> BTreeMap<&str, u64> {
        all.iter()
            .zip(tallies)
            .map(|((t, _), tally)| (t.name(), f(tally)))
            .collect()
    };
    let accepted: BTreeMap<&str, u64> = decode::DECODERS
        .iter()
        .zip(&decode::ACCEPTED)
        .map(|(name, n)| (*name, n.load(Ordering::Relaxed)))
        .collect();
    let summary = serde_json::json!({
        "seconds": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "cases": tallies.iter().map(|t| t.cases).sum::<u64>(),
        "cases_by_target": by_target(|t| t.cases),
        "panics": tallies.iter().map(|t| t.panics).sum::<u64>(),
        "panics_by_target": by_target(|t| t.panics),
        "seed": seed,
        "accepted_by_decoder": accepted,
        "valid_refused_by_claim_limit": decode::REFUSED_BY_CLAIM.load(Ordering::Relaxed),
        "depth": target::depth(),
    });
    println!("{summary}");
}
