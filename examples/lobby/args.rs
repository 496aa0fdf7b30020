//! The command line (every flag is described in the module doc of `main.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

use bevy::math::IVec2;

use bevy_atomic_matchmaking::shared::player::validate_category;

use crate::embedded::BOT_ID;
use crate::identity::IdentityArgs;

/// The parsed command line.
pub struct Args {
    /// `--server`: a dedicated server to join; `None` hosts an embedded one.
    pub server: Option<SocketAddr>,
    pub category: String,
    /// `--client-id`: a fixed netcode client id; `None` picks a random one.
    pub client_id: Option<u64>,
    pub title: Option<String>,
    pub position: Option<IVec2>,
    pub assets: PathBuf,
    pub fps: f64,
    pub hold_proposal: bool,
    /// `--key-file` and `--insecure`: how to connect to a `--server` (the embedded server
    /// makes its own key unless `--insecure`).
    pub identity: IdentityArgs,
}

const USAGE: &str = "usage: lobby [--server ADDR] [--category NAME] [--client-id N] [--title TEXT] [--position X,Y] [--assets DIR] [--fps N] [--hold-proposal] [--key-file PATH] [--insecure] [--netcode]";

impl Default for Args {
    fn default() -> Self {
        Args {
            server: None,
            category: "casual".into(),
            client_id: None,
            title: None,
            position: None,
            assets: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/assets")),
            fps: 60.0,
            hold_proposal: false,
            identity: IdentityArgs::default(),
        }
    }
}

/// Parses the process's arguments; `--help` prints the usage and exits.
pub fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        if args.identity.take(&flag, &mut value)? {
            continue;
        }
        match flag.as_str() {
            "--server" => {
                args.server = Some(value()?.parse().map_err(|e| format!("--server: {e}"))?)
            }
            "--category" => {
                let category = value()?;
                validate_category(&category).map_err(|e| format!("--category: {e}"))?;
                args.category = category;
            }
            "--client-id" => args.client_id = Some(parse_client_id(&value()?)?),
            "--title" => args.title = Some(value()?),
            "--position" => args.position = Some(parse_position(&value()?)?),
            "--assets" => args.assets = PathBuf::from(value()?),
            "--fps" => args.fps = parse_fps(&value()?)?,
            "--hold-proposal" => args.hold_proposal = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(args)
}

fn parse_client_id(v: &str) -> Result<u64, String> {
    let id: u64 = v.parse().map_err(|e| format!("--client-id: {e}"))?;
    if id == 0 || id == BOT_ID {
        return Err(format!("--client-id: {id} is reserved"));
    }
    Ok(id)
}

fn parse_position(v: &str) -> Result<IVec2, String> {
    let (x, y) = v
        .split_once(',')
        .ok_or(format!("--position: expected X,Y, got {v}"))?;
    let x = x.trim().parse().map_err(|e| format!("--position: {e}"))?;
    let y = y.trim().parse().map_err(|e| format!("--position: {e}"))?;
    Ok(IVec2::new(x, y))
}

fn parse_fps(v: &str) -> Result<f64, String> {
    let fps: f64 = v.parse().map_err(|e| format!("--fps: {e}"))?;
    if !(1.0..=1000.0).contains(&fps) {
        return Err("--fps must be 1..=1000".into());
    }
    Ok(fps)
}

/// A random netcode client id (also the player id) that is not the embedded bot's.
pub fn random_client_id() -> u64 {
    loop {
        let id = fastrand::u64(1..10_000_000);
        if id != BOT_ID {
            return id;
        }
    }
}
