//! `airlock env`: the shell exports that point an agent's tools at the gateway.
//!
//! This module owns computing, per configured upstream, the base-URL variable (the
//! gateway URL of that upstream) and the key variable (the task token, a phantom
//! credential worth nothing outside the gateway), and quoting them for a POSIX shell.
//!
//! It must never print a vault secret: the only credential it ever sees is a task token.

use crate::config::Config;

/// `(variable, value)` pairs for `token`, in configuration order.
pub fn exports(config: &Config, token: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for u in &config.upstreams {
        let Some(vars) = &u.env_vars else { continue };
        if let Some(v) = &vars.base_url {
            out.push((v.clone(), format!("{}/{}", config.public_url, u.name)));
        }
        if let Some(v) = &vars.key {
            out.push((v.clone(), token.to_owned()));
        }
    }
    out.push(("AIRLOCK_GATEWAY_URL".into(), config.public_url.clone()));
    out
}

/// Forward-proxy mode: `(variable, value)` pairs that send clients' HTTPS through the
/// gateway (`HTTPS_PROXY`, `https_proxy`) and make them trust the local airlock CA.
///
/// `ca_bundle` is `ca-bundle.pem` (airlock CA + system roots, for clients whose variable
/// *replaces* their roots: `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`,
/// `GIT_SSL_CAINFO`, `AWS_CA_BUNDLE`); `ca_cert` is `ca.pem` alone, for
/// `NODE_EXTRA_CA_CERTS`, which *adds* to Node's roots. Both are public certificates; the
/// CA key is never named here.
pub fn proxy_exports(config: &Config, ca_cert: &std::path::Path, ca_bundle: &std::path::Path) -> Vec<(String, String)> {
    let bundle = ca_bundle.display().to_string();
    let mut out = vec![("HTTPS_PROXY".to_owned(), config.public_url.clone()), ("https_proxy".to_owned(), config.public_url.clone())];
    for v in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "AWS_CA_BUNDLE"] {
        out.push((v.to_owned(), bundle.clone()));
    }
    out.push(("NODE_EXTRA_CA_CERTS".to_owned(), ca_cert.display().to_string()));
    out
}

/// Render exports as `export NAME='value'` lines, single-quoted for POSIX shells.
pub fn render(exports: &[(String, String)]) -> String {
    let mut s = String::new();
    for (k, v) in exports {
        s.push_str("export ");
        s.push_str(k);
        s.push_str("='");
        s.push_str(&v.replace('\'', r"'\''"));
        s.push_str("'\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn exports_point_at_gateway() {
        let c = Config::parse(
            r#"
[gateway]
public_url = "http://127.0.0.1:7700/"
[[upstream]]
name = "openai"
base_url = "https://api.openai.com/v1"
environment = "staging"
secret = "openai-key"
inject = { header = "Authorization", format = "Bearer {secret}" }
env_vars = { base_url = "OPENAI_BASE_URL", key = "OPENAI_API_KEY" }
"#,
            Path::new("a.toml"),
        )
        .unwrap();
        let e = exports(&c, "tok'en");
        assert_eq!(e[0], ("OPENAI_BASE_URL".into(), "http://127.0.0.1:7700/openai".into()));
        assert_eq!(e[1].1, "tok'en");
        let r = render(&e);
        assert!(r.contains("export OPENAI_API_KEY='tok'\\''en'\n"), "{r}");
    }

    #[test]
    fn proxy_exports_name_certificates_only() {
        let c = Config::parse("[gateway]\npublic_url = \"http://127.0.0.1:7700\"\n", Path::new("a.toml")).unwrap();
        let e = proxy_exports(&c, Path::new("/s/ca.pem"), Path::new("/s/ca-bundle.pem"));
        let get = |k: &str| e.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HTTPS_PROXY"), Some("http://127.0.0.1:7700"));
        assert_eq!(get("SSL_CERT_FILE"), Some("/s/ca-bundle.pem"));
        assert_eq!(get("CURL_CA_BUNDLE"), Some("/s/ca-bundle.pem"));
        assert_eq!(get("NODE_EXTRA_CA_CERTS"), Some("/s/ca.pem"));
        assert!(e.iter().all(|(_, v)| !v.contains("ca.key")));
    }
}
