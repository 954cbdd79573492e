//! gRPC over TLS: the gateway's server certificate and key (`SSPR_GRPC_TLS_CERT`,
//! `SSPR_GRPC_TLS_KEY`, PEM files), served with rustls (ring).
//!
//! Invariants: both variables or neither (one alone is a configuration error, never a silent
//! fall-back to plaintext); the files are read and parsed at start, so a bad certificate stops
//! the gateway instead of failing the first handshake; errors name the variable and the path,
//! never the key's content. With TLS on, the listener speaks only TLS: a plaintext client fails.

use std::path::PathBuf;

use anyhow::Context;
use sspr_runtime::ConfigError;
use sspr_runtime::settings::var;
use tonic::transport::{Identity, ServerTlsConfig};

/// The PEM files of the gateway's TLS identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcTls {
    /// `SSPR_GRPC_TLS_CERT`: the certificate chain, leaf first.
    pub cert: PathBuf,
    /// `SSPR_GRPC_TLS_KEY`: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl GrpcTls {
    /// From `SSPR_GRPC_TLS_CERT` and `SSPR_GRPC_TLS_KEY`; `None` when neither is set.
    pub fn from_env() -> Result<Option<GrpcTls>, ConfigError> {
        Self::parse(var("SSPR_GRPC_TLS_CERT"), var("SSPR_GRPC_TLS_KEY"))
    }

    /// Both paths or neither.
    pub fn parse(
        cert: Option<String>,
        key: Option<String>,
    ) -> Result<Option<GrpcTls>, ConfigError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(GrpcTls {
                cert: cert.into(),
                key: key.into(),
            })),
            (Some(_), None) => Err(ConfigError::new(
                "SSPR_GRPC_TLS_KEY",
                "is required when SSPR_GRPC_TLS_CERT is set (PEM private key)",
            )),
            (None, Some(_)) => Err(ConfigError::new(
                "SSPR_GRPC_TLS_CERT",
                "is required when SSPR_GRPC_TLS_KEY is set (PEM certificate chain)",
            )),
        }
    }

    /// Reads both files into tonic's server TLS settings.
    pub(crate) fn server_config(&self) -> anyhow::Result<ServerTlsConfig> {
        let cert = std::fs::read(&self.cert)
            .with_context(|| format!("SSPR_GRPC_TLS_CERT: cannot read {}", self.cert.display()))?;
        let key = std::fs::read(&self.key)
            .with_context(|| format!("SSPR_GRPC_TLS_KEY: cannot read {}", self.key.display()))?;
        Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_or_neither() {
        assert_eq!(GrpcTls::parse(None, None).ok(), Some(None));
        assert!(matches!(
            GrpcTls::parse(Some("c.pem".into()), Some("k.pem".into())),
            Ok(Some(_))
        ));
        let e = GrpcTls::parse(Some("c.pem".into()), None).err();
        assert_eq!(e.map(|e| e.variable), Some("SSPR_GRPC_TLS_KEY".to_owned()));
        let e = GrpcTls::parse(None, Some("k.pem".into())).err();
        assert_eq!(e.map(|e| e.variable), Some("SSPR_GRPC_TLS_CERT".to_owned()));
    }

    #[test]
    fn a_missing_file_names_the_variable() {
        let tls = GrpcTls {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let e = tls.server_config().err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.starts_with("SSPR_GRPC_TLS_CERT")));
    }
}
