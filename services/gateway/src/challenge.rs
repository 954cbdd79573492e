//! The configured CAPTCHA verifier (`SSPR_CHALLENGE_VERIFY_URL`, `SSPR_CHALLENGE_SECRET`): one
//! siteverify POST per StartReset that carries a challenge token.
//!
//! Invariants: the token and the secret travel only in the request body; neither is ever
//! logged. A verifier that fails (unreachable, an error status, an answer that is not
//! `"success": true`) means "not passed": the verification service then decides whether a
//! challenge was needed at all.

use std::time::Duration;

use sspr_runtime::settings::{ConfigError, Secret};

use crate::domain::challenge::{form_body, passed};

/// How long a verifier may take before the challenge counts as not passed.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to verify challenge tokens.
#[derive(Debug, Clone)]
pub struct ChallengeConfig {
    pub verify_url: reqwest::Url,
    pub secret: Secret<String>,
}

impl ChallengeConfig {
    /// From `SSPR_CHALLENGE_VERIFY_URL` (an `http://` URL: this build has no TLS client, so put
    /// a TLS-terminating proxy in front of an `https://` verifier) and `SSPR_CHALLENGE_SECRET`
    /// (required with the URL). `None` when no URL is set.
    pub fn parse(url: Option<String>, secret: Option<String>) -> Result<Option<Self>, ConfigError> {
        const URL: &str = "SSPR_CHALLENGE_VERIFY_URL";
        let Some(raw) = url else { return Ok(None) };
        let verify_url = reqwest::Url::parse(raw.trim())
            .map_err(|e| ConfigError::new(URL, format!("is not a URL: {e}")))?;
        if verify_url.scheme() != "http" {
            return Err(ConfigError::new(
                URL,
                "must be an http:// URL (this build has no TLS client; use a local TLS proxy)",
            ));
        }
        let secret = secret.filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            ConfigError::new(
                "SSPR_CHALLENGE_SECRET",
                "is required with SSPR_CHALLENGE_VERIFY_URL (the verifier's secret key)",
            )
        })?;
        Ok(Some(Self {
            verify_url,
            secret: Secret::new(secret),
        }))
    }
}

/// Calls the verifier.
#[derive(Debug, Clone)]
pub struct ChallengeVerifier {
    client: reqwest::Client,
    config: ChallengeConfig,
}

impl ChallengeVerifier {
    pub fn new(config: ChallengeConfig) -> Result<Self, reqwest::Error> {
        // When reqwest is built with rustls (notification's https providers share the build),
        // it needs a crypto provider: ring, already in the tree. Harmless otherwise.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().timeout(VERIFY_TIMEOUT).build()?;
        Ok(Self { client, config })
    }

    /// Whether the verifier accepts `token` for a client at `remote_ip`.
    #[tracing::instrument(skip_all)]
    pub async fn verify(&self, token: &str, remote_ip: &str) -> bool {
        let body = form_body(&[
            ("secret", self.config.secret.expose()),
            ("response", token),
            ("remoteip", remote_ip),
        ]);
        let sent = self
            .client
            .post(self.config.verify_url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                tracing::warn!(
                    status = r.status().as_u16(),
                    "the challenge verifier refused"
                );
                return false;
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "the challenge verifier is unreachable");
                return false;
            }
        };
        match response.bytes().await {
            Ok(answer) => {
                let ok = passed(&answer);
                if !ok {
                    tracing::info!("challenge not passed");
                }
                ok
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "reading the challenge verifier's answer failed");
                false
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_url_must_be_http_and_needs_a_secret() {
        assert!(ChallengeConfig::parse(None, None).unwrap().is_none());
        let ok = ChallengeConfig::parse(
            Some("http://127.0.0.1:9000/siteverify".into()),
            Some("s3cr3t".into()),
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.verify_url.path(), "/siteverify");
        assert!(!format!("{ok:?}").contains("s3cr3t"));
        let err = ChallengeConfig::parse(Some("http://127.0.0.1:9000/".into()), None).unwrap_err();
        assert_eq!(err.variable, "SSPR_CHALLENGE_SECRET");
        let err = ChallengeConfig::parse(
            Some("https://hcaptcha.com/siteverify".into()),
            Some("s".into()),
        )
        .unwrap_err();
        assert_eq!(err.variable, "SSPR_CHALLENGE_VERIFY_URL");
        assert!(ChallengeConfig::parse(Some("not a url".into()), Some("s".into())).is_err());
    }
}
