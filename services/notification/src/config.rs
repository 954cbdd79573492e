//! Settings of the notification service.
//!
//! Invariants:
//! - A binary never falls back to writing mail to files: without `SSPR_SMTP_URL`,
//!   [`Config::from_env`] fails. [`MailTransport::Files`] is only ever built in code, by
//!   `sspr dev` (through [`Config::for_dev_from_env`]).
//! - Error messages never repeat a URL that could carry credentials, nor the code key.

use std::path::PathBuf;
use std::sync::Arc;

use lettre::message::Mailbox;
use sspr_runtime::CodeKeys;
use sspr_runtime::settings::{self, ConfigError, Secret};

use crate::adapters::template_dir;
use crate::domain::retry::RetryPolicy;
use crate::domain::templates::Templates;
use crate::sms_config::SmsSettings;

pub const SMTP_URL_VAR: &str = "SSPR_SMTP_URL";
pub const SMTP_TLS_CA_VAR: &str = "SSPR_SMTP_TLS_CA";
pub const SMTP_USER_VAR: &str = "SSPR_SMTP_USER";
pub const SMTP_PASSWORD_VAR: &str = "SSPR_SMTP_PASSWORD";
pub const MAIL_FROM_VAR: &str = "SSPR_MAIL_FROM";
pub const SMS_WEBHOOK_URL_VAR: &str = "SSPR_SMS_WEBHOOK_URL";
pub const DEFAULT_MAIL_FROM: &str = "sspr <no-reply@sspr.localhost>";

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP (`smtp://`): only for a relay on the same host or a trusted network.
    None,
    /// `smtp://host:port?tls=starttls`: STARTTLS is required; a server that does not offer it is
    /// refused, never talked to in clear.
    StartTls,
    /// `smtps://host:port`: TLS from the first byte (implicit TLS, port 465 by default).
    Implicit,
}

/// An SMTP server address: `smtp://host[:port]` (plain, port 25 by default),
/// `smtp://host[:port]?tls=starttls` (STARTTLS required), `smtps://host[:port]` (implicit TLS,
/// port 465 by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    host: String,
    port: u16,
    tls: SmtpTls,
}

impl SmtpUrl {
    /// Parses the forms above; the error says what is wrong without echoing the value.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Err("expected smtp://host:port, e.g. smtp://127.0.0.1:2525".to_owned());
        };
        let (mut tls, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "smtp" => (SmtpTls::None, 25),
            "smtps" | "submissions" => (SmtpTls::Implicit, 465),
            other => {
                return Err(format!(
                    "scheme {other:?} is not supported; use smtp://host:port, \
                     smtp://host:port?tls=starttls or smtps://host:port"
                ));
            }
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        if rest.contains('@') {
            return Err(
                "credentials do not belong in the URL: set SSPR_SMTP_USER and SSPR_SMTP_PASSWORD"
                    .to_owned(),
            );
        }
        if let Some(query) = query {
            match query.to_ascii_lowercase().as_str() {
                "tls=starttls" if tls == SmtpTls::None => tls = SmtpTls::StartTls,
                "tls=starttls" => {
                    return Err(
                        "tls=starttls goes with smtp://, not smtps:// (already implicit TLS)"
                            .to_owned(),
                    );
                }
                "tls=none" if tls == SmtpTls::None => {}
                _ => {
                    return Err(
                        "the only query accepted is ?tls=starttls (e.g. smtp://mail.example.com:587?tls=starttls)"
                            .to_owned(),
                    );
                }
            }
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '#']) {
            return Err("expected smtp://host:port with no path".to_owned());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| {
                "unclosed [ in an IPv6 host; expected smtp://[::1]:2525".to_owned()
            })?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| "expected :port after the IPv6 host".to_owned())?,
                ),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("the host is missing; expected smtp://host:port".to_owned());
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err("the host has characters that are not allowed in a host name".to_owned());
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err("the port must be a number from 1 to 65535".to_owned()),
            },
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn tls(&self) -> SmtpTls {
        self.tls
    }
}

impl std::fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = match self.tls {
            SmtpTls::Implicit => "smtps",
            SmtpTls::None | SmtpTls::StartTls => "smtp",
        };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)?;
        }
        if self.tls == SmtpTls::StartTls {
            f.write_str("?tls=starttls")?;
        }
        Ok(())
    }
}

/// A CA to trust for the SMTP server's certificate, besides the system roots
/// (`SSPR_SMTP_TLS_CA`, a PEM file). Holds at least one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpTlsCa {
    path: PathBuf,
    pem: Vec<u8>,
}

impl SmtpTlsCa {
    /// Reads and checks the PEM file (at least one certificate).
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| format!("{} is not a valid PEM file", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        Ok(Self {
            path: path.to_owned(),
            pem,
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn pem(&self) -> &[u8] {
        &self.pem
    }
}

/// The SMTP login (`SSPR_SMTP_USER`, `SSPR_SMTP_PASSWORD`); the password never prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpCredentials {
    pub user: String,
    pub password: Secret<String>,
}

/// SMTP settings beyond the URL; all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmtpOptions {
    /// `SSPR_SMTP_TLS_CA`.
    pub tls_ca: Option<SmtpTlsCa>,
    /// `SSPR_SMTP_USER` and `SSPR_SMTP_PASSWORD` (AUTH PLAIN or LOGIN).
    pub credentials: Option<SmtpCredentials>,
}

impl SmtpOptions {
    /// Reads `SSPR_SMTP_TLS_CA`, `SSPR_SMTP_USER`, `SSPR_SMTP_PASSWORD`, checked against the
    /// server URL when there is one.
    pub fn from_env(url: Option<&SmtpUrl>) -> Result<Self, ConfigError> {
        let tls_ca = settings::var(SMTP_TLS_CA_VAR)
            .map(|raw| {
                SmtpTlsCa::load(std::path::Path::new(raw.trim()))
                    .map_err(|p| ConfigError::new(SMTP_TLS_CA_VAR, p))
            })
            .transpose()?;
        if tls_ca.is_some() && url.is_some_and(|u| u.tls() == SmtpTls::None) {
            return Err(ConfigError::new(
                SMTP_TLS_CA_VAR,
                "is set but SSPR_SMTP_URL uses no TLS (use smtps:// or ?tls=starttls)",
            ));
        }
        let credentials = match (
            settings::var(SMTP_USER_VAR),
            settings::var(SMTP_PASSWORD_VAR),
        ) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::new(
                    SMTP_PASSWORD_VAR,
                    "is required when SSPR_SMTP_USER is set",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    SMTP_USER_VAR,
                    "is required when SSPR_SMTP_PASSWORD is set",
                ));
            }
            (Some(user), Some(password)) => {
                let user = user.trim().to_owned();
                if user.is_empty() || user.len() > 256 || user.chars().any(char::is_control) {
                    return Err(ConfigError::new(
                        SMTP_USER_VAR,
                        "must be 1 to 256 characters without control characters",
                    ));
                }
                Some(SmtpCredentials {
                    user,
                    password: Secret::new(password),
                })
            }
        };
        Ok(Self {
            tls_ca,
            credentials,
        })
    }
}

/// Where mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailTransport {
    /// A real SMTP server (pooled connections; TLS, CA and login from [`Config::smtp`]).
    Smtp { url: SmtpUrl },
    /// Each mail written as an RFC 5322 `.eml` file into `dir`. Only `sspr dev` uses this.
    Files { dir: PathBuf },
}

/// An `http://` or `https://` URL for the SMS webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsWebhookUrl(reqwest::Url);

impl SmsWebhookUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let url = reqwest::Url::parse(raw.trim())
            .map_err(|e| format!("is not a valid URL ({e}); expected http://host:port/path"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("expected an http:// or https:// URL".to_owned());
        }
        if url.host_str().is_none() {
            return Err("the host is missing; expected http://host:port/path".to_owned());
        }
        Ok(Self(url))
    }

    pub fn url(&self) -> &reqwest::Url {
        &self.0
    }
}

/// Settings specific to the notification service.
#[derive(Debug, Clone)]
pub struct Config {
    pub mail: MailTransport,
    /// `SSPR_SMTP_TLS_CA`, `SSPR_SMTP_USER`, `SSPR_SMTP_PASSWORD` (used with
    /// [`MailTransport::Smtp`]).
    pub smtp: SmtpOptions,
    /// `SSPR_MAIL_FROM`, the From of every mail.
    pub mail_from: Mailbox,
    /// `SSPR_SMS_WEBHOOK_URL`; without it SMS deliveries fail with a clear reason.
    pub sms_webhook_url: Option<SmsWebhookUrl>,
    /// Only `sspr dev` sets this: without a webhook, SMS are written as text files here.
    pub sms_files_dir: Option<PathBuf>,
    /// `SSPR_CODE_KEY` and `SSPR_CODE_KEYS_PREVIOUS`, shared with verification: open sealed
    /// deliveries (each with the key its id names).
    pub code_keys: CodeKeys,
    /// The mail templates: built-in, with the overrides of `SSPR_TEMPLATE_DIR` when set.
    pub templates: Arc<Templates>,
    /// How failed code deliveries are retried (the defaults; tests shorten the delays).
    pub retry: RetryPolicy,
    /// `SSPR_SMS_PROVIDER`, Twilio's settings, and delivery receipts (`SSPR_RECEIPTS_*`).
    pub sms: SmsSettings,
}

impl Config {
    /// Reads `SSPR_SMTP_URL` (required), `SSPR_SMTP_TLS_CA`, `SSPR_SMTP_USER`,
    /// `SSPR_SMTP_PASSWORD`, `SSPR_MAIL_FROM`, `SSPR_SMS_WEBHOOK_URL`,
    /// `SSPR_CODE_KEY` and `SSPR_TEMPLATE_DIR` (optional template overrides, loaded now).
    pub fn from_env() -> Result<Config, ConfigError> {
        let raw = settings::var(SMTP_URL_VAR).ok_or_else(|| {
            ConfigError::new(
                SMTP_URL_VAR,
                "is required: notification refuses to start without an SMTP server (e.g. smtp://127.0.0.1:2525)",
            )
        })?;
        let mail = MailTransport::Smtp {
            url: SmtpUrl::parse(&raw).map_err(|p| ConfigError::new(SMTP_URL_VAR, p))?,
        };
        Self::with_mail_from_env(mail, CodeKeys::from_env()?)
    }

    /// For `sspr dev`: SMTP when `SSPR_SMTP_URL` is set, otherwise mail written as `.eml` files
    /// into `mail_dir`; the other settings from the environment, with the given code key.
    pub fn for_dev_from_env(
        mail_dir: PathBuf,
        code_key: Secret<[u8; 32]>,
    ) -> Result<Config, ConfigError> {
        let mail = match settings::var(SMTP_URL_VAR) {
            Some(raw) => MailTransport::Smtp {
                url: SmtpUrl::parse(&raw).map_err(|p| ConfigError::new(SMTP_URL_VAR, p))?,
            },
            None => MailTransport::Files { dir: mail_dir },
        };
        Self::with_mail_from_env(mail, CodeKeys::single(code_key))
    }

    /// `mail` and `code_key` as given, the defaults for the rest (no SMS webhook).
    pub fn new(mail: MailTransport, code_key: Secret<[u8; 32]>) -> Config {
        Config {
            mail,
            smtp: SmtpOptions::default(),
            mail_from: default_mail_from(),
            sms_webhook_url: None,
            sms_files_dir: None,
            code_keys: CodeKeys::single(code_key),
            templates: Arc::new(Templates::builtin()),
            retry: RetryPolicy::default(),
            sms: SmsSettings::default(),
        }
    }

    fn with_mail_from_env(mail: MailTransport, code_keys: CodeKeys) -> Result<Config, ConfigError> {
        let mail_from = match settings::var(MAIL_FROM_VAR) {
            Some(raw) => raw.trim().parse::<Mailbox>().map_err(|_| {
                ConfigError::new(
                    MAIL_FROM_VAR,
                    format!(
                        "is not a valid mailbox; expected an address such as {DEFAULT_MAIL_FROM:?}"
                    ),
                )
            })?,
            None => default_mail_from(),
        };
        let sms_webhook_url = settings::var(SMS_WEBHOOK_URL_VAR)
            .map(|raw| {
                SmsWebhookUrl::parse(&raw).map_err(|p| ConfigError::new(SMS_WEBHOOK_URL_VAR, p))
            })
            .transpose()?;
        let smtp = SmtpOptions::from_env(match &mail {
            MailTransport::Smtp { url } => Some(url),
            MailTransport::Files { .. } => None,
        })?;
        let templates = match settings::var(template_dir::TEMPLATE_DIR_VAR) {
            Some(dir) => template_dir::load(std::path::Path::new(dir.trim()))?,
            None => Templates::builtin(),
        };
        let sms = SmsSettings::from_env(sms_webhook_url.is_some())?;
        Ok(Config {
            mail,
            smtp,
            mail_from,
            sms_webhook_url,
            sms_files_dir: None,
            code_keys,
            templates: Arc::new(templates),
            retry: RetryPolicy::default(),
            sms,
        })
    }
}

/// `sspr <no-reply@sspr.localhost>`.
pub fn default_mail_from() -> Mailbox {
    // A constant, valid address: no need for the checked constructor.
    Mailbox::new(
        Some("sspr".to_owned()),
        lettre::Address::new_dangerous("no-reply", "sspr.localhost"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls() {
        let u = SmtpUrl::parse("smtp://127.0.0.1:2525").expect("valid");
        assert_eq!((u.host(), u.port()), ("127.0.0.1", 2525));
        let u = SmtpUrl::parse("smtp://mail.example.com").expect("valid");
        assert_eq!((u.host(), u.port()), ("mail.example.com", 25));
        let u = SmtpUrl::parse("SMTP://mail.example.com:587/").expect("valid");
        assert_eq!(u.port(), 587);
        let u = SmtpUrl::parse("smtp://[::1]:2525").expect("valid");
        assert_eq!((u.host(), u.port()), ("::1", 2525));
        assert_eq!(u.to_string(), "smtp://[::1]:2525");
        assert_eq!(u.tls(), SmtpTls::None);
        let u = SmtpUrl::parse("smtp://mail.example.com:587?tls=starttls").expect("valid");
        assert_eq!((u.port(), u.tls()), (587, SmtpTls::StartTls));
        assert_eq!(u.to_string(), "smtp://mail.example.com:587?tls=starttls");
        let u = SmtpUrl::parse("smtps://mail.example.com").expect("valid");
        assert_eq!((u.port(), u.tls()), (465, SmtpTls::Implicit));
        assert_eq!(u.to_string(), "smtps://mail.example.com:465");
        let u = SmtpUrl::parse("smtp://h:25?tls=none").expect("valid");
        assert_eq!(u.tls(), SmtpTls::None);
    }

    #[test]
    fn bad_smtp_urls_say_why_without_echoing_secrets() {
        let err = |s: &str| SmtpUrl::parse(s).err().unwrap_or_default();
        assert!(err("http://mail.example.com").contains("not supported"));
        assert!(err("smtp://h:25?tls=maybe").contains("?tls=starttls"));
        assert!(err("smtps://h:465?tls=starttls").contains("not smtps://"));
        assert!(err("127.0.0.1:2525").contains("expected smtp://host:port"));
        assert!(err("smtp://:25").contains("host is missing"));
        assert!(err("smtp://host:99999").contains("port"));
        assert!(err("smtp://host:abc").contains("port"));
        assert!(err("smtp://host:0").contains("port"));
        assert!(err("smtp://host/path").contains("no path"));
        let with_password = err("smtp://user:hunter2@host:25");
        assert!(with_password.contains("SSPR_SMTP_PASSWORD"));
        assert!(!with_password.contains("hunter2"));
    }

    #[test]
    fn a_ca_file_must_hold_a_certificate() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let missing = SmtpTlsCa::load(&dir.path().join("nope.pem"))
            .err()
            .unwrap_or_default();
        assert!(
            missing.contains("cannot read") && missing.contains("nope.pem"),
            "{missing}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n")?;
        let e = SmtpTlsCa::load(&empty).err().unwrap_or_default();
        assert!(e.contains("no PEM certificate"), "{e}");
        Ok(())
    }

    #[test]
    fn the_smtp_password_never_prints() {
        let c = SmtpCredentials {
            user: "mailer".into(),
            password: Secret::new("hunter2".into()),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn sms_webhook_urls() {
        assert!(SmsWebhookUrl::parse("http://127.0.0.1:8080/sms").is_ok());
        assert!(SmsWebhookUrl::parse("https://sms.example.com/").is_ok());
        assert!(SmsWebhookUrl::parse("ftp://x/").is_err());
        assert!(SmsWebhookUrl::parse("not a url").is_err());
    }

    #[test]
    fn default_sender() {
        assert_eq!(default_mail_from().to_string(), DEFAULT_MAIL_FROM);
        assert_eq!(
            DEFAULT_MAIL_FROM.parse::<Mailbox>().ok(),
            Some(default_mail_from())
        );
    }
}
