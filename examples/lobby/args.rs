//! The command line (every flag is described in the module doc of `main.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;

use bevy::math::IVec2;
use clap::Parser;

use bevy_atomic_matchmaking::shared::player::validate_category;

use crate::embedded::BOT_ID;
use crate::identity::IdentityArgs;

/// The one-click lobby game: a window over the matchmaking client plugin; without
/// --server it hosts an embedded server and one bot.
#[derive(Parser)]
#[command(name = "lobby", args_override_self = true)]
pub struct Args {
    /// A dedicated server to join (default: host an embedded server and one bot)
    #[arg(long, value_name = "ADDR")]
    pub server: Option<SocketAddr>,
    /// The queue category
    #[arg(long, value_name = "NAME", default_value = "casual", value_parser = parse_category)]
    pub category: String,
    /// The player id to mint the connect token for (default: random)
    #[arg(long, value_name = "N", value_parser = parse_client_id)]
    pub client_id: Option<u64>,
    /// The window title (default: "Atomic matchmaking lobby (player ID)")
    #[arg(long, value_name = "TEXT", allow_hyphen_values = true)]
    pub title: Option<String>,
    /// The window position in pixels
    #[arg(long, value_name = "X,Y", allow_hyphen_values = true, value_parser = parse_position)]
    pub position: Option<IVec2>,
    /// Where the font and icon are
    #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/assets"))]
    pub assets: PathBuf,
    /// The most frames per second (1..=1000; input still wakes the app at once)
    #[arg(long, value_name = "N", default_value_t = 60.0, value_parser = parse_fps)]
    pub fps: f64,
    /// Testing only: never acknowledge match proposals (stay on the matching screen)
    #[arg(long)]
    pub hold_proposal: bool,
    // how to connect to a --server (the embedded server makes its own key unless --insecure)
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// Parses the process's arguments; `--help` prints the usage and exits.
pub fn parse_args() -> Args {
    Args::parse()
}

fn parse_category(v: &str) -> Result<String, String> {
    validate_category(v)?;
    Ok(v.to_owned())
}

fn parse_client_id(v: &str) -> Result<u64, String> {
    let id = v.parse::<u64>().map_err(|e| e.to_string())?;
    if id == 0 || id == BOT_ID {
        return Err(format!("{id} is reserved"));
    }
    Ok(id)
}

fn parse_position(v: &str) -> Result<IVec2, String> {
    let (x, y) = v.split_once(',').ok_or(format!("expected X,Y, got {v}"))?;
    let x = x.trim().parse::<i32>().map_err(|e| e.to_string())?;
    let y = y.trim().parse::<i32>().map_err(|e| e.to_string())?;
    Ok(IVec2::new(x, y))
}

fn parse_fps(v: &str) -> Result<f64, String> {
    let fps = v.parse::<f64>().map_err(|e| e.to_string())?;
    if !(1.0..=1000.0).contains(&fps) {
        return Err("must be 1..=1000".into());
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
