//! SMS and voice calls through Twilio's REST API (or any server speaking it).
//!
//! - SMS: `POST {api}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded `To`,
//!   `From` or `MessagingServiceSid`, `Body`, and `StatusCallback` when receipts are on.
//! - Voice: `POST {api}/2010-04-01/Accounts/{AccountSid}/Calls.json` with `To`, `From`,
//!   `Twiml` (`<Response><Say>…</Say></Response>`, the text XML-escaped) and `StatusCallback`.
//!
//! HTTP basic auth with the account SID and the auth token. The JSON answer's `sid` is the
//! provider message id. 2xx: accepted. 429, 5xx, timeouts and connection failures: transient.
//! Other answers: permanent. A reason carries the HTTP status and Twilio's numeric error `code`
//! only: never Twilio's `message` (it echoes the number), nor the body, nor the auth token.

use async_trait::async_trait;
use reqwest::StatusCode;
use sspr_runtime::settings::Secret;
use tracing::Instrument;

use crate::adapters::http_client::{self, HttpClientError};
use crate::domain::delivery::Channel;
use crate::domain::receipt::{ProviderMessageId, error_code};
use crate::domain::retry::SendFailure;
use crate::ports::{OutgoingSms, SmsSender};
use crate::sms_config::{ReceiptSettings, TwilioSender, TwilioSettings};

pub const PROVIDER: &str = "twilio";

pub struct TwilioSms {
    client: reqwest::Client,
    account_sid: String,
    auth_token: Secret<String>,
    sender: TwilioSender,
    messages_url: reqwest::Url,
    calls_url: reqwest::Url,
    receipts: Option<ReceiptSettings>,
}

impl TwilioSms {
    pub fn new(
        settings: TwilioSettings,
        receipts: Option<ReceiptSettings>,
    ) -> Result<Self, HttpClientError> {
        let base = settings.api_url.as_str().trim_end_matches('/').to_owned();
        let account = format!("{base}/2010-04-01/Accounts/{}", settings.account_sid);
        // The SID was checked (AC + hex), so these always parse.
        let parse =
            |s: String| reqwest::Url::parse(&s).unwrap_or_else(|_| settings.api_url.clone());
        Ok(Self {
            client: http_client::provider_client()?,
            messages_url: parse(format!("{account}/Messages.json")),
            calls_url: parse(format!("{account}/Calls.json")),
            account_sid: settings.account_sid,
            auth_token: settings.auth_token,
            sender: settings.sender,
            receipts,
        })
    }

    /// The form fields of `sms`, in the order sent.
    fn form(&self, sms: &OutgoingSms) -> Result<Vec<(&'static str, String)>, SendFailure> {
        let mut fields = vec![("To", sms.to.expose().to_owned())];
        match sms.channel {
            Channel::Voice => {
                let Some(from) = &self.sender.from else {
                    return Err(SendFailure::permanent(
                        "Twilio voice calls need a caller number: set SSPR_TWILIO_FROM",
                    ));
                };
                fields.push(("From", from.clone()));
                fields.push(("Twiml", twiml_say(&sms.body)));
            }
            Channel::Sms | Channel::Email => {
                match (&self.sender.messaging_service_sid, &self.sender.from) {
                    (Some(service), _) => fields.push(("MessagingServiceSid", service.clone())),
                    (None, Some(from)) => fields.push(("From", from.clone())),
                    (None, None) => {
                        return Err(SendFailure::permanent(
                            "no Twilio sender: set SSPR_TWILIO_FROM or SSPR_TWILIO_MESSAGING_SERVICE_SID",
                        ));
                    }
                }
                fields.push(("Body", sms.body.clone()));
            }
        }
        if let Some(receipts) = &self.receipts {
            fields.push((
                "StatusCallback",
                receipts.callback_url(PROVIDER, sms.delivery_id.as_str()),
            ));
        }
        Ok(fields)
    }
}

/// `<Response><Say>text</Say></Response>` with `text` XML-escaped.
pub fn twiml_say(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            c if c.is_control() => escaped.push(' '),
            c => escaped.push(c),
        }
    }
    format!("<Response><Say>{escaped}</Say></Response>")
}

#[async_trait]
impl SmsSender for TwilioSms {
    async fn send(&self, sms: &OutgoingSms) -> Result<(), SendFailure> {
        self.submit(sms).await.map(|_| ())
    }

    async fn submit(&self, sms: &OutgoingSms) -> Result<Option<ProviderMessageId>, SendFailure> {
        let url = match sms.channel {
            Channel::Voice => &self.calls_url,
            Channel::Sms | Channel::Email => &self.messages_url,
        };
        let server = http_client::server_of(url);
        let span = tracing::info_span!(
            "sms.twilio",
            otel.name = %format!("POST twilio {}", if sms.channel == Channel::Voice { "Calls" } else { "Messages" }),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = "POST",
            server.address = %url.host_str().unwrap_or_default(),
            server.port = url.port_or_known_default().unwrap_or(443),
            http.response.status_code = tracing::field::Empty,
            delivery_id = %sms.delivery_id,
            provider_message_id = tracing::field::Empty,
        );
        let fields = self.form(sms)?;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        async {
            let result = self
                .client
                .post(url.clone())
                .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .header(reqwest::header::ACCEPT, "application/json")
                .body(body)
                .send()
                .await;
            let span = tracing::Span::current();
            let failure = match result {
                Ok(response) => {
                    let status = response.status();
                    span.record("http.response.status_code", status.as_u16());
                    // The body is read as JSON only; never logged.
                    let json = response
                        .json::<serde_json::Value>()
                        .await
                        .unwrap_or(serde_json::Value::Null);
                    if status.is_success() {
                        let sid = json
                            .get("sid")
                            .and_then(serde_json::Value::as_str)
                            .and_then(ProviderMessageId::parse);
                        if let Some(sid) = &sid {
                            span.record("provider_message_id", sid.as_str());
                        } else {
                            tracing::warn!("Twilio accepted the message without a usable sid");
                        }
                        return Ok(sid);
                    }
                    let code = json
                        .get("code")
                        .and_then(|c| match c {
                            serde_json::Value::Number(n) => Some(n.to_string()),
                            serde_json::Value::String(s) => Some(s.clone()),
                            _ => None,
                        })
                        .and_then(|c| error_code(&c).map(str::to_owned));
                    classify_status(&server, status, code.as_deref())
                }
                Err(e) if e.is_timeout() => {
                    SendFailure::transient(format!("Twilio {server} timed out"))
                }
                Err(e) if e.is_connect() => {
                    SendFailure::transient(format!("cannot connect to Twilio {server}"))
                }
                Err(_) => SendFailure::transient(format!("the request to Twilio {server} failed")),
            };
            span.record("otel.status_code", "ERROR");
            Err(failure)
        }
        .instrument(span)
        .await
    }

    fn provider(&self) -> &'static str {
        PROVIDER
    }
}

/// Sorts an error answer; `code` is Twilio's numeric error code when the body had one.
pub fn classify_status(server: &str, status: StatusCode, code: Option<&str>) -> SendFailure {
    let http = status.as_u16();
    let code = code.map(|c| format!(", error {c}")).unwrap_or_default();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        SendFailure::transient(format!(
            "Twilio {server} answered HTTP {http}{code} (will retry)"
        ))
    } else {
        SendFailure::permanent(format!(
            "Twilio {server} refused the message with HTTP {http}{code}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::retry::FailureKind;

    fn twilio(from: Option<&str>, service: Option<&str>, receipts: bool) -> TwilioSms {
        TwilioSms::new(
            TwilioSettings {
                account_sid: "AC0123456789abcdef0123456789abcdef".into(),
                auth_token: Secret::new("token-0123456789abcdef".into()),
                sender: TwilioSender {
                    from: from.map(str::to_owned),
                    messaging_service_sid: service.map(str::to_owned),
                },
                api_url: reqwest::Url::parse("https://api.twilio.com").expect("url"),
            },
            receipts.then(|| ReceiptSettings {
                addr: "127.0.0.1:8088".parse().expect("addr"),
                public_url: reqwest::Url::parse("https://sspr.example.org/").expect("url"),
            }),
        )
        .expect("client")
    }

    fn sms(channel: Channel) -> OutgoingSms {
        OutgoingSms {
            delivery_id: crate::domain::delivery::DeliveryId::parse("d-1").expect("id"),
            channel,
            to: crate::domain::delivery::PhoneNumber::parse("+33612345678").expect("phone"),
            body: "Your code: 1234 & more".into(),
        }
    }

    #[test]
    fn fields_follow_the_sender_and_the_channel() {
        let service = "MG0123456789abcdef0123456789abcdef";
        let t = twilio(Some("+15005550006"), Some(service), true);
        assert_eq!(
            t.messages_url.as_str(),
            "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
        );
        let f = t.form(&sms(Channel::Sms)).expect("fields");
        assert_eq!(
            f,
            vec![
                ("To", "+33612345678".to_owned()),
                ("MessagingServiceSid", service.to_owned()),
                ("Body", "Your code: 1234 & more".to_owned()),
                (
                    "StatusCallback",
                    "https://sspr.example.org/receipts/twilio/d-1".to_owned()
                ),
            ]
        );
        let f = t.form(&sms(Channel::Voice)).expect("fields");
        assert_eq!(f[1], ("From", "+15005550006".to_owned()));
        assert_eq!(
            f[2].1,
            "<Response><Say>Your code: 1234 &amp; more</Say></Response>"
        );
        // A messaging service alone cannot place calls: a clear, permanent failure.
        let only_service = twilio(None, Some(service), false);
        let e = only_service
            .form(&sms(Channel::Voice))
            .expect_err("refused");
        assert_eq!(e.kind, FailureKind::Permanent);
        assert!(e.detail.contains("SSPR_TWILIO_FROM"));
        assert!(
            only_service
                .form(&sms(Channel::Sms))
                .expect("fields")
                .iter()
                .all(|(k, _)| *k != "StatusCallback")
        );
    }

    #[test]
    fn twiml_is_escaped() {
        assert_eq!(
            twiml_say("Code: 1, 2 & <3> \"x\" 'y'"),
            "<Response><Say>Code: 1, 2 &amp; &lt;3&gt; &quot;x&quot; &apos;y&apos;</Say></Response>"
        );
        assert_eq!(twiml_say("a\nb"), "<Response><Say>a b</Say></Response>");
    }

    #[test]
    fn answers_are_sorted_and_reasons_hold_only_numbers() {
        let s = |c: u16| StatusCode::from_u16(c).unwrap_or(StatusCode::IM_A_TEAPOT);
        assert_eq!(
            classify_status("h:1", s(429), None).kind,
            FailureKind::Transient
        );
        assert_eq!(
            classify_status("h:1", s(500), None).kind,
            FailureKind::Transient
        );
        assert_eq!(
            classify_status("h:1", s(503), None).kind,
            FailureKind::Transient
        );
        let refused = classify_status("h:1", s(400), Some("21211"));
        assert_eq!(refused.kind, FailureKind::Permanent);
        assert_eq!(
            refused.detail,
            "Twilio h:1 refused the message with HTTP 400, error 21211"
        );
        assert_eq!(
            classify_status("h:1", s(401), None).kind,
            FailureKind::Permanent
        );
        assert_eq!(
            classify_status("h:1", s(302), None).kind,
            FailureKind::Permanent
        );
    }
}
