//! A task's interface in its network namespace: a multi-queue TAP named as the endpoint's
//! `iface` (eth0 by default), configured as Docker configures a container's interface on an
//! overlay network. Several interfaces may share one namespace (a task on several networks);
//! only eth0 gives the namespace its default route.

use std::sync::Arc;

use super::netns::{self, NetnsError, OwnedNetns};
use super::node::{PortConfig, RunError, Task};
use super::tap::{self, TapQueue};
use crate::topology::DEFAULT_IFACE;

/// Creates a task's TAP (one queue per worker) in namespace `ns`, configured like a Docker
/// container's interface. On error the TAP is gone again (the namespace is the caller's).
pub(super) fn make_task(
    cfg: &PortConfig,
    ns: Arc<OwnedNetns>,
    workers: usize,
    offload: bool,
) -> Result<(Task, Vec<TapQueue>), RunError> {
    let ep = &cfg.endpoint;
    let ns_name = ns.name().to_string();
    let iface = cfg.iface().to_string();
    let dev = iface.clone();
    let queues = netns::run_in(&ns_name, move || {
        tap::open_multiqueue(&dev, workers, offload)
    })?
    .map_err(|source| RunError::Tap {
        endpoint: ep.name.clone(),
        netns: ns_name.clone(),
        source,
    })?;
    // On error `queues` drops here, and with its last queue the TAP.
    configure_task(&ns_name, &iface, cfg)?;
    tracing::info!(endpoint = %ep.name, netns = %ns_name, iface = %iface, ip = %ep.ip, mac = %ep.mac, "task interface ready");
    Ok((
        Task {
            endpoint: ep.name.clone(),
            netns: ns,
            iface,
        },
        queues,
    ))
}

/// Gives the task's interface its MAC, address and MTU, and eth0 the default route, as Docker
/// configures a container's interfaces on overlay networks: further networks get the route to
/// their subnet only (the kernel adds it with the address). The interface on docker_gwbridge
/// (`bridge`, made after the overlay ones) takes the default route over, as on Docker, where
/// a task's way out is its gateway bridge.
fn configure_task(ns: &str, iface: &str, cfg: &PortConfig) -> Result<(), NetnsError> {
    let (mac, ip, prefix) = (cfg.endpoint.mac.to_string(), cfg.endpoint.ip, cfg.prefix);
    let (mtu, gateway, bridge) = (cfg.mtu, cfg.gateway, cfg.bridge);
    // No IPv6 on the task interface: the overlay carries IPv4 (as Docker's does by default),
    // and router/neighbour solicitations would only be counted as drops.
    let path = format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6");
    let _ = netns::run_in(ns, move || std::fs::write(path, "1"));
    let mtu = mtu.to_string();
    let cidr = format!("{ip}/{prefix}");
    let gw = gateway.to_string();
    netns::ip(&["-n", ns, "link", "set", iface, "address", &mac, "mtu", &mtu])?;
    netns::ip(&["-n", ns, "addr", "add", &cidr, "dev", iface])?;
    netns::ip(&["-n", ns, "link", "set", "lo", "up"])?;
    netns::ip(&["-n", ns, "link", "set", iface, "up"])?;
    if bridge {
        netns::ip(&[
            "-n", ns, "route", "replace", "default", "via", &gw, "dev", iface,
        ])?;
    } else if iface == DEFAULT_IFACE {
        netns::ip(&[
            "-n", ns, "route", "add", "default", "via", &gw, "dev", iface,
        ])?;
    }
    Ok(())
}

/// Deletes interface `iface` of namespace `ns` if it is still there. A TAP goes with its last
/// queue, which the workers close before they acknowledge a removal; but a process forked at
/// that moment (an `ip` command, a task's program before its exec) holds a copy of every
/// queue for a while, and a worker may not have answered. A later TAP of the same name would
/// silently join the old device (TUNSETIFF attaches to an existing one), so it goes now.
pub(super) fn remove_iface(ns: &str, iface: &str) {
    let Ok(name) = std::ffi::CString::new(iface) else {
        return;
    };
    let present = netns::run_in(ns, move || {
        // SAFETY: if_nametoindex reads a NUL-terminated string we own for the call.
        unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
    });
    if present.unwrap_or(false) {
        match netns::ip(&["-n", ns, "link", "del", iface]) {
            Ok(_) => {}
            // It went by itself meanwhile.
            Err(NetnsError::Ip { stderr, .. }) if stderr.contains("Cannot find device") => {}
            Err(e) => {
                tracing::warn!(netns = ns, iface, error = %e, "could not delete a removed task's interface")
            }
        }
    }
}
