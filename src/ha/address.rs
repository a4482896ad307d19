//! The address this server registers in ZooKeeper: what clients dial when
//! it is active, so it must be reachable from them. canal falls back to
//! whatever the JVM thinks the host address is, which in containers is
//! often wrong; here the choice is explicit and never a wildcard.

use std::net::{IpAddr, SocketAddr, UdpSocket};

/// Why no address could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error(
        "{key} = \"{value}\" cannot be registered: {why} \
         (set canal.register.ip to an IPv4 address or host name clients can reach)"
    )]
    /// A configured address that clients could not use.
    Unusable {
        /// The key it was set by.
        key: &'static str,
        /// The value.
        value: String,
        /// Why it is unusable.
        why: &'static str,
    },
    #[error(
        "cannot tell which address clients can reach this server at: canal.register.ip and \
         canal.ip are unset, POD_IP is not set and no route to ZooKeeper ({servers}) was found; \
         set canal.register.ip"
    )]
    /// Nothing configured and nothing to derive the address from.
    Unknown {
        /// The ZooKeeper connect string tried for a route.
        servers: String,
    },
}

/// Where the address came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The host to register.
    pub host: String,
    /// Where it came from (a key, `POD_IP`, or the route to ZooKeeper).
    pub source: &'static str,
}

/// Picks the registered host: `canal.register.ip`, else `canal.ip` unless
/// it is a wildcard, else the `POD_IP` environment variable (Kubernetes
/// downward API), else the local address of the route to ZooKeeper (a
/// loopback address only when ZooKeeper itself is on loopback, so every
/// participant is on this host).
pub fn choose(
    register_ip: Option<&str>,
    bind_ip: &str,
    pod_ip: Option<&str>,
    zk_servers: &str,
) -> Result<Registered, AddressError> {
    if let Some(host) = register_ip.map(str::trim).filter(|h| !h.is_empty()) {
        check("canal.register.ip", host)?;
        return Ok(Registered {
            host: host.to_owned(),
            source: "canal.register.ip",
        });
    }
    let bind_ip = bind_ip.trim();
    if !bind_ip.is_empty() && !is_wildcard(bind_ip) {
        check("canal.ip", bind_ip)?;
        return Ok(Registered {
            host: bind_ip.to_owned(),
            source: "canal.ip",
        });
    }
    if let Some(pod_ip) = pod_ip.map(str::trim).filter(|h| !h.is_empty()) {
        check("POD_IP", pod_ip)?;
        return Ok(Registered {
            host: pod_ip.to_owned(),
            source: "POD_IP",
        });
    }
    route_to(zk_servers)
        .map(|ip| Registered {
            host: ip.to_string(),
            source: "route to ZooKeeper",
        })
        .ok_or_else(|| AddressError::Unknown {
            servers: zk_servers.to_owned(),
        })
}

fn is_wildcard(host: &str) -> bool {
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// canal clients split addresses at ':', so IPv6 literals cannot be
/// registered; wildcards reach nobody.
fn check(key: &'static str, host: &str) -> Result<(), AddressError> {
    let unusable = |why| AddressError::Unusable {
        key,
        value: host.to_owned(),
        why,
    };
    if is_wildcard(host) {
        return Err(unusable("a wildcard address reaches nobody"));
    }
    if host.contains(':') {
        return Err(unusable(
            "canal clients split addresses at ':', so IPv6 literals do not work",
        ));
    }
    if host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(unusable("not a host name or IPv4 address"));
    }
    Ok(())
}

/// The local IPv4 address the kernel would use to reach the first
/// ZooKeeper server (no packet is sent: connecting a UDP socket only
/// picks the route).
pub fn route_to(zk_servers: &str) -> Option<IpAddr> {
    for server in zk_servers.split(',') {
        let server = server.trim();
        // A chroot suffix ("host:2181/canal") belongs to the connect string.
        let server = server.split('/').next().unwrap_or(server);
        let target = std::net::ToSocketAddrs::to_socket_addrs(server)
            .ok()
            .and_then(|mut addresses| addresses.find(SocketAddr::is_ipv4));
        let Some(target) = target else {
            continue;
        };
        let socket = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
        if socket.connect(target).is_ok()
            && let Ok(local) = socket.local_addr()
            && !local.ip().is_unspecified()
        {
            return Some(local.ip());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_rejections() {
        let zk = "127.0.0.1:2181";
        let chosen = choose(
            Some("canal-0.canal.ns.svc"),
            "0.0.0.0",
            Some("10.1.2.3"),
            zk,
        )
        .unwrap();
        assert_eq!(chosen.host, "canal-0.canal.ns.svc");
        assert_eq!(
            choose(None, "10.0.0.7", Some("10.1.2.3"), zk).unwrap().host,
            "10.0.0.7"
        );
        let pod = choose(None, "0.0.0.0", Some("10.1.2.3"), zk).unwrap();
        assert_eq!((pod.host.as_str(), pod.source), ("10.1.2.3", "POD_IP"));
        // ZooKeeper on loopback: every participant is on this host.
        let routed = choose(None, "", None, zk).unwrap();
        assert_eq!(
            (routed.host.as_str(), routed.source),
            ("127.0.0.1", "route to ZooKeeper")
        );

        let error = choose(Some("0.0.0.0"), "", None, zk)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("canal.register.ip = \"0.0.0.0\" cannot be registered"),
            "{error}"
        );
        let error = choose(None, "::1", None, zk).unwrap_err().to_string();
        assert!(error.contains("IPv6"), "{error}");
        let error = choose(None, "::", None, "no-port-here")
            .unwrap_err()
            .to_string();
        assert!(error.contains("set canal.register.ip"), "{error}");
    }
}
