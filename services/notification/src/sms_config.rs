//! Settings of the SMS/voice provider and of delivery receipts.
//!
//! `SSPR_SMS_PROVIDER` picks the provider: `webhook` (the default; the generic JSON webhook at
//! `SSPR_SMS_WEBHOOK_URL`) or `twilio` (Twilio's REST API: `SSPR_TWILIO_ACCOUNT_SID`,
//! `SSPR_TWILIO_AUTH_TOKEN`, `SSPR_TWILIO_FROM` and/or `SSPR_TWILIO_MESSAGING_SERVICE_SID`,
//! `SSPR_TWILIO_API_URL`). Receipts are off unless `SSPR_RECEIPTS_ADDR` is set; then
//! `SSPR_RECEIPTS_PUBLIC_URL` (what the provider calls back) is required, and the webhook
//! provider also needs `SSPR_SMS_WEBHOOK_SECRET` to sign its receipts.
//!
//! Invariants: the auth token and the webhook secret are [`Secret`]s (never printed, not even
//! by `Debug`), and no error message repeats a value that could be one.

use std::net::SocketAddr;

use sspr_runtime::settings::{self, ConfigError, Secret};

pub const SMS_PROVIDER_VAR: &str = "SSPR_SMS_PROVIDER";
pub const TWILIO_ACCOUNT_SID_VAR: &str = "SSPR_TWILIO_ACCOUNT_SID";
pub const TWILIO_AUTH_TOKEN_VAR: &str = "SSPR_TWILIO_AUTH_TOKEN";
pub const TWILIO_FROM_VAR: &str = "SSPR_TWILIO_FROM";
pub const TWILIO_MESSAGING_SERVICE_SID_VAR: &str = "SSPR_TWILIO_MESSAGING_SERVICE_SID";
pub const TWILIO_API_URL_VAR: &str = "SSPR_TWILIO_API_URL";
pub const RECEIPTS_ADDR_VAR: &str = "SSPR_RECEIPTS_ADDR";
pub const RECEIPTS_PUBLIC_URL_VAR: &str = "SSPR_RECEIPTS_PUBLIC_URL";
pub const SMS_WEBHOOK_SECRET_VAR: &str = "SSPR_SMS_WEBHOOK_SECRET";
pub const DEFAULT_TWILIO_API_URL: &str = "https://api.twilio.com";
/// Shortest accepted webhook receipt secret.
pub const MIN_WEBHOOK_SECRET_CHARS: usize = 16;

/// Which provider carries SMS and voice calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsProviderChoice {
    /// The generic JSON webhook (`SSPR_SMS_WEBHOOK_URL`).
    Webhook,
    Twilio(TwilioSettings),
}

/// Who the message comes from at Twilio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioSender {
    /// `From`: an E.164 number or an alphanumeric sender id. Calls need one.
    pub from: Option<String>,
    /// `MessagingServiceSid` (`MG` + 32 hex digits): SMS go through it when set.
    pub messaging_service_sid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioSettings {
    /// `AC` + 32 hex digits (not a secret: it is in every API URL).
    pub account_sid: String,
    pub auth_token: Secret<String>,
    pub sender: TwilioSender,
    /// Base URL of the API, without a trailing slash.
    pub api_url: reqwest::Url,
}

/// Where receipts are served and what the provider is told to call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptSettings {
    pub addr: SocketAddr,
    /// `https://sspr.example.org` (no trailing slash, no query): callback URLs are this plus
    /// `/receipts/<provider>/<delivery id>`.
    pub public_url: reqwest::Url,
}

impl ReceiptSettings {
    /// The URL a provider calls back for `delivery_id` (`provider`: `twilio` or `webhook`).
    pub fn callback_url(&self, provider: &str, delivery_id: &str) -> String {
        format!(
            "{}/receipts/{provider}/{delivery_id}",
            self.public_url.as_str().trim_end_matches('/')
        )
    }
}

/// Everything about SMS providers and receipts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsSettings {
    pub provider: SmsProviderChoice,
    /// `None`: receipts are off (no listener, no callback URL given to the provider).
    pub receipts: Option<ReceiptSettings>,
    /// Signs the generic webhook's receipts.
    pub webhook_secret: Option<Secret<String>>,
}

impl Default for SmsSettings {
    fn default() -> Self {
        Self {
            provider: SmsProviderChoice::Webhook,
            receipts: None,
            webhook_secret: None,
        }
    }
}

impl SmsSettings {
    /// Reads the variables above; `webhook_configured` says whether `SSPR_SMS_WEBHOOK_URL` is
    /// set (receipts from the webhook then need its secret).
    pub fn from_env(webhook_configured: bool) -> Result<Self, ConfigError> {
        Self::from_lookup(webhook_configured, &settings::var)
    }

    /// As [`SmsSettings::from_env`], reading variables through `var` (tests).
    pub fn from_lookup(
        webhook_configured: bool,
        var: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let provider = match var(SMS_PROVIDER_VAR)
            .map(|p| p.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("webhook") => SmsProviderChoice::Webhook,
            Some("twilio") => SmsProviderChoice::Twilio(twilio(var)?),
            Some(_) => {
                return Err(ConfigError::new(
                    SMS_PROVIDER_VAR,
                    "must be `webhook` (SSPR_SMS_WEBHOOK_URL) or `twilio`",
                ));
            }
        };
        let webhook_secret = match var(SMS_WEBHOOK_SECRET_VAR) {
            Some(raw) => {
                let raw = raw.trim().to_owned();
                if raw.chars().count() < MIN_WEBHOOK_SECRET_CHARS {
                    return Err(ConfigError::new(
                        SMS_WEBHOOK_SECRET_VAR,
                        format!("must be at least {MIN_WEBHOOK_SECRET_CHARS} characters"),
                    ));
                }
                Some(Secret::new(raw))
            }
            None => None,
        };
        let receipts = match var(RECEIPTS_ADDR_VAR) {
            None => None,
            Some(raw) if raw.trim().eq_ignore_ascii_case("off") => None,
            Some(raw) => {
                let addr = raw.trim().parse::<SocketAddr>().map_err(|_| {
                    ConfigError::new(
                        RECEIPTS_ADDR_VAR,
                        "expected host:port such as 0.0.0.0:8088 (or `off`)",
                    )
                })?;
                let public = var(RECEIPTS_PUBLIC_URL_VAR).ok_or_else(|| {
                    ConfigError::new(
                        RECEIPTS_PUBLIC_URL_VAR,
                        format!(
                            "is required with {RECEIPTS_ADDR_VAR}: the URL at which the provider reaches this listener, e.g. https://sspr.example.org"
                        ),
                    )
                })?;
                let public_url =
                    http_url(&public).map_err(|p| ConfigError::new(RECEIPTS_PUBLIC_URL_VAR, p))?;
                if public_url.query().is_some() || public_url.fragment().is_some() {
                    return Err(ConfigError::new(
                        RECEIPTS_PUBLIC_URL_VAR,
                        "must have no query and no fragment",
                    ));
                }
                Some(ReceiptSettings { addr, public_url })
            }
        };
        if receipts.is_some()
            && provider == SmsProviderChoice::Webhook
            && webhook_configured
            && webhook_secret.is_none()
        {
            return Err(ConfigError::new(
                SMS_WEBHOOK_SECRET_VAR,
                format!(
                    "is required with {RECEIPTS_ADDR_VAR} and the webhook provider: receipts are signed with it (X-Sspr-Signature)"
                ),
            ));
        }
        Ok(Self {
            provider,
            receipts,
            webhook_secret,
        })
    }
}

fn twilio(var: &dyn Fn(&str) -> Option<String>) -> Result<TwilioSettings, ConfigError> {
    let required = |name: &str, what: &str| {
        var(name).ok_or_else(|| ConfigError::new(name, format!("is required ({what})")))
    };
    let account_sid = required(TWILIO_ACCOUNT_SID_VAR, "the Twilio account SID, AC…")?
        .trim()
        .to_owned();
    if !is_sid(&account_sid, "AC") {
        return Err(ConfigError::new(
            TWILIO_ACCOUNT_SID_VAR,
            "must be AC followed by 32 hexadecimal digits",
        ));
    }
    let auth_token = required(TWILIO_AUTH_TOKEN_VAR, "the Twilio auth token")?
        .trim()
        .to_owned();
    if auth_token.len() < 16 || !auth_token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::new(
            TWILIO_AUTH_TOKEN_VAR,
            "must be at least 16 visible ASCII characters",
        ));
    }
    let from = var(TWILIO_FROM_VAR).map(|f| f.trim().to_owned());
    if let Some(from) = &from
        && !is_sender(from)
    {
        return Err(ConfigError::new(
            TWILIO_FROM_VAR,
            "must be an E.164 number (+ and 7 to 15 digits) or an alphanumeric sender id of 1 to 11 characters",
        ));
    }
    let messaging_service_sid = var(TWILIO_MESSAGING_SERVICE_SID_VAR).map(|s| s.trim().to_owned());
    if let Some(sid) = &messaging_service_sid
        && !is_sid(sid, "MG")
    {
        return Err(ConfigError::new(
            TWILIO_MESSAGING_SERVICE_SID_VAR,
            "must be MG followed by 32 hexadecimal digits",
        ));
    }
    if from.is_none() && messaging_service_sid.is_none() {
        return Err(ConfigError::new(
            TWILIO_FROM_VAR,
            format!(
                "or {TWILIO_MESSAGING_SERVICE_SID_VAR} is required with SSPR_SMS_PROVIDER=twilio"
            ),
        ));
    }
    let api_url = match var(TWILIO_API_URL_VAR) {
        Some(raw) => http_url(&raw).map_err(|p| ConfigError::new(TWILIO_API_URL_VAR, p))?,
        None => {
            http_url(DEFAULT_TWILIO_API_URL).map_err(|p| ConfigError::new(TWILIO_API_URL_VAR, p))?
        }
    };
    Ok(TwilioSettings {
        account_sid,
        auth_token: Secret::new(auth_token),
        sender: TwilioSender {
            from,
            messaging_service_sid,
        },
        api_url,
    })
}

/// `prefix` followed by 32 hex digits.
pub fn is_sid(raw: &str, prefix: &str) -> bool {
    raw.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_sender(raw: &str) -> bool {
    if let Some(digits) = raw.strip_prefix('+') {
        (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
    } else {
        (1..=11).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ')
            && raw.bytes().any(|b| b.is_ascii_alphabetic())
    }
}

/// An `http://` or `https://` URL with a host and no credentials; the error never repeats it.
fn http_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw.trim())
        .map_err(|e| format!("is not a valid URL ({e}); expected https://host[:port]"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("expected an http:// or https:// URL".to_owned());
    }
    if url.host_str().is_none() {
        return Err("the host is missing".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials (user:password@)".to_owned());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const SID: &str = "AC0123456789abcdef0123456789abcdef";
    const TOKEN: &str = "twilio-auth-token-0123456789";

    fn read(webhook: bool, vars: &[(&str, &str)]) -> Result<SmsSettings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SmsSettings::from_lookup(webhook, &|name| map.get(name).cloned())
    }

    fn problem(r: Result<SmsSettings, ConfigError>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn webhook_is_the_default_and_receipts_are_off() {
        let s = read(true, &[]).expect("defaults");
        assert_eq!(s, SmsSettings::default());
    }

    #[test]
    fn twilio_settings_are_read_and_checked() {
        let s = read(
            false,
            &[
                (SMS_PROVIDER_VAR, "Twilio"),
                (TWILIO_ACCOUNT_SID_VAR, SID),
                (TWILIO_AUTH_TOKEN_VAR, TOKEN),
                (TWILIO_FROM_VAR, "+15005550006"),
            ],
        )
        .expect("valid");
        let SmsProviderChoice::Twilio(t) = s.provider else {
            panic!("twilio expected");
        };
        assert_eq!(t.account_sid, SID);
        assert_eq!(t.api_url.as_str(), "https://api.twilio.com/");
        assert_eq!(t.sender.from.as_deref(), Some("+15005550006"));
        assert!(!format!("{t:?}").contains(TOKEN), "the token never prints");

        let base = [
            (SMS_PROVIDER_VAR, "twilio"),
            (TWILIO_ACCOUNT_SID_VAR, SID),
            (TWILIO_AUTH_TOKEN_VAR, TOKEN),
        ];
        let e = problem(read(false, &base));
        assert!(e.contains(TWILIO_FROM_VAR), "{e}");
        let mut bad_sid = base.to_vec();
        bad_sid[1].1 = "AC123";
        bad_sid.push((TWILIO_FROM_VAR, "+15005550006"));
        assert!(problem(read(false, &bad_sid)).contains(TWILIO_ACCOUNT_SID_VAR));
        let mut short_token = base.to_vec();
        short_token[2].1 = "short";
        short_token.push((TWILIO_FROM_VAR, "+15005550006"));
        let e = problem(read(false, &short_token));
        assert!(
            e.contains(TWILIO_AUTH_TOKEN_VAR) && !e.contains("short"),
            "{e}"
        );
        let mut bad_mg = base.to_vec();
        bad_mg.push((TWILIO_MESSAGING_SERVICE_SID_VAR, "MGxyz"));
        assert!(problem(read(false, &bad_mg)).contains(TWILIO_MESSAGING_SERVICE_SID_VAR));
        let mut mg = base.to_vec();
        mg.push((
            TWILIO_MESSAGING_SERVICE_SID_VAR,
            "MG0123456789abcdef0123456789abcdef",
        ));
        mg.push((TWILIO_API_URL_VAR, "http://127.0.0.1:9999"));
        assert!(read(false, &mg).is_ok());
        let mut creds = base.to_vec();
        creds.push((TWILIO_FROM_VAR, "Acme"));
        creds.push((TWILIO_API_URL_VAR, "https://u:p@api.example.com"));
        assert!(problem(read(false, &creds)).contains("credentials"));
        assert!(problem(read(false, &[(SMS_PROVIDER_VAR, "sns")])).contains(SMS_PROVIDER_VAR));
    }

    #[test]
    fn receipts_need_a_public_url_and_webhook_receipts_a_secret() {
        let e = problem(read(true, &[(RECEIPTS_ADDR_VAR, "127.0.0.1:0")]));
        assert!(e.contains(RECEIPTS_PUBLIC_URL_VAR), "{e}");
        let with_url = [
            (RECEIPTS_ADDR_VAR, "127.0.0.1:8088"),
            (RECEIPTS_PUBLIC_URL_VAR, "https://sspr.example.org/"),
        ];
        let e = problem(read(true, &with_url));
        assert!(e.contains(SMS_WEBHOOK_SECRET_VAR), "{e}");
        let mut ok = with_url.to_vec();
        ok.push((SMS_WEBHOOK_SECRET_VAR, "webhook-secret-0123456789"));
        let s = read(true, &ok).expect("valid");
        let r = s.receipts.expect("receipts on");
        assert_eq!(
            r.callback_url("webhook", "d-1"),
            "https://sspr.example.org/receipts/webhook/d-1"
        );
        assert!(!format!("{:?}", s.webhook_secret).contains("webhook-secret"));
        let mut short = with_url.to_vec();
        short.push((SMS_WEBHOOK_SECRET_VAR, "short"));
        assert!(problem(read(true, &short)).contains("16"));
        assert!(
            read(true, &[(RECEIPTS_ADDR_VAR, "off")])
                .expect("off")
                .receipts
                .is_none()
        );
        let e = problem(read(
            true,
            &[
                (RECEIPTS_ADDR_VAR, "127.0.0.1:8088"),
                (RECEIPTS_PUBLIC_URL_VAR, "https://x.example.org/?a=1"),
            ],
        ));
        assert!(e.contains("query"), "{e}");
    }
}
