//! Keeping users' base URLs off internal addresses (server-side request forgery).
//!
//! A base URL a user sets is a request the server makes on their behalf. With
//! `llm.allow_private_base_urls = false` such URLs may not be, or resolve to, loopback,
//! private, link-local or otherwise non-public addresses: they are refused when saved, and
//! every connection to them goes through [`PublicOnlyResolver`], which checks the addresses
//! actually connected to (so a name that changes its answer after the check gains nothing).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::error::LlmError;

/// Whether `ip` is an address a user's endpoint may not use.
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => is_internal_v6(v6),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        // Shared address space (carrier-grade NAT), 100.64.0.0/10.
        || (a == 100 && (b & 0xc0) == 64)
        // IETF protocol assignments, 192.0.0.0/24, and benchmarking, 198.18.0.0/15.
        || (a == 192 && b == 0 && ip.octets()[2] == 0)
        || (a == 198 && (b & 0xfe) == 18)
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // Unique local, fc00::/7.
        || (first & 0xfe00) == 0xfc00
        // Link-local, fe80::/10.
        || (first & 0xffc0) == 0xfe80
        // IPv4-mapped and IPv4-compatible addresses carry an IPv4 address.
        || ip.to_ipv4().is_some_and(is_internal_v4)
}

/// The refusal for `base_url` reaching `ip`.
fn refused(base_url: &str, ip: IpAddr) -> LlmError {
    LlmError::InvalidSettings(format!(
        "the base URL {base_url} reaches {ip}, a loopback, private or link-local address; this \
         server only calls public addresses for users (llm.allow_private_base_urls is false)"
    ))
}

/// The host of an http(s) URL, with IPv6 brackets removed.
fn host(base_url: &str) -> Result<(String, u16), LlmError> {
    let url = reqwest::Url::parse(base_url)
        .map_err(|_| LlmError::InvalidSettings(format!("“{base_url}” is not an http(s) URL")))?;
    let host = url
        .host_str()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .ok_or_else(|| LlmError::InvalidSettings(format!("“{base_url}” has no host")))?;
    Ok((host, url.port_or_known_default().unwrap_or(80)))
}

/// Refuses a base URL whose host is an internal IP address (names are left to the resolver).
pub(crate) fn check_literal_host(base_url: &str) -> Result<(), LlmError> {
    let (host, _) = host(base_url)?;
    match host.parse::<IpAddr>() {
        Ok(ip) if is_internal(ip) => Err(refused(base_url, ip)),
        _ => Ok(()),
    }
}

/// Refuses a base URL that is, or resolves to, any internal address, with a message saying
/// why; a name that does not resolve is refused too.
pub(crate) async fn check_base_url(base_url: &str) -> Result<(), LlmError> {
    let (host, port) = host(base_url)?;
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if is_internal(ip) {
            Err(refused(base_url, ip))
        } else {
            Ok(())
        };
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|err| {
            LlmError::InvalidSettings(format!(
                "the host of the base URL {base_url} could not be resolved ({err})"
            ))
        })?
        .collect();
    match addrs.iter().find(|addr| is_internal(addr.ip())) {
        Some(addr) => Err(refused(base_url, addr.ip())),
        None if addrs.is_empty() => Err(LlmError::InvalidSettings(format!(
            "the host of the base URL {base_url} has no addresses"
        ))),
        None => Ok(()),
    }
}

/// Resolves names with the system resolver and fails when any address is internal, so
/// a connection can only reach public addresses.
pub(crate) struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(addr) = addrs.iter().find(|addr| is_internal(addr.ip())) {
                return Err(format!(
                    "{host} resolves to {}, an internal address this server does not call for users",
                    addr.ip()
                )
                .into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            let ip: IpAddr = internal.parse().unwrap_or(IpAddr::V4(Ipv4Addr::BROADCAST));
            assert!(is_internal(ip), "{internal}");
        }
        for public in ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            let ip: IpAddr = public.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
            assert!(!is_internal(ip), "{public}");
        }
    }

    #[tokio::test]
    async fn base_urls_are_checked_by_address_and_by_name() {
        assert!(check_literal_host("http://[::1]:8000/v1").is_err());
        assert!(check_literal_host("http://example.invalid/v1").is_ok());
        assert!(check_base_url("http://169.254.169.254/latest")
            .await
            .is_err());
        assert!(check_base_url("http://localhost:11434/v1").await.is_err());
        assert!(check_base_url("https://93.184.215.14/v1").await.is_ok());
        let err = check_base_url("http://10.0.0.5:8000/v1").await;
        assert!(
            err.as_ref()
                .is_err_and(|e| e.to_string().contains("10.0.0.5")),
            "{err:?}"
        );
    }
}
