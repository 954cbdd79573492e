//! Who a connection is and how it is protected: NATS credentials and client TLS.
//!
//! In production every service connects with its own NATS identity (user/password, a `.creds`
//! file or an nkey seed), and the server's subject permissions (`deploy/nats/nats-server.conf`)
//! decide what it may publish and subscribe. Each service also gets an inbox prefix of its own
//! (`_INBOX_<client name>`) so that replies to its requests (which can carry a session id) land
//! on subjects no other identity is allowed to subscribe to.
//!
//! Invariant: no password, seed or key ever reaches `Debug` output or a log line; `Debug`
//! prints only which kind of credential is configured.

use std::path::PathBuf;

use async_nats::{ConnectError, ConnectErrorKind, ConnectOptions};

/// How a connection authenticates to nats-server.
#[derive(Clone, Default)]
pub enum NatsAuth {
    /// No credentials (a development server without authorization).
    #[default]
    Anonymous,
    /// `SSPR_NATS_USER` / `SSPR_NATS_PASSWORD`.
    UserPassword { user: String, password: String },
    /// `SSPR_NATS_CREDS`: a `.creds` file (user JWT and nkey seed).
    CredsFile(PathBuf),
    /// `SSPR_NATS_NKEY_SEED`: an nkey user seed (`SU...`).
    NkeySeed(String),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::UserPassword { user, .. } => write!(f, "UserPassword({user}, <redacted>)"),
            Self::CredsFile(path) => write!(f, "CredsFile({})", path.display()),
            Self::NkeySeed(_) => f.write_str("NkeySeed(<redacted>)"),
        }
    }
}

/// Client TLS towards nats-server. Without a CA the system roots are used for `tls://` URLs.
#[derive(Debug, Clone, Default)]
pub struct NatsTls {
    /// `SSPR_NATS_TLS_CA`: PEM file of the CA that signed the server's certificate; setting it
    /// also makes TLS required.
    pub ca: Option<PathBuf>,
    /// `SSPR_NATS_TLS_CERT` and `SSPR_NATS_TLS_KEY`: PEM client certificate and key, for
    /// servers that verify clients (mutual TLS).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl NatsTls {
    /// True when any TLS option is set (the connection must then be encrypted).
    pub fn is_configured(&self) -> bool {
        self.ca.is_some() || self.client_cert.is_some()
    }
}

/// Adds credentials and TLS settings to `options`.
pub(crate) async fn apply(
    mut options: ConnectOptions,
    auth: &NatsAuth,
    tls: &NatsTls,
) -> Result<ConnectOptions, ConnectError> {
    options = match auth {
        NatsAuth::Anonymous => options,
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.clone())
        }
        NatsAuth::CredsFile(path) => options
            .credentials_file(path)
            .await
            .map_err(|e| ConnectError::with_source(ConnectErrorKind::Authentication, e))?,
        NatsAuth::NkeySeed(seed) => options.nkey(seed.clone()),
    };
    if let Some(ca) = &tls.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &tls.client_cert {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if tls.is_configured() {
        options = options.require_tls(true);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_a_password_or_seed() {
        let auth = NatsAuth::UserPassword {
            user: "verification".into(),
            password: "s3cret-pw".into(),
        };
        let printed = format!("{auth:?}");
        assert!(printed.contains("verification") && !printed.contains("s3cret-pw"));
        let seed = NatsAuth::NkeySeed("SUAEXAMPLESEED".into());
        assert!(!format!("{seed:?}").contains("SUAEXAMPLESEED"));
    }

    #[test]
    fn any_tls_option_makes_tls_required() {
        assert!(!NatsTls::default().is_configured());
        let tls = NatsTls {
            ca: Some("ca.pem".into()),
            client_cert: None,
        };
        assert!(tls.is_configured());
    }
}
