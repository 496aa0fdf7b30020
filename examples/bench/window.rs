//! A measured window: the server thread's CPU, the process's CPU, server frames, client
//! rounds and the machine's UDP counters between its opening and its closing.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::measure::{UdpCounters, process_cpu, round3};
use crate::server_thread::ServerThread;

/// CPU and clocks at the start of a measured window.
pub struct Window {
    started: Instant,
    server_cpu: Duration,
    process_cpu: Duration,
    frames: u64,
    udp: UdpCounters,
    rounds: u64,
}

/// What a window measured.
pub struct Measured {
    pub wall: Duration,
    pub server_cpu: Duration,
    pub process_cpu: Duration,
    pub frames: u64,
    pub udp: UdpCounters,
    pub rounds: u64,
}

impl Window {
    /// Opens a window now; `rounds` is the client rounds run so far.
    pub fn open(server: &ServerThread, rounds: u64) -> Self {
        Self {
            started: Instant::now(),
            server_cpu: server.cpu(),
            process_cpu: process_cpu(),
            frames: server.frames(),
            udp: UdpCounters::read(),
            rounds,
        }
    }

    /// What the window measured; `rounds` is the client rounds run so far.
    pub fn close(&self, server: &ServerThread, rounds: u64) -> Measured {
        Measured {
            wall: self.started.elapsed(),
            server_cpu: server.cpu().saturating_sub(self.server_cpu),
            process_cpu: process_cpu().saturating_sub(self.process_cpu),
            frames: server.frames() - self.frames,
            udp: self.udp.delta(&UdpCounters::read()),
            rounds: rounds - self.rounds,
        }
    }
}

impl Measured {
    /// The window's clocks and rates, as report fields.
    pub fn json(&self) -> Value {
        let secs = self.wall.as_secs_f64();
        json!({
            "window_s": round3(secs),
            "server_cpu_s": round3(self.server_cpu.as_secs_f64()),
            "server_cpu_percent_of_a_core": round3(self.server_cpu.as_secs_f64() * 100.0 / secs),
            "server_frames_per_s": round3(self.frames as f64 / secs),
            "client_rounds_per_s": round3(self.rounds as f64 / secs),
            "process_cpu_s": round3(self.process_cpu.as_secs_f64()),
        })
    }

    /// The UDP datagrams of the window, per client and second.
    pub fn udp_json(&self, clients: u64) -> Value {
        let client_seconds = (clients as f64 * self.wall.as_secs_f64()).max(1e-9);
        let udp = self.udp;
        let per = |count: u64| round3(count as f64 / client_seconds);
        json!({
            "source": "/proc/net/snmp Udp deltas over the window (the whole network namespace: the server, the clients and anything else on the machine)",
            "datagrams_sent": udp.out_datagrams,
            "datagrams_received": udp.in_datagrams,
            "receive_buffer_errors": udp.rcvbuf_errors,
            "send_buffer_errors": udp.sndbuf_errors,
            "per_client_second_both_ways": per(udp.out_datagrams),
            "per_client_second_each_way_estimated": per(udp.out_datagrams / 2),
            "split": "estimated: on loopback every datagram is counted once out and once in, and the counters do not tell the server's from the clients'; each way = total / 2 (see renet_network_info for bytes each way)",
        })
    }
}
