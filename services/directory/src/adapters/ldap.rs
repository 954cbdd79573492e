//! LDAP password writeback: the [`PasswordWriteback`] connector that sets a user's password in
//! an LDAP directory, selected by `SSPR_LDAP_URL` (see [`LdapSettings::from_env`]).
//!
//! Modes:
//! - `openldap` (default): `ldap://` + StartTLS, simple bind as the service account, then the
//!   Password Modify extended operation (RFC 3062, OID 1.3.6.1.4.1.4203.1.11.1) with
//!   `userIdentity` = the user's DN and `newPasswd`; the server hashes it per its own settings.
//! - `ad` (Active Directory): `ldaps://`, simple bind, then modify-replace of `unicodePwd` with
//!   the password in double quotes, UTF-16LE encoded ([`ad_unicode_pwd`]); AD accepts this only
//!   over an encrypted connection.
//!
//! Invariants:
//! - The password never travels in clear text: `openldap` refuses to proceed unless StartTLS
//!   succeeds, `ad` requires `ldaps://`. The server certificate is checked against
//!   `SSPR_LDAP_CA_FILE` when set (only that CA is trusted), else the system roots.
//! - The service account should be a dedicated one whose ACL only allows writing
//!   `userPassword` (never the directory admin); nothing here needs more.
//! - The user id goes into the DN template escaped per RFC 4514 ([`escape_dn_value`]), so a
//!   user id cannot change the DN's structure.
//! - One fresh connection per change, bounded by [`OPERATION_TIMEOUT`]; errors carry the LDAP
//!   result code and the server's diagnostic text, never the password.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ldap3::exop::PasswordModify;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Mod};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sspr_runtime::ConfigError;
use sspr_runtime::settings::{Secret, required, var};

use crate::domain::ids::UserId;
use crate::domain::password::Password;
use crate::ports::{ConnectorError, PasswordWriteback};

/// Longest a whole writeback (connect, TLS, bind, change) may take.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const NAME: &str = "ldap";

/// How the password is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LdapMode {
    /// StartTLS + Password Modify extended operation (RFC 3062).
    OpenLdap,
    /// LDAPS + modify-replace `unicodePwd`.
    ActiveDirectory,
}

impl LdapMode {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "openldap" => Some(Self::OpenLdap),
            "ad" => Some(Self::ActiveDirectory),
            _ => None,
        }
    }
}

/// Settings of the LDAP connector; the bind password is a [`Secret`].
#[derive(Debug, Clone)]
pub struct LdapSettings {
    pub url: String,
    pub bind_dn: String,
    pub bind_password: Secret<String>,
    /// Contains `{user}` exactly once, e.g. `uid={user},ou=people,dc=example,dc=org`.
    pub user_dn_template: String,
    pub mode: LdapMode,
    /// TLS client settings trusting only the CA of `SSPR_LDAP_CA_FILE`; `None`: system roots.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl LdapSettings {
    /// Reads `SSPR_LDAP_*`. `None` when `SSPR_LDAP_URL` is unset (the built-in store only);
    /// otherwise `SSPR_LDAP_BIND_DN`, `SSPR_LDAP_BIND_PASSWORD` and
    /// `SSPR_LDAP_USER_DN_TEMPLATE` are required, `SSPR_LDAP_MODE` is `openldap` (default) or
    /// `ad`, and `SSPR_LDAP_CA_FILE` (optional) is a PEM file with the CA(s) to trust.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        let Some(url) = var("SSPR_LDAP_URL") else {
            return Ok(None);
        };
        let mode = match var("SSPR_LDAP_MODE") {
            None => LdapMode::OpenLdap,
            Some(raw) => LdapMode::parse(&raw).ok_or_else(|| {
                ConfigError::new("SSPR_LDAP_MODE", "expected \"openldap\" or \"ad\"")
            })?,
        };
        Self::new(
            &url,
            &required(
                "SSPR_LDAP_BIND_DN",
                "the DN of the password writeback account",
            )?,
            Secret::new(required(
                "SSPR_LDAP_BIND_PASSWORD",
                "the password of the writeback account",
            )?),
            &required(
                "SSPR_LDAP_USER_DN_TEMPLATE",
                "a DN with {user}, e.g. uid={user},ou=people,dc=example,dc=org",
            )?,
            mode,
            var("SSPR_LDAP_CA_FILE").map(PathBuf::from),
        )
        .map(Some)
    }

    /// Validates the settings and loads the CA file (errors name the `SSPR_LDAP_*` variable).
    pub fn new(
        url: &str,
        bind_dn: &str,
        bind_password: Secret<String>,
        user_dn_template: &str,
        mode: LdapMode,
        ca_file: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let url = url.trim().to_owned();
        let scheme_ok = match mode {
            LdapMode::OpenLdap => url.starts_with("ldap://"),
            LdapMode::ActiveDirectory => url.starts_with("ldaps://"),
        };
        if !scheme_ok {
            return Err(ConfigError::new(
                "SSPR_LDAP_URL",
                match mode {
                    LdapMode::OpenLdap => {
                        "expected ldap://host:port (StartTLS is used) in openldap mode"
                    }
                    LdapMode::ActiveDirectory => "expected ldaps://host:port in ad mode",
                },
            ));
        }
        if bind_dn.trim().is_empty() {
            return Err(ConfigError::new("SSPR_LDAP_BIND_DN", "must not be empty"));
        }
        if user_dn_template.matches("{user}").count() != 1 {
            return Err(ConfigError::new(
                "SSPR_LDAP_USER_DN_TEMPLATE",
                "must contain {user} exactly once, e.g. uid={user},ou=people,dc=example,dc=org",
            ));
        }
        let tls = ca_file.map(|path| load_ca(&path)).transpose()?;
        Ok(Self {
            url,
            bind_dn: bind_dn.trim().to_owned(),
            bind_password,
            user_dn_template: user_dn_template.trim().to_owned(),
            mode,
            tls,
        })
    }

    /// The DN of `user_id`: the template with `{user}` replaced by the escaped id.
    pub fn user_dn(&self, user_id: &UserId) -> String {
        self.user_dn_template
            .replace("{user}", &escape_dn_value(user_id.as_str()))
    }
}

fn load_ca(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, ConfigError> {
    const VAR: &str = "SSPR_LDAP_CA_FILE";
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::new(VAR, format!("cannot read {}: {e}", path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| {
            ConfigError::new(VAR, format!("{} is not valid PEM: {e}", path.display()))
        })?;
        roots.add(cert).map_err(|e| {
            ConfigError::new(
                VAR,
                format!("{}: unusable CA certificate: {e}", path.display()),
            )
        })?;
    }
    if roots.is_empty() {
        return Err(ConfigError::new(
            VAR,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new(VAR, format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Escapes an attribute value for a DN string (RFC 4514 section 2.4): `"`, `+`, `,`, `;`,
/// `<`, `=`, `>` and `\` anywhere, `#` or a space at the start, a space at the end get a
/// backslash; NUL becomes `\00`.
pub fn escape_dn_value(value: &str) -> String {
    let last = value.chars().count().saturating_sub(1);
    let mut out = String::with_capacity(value.len() + 8);
    for (i, c) in value.chars().enumerate() {
        match c {
            '\0' => out.push_str("\\00"),
            '"' | '+' | ',' | ';' | '<' | '=' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            _ => out.push(c),
        }
    }
    out
}

/// The `unicodePwd` value Active Directory expects: the password in double quotes, UTF-16LE.
pub fn ad_unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// The LDAP writeback connector.
#[derive(Debug, Clone)]
pub struct LdapWriteback {
    settings: LdapSettings,
}

impl LdapWriteback {
    pub fn new(settings: LdapSettings) -> Self {
        Self { settings }
    }

    async fn write(&self, dn: &str, password: &Password) -> Result<(), ConnectorError> {
        let s = &self.settings;
        let mut conn_settings = LdapConnSettings::new()
            .set_conn_timeout(CONNECT_TIMEOUT)
            .set_starttls(s.mode == LdapMode::OpenLdap);
        if let Some(tls) = &s.tls {
            conn_settings = conn_settings.set_config(tls.clone());
        }
        // StartTLS failing is an error here (ldap3 does not fall back to clear text).
        let (conn, mut ldap) = LdapConnAsync::with_settings(conn_settings, &s.url)
            .await
            .map_err(|e| failure("connecting", e))?;
        ldap3::drive!(conn);
        let result = self.bind_and_change(&mut ldap, dn, password).await;
        let _ = ldap.unbind().await;
        result
    }

    async fn bind_and_change(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        password: &Password,
    ) -> Result<(), ConnectorError> {
        let s = &self.settings;
        ldap.with_timeout(OPERATION_TIMEOUT)
            .simple_bind(&s.bind_dn, s.bind_password.expose())
            .await
            .and_then(|r| r.success())
            .map_err(|e| failure("binding as the writeback account", e))?;
        match s.mode {
            LdapMode::OpenLdap => {
                ldap.with_timeout(OPERATION_TIMEOUT)
                    .extended(PasswordModify {
                        user_id: Some(dn),
                        old_pass: None,
                        new_pass: Some(password.expose()),
                    })
                    .await
                    .and_then(|r| r.success())
                    .map_err(|e| failure("password modify extended operation", e))?;
            }
            LdapMode::ActiveDirectory => {
                let value = ad_unicode_pwd(password.expose());
                ldap.with_timeout(OPERATION_TIMEOUT)
                    .modify(
                        dn,
                        vec![Mod::Replace(b"unicodePwd".to_vec(), HashSet::from([value]))],
                    )
                    .await
                    .and_then(|r| r.success())
                    .map_err(|e| failure("replacing unicodePwd", e))?;
            }
        }
        Ok(())
    }
}

/// Sorts an ldap3 error: an LDAP result from the server is a refusal, anything else (I/O,
/// TLS, timeout, connection lost) means the directory is unavailable. `LdapError`'s text holds
/// result codes and diagnostics, never request values such as the password.
fn failure(step: &str, e: LdapError) -> ConnectorError {
    match e {
        LdapError::LdapResult { result } => ConnectorError::Refused {
            connector: NAME,
            detail: format!("{step}: LDAP result {} {:?}", result.rc, result.text),
        },
        other => ConnectorError::Unavailable {
            connector: NAME,
            detail: format!("{step}: {other}"),
        },
    }
}

#[async_trait::async_trait]
impl PasswordWriteback for LdapWriteback {
    fn name(&self) -> &'static str {
        NAME
    }

    #[tracing::instrument(skip_all, fields(user_id = %user_id))]
    async fn set_password(
        &self,
        user_id: &UserId,
        new_password: &Password,
    ) -> Result<(), ConnectorError> {
        let dn = self.settings.user_dn(user_id);
        match tokio::time::timeout(OPERATION_TIMEOUT, self.write(&dn, new_password)).await {
            Ok(Ok(())) => {
                tracing::info!(dn = %dn, "password written to LDAP");
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnectorError::Unavailable {
                connector: NAME,
                detail: format!("no answer within {OPERATION_TIMEOUT:?}"),
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ad_password_is_quoted_utf16le() {
        assert_eq!(
            ad_unicode_pwd("newPassword"),
            vec![
                0x22, 0, b'n', 0, b'e', 0, b'w', 0, b'P', 0, b'a', 0, b's', 0, b's', 0, b'w', 0,
                b'o', 0, b'r', 0, b'd', 0, 0x22, 0
            ]
        );
        // Beyond ASCII: é is U+00E9, 😀 is the surrogate pair D83D DE00.
        assert_eq!(
            ad_unicode_pwd("é😀"),
            vec![0x22, 0, 0xE9, 0x00, 0x3D, 0xD8, 0x00, 0xDE, 0x22, 0]
        );
    }

    #[test]
    fn dn_values_are_escaped_per_rfc_4514() {
        assert_eq!(escape_dn_value("alice"), "alice");
        assert_eq!(
            escape_dn_value("a,b+c\"d\\e<f>g;h=i"),
            "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h\\=i"
        );
        assert_eq!(escape_dn_value("#x#"), "\\#x#");
        assert_eq!(escape_dn_value(" a b "), "\\ a b\\ ");
        assert_eq!(escape_dn_value("a\0b"), "a\\00b");
        assert_eq!(escape_dn_value("élise"), "élise");
    }

    #[test]
    fn user_dn_fills_the_template_with_the_escaped_id() {
        let s = LdapSettings::new(
            "ldap://127.0.0.1:389",
            "cn=sspr-writeback,dc=example,dc=org",
            Secret::new("x".to_owned()),
            "uid={user},ou=people,dc=example,dc=org",
            LdapMode::OpenLdap,
            None,
        )
        .unwrap();
        // User ids cannot hold DN specials today (see `domain::ids`); the escaping is there
        // so that a wider id rule can never change a DN's structure.
        let id = UserId::parse("bob.smith@example.org").unwrap();
        assert_eq!(
            s.user_dn(&id),
            "uid=bob.smith@example.org,ou=people,dc=example,dc=org"
        );
    }

    #[test]
    fn settings_are_checked() {
        let new = |url: &str, template: &str, mode| {
            LdapSettings::new(
                url,
                "cn=svc",
                Secret::new("x".to_owned()),
                template,
                mode,
                None,
            )
        };
        let t = "uid={user},dc=x";
        assert!(new("ldap://h:389", t, LdapMode::OpenLdap).is_ok());
        assert!(new("ldaps://h:636", t, LdapMode::ActiveDirectory).is_ok());
        let e = new("ldaps://h:636", t, LdapMode::OpenLdap).unwrap_err();
        assert_eq!(e.variable, "SSPR_LDAP_URL");
        let e = new("ldap://h:389", t, LdapMode::ActiveDirectory).unwrap_err();
        assert_eq!(e.variable, "SSPR_LDAP_URL");
        let e = new("ldap://h:389", "uid=x,dc=x", LdapMode::OpenLdap).unwrap_err();
        assert_eq!(e.variable, "SSPR_LDAP_USER_DN_TEMPLATE");
        let e = LdapSettings::new(
            "ldap://h:389",
            "cn=svc",
            Secret::new("x".to_owned()),
            t,
            LdapMode::OpenLdap,
            Some(PathBuf::from("/nonexistent/ca.pem")),
        )
        .unwrap_err();
        assert_eq!(e.variable, "SSPR_LDAP_CA_FILE");
        assert_eq!(LdapMode::parse("AD"), Some(LdapMode::ActiveDirectory));
        assert_eq!(LdapMode::parse("openldap"), Some(LdapMode::OpenLdap));
        assert_eq!(LdapMode::parse("novell"), None);
    }
}
