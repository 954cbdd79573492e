//! The reset calls every end-to-end test makes, as [`World`] methods, so the attack tests and
//! the flow tests share one spelling of each (and one way to read a phone code).

use std::time::Duration;

use sspr_proto::reset::v1 as reset;
use tonic::Status;

use crate::{World, code_in};

impl World {
    /// StartReset for `user_id` (locale `en`).
    pub async fn try_start_reset(
        &self,
        user_id: &str,
    ) -> Result<reset::StartResetResponse, Status> {
        self.reset()
            .start_reset(reset::StartResetRequest {
                user_id: user_id.to_owned(),
                locale: "en".to_owned(),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// [`World::try_start_reset`] that must succeed (panics, naming the user, otherwise).
    pub async fn start_reset(&self, user_id: &str) -> reset::StartResetResponse {
        self.try_start_reset(user_id)
            .await
            .unwrap_or_else(|s| panic!("start_reset({user_id}): {s:?}"))
    }

    /// SendCode for one method of a flow.
    pub async fn send_code(
        &self,
        session_id: &str,
        method_id: &str,
    ) -> Result<reset::SendCodeResponse, Status> {
        self.reset()
            .send_code(reset::SendCodeRequest {
                session_id: session_id.to_owned(),
                method_id: method_id.to_owned(),
                ..Default::default()
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// VerifyCode for one method of a flow.
    pub async fn verify_code(
        &self,
        session_id: &str,
        method_id: &str,
        code: &str,
    ) -> Result<reset::VerifyCodeResponse, Status> {
        self.reset()
            .verify_code(reset::VerifyCodeRequest {
                session_id: session_id.to_owned(),
                method_id: method_id.to_owned(),
                code: code.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Waits (15 s at most, then panics) for the next SMS or voice call carrying a code beyond
    /// the first `seen` the SMS provider received and returns the code: the digits of an SMS,
    /// or those read out in a call ("… code is: 1, 2, … . I repeat …"). Deliveries without a
    /// code (method-change notices) are skipped, as [`World::next_code`] skips such mails.
    pub async fn next_phone_code(&self, seen: usize) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut index = seen;
        loop {
            if let Some(r) = self.sms.requests().get(index) {
                if let Some(code) = phone_code(&r.json().expect("a JSON delivery")) {
                    return code;
                }
                index += 1;
                continue;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no SMS or call with a code within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The code in one SMS-provider delivery (`{"channel","to","body"}`), if it carries one.
fn phone_code(delivery: &serde_json::Value) -> Option<String> {
    let to = delivery["to"].as_str().unwrap_or_default();
    let text = delivery["body"].as_str()?.replace(to, "");
    if delivery["channel"] == "voice" {
        let spoken: String = text
            .split("code is: ")
            .nth(1)?
            .split(". I repeat")
            .next()?
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        return (!spoken.is_empty()).then_some(spoken);
    }
    code_in(&text)
}
