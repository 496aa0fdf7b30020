//! Where a server frame's CPU goes: marks at the boundaries of bevy_renet's update, the
//! plugin's receive, its advance and the rest of the frame, read with the thread's CPU
//! clock (the apps run on the single-threaded executor).

use std::time::Duration;

use bevy::prelude::*;
use bevy_atomic_matchmaking::prelude::*;
use bevy_renet::{RenetReceive, RenetSend, RenetServerPlugin};
use serde_json::{Value, json};

use crate::measure::{percentiles_ms, thread_cpu};

/// The stages, in frame order: each is the CPU between its mark and the next one.
const STAGES: [&str; 8] = [
    "first_and_time",
    "renet_update_every_connection",
    "renet_events",
    "plugin_receive",
    "receive_to_advance",
    "plugin_advance",
    "renet_send",
    "after_send_stamp_pings",
];

/// The marks of the frame in progress, and every finished frame's stages.
#[derive(Resource, Default)]
struct Marks {
    at: Vec<Duration>,
    stages: Vec<Vec<Duration>>,
}

fn mark(mut marks: ResMut<Marks>) {
    marks.at.push(thread_cpu());
}

fn start(mut marks: ResMut<Marks>) {
    marks.at.clear();
    marks.at.push(thread_cpu());
}

fn finish(mut marks: ResMut<Marks>) {
    marks.at.push(thread_cpu());
    let spans = marks
        .at
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .collect();
    marks.stages.push(spans);
}

/// Adds the marks to a server app with the matchmaking plugin.
pub fn instrument(app: &mut App) {
    app.init_resource::<Marks>()
        .add_systems(First, start)
        .add_systems(
            PreUpdate,
            (
                mark.before(RenetServerPlugin::update_system),
                mark.after(RenetServerPlugin::update_system)
                    .before(RenetReceive),
                mark.after(RenetReceive)
                    .before(AtomicServerSystems::Receive),
                mark.after(AtomicServerSystems::Receive),
            )
                .chain(),
        )
        .add_systems(Update, (mark.before(AtomicServerSystems::Advance),))
        .add_systems(
            PostUpdate,
            (mark.before(RenetSend), mark.after(RenetSend)).chain(),
        )
        .add_systems(Last, finish);
}

/// Forgets the frames so far (warm-up).
pub fn reset(app: &mut App) {
    app.world_mut().resource_mut::<Marks>().stages.clear();
}

/// Each stage's CPU over the frames since the last reset.
pub fn report(app: &App) -> Value {
    let marks = app.world().resource::<Marks>();
    let mut out = serde_json::Map::new();
    // the plugin's own systems: receive, advance (with what runs between) and the stamps
    let plugin = [
        "plugin_receive",
        "receive_to_advance",
        "plugin_advance",
        "after_send_stamp_pings",
    ];
    let index = |name: &str| STAGES.iter().position(|s| *s == name);
    let plugin: Vec<usize> = plugin.iter().filter_map(|n| index(n)).collect();
    let mut sums: Vec<Duration> = marks
        .stages
        .iter()
        .map(|s| plugin.iter().filter_map(|&i| s.get(i)).sum())
        .collect();
    out.insert("plugin_systems".into(), percentiles_ms(&mut sums));
    for (i, name) in STAGES.iter().enumerate() {
        let mut spans: Vec<Duration> = marks
            .stages
            .iter()
            .filter_map(|s| s.get(i).copied())
            .collect();
        out.insert((*name).into(), percentiles_ms(&mut spans));
    }
    json!(out)
}
