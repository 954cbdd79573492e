//! Who the client is, for per-IP throttles downstream.
//!
//! Without trusted proxies (`hops == 0`) the client is the TCP peer and `X-Forwarded-For` is
//! ignored: anyone can write that header. Behind `hops` trusted proxies, each proxy appends the
//! address it saw, so the client is the `hops`-th entry from the right; entries further left
//! were written by the client itself and are never believed. When the header is missing or that
//! entry is not an IP address, the peer address is used.

use std::net::{IpAddr, SocketAddr};

/// The client address to pass on, as text (empty only when nothing is known).
///
/// `forwarded_for` is every `X-Forwarded-For` value in the order received.
pub fn resolve<'a>(
    forwarded_for: impl IntoIterator<Item = &'a str>,
    peer: Option<SocketAddr>,
    hops: usize,
) -> String {
    let from_header = (hops > 0)
        .then(|| from_forwarded_for(forwarded_for, hops))
        .flatten();
    from_header
        .or_else(|| peer.map(|p| p.ip()))
        .map(|ip| ip.to_canonical().to_string())
        .unwrap_or_default()
}

fn from_forwarded_for<'a>(
    values: impl IntoIterator<Item = &'a str>,
    hops: usize,
) -> Option<IpAddr> {
    let entries: Vec<&str> = values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    // Fewer entries than trusted hops: every entry was written by a trusted proxy, and the
    // leftmost is the furthest one's view of the client.
    let index = entries.len().saturating_sub(hops);
    parse_entry(entries.get(index)?)
}

/// Accepts `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` and `[2001:db8::1]:443`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn peer() -> Option<SocketAddr> {
        Some(SocketAddr::from(([10, 0, 0, 9], 40000)))
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        assert_eq!(resolve(["203.0.113.7"], peer(), 0), "10.0.0.9");
        assert_eq!(resolve([], peer(), 0), "10.0.0.9");
        assert_eq!(resolve([], None, 0), "");
    }

    #[test]
    fn one_trusted_proxy_means_the_rightmost_entry() {
        assert_eq!(
            resolve(["198.51.100.1, 203.0.113.7"], peer(), 1),
            "203.0.113.7"
        );
        assert_eq!(
            resolve(["198.51.100.1", "203.0.113.7"], peer(), 1),
            "203.0.113.7"
        );
        assert_eq!(resolve(["203.0.113.7"], peer(), 1), "203.0.113.7");
    }

    #[test]
    fn more_hops_count_from_the_right() {
        let xff = ["spoofed, 203.0.113.7, 192.0.2.1"];
        assert_eq!(resolve(xff, peer(), 2), "203.0.113.7");
        assert_eq!(resolve(["203.0.113.7"], peer(), 3), "203.0.113.7");
    }

    #[test]
    fn garbage_or_missing_header_falls_back_to_the_peer() {
        assert_eq!(resolve([], peer(), 1), "10.0.0.9");
        assert_eq!(resolve(["unknown"], peer(), 1), "10.0.0.9");
        assert_eq!(resolve([" , "], peer(), 1), "10.0.0.9");
    }

    #[test]
    fn ports_and_ipv6_are_understood() {
        assert_eq!(resolve(["203.0.113.7:5678"], peer(), 1), "203.0.113.7");
        assert_eq!(resolve(["2001:db8::1"], peer(), 1), "2001:db8::1");
        assert_eq!(resolve(["[2001:db8::1]:443"], peer(), 1), "2001:db8::1");
        let mapped: IpAddr = "::ffff:192.0.2.5".parse().unwrap();
        let mapped = Some(SocketAddr::from((mapped, 1)));
        assert_eq!(resolve([], mapped, 0), "192.0.2.5");
    }
}
