//! A task in a network namespace: its namespace, its multi-queue TAP as `eth0`, configured as
//! Docker configures a container's interface on an overlay network.

use super::netns::{self, NetnsError, OwnedNetns};
use super::node::{PortConfig, RunError, Task, TASK_IFACE};
use super::tap::{self, TapQueue};

/// Creates a task's namespace and its TAP (one queue per worker), configured like a Docker
/// container's interface. On error nothing is left behind.
pub(super) fn make_task(
    cfg: &PortConfig,
    workers: usize,
    offload: bool,
) -> Result<(Task, Vec<TapQueue>), RunError> {
    let ep = &cfg.endpoint;
    let ns_name = cfg.netns().to_string();
    let ns = OwnedNetns::create(&ns_name)?;
    let queues = netns::run_in(&ns_name, move || {
        tap::open_multiqueue(TASK_IFACE, workers, offload)
    })?
    .map_err(|source| RunError::Tap {
        endpoint: ep.name.clone(),
        netns: ns_name.clone(),
        source,
    })?;
    configure_task(
        &ns_name,
        ep.mac.to_string(),
        ep.ip,
        cfg.prefix,
        cfg.mtu,
        cfg.gateway,
    )?;
    tracing::info!(endpoint = %ep.name, netns = %ns_name, ip = %ep.ip, mac = %ep.mac, "task interface ready");
    Ok((
        Task {
            endpoint: ep.name.clone(),
            netns: ns,
        },
        queues,
    ))
}

/// Gives the task's eth0 its MAC, address, MTU and default route, as Docker configures a
/// container's interface on an overlay network.
fn configure_task(
    ns: &str,
    mac: String,
    ip: std::net::Ipv4Addr,
    prefix: u8,
    mtu: u16,
    gateway: std::net::Ipv4Addr,
) -> Result<(), NetnsError> {
    // No IPv6 on the task interface: the overlay carries IPv4 (as Docker's does by default),
    // and router/neighbour solicitations would only be counted as drops.
    let _ = netns::run_in(ns, || {
        std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{TASK_IFACE}/disable_ipv6"),
            "1",
        )
    });
    let mtu = mtu.to_string();
    let cidr = format!("{ip}/{prefix}");
    let gw = gateway.to_string();
    netns::ip(&[
        "-n", ns, "link", "set", TASK_IFACE, "address", &mac, "mtu", &mtu,
    ])?;
    netns::ip(&["-n", ns, "addr", "add", &cidr, "dev", TASK_IFACE])?;
    netns::ip(&["-n", ns, "link", "set", "lo", "up"])?;
    netns::ip(&["-n", ns, "link", "set", TASK_IFACE, "up"])?;
    netns::ip(&[
        "-n", ns, "route", "add", "default", "via", &gw, "dev", TASK_IFACE,
    ])?;
    Ok(())
}
