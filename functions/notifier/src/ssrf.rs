//! The SSRF guard: webhooks never reach loopback, private, link-local or cloud-metadata
//! addresses, nor plain http, unless a local setting allows it.
//!
//! Host names are checked by the HTTP client's own DNS resolver at connect time, so a name
//! that resolves to a public address when checked and a private one when used (DNS rebinding)
//! is still refused. IP literals, which skip DNS, are checked before the request.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is refused, or `None` when it is a public unicast address.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => forbidden_v4(v4),
            None => forbidden_v6(v6),
        },
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if ip.is_private() {
        Some("private")
    } else if a == 100 && (64..128).contains(&b) {
        Some("shared address space")
    } else if ip.is_unspecified() || a == 0 {
        Some("unspecified")
    } else if ip.is_broadcast() || ip.is_multicast() {
        Some("broadcast or multicast")
    } else {
        None
    }
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if first & 0xfe00 == 0xfc00 {
        // Includes fd00:ec2::254, the EC2 metadata service over IPv6.
        Some("unique local (private or cloud metadata)")
    } else if first & 0xffc0 == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// A destination refused by the guard.
#[derive(Debug, Clone, thiserror::Error)]
#[error("refused destination {host}: {why}")]
pub struct Refused {
    /// The host.
    pub host: String,
    /// Why.
    pub why: String,
}

/// The HTTP client's DNS resolver: the system's, minus every forbidden address.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| forbidden(a.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                let why = all
                    .first()
                    .and_then(|a| {
                        forbidden(a.ip()).map(|w| format!("resolves to {} ({w})", a.ip()))
                    })
                    .unwrap_or_else(|| "resolves to no address".to_owned());
                return Err(
                    Box::new(Refused { host, why }) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The resolver, shared by the client.
pub fn resolver() -> Arc<GuardedResolver> {
    Arc::new(GuardedResolver)
}

/// Checks what can be checked before connecting: the scheme, and IP-literal hosts.
///
/// # Errors
/// When the URL is not https, or names a forbidden address.
pub fn check_url(url: &reqwest::Url) -> Result<(), Refused> {
    let host = url.host_str().unwrap_or_default().to_owned();
    if url.scheme() != "https" {
        return Err(Refused {
            host,
            why: format!("scheme {} is not https", url.scheme()),
        });
    }
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        _ => None,
    };
    match ip.and_then(|ip| forbidden(ip).map(|w| (ip, w))) {
        Some((ip, why)) => Err(Refused {
            host,
            why: format!("{ip} is {why}"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_metadata_addresses_are_refused_public_ones_allowed() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(
                forbidden(ip.parse().expect("ip")).is_some(),
                "{ip} must be refused"
            );
        }
        for ip in ["8.8.8.8", "52.94.236.248", "2600:1f18::1"] {
            assert!(
                forbidden(ip.parse().expect("ip")).is_none(),
                "{ip} must be allowed"
            );
        }
    }

    #[test]
    fn urls_need_https_and_a_public_literal() {
        let ok = |u: &str| check_url(&u.parse().expect("url"));
        assert!(ok("https://hooks.example.com/x").is_ok());
        assert!(ok("http://hooks.example.com/x").is_err());
        assert!(ok("https://169.254.169.254/latest/meta-data").is_err());
        assert!(ok("https://[::1]:8443/").is_err());
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_that_resolve_to_loopback() {
        let err = GuardedResolver
            .resolve("localhost".parse().expect("name"))
            .await
            .err()
            .expect("localhost is refused");
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}
