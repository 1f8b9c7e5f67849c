//! The client's address, as per-address limits key it: the TCP peer — or, only when the peer is
//! one of the configured trusted proxies (`server.trusted_proxies`, e.g. the gateway), the
//! address the proxies recorded in `X-Forwarded-For`. Anyone else's `X-Forwarded-For` is
//! ignored: a client cannot choose its own address. An IPv6 address is keyed by its /64, the
//! block one subscriber gets (2^64 addresses would be 2^64 budgets).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

/// Addresses and networks (`10.0.0.0/8`, `::1`) whose `X-Forwarded-For` is believed: a list
/// separated by commas (settings), empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TryFrom<String> for TrustedProxies {
    type Error = String;

    fn try_from(list: String) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (address, prefix) = match entry.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (entry, None),
            };
            let written: IpAddr = address
                .parse()
                .map_err(|_| format!("trusted_proxies: {entry:?} is not an address or network"))?;
            let longest = if written.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= longest)
                    .ok_or_else(|| format!("trusted_proxies: {entry:?} has no valid prefix"))?,
                None => longest,
            };
            // An IPv4 network written as IPv6 (`::ffff:10.0.0.0/104`) is that IPv4 network:
            // its prefix counts the 96 bits of the mapping too.
            let address = canonical(written);
            let prefix = if address.is_ipv4() && written.is_ipv6() {
                prefix.checked_sub(96).ok_or_else(|| {
                    format!("trusted_proxies: {entry:?} is wider than the IPv4 addresses it maps")
                })?
            } else {
                prefix
            };
            nets.push((address, prefix));
        }
        Ok(Self(nets))
    }
}

impl<'de> serde::Deserialize<'de> for TrustedProxies {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list = String::deserialize(deserializer)?;
        Self::try_from(list).map_err(serde::de::Error::custom)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    address.to_canonical()
}

fn bits(address: IpAddr) -> (u128, u8) {
    match address {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    }
}

impl TrustedProxies {
    pub fn contains(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        let (value, width) = bits(address);
        self.0.iter().any(|(net, prefix)| {
            let (net, net_width) = bits(*net);
            if net_width != width {
                return false;
            }
            let Some(shift) = width.checked_sub(*prefix).map(u32::from) else {
                return false;
            };
            let mask = if shift >= 128 { 0 } else { u128::MAX << shift };
            value & mask == net & mask
        })
    }

    /// The client behind `peer`: `peer` itself unless it is trusted; else the rightmost address
    /// of `X-Forwarded-For` (every such header, in order) that is not a trusted proxy — the
    /// last hop a trusted proxy saw. An entry that is not an address ends the walk at the
    /// trusted hop before it.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.contains(client) {
            return client;
        }
        // Entry by entry, as bytes: one entry that is not ASCII must not hide the others
        // (a proxy appends the real address to whatever the client sent).
        let forwarded: Vec<&[u8]> = headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .collect();
        for entry in forwarded.iter().rev() {
            let entry = std::str::from_utf8(entry).map(str::trim);
            match entry.ok().and_then(|e| e.parse::<IpAddr>().ok()).ok_or(()) {
                Ok(address) => {
                    client = canonical(address);
                    if !self.contains(client) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }
}

/// The client's address as the edge found it ([`client_address`]), for the handlers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// What per-address limits count under: an IPv4 address, or an IPv6 address's /64.
    pub fn limit_key(self) -> String {
        match self.0 {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        }
    }
}

/// Middleware (`from_fn_with_state`): puts the request's [`ClientIp`] into its extensions.
pub async fn client_address(
    State(trusted): State<Arc<TrustedProxies>>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let client = trusted.client(peer.ip(), request.headers());
        request.extensions_mut().insert(ClientIp(client));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_peer_may_name_the_client() {
        let trusted = TrustedProxies::try_from("10.0.0.0/8, ::1".to_owned()).unwrap();
        let headers = forwarded(&["203.0.113.7"]);
        assert_eq!(
            trusted.client(ip("198.51.100.1"), &headers),
            ip("198.51.100.1")
        );
        assert_eq!(trusted.client(ip("10.1.2.3"), &headers), ip("203.0.113.7"));
        assert_eq!(trusted.client(ip("::1"), &headers), ip("203.0.113.7"));
        // Nothing configured: nobody is believed.
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("10.1.2.3"), &headers), ip("10.1.2.3"));
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client_whatever_the_client_prepended() {
        let trusted = TrustedProxies::try_from("10.0.0.0/8".to_owned()).unwrap();
        // The client wrote "1.1.1.1" itself; the gateway appended what it saw, then another
        // trusted proxy appended the gateway.
        let headers = forwarded(&["1.1.1.1, 203.0.113.7", "10.0.0.5"]);
        assert_eq!(trusted.client(ip("10.0.0.9"), &headers), ip("203.0.113.7"));
        // Garbage ends the walk at the last trusted hop.
        let headers = forwarded(&["not-an-ip, 10.0.0.5"]);
        assert_eq!(trusted.client(ip("10.0.0.9"), &headers), ip("10.0.0.5"));
        // No header: the proxy itself.
        assert_eq!(
            trusted.client(ip("10.0.0.9"), &HeaderMap::new()),
            ip("10.0.0.9")
        );
    }

    #[test]
    fn an_ipv6_client_is_keyed_by_its_64_and_mapped_ipv4_is_ipv4() {
        let a = ClientIp(ip("2001:db8:1:2:aaaa::1")).limit_key();
        let b = ClientIp(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")).limit_key();
        let other = ClientIp(ip("2001:db8:1:3::1")).limit_key();
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a, "2001:db8:1:2::/64");
        assert_eq!(ClientIp(ip("192.0.2.1")).limit_key(), "192.0.2.1");
        let trusted = TrustedProxies::try_from("192.0.2.0/24".to_owned()).unwrap();
        assert!(trusted.contains(ip("::ffff:192.0.2.9")));
    }

    #[test]
    fn an_ipv4_network_written_as_ipv6_is_that_network_and_trusts_no_one_else() {
        let trusted = TrustedProxies::try_from("::ffff:172.30.0.10".to_owned()).unwrap();
        assert!(trusted.contains(ip("172.30.0.10")));
        assert!(!trusted.contains(ip("172.30.0.11")));
        assert!(!trusted.contains(ip("8.8.8.8")));
        let trusted = TrustedProxies::try_from("::ffff:10.0.0.0/104".to_owned()).unwrap();
        assert!(trusted.contains(ip("10.9.9.9")) && !trusted.contains(ip("11.0.0.1")));
        assert!(TrustedProxies::try_from("::ffff:0:0/90".to_owned()).is_err());
    }

    #[test]
    fn an_entry_that_is_not_ascii_does_not_hide_the_address_a_proxy_appended() {
        let trusted = TrustedProxies::try_from("10.0.0.0/8".to_owned()).unwrap();
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.7").unwrap(),
        );
        assert_eq!(trusted.client(ip("10.0.0.9"), &headers), ip("203.0.113.7"));
    }

    #[test]
    fn a_bad_entry_is_an_error_naming_it() {
        for bad in ["10.0.0.0/33", "gateway", "::1/129", "10.0.0.0/x"] {
            let error = TrustedProxies::try_from(bad.to_owned()).unwrap_err();
            assert!(error.contains(bad), "{error}");
        }
        assert_eq!(
            TrustedProxies::try_from(" ".to_owned()).unwrap(),
            TrustedProxies::default()
        );
    }
}
