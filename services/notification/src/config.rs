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
use crate::domain::templates::Templates;
use crate::sms_config::SmsSettings;

pub const SMTP_URL_VAR: &str = "SSPR_SMTP_URL";
pub const MAIL_FROM_VAR: &str = "SSPR_MAIL_FROM";
pub const SMS_WEBHOOK_URL_VAR: &str = "SSPR_SMS_WEBHOOK_URL";
pub const DEFAULT_MAIL_FROM: &str = "sspr <no-reply@sspr.localhost>";

/// An SMTP server address from `smtp://host[:port]` (plain SMTP; port 25 by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    host: String,
    port: u16,
}

impl SmtpUrl {
    /// Parses `smtp://host[:port]`; the error says what is wrong without echoing the value.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let Some((scheme, rest)) = raw.split_once("://") else {
            return Err("expected smtp://host:port, e.g. smtp://127.0.0.1:2525".to_owned());
        };
        match scheme.to_ascii_lowercase().as_str() {
            "smtp" => {}
            "smtps" | "submissions" => {
                return Err(
                    "smtps:// (implicit TLS) is not supported yet; use smtp://host:port".to_owned(),
                );
            }
            other => {
                return Err(format!(
                    "scheme {other:?} is not supported yet; use smtp://host:port (plain SMTP)"
                ));
            }
        }
        if rest.contains('@') {
            return Err(
                "SMTP authentication (user:password@) is not supported yet; use smtp://host:port"
                    .to_owned(),
            );
        }
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err("expected smtp://host:port with no path or query".to_owned());
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
            None => 25,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err("the port must be a number from 1 to 65535".to_owned()),
            },
        };
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl std::fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "smtp://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "smtp://{}:{}", self.host, self.port)
        }
    }
}

/// Where mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailTransport {
    /// A real SMTP server (pooled connections).
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
    /// `SSPR_SMS_PROVIDER`, Twilio's settings, and delivery receipts (`SSPR_RECEIPTS_*`).
    pub sms: SmsSettings,
}

impl Config {
    /// Reads `SSPR_SMTP_URL` (required), `SSPR_MAIL_FROM`, `SSPR_SMS_WEBHOOK_URL`,
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
            mail_from: default_mail_from(),
            sms_webhook_url: None,
            sms_files_dir: None,
            code_keys: CodeKeys::single(code_key),
            templates: Arc::new(Templates::builtin()),
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
        let templates = match settings::var(template_dir::TEMPLATE_DIR_VAR) {
            Some(dir) => template_dir::load(std::path::Path::new(dir.trim()))?,
            None => Templates::builtin(),
        };
        let sms = SmsSettings::from_env(sms_webhook_url.is_some())?;
        Ok(Config {
            mail,
            mail_from,
            sms_webhook_url,
            sms_files_dir: None,
            code_keys,
            templates: Arc::new(templates),
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
    }

    #[test]
    fn bad_smtp_urls_say_why_without_echoing_secrets() {
        let err = |s: &str| SmtpUrl::parse(s).err().unwrap_or_default();
        assert!(err("smtps://mail.example.com:465").contains("not supported yet"));
        assert!(err("http://mail.example.com").contains("not supported yet"));
        assert!(err("127.0.0.1:2525").contains("expected smtp://host:port"));
        assert!(err("smtp://:25").contains("host is missing"));
        assert!(err("smtp://host:99999").contains("port"));
        assert!(err("smtp://host:abc").contains("port"));
        assert!(err("smtp://host:0").contains("port"));
        assert!(err("smtp://host/path").contains("no path"));
        let with_password = err("smtp://user:hunter2@host:25");
        assert!(with_password.contains("authentication"));
        assert!(!with_password.contains("hunter2"));
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
