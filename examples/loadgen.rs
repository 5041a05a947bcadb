//! A small load generator run inside a task's namespace by `scripts/bench-vip.sh`:
//!
//!   loadgen http ADDR:PORT COUNT      COUNT sequential HTTP/1.1 GETs, one TCP connection each
//!   loadgen dns SERVER:53 NAME COUNT  COUNT A queries over UDP, 32 in flight
//!
//! It prints one line: `connections/s` or `queries/s`, and the median and 99th percentile
//! latency in microseconds. Bounded: COUNT is at most 1,000,000 and every wait has a timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

fn percentile(sorted: &[u128], p: f64) -> u128 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn http(addr: SocketAddr, count: usize) -> Result<(), String> {
    let mut lat = Vec::with_capacity(count);
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    for _ in 0..count {
        let t = Instant::now();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok();
        s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            .map_err(|e| e.to_string())?;
        while s.read(&mut buf).map_err(|e| e.to_string())? > 0 {}
        lat.push(t.elapsed().as_micros());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "{:.0} connections/s, median {} us, p99 {} us",
        count as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    Ok(())
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = vec![(id >> 8) as u8, id as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn dns(server: SocketAddr, name: &str, count: usize) -> Result<(), String> {
    const WINDOW: usize = 32;
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    sock.connect(server).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut sent_at = vec![None; 65536];
    let mut lat = Vec::with_capacity(count);
    let (mut sent, mut got) = (0usize, 0usize);
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    while got < count {
        while sent < count && sent - got < WINDOW {
            let id = (sent % 65536) as u16;
            sock.send(&query(id, name)).map_err(|e| e.to_string())?;
            sent_at[usize::from(id)] = Some(Instant::now());
            sent += 1;
        }
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e) => return Err(format!("{got} of {count} answered, then: {e}")),
        };
        if n >= 2 {
            let id = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
            if let Some(t) = sent_at[id].take() {
                lat.push(t.elapsed().as_micros());
                got += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    println!(
        "{:.0} queries/s, median {} us, p99 {} us",
        count as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = |s: &str| -> usize {
        match s.parse::<usize>() {
            Ok(n) if (1..=1_000_000).contains(&n) => n,
            _ => {
                eprintln!("loadgen: COUNT must be 1-1000000, not {s}");
                std::process::exit(2)
            }
        }
    };
    let addr = |s: &str| -> SocketAddr {
        s.parse().unwrap_or_else(|_| {
            eprintln!("loadgen: {s} is not ADDR:PORT");
            std::process::exit(2)
        })
    };
    let r = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["http", a, n] => http(addr(a), count(n)),
        ["dns", a, name, n] => dns(addr(a), name, count(n)),
        _ => {
            eprintln!("usage: loadgen http ADDR:PORT COUNT | loadgen dns SERVER:53 NAME COUNT");
            std::process::exit(2)
        }
    };
    if let Err(e) = r {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}
